//! Tasks: prompts (train and held-out), a verifier giving each response a reward, and
//! optionally a strategy labeler that clusters responses by how they solve the prompt.

pub mod countdown;
pub mod digits;
pub mod jsonl;
pub mod reach;

use serde::{Deserialize, Serialize};
use setrl::Strategy;

use crate::rl::config::ConfigError;

/// How a built-in task words its prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptStyle {
    /// Terse prompts in the task's own alphabet (`T=7 A=+3,-1,+5>`), for the tiny model.
    Compact,
    /// An English request sent through the chat template, for instruction-tuned models.
    Instruct,
    /// Plain text (no chat template) with worked examples before the question, for models too
    /// small to follow an instruction but able to continue a pattern (reach only): the answer
    /// is read from the reply's first line.
    FewShot,
}

/// Most candidate draws per requested prompt before a prompt generator gives up.
const DRAWS_PER_PROMPT: usize = 1000;

/// Draws `n` prompts from `draw`, which may reject a candidate (`None`). Gives up after a
/// bounded number of draws, so that settings under which good prompts are rare or impossible
/// fail with an error naming `key` instead of hanging.
pub fn draw_prompts(
    n: usize,
    key: &str,
    mut draw: impl FnMut() -> Option<Prompt>,
) -> Result<Vec<Prompt>, ConfigError> {
    let limit = DRAWS_PER_PROMPT.saturating_mul(n.max(1));
    let mut prompts = Vec::with_capacity(n.min(1 << 16));
    let mut draws = 0;
    while prompts.len() < n {
        if draws == limit {
            return Err(ConfigError {
                origin: "config".into(),
                key: key.into(),
                message: format!(
                    "only {} of {n} prompts after {limit} draws: these settings rarely make a prompt with several solutions; allow more values or other sizes",
                    prompts.len()
                ),
            });
        }
        draws += 1;
        prompts.extend(draw());
    }
    Ok(prompts)
}

/// One prompt and what the verifier needs to grade answers to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The text shown to the model.
    pub text: String,
    /// What its task's verifier and labeler read, typed per task.
    pub spec: Spec,
}

/// What grading a prompt needs, one variant per task, each defined beside its task's
/// prompts: a field is read by name, never looked up in JSON, so a misspelt key cannot turn
/// into a silent zero.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// A reach prompt.
    Reach(reach::ReachSpec),
    /// A digits prompt.
    Digits(digits::DigitsSpec),
    /// A countdown prompt.
    Countdown(countdown::CountdownSpec),
    /// A JSONL prompt: its reference answer.
    Answer(String),
    /// Nothing to grade (a prompt shown to a judge alone).
    Unverified,
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
    /// A correct answer drawn from a skewed strategy distribution, for the supervised
    /// warm-up of a base policy; `None` if the task has no demonstrations.
    fn demonstration(
        &self,
        _prompt: &Prompt,
        _skew: f64,
        _rng: &mut dyn rand::RngCore,
    ) -> Option<String> {
        None
    }
    /// The strategies the warm-up may demonstrate on `prompt` (`None`: the task does not
    /// say): a correct strategy outside them, and outside what the base policy produces, is
    /// one RL discovered.
    fn demonstrated(&self, _prompt: &Prompt) -> Option<Vec<Strategy>> {
        None
    }
    /// Every character its prompts and answers use: the vocabulary of a character-level
    /// model trained from scratch (empty when the task is meant for pretrained models).
    fn alphabet(&self) -> &str {
        ""
    }
    /// For a held-out prompt: `Some(true)` when every correct answer needs an element (a
    /// step, a digit) that no training prompt allows, so solving it means discovering
    /// something new; `Some(false)` when it can be solved with elements seen in training;
    /// `None` when the task has no such split.
    fn needs_unseen(&self, _prompt: &Prompt) -> Option<bool> {
        None
    }
    /// Whether `response` uses an element that no training prompt allows (`None`: the task
    /// has no such notion, or the response is not a well-formed answer).
    fn uses_unseen(&self, _prompt: &Prompt, _response: &str) -> Option<bool> {
        None
    }
}

/// Picks one solution with a habit: `solutions`, in [`habit_order`], are drawn with weight
/// skew^rank, as a pretrained model prefers a few habitual strategies.
pub fn skewed_pick(
    mut solutions: Vec<Vec<i64>>,
    skew: f64,
    rng: &mut dyn rand::RngCore,
) -> Option<Vec<i64>> {
    use rand::Rng;
    if solutions.is_empty() {
        return None;
    }
    let weights: Vec<f64> = (0..solutions.len()).map(|r| skew.powi(r as i32)).collect();
    let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return Some(solutions.swap_remove(i));
        }
        u -= w;
    }
    solutions.pop()
}

/// `solutions` in habit order, the order [`skewed_pick`] weights by `skew^rank`: most uses
/// of the largest allowed element first, then fewest elements, then lexicographic.
pub fn habit_order(mut solutions: Vec<Vec<i64>>, allowed: &[i64]) -> Vec<Vec<i64>> {
    let biggest = allowed.iter().copied().max().unwrap_or(1);
    solutions.sort_by_key(|s| {
        (
            std::cmp::Reverse(s.iter().filter(|&&x| x == biggest).count()),
            s.len(),
            s.clone(),
        )
    });
    solutions
}

pub use polyepo_judge::strategy_id;
