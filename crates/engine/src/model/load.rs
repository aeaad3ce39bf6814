//! Loading a model and its tokenizer from disk: a Hugging Face directory (config.json,
//! model.safetensors or a sharded index, tokenizer.json) or a GGUF file (dequantized).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};

use crate::kernels::blocks::{BlockFormat, BlockWeights};
use candle_core::{DType, Device, Tensor};

use super::config::{HfConfig, LlamaConfig};
use super::error::{ModelError, ModelResult};
use super::llama::Llama;
use super::params::WeightMap;
use super::tokenizer::TextTokenizer;

/// A model with everything needed to talk to it.
#[derive(Debug)]
pub struct LoadedModel {
    /// The network.
    pub model: Llama,
    /// Its tokenizer, special tokens and chat template.
    pub tokenizer: TextTokenizer,
    /// Where it came from.
    pub source: PathBuf,
}

/// Loads `path`: a directory in HF layout, or a `.gguf` file.
pub fn load_model(path: &Path, dtype: DType, device: &Device) -> ModelResult<LoadedModel> {
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    if meta.is_dir() {
        load_hf_dir(path, dtype, device)
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        load_gguf(path, dtype, device)
    } else {
        Err(ModelError::format(
            path.display(),
            "expected a model directory (config.json + *.safetensors + tokenizer.json) or a .gguf file",
        ))
    }
}

/// Reads an HF model directory.
pub fn load_hf_dir(dir: &Path, dtype: DType, device: &Device) -> ModelResult<LoadedModel> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
    let hf: HfConfig = serde_json::from_str(&text)
        .map_err(|e| ModelError::format(config_path.display(), e.to_string()))?;
    let cfg = hf.into_config().map_err(|m| ModelError::Unsupported {
        origin: config_path.display().to_string(),
        message: m,
    })?;
    let mut tensors = HashMap::new();
    for file in safetensors_files(dir)? {
        let loaded = candle_core::safetensors::load(&file, &Device::Cpu)
            .map_err(|e| ModelError::format(file.display(), e.to_string()))?;
        tensors.extend(loaded);
    }
    let origin = dir.display().to_string();
    let model = Llama::from_weights(cfg, WeightMap::new(origin, tensors, dtype, device))?;
    let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
    Ok(LoadedModel {
        model,
        tokenizer,
        source: dir.to_owned(),
    })
}

/// `model.safetensors`, or every shard named in `model.safetensors.index.json`.
fn safetensors_files(dir: &Path) -> ModelResult<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| {
        ModelError::format(
            dir.display(),
            "no model.safetensors and no model.safetensors.index.json in this directory",
        )
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::format(index.display(), e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::format(index.display(), "missing `weight_map` object"))?;
    let mut files: Vec<PathBuf> = map
        .values()
        .filter_map(|v| v.as_str())
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// llama.cpp tensor names → HF names (`blk.N.` is handled by the caller).
const GGUF_NAMES: [(&str, &str); 13] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
];

fn hf_name(gguf: &str) -> Option<String> {
    if gguf == "output.weight" {
        return Some("lm_head.weight".into());
    }
    let (stem, suffix) = gguf.rsplit_once('.')?;
    if let Some(rest) = stem.strip_prefix("blk.") {
        let (layer, module) = rest.split_once('.')?;
        let hf = GGUF_NAMES.iter().find(|(g, _)| *g == module)?.1;
        return Some(format!("model.layers.{layer}.{hf}.{suffix}"));
    }
    let hf = GGUF_NAMES.iter().find(|(g, _)| *g == stem)?.1;
    Some(format!("{hf}.{suffix}"))
}

/// Reads a GGUF file, dequantizing every tensor, with the tokenizer from its metadata.
pub fn load_gguf(path: &Path, dtype: DType, device: &Device) -> ModelResult<LoadedModel> {
    let origin = path.display().to_string();
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| ModelError::format(&origin, format!("not a readable GGUF file: {e}")))?;
    let cfg = gguf_config(&content, &origin)?;
    let (mut tensors, mut blocks) = (HashMap::new(), HashMap::new());
    for name in content.tensor_infos.keys() {
        let Some(hf) = hf_name(name) else { continue };
        let q = content
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| ModelError::format(&origin, format!("tensor `{name}`: {e}")))?;
        let mut t = q.dequantize(&Device::Cpu)?;
        let mut b = file_blocks(&q)?;
        // llama.cpp stores Llama's q/k rows permuted for interleaved RoPE; undo it so the
        // weights are in HF layout (rotate-half RoPE, and exportable as-is).
        let rope_heads = match cfg.architecture.as_str() {
            "llama" if hf.ends_with("q_proj.weight") => Some(cfg.num_attention_heads),
            "llama" if hf.ends_with("k_proj.weight") => Some(cfg.num_key_value_heads),
            _ => None,
        };
        if let Some(heads) = rope_heads {
            t = unpermute_rope_rows(&t, heads)?;
            if let Some(blocks) = &b {
                b = Some(blocks.permute_rows(&unpermuted_row_order(blocks.shape().0, heads)?));
            }
        }
        if let Some(b) = b {
            blocks.insert(hf.clone(), b);
        }
        tensors.insert(hf, t);
    }
    let tokenizer = TextTokenizer::from_gguf(&content, &origin)?;
    let weights = WeightMap::new(origin, tensors, dtype, device).with_blocks(blocks);
    let model = Llama::from_weights(cfg, weights)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        source: path.to_owned(),
    })
}

