//! Named access to every tensor of a [`Llama`] (HF names), and building one from named
//! tensors: the single place that knows the checkpoint layout.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::config::LlamaConfig;
use super::error::{ModelError, ModelResult};
use super::linear::Linear;
use super::llama::{Attention, Block, Llama, Mlp};
use super::norm::RmsNorm;
use super::rope::Rotary;

/// Named tensors from a checkpoint, consumed as the model takes them.
#[derive(Debug)]
pub struct WeightMap {
    origin: String,
    tensors: HashMap<String, Tensor>,
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
            tensors,
            dtype,
            device: device.clone(),
        }
    }

    fn take_opt(&mut self, name: &str, shape: &[usize]) -> ModelResult<Option<Tensor>> {
        let Some(t) = self.tensors.remove(name) else {
            return Ok(None);
        };
        if t.dims() != shape {
            return Err(ModelError::ShapeMismatch {
                origin: self.origin.clone(),
                name: name.into(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(Some(t.to_device(&self.device)?.to_dtype(self.dtype)?))
    }

    fn take(&mut self, name: &str, shape: &[usize], arch: &str) -> ModelResult<Tensor> {
        self.take_opt(name, shape)?
            .ok_or_else(|| ModelError::MissingTensor {
                origin: self.origin.clone(),
                name: name.into(),
                arch: arch.into(),
            })
    }
}

impl Llama {
    /// Builds the model from HF-named tensors, checking every name and shape.
    pub fn from_weights(cfg: LlamaConfig, mut w: WeightMap) -> ModelResult<Self> {
        cfg.validate(&w.origin)
            .map_err(|m| ModelError::format(&w.origin, m))?;
        let arch = cfg.architecture.clone();
        let (d, h, kv, dh, ff, v) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
            cfg.intermediate_size,
            cfg.vocab_size,
        );
        let linear = |w: &mut WeightMap,
                      name: &str,
                      out: usize,
                      inp: usize,
                      bias: bool|
         -> ModelResult<Linear> {
            let weight = w.take(&format!("{name}.weight"), &[out, inp], &arch)?;
            let bias = if bias {
                Some(w.take(&format!("{name}.bias"), &[out], &arch)?)
            } else {
                None
            };
            Ok(Linear::new(weight, bias))
        };
        let norm = |w: &mut WeightMap, name: &str, dim: usize| -> ModelResult<RmsNorm> {
            Ok(RmsNorm {
                weight: w.take(&format!("{name}.weight"), &[dim], &cfg.architecture)?,
                eps: cfg.rms_norm_eps,
            })
        };
        let embed_tokens = w.take("model.embed_tokens.weight", &[v, d], &cfg.architecture)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let qkv_bias = cfg.attention_bias;
            layers.push(Block {
                input_layernorm: norm(&mut w, &format!("{p}.input_layernorm"), d)?,
                self_attn: Attention {
                    q_proj: linear(
                        &mut w,
                        &format!("{p}.self_attn.q_proj"),
                        h * dh,
                        d,
                        qkv_bias,
                    )?,
                    k_proj: linear(
                        &mut w,
                        &format!("{p}.self_attn.k_proj"),
                        kv * dh,
                        d,
                        qkv_bias,
                    )?,
                    v_proj: linear(
                        &mut w,
                        &format!("{p}.self_attn.v_proj"),
                        kv * dh,
                        d,
                        qkv_bias,
                    )?,
                    o_proj: linear(&mut w, &format!("{p}.self_attn.o_proj"), d, h * dh, false)?,
                    q_norm: if cfg.qk_norm {
                        Some(norm(&mut w, &format!("{p}.self_attn.q_norm"), dh)?)
                    } else {
                        None
                    },
                    k_norm: if cfg.qk_norm {
                        Some(norm(&mut w, &format!("{p}.self_attn.k_norm"), dh)?)
                    } else {
                        None
                    },
                },
                post_attention_layernorm: norm(
                    &mut w,
                    &format!("{p}.post_attention_layernorm"),
                    d,
                )?,
                mlp: Mlp {
                    gate_proj: linear(&mut w, &format!("{p}.mlp.gate_proj"), ff, d, false)?,
                    up_proj: linear(&mut w, &format!("{p}.mlp.up_proj"), ff, d, false)?,
                    down_proj: linear(&mut w, &format!("{p}.mlp.down_proj"), d, ff, false)?,
                },
            });
        }
        let norm_f = norm(&mut w, "model.norm", d)?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(linear(&mut w, "lm_head", v, d, false)?)
        };
        let rotary = Rotary::new(&cfg, w.dtype, &w.device)?;
        Ok(Self {
            cfg,
            embed_tokens,
            layers,
            norm: norm_f,
            lm_head,
            rotary,
            fused: false,
        })
    }

    /// A randomly initialised model (weights ~ N(0, 0.02²), norms at 1), reproducible from
    /// `seed`: for tests and for the small synthetic-task policy.
    pub fn random(cfg: LlamaConfig, seed: u64, device: &Device) -> ModelResult<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 0.02)
            .map_err(|e| ModelError::format("random init", e.to_string()))?;
        let mut tensors = HashMap::new();
        for (name, shape) in tensor_shapes(&cfg) {
            let numel: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; numel]
            } else {
                (0..numel).map(|_| normal.sample(&mut rng)).collect()
            };
            tensors.insert(name, Tensor::from_vec(data, shape, device)?);
        }
        Self::from_weights(
            cfg,
            WeightMap::new("random init", tensors, DType::F32, device),
        )
    }

    /// Visits every tensor with its HF name (LoRA adapters as `<layer>.lora_A.weight` /
    /// `.lora_B.weight`), mutably, in a fixed order.
    pub fn visit_mut(
        &mut self,
        f: &mut dyn FnMut(&str, &mut Tensor) -> ModelResult<()>,
    ) -> ModelResult<()> {
        fn lin(
            f: &mut dyn FnMut(&str, &mut Tensor) -> ModelResult<()>,
            name: &str,
            l: &mut Linear,
        ) -> ModelResult<()> {
            f(&format!("{name}.weight"), &mut l.weight)?;
            if let Some(b) = &mut l.bias {
                f(&format!("{name}.bias"), b)?;
            }
            if let Some(lora) = &mut l.lora {
                f(&format!("{name}.lora_A.weight"), &mut lora.a)?;
                f(&format!("{name}.lora_B.weight"), &mut lora.b)?;
            }
            Ok(())
        }
        f("model.embed_tokens.weight", &mut self.embed_tokens)?;
        for (i, b) in self.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            f(
                &format!("{p}.input_layernorm.weight"),
                &mut b.input_layernorm.weight,
            )?;
            for (n, l) in b.self_attn.linears_mut() {
                lin(f, &format!("{p}.self_attn.{n}"), l)?;
            }
            if let Some(n) = &mut b.self_attn.q_norm {
                f(&format!("{p}.self_attn.q_norm.weight"), &mut n.weight)?;
            }
            if let Some(n) = &mut b.self_attn.k_norm {
                f(&format!("{p}.self_attn.k_norm.weight"), &mut n.weight)?;
            }
            f(
                &format!("{p}.post_attention_layernorm.weight"),
                &mut b.post_attention_layernorm.weight,
            )?;
            for (n, l) in b.mlp.linears_mut() {
                lin(f, &format!("{p}.mlp.{n}"), l)?;
            }
        }
        f("model.norm.weight", &mut self.norm.weight)?;
        if let Some(head) = &mut self.lm_head {
            lin(f, "lm_head", head)?;
        }
        Ok(())
    }

    /// Every tensor with its HF name (cheap clones sharing storage).
    pub fn named_tensors(&mut self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        // The closure never fails, so neither does the visit.
        let _ = self.visit_mut(&mut |n, t| {
            out.push((n.to_owned(), t.clone()));
            Ok(())
        });
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

/// Every base tensor `cfg` implies, with its shape, in HF naming.
pub fn tensor_shapes(cfg: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (d, h, kv, dh, ff, v) = (
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
        cfg.intermediate_size,
        cfg.vocab_size,
    );
    let mut out = vec![("model.embed_tokens.weight".to_owned(), vec![v, d])];
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), vec![d]));
        for (n, o, inp) in [
            ("q_proj", h * dh, d),
            ("k_proj", kv * dh, d),
            ("v_proj", kv * dh, d),
            ("o_proj", d, h * dh),
        ] {
            out.push((format!("{p}.self_attn.{n}.weight"), vec![o, inp]));
            if cfg.attention_bias && n != "o_proj" {
                out.push((format!("{p}.self_attn.{n}.bias"), vec![o]));
            }
        }
        if cfg.qk_norm {
            out.push((format!("{p}.self_attn.q_norm.weight"), vec![dh]));
            out.push((format!("{p}.self_attn.k_norm.weight"), vec![dh]));
        }
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
        for (n, o, inp) in [
            ("gate_proj", ff, d),
            ("up_proj", ff, d),
            ("down_proj", d, ff),
        ] {
            out.push((format!("{p}.mlp.{n}.weight"), vec![o, inp]));
        }
    }
    out.push(("model.norm.weight".to_owned(), vec![d]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_owned(), vec![v, d]));
    }
    out
}
