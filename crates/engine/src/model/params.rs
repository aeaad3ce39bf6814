//! The weight layout of a [`Llama`] in Hugging Face names, written once per module: each
//! module `load`s its tensors by name and shape and `visit`s them in the same order, the way
//! candle's models load themselves. Random initialisation is loading from a seeded random
//! source, and every other walk over the weights (trainable variables, dtype casts, export,
//! detaching for sampling) is a visit.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::config::LlamaConfig;
use super::error::{ModelError, ModelResult};
use super::file_blocks::WeightBlocks;
use super::linear::{Linear, LoraAdapter};
use super::llama::{Attention, Block, Llama, Mlp};
use super::norm::RmsNorm;
use super::rope::Rotary;
use crate::kernels::blocks::BlockWeights;

/// Where the tensors of a model being built come from.
#[derive(Debug)]
enum Source {
    /// Named tensors read from a checkpoint, consumed as the model takes them.
    Checkpoint(HashMap<String, Tensor>),
    /// Weights ~ N(0, 0.02²) drawn in layout order, norm gains at 1.
    Random {
        rng: Box<ChaCha8Rng>,
        normal: Normal<f32>,
    },
}

/// The tensors a model is built from, cast to one dtype on one device.
#[derive(Debug)]
pub struct WeightMap {
    origin: String,
    source: Source,
    /// The model file's quantized blocks of some weights, by HF name (GGUF only).
    blocks: HashMap<String, BlockWeights>,
    dtype: DType,
    device: Device,
}

impl WeightMap {
    /// Tensors from `origin` (a file or directory, for error messages), to be cast to
    /// `dtype` on `device`.
    pub fn new(
        origin: impl Into<String>,
        tensors: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self {
            origin: origin.into(),
            source: Source::Checkpoint(tensors),
            blocks: HashMap::new(),
            dtype,
            device: device.clone(),
        }
    }

    /// A reproducible random initialisation in f32 from `seed`.
    pub fn random(seed: u64, device: &Device) -> ModelResult<Self> {
        let normal = Normal::new(0.0f32, 0.02)
            .map_err(|e| ModelError::format("random init", e.to_string()))?;
        Ok(Self {
            origin: "random init".into(),
            blocks: HashMap::new(),
            source: Source::Random {
                rng: Box::new(ChaCha8Rng::seed_from_u64(seed)),
                normal,
            },
            dtype: DType::F32,
            device: device.clone(),
        })
    }

    /// The same tensors with the file's quantized blocks of some of them (by HF name), which
    /// decoding multiplies by directly when they decode to the loaded weight exactly.
    pub fn with_blocks(mut self, blocks: HashMap<String, BlockWeights>) -> Self {
        self.blocks = blocks;
        self
    }

    /// The file's blocks of `name`, bound to `weight` (the tensor just taken for that name)
    /// if they decode to it exactly.
    fn blocks_of(&mut self, name: &str, weight: &Tensor) -> ModelResult<Option<WeightBlocks>> {
        match self.blocks.remove(name) {
            Some(b) => Ok(WeightBlocks::bind(weight, b)?),
            None => Ok(None),
        }
    }

    /// The tensor `name` of `shape`, checked and cast; `arch` names the architecture in the
    /// error when a checkpoint lacks it.
    fn take(&mut self, name: &str, shape: &[usize], arch: &str) -> ModelResult<Tensor> {
        let t = match &mut self.source {
            Source::Checkpoint(tensors) => {
                let t = tensors
                    .remove(name)
                    .ok_or_else(|| ModelError::MissingTensor {
                        origin: self.origin.clone(),
                        name: name.into(),
                        arch: arch.into(),
                    })?;
                if t.dims() != shape {
                    return Err(ModelError::ShapeMismatch {
                        origin: self.origin.clone(),
                        name: name.into(),
                        expected: shape.to_vec(),
                        found: t.dims().to_vec(),
                    });
                }
                t
            }
            Source::Random { rng, normal } => {
                let numel: usize = shape.iter().product();
                let data: Vec<f32> = if name.ends_with("norm.weight") {
                    vec![1.0; numel]
                } else {
                    (0..numel).map(|_| normal.sample(rng.as_mut())).collect()
                };
                Tensor::from_vec(data, shape, &self.device)?
            }
        };
        Ok(t.to_device(&self.device)?.to_dtype(self.dtype)?)
    }
}

/// A visitor over named tensors: what every walk of the weights is written as.
pub type Visitor<'a, E> = dyn FnMut(&str, &mut Tensor) -> Result<(), E> + 'a;

