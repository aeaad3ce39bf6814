//! Saving and loading weights (full or LoRA adapters) as safetensors, and exporting a full
//! model in Hugging Face layout (config.json, model.safetensors, tokenizer files).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::config::LlamaConfig;
use super::error::{ModelError, ModelResult};
use super::llama::Llama;
use super::tokenizer::TextTokenizer;
use super::trainable::NamedVar;
use crate::atomic::write_atomic_with;

/// Writes named tensors to a safetensors file, atomically.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> ModelResult<()> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach()))
        .collect();
    write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(&map, tmp).map_err(std::io::Error::other)
    })
    .map_err(|e| ModelError::io(path, e))
}

/// Reads every tensor of a safetensors file onto the CPU.
pub fn load_tensors(path: &Path) -> ModelResult<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(ModelError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| ModelError::format(path.display(), e.to_string()))
}

/// Sets each variable from the tensor of the same name in `tensors` (shapes must match).
pub fn restore_vars(
    vars: &[NamedVar],
    tensors: &HashMap<String, Tensor>,
    origin: &Path,
) -> ModelResult<()> {
    for (name, var) in vars {
        let t = tensors.get(name).ok_or_else(|| ModelError::MissingTensor {
            origin: origin.display().to_string(),
            name: name.clone(),
            arch: "this run's".into(),
        })?;
        if t.dims() != var.dims() {
            return Err(ModelError::ShapeMismatch {
                origin: origin.display().to_string(),
                name: name.clone(),
                expected: var.dims().to_vec(),
                found: t.dims().to_vec(),
            });
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok(())
}

/// The HF `config.json` for `cfg`.
pub fn hf_config_json(cfg: &LlamaConfig) -> serde_json::Value {
    let (arch_class, model_type) = match cfg.architecture.as_str() {
        "qwen2" => ("Qwen2ForCausalLM", "qwen2"),
        "qwen3" => ("Qwen3ForCausalLM", "qwen3"),
        _ => ("LlamaForCausalLM", "llama"),
    };
    let mut json = serde_json::json!({
        "architectures": [arch_class],
        "model_type": model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attention_bias": cfg.attention_bias,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    });
    if let Some(s) = cfg.rope_scaling {
        json["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        });
    }
    json
}

/// Writes a directory that Hugging Face `transformers` (and polyepo) load as a model:
/// config.json, model.safetensors with LoRA merged in, generation_config.json (the stop
/// tokens), tokenizer.json and tokenizer_config.json (chat template, EOS).
pub fn export_hf(model: &Llama, tokenizer: &TextTokenizer, dir: &Path) -> ModelResult<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut merged = model.clone();
    merged.merge_lora()?;
    save_tensors(&dir.join("model.safetensors"), &merged.named_tensors())?;
    let config = serde_json::to_vec_pretty(&hf_config_json(&model.cfg))
        .map_err(|e| ModelError::format("config", e.to_string()))?;
    crate::atomic::write_atomic(&dir.join("config.json"), &config)
        .map_err(|e| ModelError::io(dir.join("config.json"), e))?;
    tokenizer.save(&dir.join("tokenizer.json"))?;
    let eos = tokenizer
        .eos_id
        .or_else(|| tokenizer.stop_ids.first().copied())
        .unwrap_or(tokenizer.pad_id);
    // Generation stops on every stop token, as polyepo's sampler does (for a chat model both
    // `<|im_end|>` and `<|endoftext|>`); transformers and vLLM read the list from here.
    let generation = serde_json::json!({
        "eos_token_id": tokenizer.stop_ids,
        "pad_token_id": tokenizer.pad_id,
        "bos_token_id": tokenizer.bos_id,
    });
    let bytes = serde_json::to_vec_pretty(&generation)
        .map_err(|e| ModelError::format("generation_config", e.to_string()))?;
    let path = dir.join("generation_config.json");
    crate::atomic::write_atomic(&path, &bytes).map_err(|e| ModelError::io(path, e))?;
    let tok_config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": tokenizer.id_to_token(eos),
        "pad_token": tokenizer.id_to_token(tokenizer.pad_id),
        "bos_token": tokenizer.bos_id.and_then(|b| tokenizer.id_to_token(b)),
        "add_bos_token": tokenizer.bos_id.is_some(),
        "chat_template": tokenizer.chat_template,
    });
    let bytes = serde_json::to_vec_pretty(&tok_config)
        .map_err(|e| ModelError::format("tokenizer_config", e.to_string()))?;
    let path = dir.join("tokenizer_config.json");
    crate::atomic::write_atomic(&path, &bytes).map_err(|e| ModelError::io(path, e))
}
