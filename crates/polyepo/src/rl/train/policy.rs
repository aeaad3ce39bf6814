//! The policy being trained: model, tokenizer, trainable tensors, and an optional frozen
//! reference for the KL penalty.

use std::path::{Path, PathBuf};

use polyepo_engine::model::device::{parse_device, parse_dtype};

use super::error::TrainResult;
use super::warmup;
use crate::rl::config::TrainConfig;
use crate::rl::tasks::{Prompt, Task};
use polyepo_engine::model::chat::encode_user_turn;
use polyepo_engine::model::{Llama, NamedVar, TextTokenizer, load_model};

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

fn config_error(key: &str, message: String) -> crate::rl::train::TrainError {
    crate::rl::config::ConfigError {
        origin: "config".into(),
        key: key.into(),
        message,
    }
    .into()
}

/// The dtype `cfg` names.
pub fn dtype_of(cfg: &TrainConfig) -> TrainResult<candle_core::DType> {
    parse_dtype(&cfg.model.dtype).map_err(|m| config_error("model.dtype", m))
}

/// The device `cfg` names.
pub fn device_of(cfg: &TrainConfig) -> TrainResult<candle_core::Device> {
    parse_device(&cfg.model.device).map_err(|m| config_error("model.device", m))
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
        let device =
            parse_device(&cfg.model.device).map_err(|m| config_error("model.device", m))?;
        let source: PathBuf = if cfg.model.source == "tiny" {
            warmup::cached_base(cfg, task, cache_dir, log)?
        } else {
            PathBuf::from(&cfg.model.source)
        };
        let loaded = load_model(&source, dtype_of(cfg)?, &device)?;
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
        Ok(encode_user_turn(&self.tokenizer, &prompt.text, self.chat)?)
    }
}