impl Linear {
    fn load(
        w: &mut WeightMap,
        name: &str,
        (out, inp): (usize, usize),
        bias: bool,
        arch: &str,
    ) -> ModelResult<Self> {
        let weight = w.take(&format!("{name}.weight"), &[out, inp], arch)?;
        let bias = if bias {
            Some(w.take(&format!("{name}.bias"), &[out], arch)?)
        } else {
            None
        };
        let blocks = w.blocks_of(&format!("{name}.weight"), &weight)?;
        Ok(Linear {
            blocks,
            ..Linear::new(weight, bias)
        })
    }

    fn visit<E>(&mut self, name: &str, f: &mut Visitor<'_, E>) -> Result<(), E> {
        f(&format!("{name}.weight"), &mut self.weight)?;
        if let Some(b) = &mut self.bias {
            f(&format!("{name}.bias"), b)?;
        }
        if let Some(LoraAdapter { a, b, .. }) = &mut self.lora {
            f(&format!("{name}.lora_A.weight"), a)?;
            f(&format!("{name}.lora_B.weight"), b)?;
        }
        Ok(())
    }
}

impl RmsNorm {
    fn load(w: &mut WeightMap, name: &str, dim: usize, cfg: &LlamaConfig) -> ModelResult<Self> {
        Ok(RmsNorm {
            weight: w.take(&format!("{name}.weight"), &[dim], &cfg.architecture)?,
            eps: cfg.rms_norm_eps,
        })
    }

    fn visit<E>(&mut self, name: &str, f: &mut Visitor<'_, E>) -> Result<(), E> {
        f(&format!("{name}.weight"), &mut self.weight)
    }
}

impl Attention {
    fn load(w: &mut WeightMap, p: &str, cfg: &LlamaConfig) -> ModelResult<Self> {
        let (d, dh, arch) = (cfg.hidden_size, cfg.head_dim, cfg.architecture.as_str());
        let (q, kv) = (cfg.num_attention_heads * dh, cfg.num_key_value_heads * dh);
        let bias = cfg.attention_bias;
        let q_proj = Linear::load(w, &format!("{p}.q_proj"), (q, d), bias, arch)?;
        let k_proj = Linear::load(w, &format!("{p}.k_proj"), (kv, d), bias, arch)?;
        let v_proj = Linear::load(w, &format!("{p}.v_proj"), (kv, d), bias, arch)?;
        let o_proj = Linear::load(w, &format!("{p}.o_proj"), (d, q), false, arch)?;
        let (q_norm, k_norm) = if cfg.qk_norm {
            (
                Some(RmsNorm::load(w, &format!("{p}.q_norm"), dh, cfg)?),
                Some(RmsNorm::load(w, &format!("{p}.k_norm"), dh, cfg)?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            q_proj,
            k_proj,
            v_proj,
            o_proj,
            q_norm,
            k_norm,
        })
    }

    fn visit<E>(&mut self, p: &str, f: &mut Visitor<'_, E>) -> Result<(), E> {
        for (n, l) in self.linears_mut() {
            l.visit(&format!("{p}.{n}"), f)?;
        }
        if let Some(n) = &mut self.q_norm {
            n.visit(&format!("{p}.q_norm"), f)?;
        }
        if let Some(n) = &mut self.k_norm {
            n.visit(&format!("{p}.k_norm"), f)?;
        }
        Ok(())
    }
}

impl Mlp {
    fn load(w: &mut WeightMap, p: &str, cfg: &LlamaConfig) -> ModelResult<Self> {
        let (d, ff, arch) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.architecture.as_str(),
        );
        Ok(Self {
            gate_proj: Linear::load(w, &format!("{p}.gate_proj"), (ff, d), false, arch)?,
            up_proj: Linear::load(w, &format!("{p}.up_proj"), (ff, d), false, arch)?,
            down_proj: Linear::load(w, &format!("{p}.down_proj"), (d, ff), false, arch)?,
        })
    }

    fn visit<E>(&mut self, p: &str, f: &mut Visitor<'_, E>) -> Result<(), E> {
        for (n, l) in self.linears_mut() {
            l.visit(&format!("{p}.{n}"), f)?;
        }
        Ok(())
    }
}

