//! The policy being trained: model, tokenizer, trainable tensors, and an optional frozen
//! reference for the KL penalty.

use std::path::Path;

use super::error::TrainResult;
use crate::rl::config::{DeviceSpec, ModelSection};
use crate::rl::tasks::Prompt;
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

/// The configured device, opened; the error names `model.device`.
pub fn open_device(device: DeviceSpec) -> TrainResult<candle_core::Device> {
    device.open().map_err(|message| {
        crate::rl::config::ConfigError {
            origin: "config".into(),
            key: "model.device".into(),
            message,
        }
        .into()
    })
}

impl Policy {
    /// The starting policy: the model at `base` (the warmed-up tiny model or the configured
    /// model) on `device` (from [`open_device`]), made trainable (all weights, or LoRA
    /// adapters when configured), with a frozen reference copy when the loss has a KL term.
    /// `seed` initialises LoRA adapters.
    pub fn build(
        base: &Path,
        model_cfg: &ModelSection,
        device: &candle_core::Device,
        with_reference: bool,
        seed: u64,
        wants_chat: bool,
    ) -> TrainResult<Self> {
        let loaded = load_model(base, model_cfg.dtype.into(), device)?;
        let mut model = loaded.model;
        let reference = with_reference.then(|| model.detached());
        let vars = match &model_cfg.lora {
            Some(lora) => model.add_lora(lora, seed)?,
            None => model.train_all()?,
        };
        // The reference must not share storage with weights the optimizer updates in place.
        let reference = match reference {
            Some(r) if model_cfg.lora.is_none() => {
                let mut copy = r.clone();
                copy.visit_mut(&mut |_, t| {
                    *t = t.copy()?;
                    Ok::<(), candle_core::Error>(())
                })?;
                Some(copy)
            }
            other => other,
        };
        let chat = wants_chat && loaded.tokenizer.chat_template.is_some();
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