/// The file's blocks of a 2-D tensor in a format the few-rows kernels read.
fn file_blocks(q: &QTensor) -> candle_core::Result<Option<BlockWeights>> {
    let format = match q.dtype() {
        GgmlDType::Q4_1 => BlockFormat::Q4_1,
        GgmlDType::Q8_0 => BlockFormat::Q8_0,
        _ => return Ok(None),
    };
    let Ok((rows, cols)) = q.shape().dims2() else {
        return Ok(None);
    };
    Ok(BlockWeights::from_ggml(format, rows, cols, &q.data()?))
}

/// Which original row each row of [`unpermute_rope_rows`]'s result comes from.
fn unpermuted_row_order(rows: usize, heads: usize) -> candle_core::Result<Vec<usize>> {
    let index = Tensor::arange(0u32, rows as u32, &Device::Cpu)?.reshape((rows, 1))?;
    let order = unpermute_rope_rows(&index, heads)?
        .flatten_all()?
        .to_vec1::<u32>()?;
    Ok(order.into_iter().map(|r| r as usize).collect())
}

/// Inverse of llama.cpp's `permute`: rows ordered (head, D/2, 2) back to (head, 2, D/2).
///
/// # Shapes
/// w: (heads · D, in) → (heads · D, in).
fn unpermute_rope_rows(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let half = rows / heads / 2;
    w.reshape((heads, half, 2, cols))?
        .transpose(1, 2)?
        .reshape((rows, cols))
}

/// The model configuration from GGUF metadata (`<arch>.*` keys).
fn gguf_config(content: &gguf_file::Content, origin: &str) -> ModelResult<LlamaConfig> {
    let md = &content.metadata;
    let arch = md
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| ModelError::format(origin, "GGUF metadata lacks `general.architecture`"))?;
    if !matches!(arch.as_str(), "llama" | "qwen2" | "qwen3") {
        return Err(ModelError::Unsupported {
            origin: origin.into(),
            message: format!(
                "architecture `{arch}` is not supported: polyepo runs llama, qwen2 and qwen3"
            ),
        });
    }
    let num = |key: &str| -> ModelResult<f64> {
        let full = format!("{arch}.{key}");
        let v = md
            .get(&full)
            .ok_or_else(|| ModelError::format(origin, format!("GGUF metadata lacks `{full}`")))?;
        v.to_u32()
            .map(f64::from)
            .or_else(|_| v.to_f32().map(f64::from))
            .or_else(|_| v.to_u64().map(|x| x as f64))
            .map_err(|e| ModelError::format(origin, format!("`{full}`: {e}")))
    };
    let opt = |key: &str| num(key).ok();
    let hidden = num("embedding_length")? as usize;
    let heads = num("attention.head_count")? as usize;
    let vocab = match opt("vocab_size") {
        Some(v) => v as usize,
        None => content
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| {
                ModelError::format(
                    origin,
                    "cannot tell the vocabulary size (no token_embd.weight)",
                )
            })?,
    };
    let head_dim = opt("attention.key_length")
        .or_else(|| opt("rope.dimension_count"))
        .map_or(hidden / heads, |v| v as usize);
    Ok(LlamaConfig {
        architecture: arch.clone(),
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: num("feed_forward_length")? as usize,
        num_hidden_layers: num("block_count")? as usize,
        num_attention_heads: heads,
        num_key_value_heads: opt("attention.head_count_kv").map_or(heads, |v| v as usize),
        head_dim,
        rms_norm_eps: opt("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
        rope_theta: opt("rope.freq_base").unwrap_or(10_000.0),
        rope_scaling: None,
        max_position_embeddings: opt("context_length").map_or(4096, |v| v as usize),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        attention_bias: arch == "qwen2",
        qk_norm: arch == "qwen3",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_hf() {
        assert_eq!(
            hf_name("blk.3.attn_q.weight").as_deref(),
            Some("model.layers.3.self_attn.q_proj.weight")
        );
        assert_eq!(
            hf_name("blk.0.attn_q_norm.weight").as_deref(),
            Some("model.layers.0.self_attn.q_norm.weight")
        );
        assert_eq!(
            hf_name("blk.12.ffn_down.weight").as_deref(),
            Some("model.layers.12.mlp.down_proj.weight")
        );
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(hf_name("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(heads, 2, D/2, in).swapaxes(1, 2).reshape(rows, in)
        let (heads, d, cols) = (3, 4, 2);
        let hf = Tensor::arange(0f32, (heads * d * cols) as f32, &Device::Cpu)
            .unwrap()
            .reshape((heads * d, cols))
            .unwrap();
        let gguf = hf
            .reshape((heads, 2, d / 2, cols))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((heads * d, cols))
            .unwrap();
        let back = unpermute_rope_rows(&gguf, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
    }
}