impl Block {
    fn load(w: &mut WeightMap, p: &str, cfg: &LlamaConfig) -> ModelResult<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            input_layernorm: RmsNorm::load(w, &format!("{p}.input_layernorm"), d, cfg)?,
            self_attn: Attention::load(w, &format!("{p}.self_attn"), cfg)?,
            post_attention_layernorm: RmsNorm::load(
                w,
                &format!("{p}.post_attention_layernorm"),
                d,
                cfg,
            )?,
            mlp: Mlp::load(w, &format!("{p}.mlp"), cfg)?,
        })
    }

    fn visit<E>(&mut self, p: &str, f: &mut Visitor<'_, E>) -> Result<(), E> {
        self.input_layernorm
            .visit(&format!("{p}.input_layernorm"), f)?;
        self.self_attn.visit(&format!("{p}.self_attn"), f)?;
        self.post_attention_layernorm
            .visit(&format!("{p}.post_attention_layernorm"), f)?;
        self.mlp.visit(&format!("{p}.mlp"), f)
    }
}

impl Llama {
    /// Builds the model from HF-named tensors, checking every name and shape.
    pub fn from_weights(cfg: LlamaConfig, mut w: WeightMap) -> ModelResult<Self> {
        cfg.validate(&w.origin)
            .map_err(|m| ModelError::format(&w.origin, m))?;
        let (d, v) = (cfg.hidden_size, cfg.vocab_size);
        let embed_tokens = w.take("model.embed_tokens.weight", &[v, d], &cfg.architecture)?;
        let embed_blocks = match cfg.tie_word_embeddings {
            true => w.blocks_of("model.embed_tokens.weight", &embed_tokens)?,
            false => None,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Block::load(&mut w, &format!("model.layers.{i}"), &cfg))
            .collect::<ModelResult<Vec<_>>>()?;
        let norm = RmsNorm::load(&mut w, "model.norm", d, &cfg)?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(Linear::load(
                &mut w,
                "lm_head",
                (v, d),
                false,
                &cfg.architecture,
            )?)
        };
        let rotary = Rotary::new(&cfg, w.dtype, &w.device)?;
        Ok(Self {
            cfg,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            fused: false,
            embed_blocks,
        })
    }

    /// A randomly initialised model (weights ~ N(0, 0.02²), norms at 1), reproducible from
    /// `seed`: for tests and for the small synthetic-task policy.
    pub fn random(cfg: LlamaConfig, seed: u64, device: &Device) -> ModelResult<Self> {
        Self::from_weights(cfg, WeightMap::random(seed, device)?)
    }

    /// Visits every tensor with its HF name (LoRA adapters as `<layer>.lora_A.weight` /
    /// `.lora_B.weight`), mutably, in the order they are loaded.
    pub fn visit_mut<E>(&mut self, f: &mut Visitor<'_, E>) -> Result<(), E> {
        f("model.embed_tokens.weight", &mut self.embed_tokens)?;
        for (i, b) in self.layers.iter_mut().enumerate() {
            b.visit(&format!("model.layers.{i}"), f)?;
        }
        self.norm.visit("model.norm", f)?;
        if let Some(head) = &mut self.lm_head {
            head.visit("lm_head", f)?;
        }
        Ok(())
    }

    /// Every tensor with its HF name (cheap clones sharing storage).
    pub fn named_tensors(&mut self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let Ok(()) = self.visit_mut::<std::convert::Infallible>(&mut |n, t| {
            out.push((n.to_owned(), t.clone()));
            Ok(())
        });
        out
    }

    /// Every linear layer (attention and MLP of each block, then a separate LM head), in a
    /// fixed order.
    pub(crate) fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut out: Vec<&mut Linear> = Vec::new();
        for block in &mut self.layers {
            out.extend(block.self_attn.linears_mut().into_iter().map(|(_, l)| l));
            out.extend(block.mlp.linears_mut().into_iter().map(|(_, l)| l));
        }
        out.extend(self.lm_head.as_mut());
        out
    }

    /// Number of parameters, adapters included.
    pub fn num_parameters(&mut self) -> usize {
        self.named_tensors()
            .iter()
            .map(|(_, t)| t.elem_count())
            .sum()
    }
}

impl Attention {
    pub(crate) fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 4] {
        [
            ("q_proj", &mut self.q_proj),
            ("k_proj", &mut self.k_proj),
            ("v_proj", &mut self.v_proj),
            ("o_proj", &mut self.o_proj),
        ]
    }
}

impl Mlp {
    pub(crate) fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 3] {
        [
            ("gate_proj", &mut self.gate_proj),
            ("up_proj", &mut self.up_proj),
            ("down_proj", &mut self.down_proj),
        ]
    }
}
