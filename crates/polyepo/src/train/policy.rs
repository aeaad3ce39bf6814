//! The policy being trained: model, tokenizer, trainable tensors, and an optional frozen
//! reference for the KL penalty.

use std::path::{Path, PathBuf};

use candle_core::Device;

use super::error::TrainResult;
use super::warmup;
use crate::config::TrainConfig;
use crate::model::chat::{Message, chat_prompt};
use crate::model::{Llama, NamedVar, TextTokenizer, load_model};
use crate::tasks::{Prompt, Task};

/// A model with the tensors the optimizer updates.
pub struct Policy {
    /// The network (its trainable tensors are `vars`).
    pub model: Llama,
    /// Tokenizer and special tokens.
    pub tokenizer: TextTokenizer,
    /// Trainable tensors: every weight (full fine-tuning) or the LoRA adapters.
    pub vars: Vec<NamedVar>,
    /// Frozen copy of the starting policy, when the loss has a KL term.
    pub reference: Option<Llama>,
    chat: bool,
}

/// Parses the configured device.
pub fn device(cfg: &TrainConfig) -> TrainResult<Device> {
    match cfg.model.device.as_str() {
        "cpu" => Ok(Device::Cpu),
        s if s.starts_with("cuda") => {
            let ordinal = s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Ok(Device::new_cuda(ordinal)?)
        }
        other => Err(crate::config::ConfigError {
            origin: "config".into(),
            key: "model.device".into(),
            message: format!("`{other}`: use cpu, cuda or cuda:N"),
        }
        .into()),
    }
}

fn dtype(cfg: &TrainConfig) -> TrainResult<candle_core::DType> {
    match cfg.model.dtype.as_str() {
        "f32" => Ok(candle_core::DType::F32),
        "bf16" => Ok(candle_core::DType::BF16),
        "f16" => Ok(candle_core::DType::F16),
        other => Err(crate::config::ConfigError {
            origin: "config".into(),
            key: "model.dtype".into(),
            message: format!("`{other}`: use f32, bf16 or f16"),
        }
        .into()),
    }
}

impl Policy {
    /// The starting policy: the cached warm-up for `tiny`, the loaded model otherwise, made
    /// trainable (all weights, or LoRA adapters when configured).
    pub fn build(
        cfg: &TrainConfig,
        task: &dyn Task,
        cache_dir: &Path,
        log: &mut dyn FnMut(String),
    ) -> TrainResult<Self> {
        let device = device(cfg)?;
        let source: PathBuf = if cfg.model.source == "tiny" {
            warmup::cached_base(cfg, task, cache_dir, log)?
        } else {
            PathBuf::from(&cfg.model.source)
        };
        let loaded = load_model(&source, dtype(cfg)?, &device)?;
        let mut model = loaded.model;
        let reference = (cfg.loss.kl_coef > 0.0).then(|| model.detached());
        let vars = match &cfg.model.lora {
            Some(lora) => model.add_lora(lora, cfg.run.seed)?,
            None => model.train_all()?,
        };
        // The reference must not share storage with weights the optimizer updates in place.
        let reference = match reference {
            Some(r) if cfg.model.lora.is_none() => {
                let mut copy = r.clone();
                copy.visit_mut(&mut |_, t| {
                    *t = t.copy()?;
                    Ok(())
                })?;
                Some(copy)
            }
            other => other,
        };
        let chat = task.wants_chat_template() && loaded.tokenizer.chat_template.is_some();
        Ok(Self {
            model,
            tokenizer: loaded.tokenizer,
            vars,
            reference,
            chat,
        })
    }

    /// Token ids of a prompt as the model sees it (chat-templated for chat models).
    pub fn encode_prompt(&self, prompt: &Prompt) -> TrainResult<Vec<u32>> {
        let text = if self.chat {
            chat_prompt(
                self.tokenizer.chat_template.as_deref(),
                &[Message::user(prompt.text.clone())],
            )?
        } else {
            prompt.text.clone()
        };
        Ok(self.tokenizer.encode(&text)?)
    }
}
