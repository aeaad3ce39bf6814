//! The runtime configuration of a Llama-family decoder, from an HF `config.json` or from
//! GGUF metadata.

use serde::{Deserialize, Serialize};

/// Llama-3 style RoPE frequency scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    /// Overall scale of the long wavelengths.
    pub factor: f64,
    /// Wavelength ratio below which frequencies are scaled fully.
    pub low_freq_factor: f64,
    /// Wavelength ratio above which frequencies are kept.
    pub high_freq_factor: f64,
    /// Context length the model was pretrained with.
    pub original_max_position_embeddings: usize,
}

/// Everything the decoder needs to know about its shape. Llama 2/3, SmolLM2, Qwen2 (qkv
/// bias) and Qwen3 (q/k RMSNorm) all fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Architecture name as read (`llama`, `qwen2`, `qwen3`), kept for export.
    pub architecture: String,
    /// Vocabulary size V.
    pub vocab_size: usize,
    /// Residual width d.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads H.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when < H).
    pub num_key_value_heads: usize,
    /// Per-head width D.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Optional Llama-3 RoPE scaling.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Longest context the RoPE tables cover.
    pub max_position_embeddings: usize,
    /// The output projection reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Biases on q, k and v projections (Qwen2).
    pub attention_bias: bool,
    /// RMSNorm on each head of q and k before RoPE (Qwen3).
    pub qk_norm: bool,
}

impl LlamaConfig {
    /// Number of query heads sharing one key/value head.
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Checks the invariants the forward pass relies on; `origin` names the file in errors.
    pub fn validate(&self, origin: &str) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{origin}: `{name}` must be positive"));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "{origin}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "{origin}: head_dim ({}) must be even for RoPE",
                self.head_dim
            ));
        }
        Ok(())
    }

    /// A tiny random-model configuration for tests and the synthetic default.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            architecture: "llama".into(),
            vocab_size,
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 512,
            tie_word_embeddings: true,
            attention_bias: false,
            qk_norm: false,
        }
    }
}

/// The fields of a Hugging Face `config.json` that matter here; names are HF's keys.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    /// `architectures`, e.g. `["LlamaForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `model_type`: llama, qwen2, qwen3, mistral.
    #[serde(default)]
    pub model_type: Option<String>,
    /// `vocab_size`.
    pub vocab_size: usize,
    /// `hidden_size`.
    pub hidden_size: usize,
    /// `intermediate_size`.
    pub intermediate_size: usize,
    /// `num_hidden_layers`.
    pub num_hidden_layers: usize,
    /// `num_attention_heads`.
    pub num_attention_heads: usize,
    /// `num_key_value_heads` (defaults to the number of attention heads).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// `head_dim` (defaults to hidden_size / num_attention_heads).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// `rms_norm_eps`.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// `rope_theta`.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// `rope_scaling` (only `rope_type = "llama3"` is supported).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// `max_position_embeddings`.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// `tie_word_embeddings`.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// `attention_bias` (Llama); Qwen2 always has qkv bias.
    #[serde(default)]
    pub attention_bias: bool,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    4096
}

impl HfConfig {
    /// Resolves HF defaults and architecture quirks into a [`LlamaConfig`].
    pub fn into_config(self) -> Result<LlamaConfig, String> {
        let arch = self
            .model_type
            .clone()
            .or_else(|| self.architectures.first().map(|a| a.to_lowercase()))
            .unwrap_or_else(|| "llama".into());
        let arch = match arch.as_str() {
            "llama" | "llamaforcausallm" | "mistral" | "mistralforcausallm" => "llama",
            "qwen2" | "qwen2forcausallm" => "qwen2",
            "qwen3" | "qwen3forcausallm" => "qwen3",
            other => {
                return Err(format!(
                    "unsupported architecture `{other}`: polyepo supports llama, mistral, qwen2 and qwen3"
                ));
            }
        };
        let rope_scaling = match &self.rope_scaling {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let kind = v
                    .get("rope_type")
                    .or_else(|| v.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                if kind != "llama3" {
                    return Err(format!(
                        "unsupported rope_scaling type `{kind}`: only `llama3` is supported"
                    ));
                }
                Some(serde_json::from_value(v.clone()).map_err(|e| format!("rope_scaling: {e}"))?)
            }
        };
        Ok(LlamaConfig {
            architecture: arch.into(),
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            rope_scaling,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: self.attention_bias || arch == "qwen2",
            qk_norm: arch == "qwen3",
        })
    }
}
