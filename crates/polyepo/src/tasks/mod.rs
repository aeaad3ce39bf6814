//! Tasks: prompts (train and held-out), a verifier giving each response a reward, and
//! optionally a strategy labeler that clusters responses by how they solve the prompt.

pub mod jsonl;
pub mod reach;

use setrl::Strategy;

/// One prompt and what the verifier needs to grade answers to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The text shown to the model.
    pub text: String,
    /// Task-specific data for the verifier (a reference answer, a target, ...).
    pub reference: serde_json::Value,
}

/// A source of prompts with a verifier and, optionally, a strategy labeler.
pub trait Task: Send + Sync {
    /// Short name for logs and run metadata.
    fn name(&self) -> &str;
    /// Prompts to train on.
    fn train_prompts(&self) -> &[Prompt];
    /// Held-out prompts for evaluation.
    fn eval_prompts(&self) -> &[Prompt];
    /// Reward of `response` to `prompt`, in [0, 1].
    fn reward(&self, prompt: &Prompt, response: &str) -> f64;
    /// Strategy cluster of `response`, `Some(Strategy::Degenerate)` for gibberish; `None`
    /// when the task has no labeler (an LM judge must label it instead).
    fn strategy(&self, prompt: &Prompt, response: &str) -> Option<Strategy>;
    /// Whether [`Task::strategy`] ever returns labels.
    fn has_labeler(&self) -> bool;
    /// Wrap prompts in the model's chat template (instruction-tuned models) or not.
    fn wants_chat_template(&self) -> bool {
        true
    }
}

/// A stable 63-bit id for a canonical strategy string (FNV-1a), so cluster ids do not
/// depend on the order strategies were seen in.
pub fn strategy_id(canonical: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 1) as i64
}
