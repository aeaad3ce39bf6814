//! Checks of values that parse but cannot work together. Closed sets of values are enums
//! (see `values.rs`), so what is left here is ranges and combinations: each section checks
//! its own fields (`RolloutSection::validate`, ...), and [`TrainConfig::validate`] runs them
//! and then the rules that span sections. The task sections check themselves in `task.rs`.

use super::{
    AlgorithmSection, ConfigError, JudgeSource, ModelSource, OptimSection, RolloutSection,
    TaskKind, TaskSection, TrainConfig, WarmupSection, err,
};
use crate::rl::loss::LossConfig;
use crate::rl::tasks::PromptStyle;

/// Most prompts a built-in task may generate per split: bounds memory and start-up time.
pub const MAX_TASK_PROMPTS: usize = 1_000_000;
/// Most generations one RL step may sample (prompts × samples): bounds the sampler's memory.
pub const MAX_ROWS_PER_STEP: usize = 65_536;
/// Longest response the trainer samples.
pub const MAX_NEW_TOKENS: usize = 32_768;

/// `Ok` when `ok`, else the error for `key`.
pub(super) fn require(
    ok: bool,
    origin: &str,
    key: &str,
    message: impl Into<String>,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(err(origin, key, message))
    }
}

/// Whether `v` is a finite number in `lo..=hi`.
fn finite_in(v: f64, lo: f64, hi: f64) -> bool {
    v.is_finite() && v >= lo && v <= hi
}

impl RolloutSection {
    /// Group size, batch size, response length and sampling settings.
    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        require(
            self.samples_per_prompt >= 2,
            origin,
            "rollout.samples_per_prompt",
            format!(
                "is {}; groups need N >= 2 generations",
                self.samples_per_prompt
            ),
        )?;
        require(
            self.prompts_per_step >= 1,
            origin,
            "rollout.prompts_per_step",
            "must be at least 1",
        )?;
        let rows = self
            .prompts_per_step
            .saturating_mul(self.samples_per_prompt);
        require(
            rows <= MAX_ROWS_PER_STEP,
            origin,
            "rollout.samples_per_prompt",
            format!(
                "{} prompts × {} samples = {rows} generations per step; at most {MAX_ROWS_PER_STEP} fit in memory: lower rollout.samples_per_prompt or rollout.prompts_per_step",
                self.prompts_per_step, self.samples_per_prompt
            ),
        )?;
        require(
            (1..=MAX_NEW_TOKENS).contains(&self.max_new_tokens),
            origin,
            "rollout.max_new_tokens",
            format!("is {}; use 1..={MAX_NEW_TOKENS}", self.max_new_tokens),
        )?;
        require(
            self.top_p > 0.0 && self.top_p <= 1.0,
            origin,
            "rollout.top_p",
            format!("is {}; use 0 < top_p <= 1 (1 = off)", self.top_p),
        )?;
        require(
            self.temperature > 0.0 && self.temperature.is_finite(),
            origin,
            "rollout.temperature",
            format!("is {}; RL needs sampling (> 0)", self.temperature),
        )
    }
}

impl AlgorithmSection {
    /// The method's parameters; `group_size` is N (`rollout.samples_per_prompt`).
    fn validate(&self, origin: &str, group_size: usize) -> Result<(), ConfigError> {
        require(
            self.set_size >= 1 && self.set_size < group_size,
            origin,
            "algorithm.set_size",
            format!(
                "is {}; set RL needs 1 <= n < N = {group_size}",
                self.set_size
            ),
        )?;
        require(
            self.lambda.is_finite(),
            origin,
            "algorithm.lambda",
            format!("is {}; use a finite number (default 0.5)", self.lambda),
        )?;
        require(
            (0.0..=1.0).contains(&self.label_noise.p),
            origin,
            "algorithm.label_noise.p",
            format!(
                "is {}; use a probability in [0, 1] (0 = exact labels)",
                self.label_noise.p
            ),
        )?;
        require(
            self.sets >= 1,
            origin,
            "algorithm.sets",
            "must be at least 1 set per generation",
        )
    }
}

impl OptimSection {
    /// Epochs, mini-batches, AdamW and clipping; `prompts_per_step` bounds the mini-batches
    /// (each holds whole prompt groups).
    fn validate(&self, origin: &str, prompts_per_step: usize) -> Result<(), ConfigError> {
        require(
            (1..=prompts_per_step).contains(&self.minibatches),
            origin,
            "optim.minibatches",
            format!(
                "is {}; use 1..={prompts_per_step} (prompts per step)",
                self.minibatches
            ),
        )?;
        require(
            self.ppo_epochs >= 1,
            origin,
            "optim.ppo_epochs",
            "must be at least 1",
        )?;
        require(
            self.micro_batch <= MAX_ROWS_PER_STEP,
            origin,
            "optim.micro_batch",
            format!(
                "is {}; use 0 (whole mini-batches) or 1..={MAX_ROWS_PER_STEP} sequences",
                self.micro_batch
            ),
        )?;
        let w = &self.adamw;
        require(
            w.lr >= 0.0 && w.lr.is_finite(),
            origin,
            "optim.lr",
            format!(
                "is {}; must be a finite number > 0 (or 0 for a control run that changes nothing)",
                w.lr
            ),
        )?;
        require(
            finite_in(w.beta1, 0.0, 1.0) && w.beta1 < 1.0,
            origin,
            "optim.beta1",
            format!("is {}; use 0 <= beta1 < 1 (default 0.9)", w.beta1),
        )?;
        require(
            finite_in(w.beta2, 0.0, 1.0) && w.beta2 < 1.0,
            origin,
            "optim.beta2",
            format!("is {}; use 0 <= beta2 < 1 (default 0.999)", w.beta2),
        )?;
        require(
            w.eps > 0.0 && w.eps.is_finite(),
            origin,
            "optim.eps",
            format!("is {}; use a finite number > 0 (default 1e-8)", w.eps),
        )?;
        require(
            finite_in(w.weight_decay, 0.0, f64::MAX),
            origin,
            "optim.weight_decay",
            format!(
                "is {}; use a finite number >= 0 (paper: 0.01)",
                w.weight_decay
            ),
        )?;
        require(
            finite_in(self.grad_clip, 0.0, f64::MAX),
            origin,
            "optim.grad_clip",
            format!(
                "is {}; use 0 (off) or a finite number > 0 (paper: 0.3)",
                self.grad_clip
            ),
        )?;
        if let polyepo_engine::optim::LrSchedule::WarmupCosine { min_ratio, .. } = self.schedule {
            require(
                finite_in(min_ratio, 0.0, 1.0),
                origin,
                "optim.schedule.min_ratio",
                format!("is {min_ratio}; use 0 <= min_ratio <= 1"),
            )?;
        }
        Ok(())
    }
}

impl LossConfig {
    /// Clip ranges and coefficients of the policy loss (`loss.*`).
    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        require(
            (0.0..1.0).contains(&self.clip_low),
            origin,
            "loss.clip_low",
            format!("is {}; use 0 <= clip_low < 1", self.clip_low),
        )?;
        require(
            finite_in(self.clip_high, 0.0, f64::MAX),
            origin,
            "loss.clip_high",
            format!(
                "is {}; use a finite number >= 0 (paper: 0.28)",
                self.clip_high
            ),
        )?;
        require(
            finite_in(self.kl_coef, 0.0, f64::MAX),
            origin,
            "loss.kl_coef",
            format!("is {}; use 0 (off) or a finite number > 0", self.kl_coef),
        )?;
        require(
            self.entropy_coef.is_finite(),
            origin,
            "loss.entropy_coef",
            format!("is {}; use a finite number (0 = off)", self.entropy_coef),
        )?;
        require(
            self.dual_clip == 0.0 || (self.dual_clip > 1.0 && self.dual_clip.is_finite()),
            origin,
            "loss.dual_clip",
            format!(
                "is {}; use 0 (off) or a value > 1 (paper: 3)",
                self.dual_clip
            ),
        )
    }
}

impl WarmupSection {
    /// The supervised warm-up of the tiny model (`warmup.*`).
    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        require(
            self.batch >= 1,
            origin,
            "warmup.batch",
            "must be at least 1",
        )?;
        require(
            self.lr > 0.0 && self.lr.is_finite(),
            origin,
            "warmup.lr",
            format!("is {}; use a finite number > 0", self.lr),
        )?;
        require(
            self.skew > 0.0 && self.skew.is_finite(),
            origin,
            "warmup.skew",
            format!(
                "is {}; use a finite number > 0 (< 1 prefers a few strategies, 1 is uniform)",
                self.skew
            ),
        )
    }
}

impl TrainConfig {
    /// Checks values that parse but cannot work; the error names the key and the fix. Each
    /// section checks its own fields, then the rules that span sections run here.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.rollout.validate(origin)?;
        self.algorithm
            .validate(origin, self.rollout.samples_per_prompt)?;
        self.optim.validate(origin, self.rollout.prompts_per_step)?;
        self.loss.validate(origin)?;
        self.task.validate(origin)?;
        self.warmup.validate(origin)?;
        if let Some((key, message)) = self.judge.problem() {
            return Err(err(origin, &format!("judge.{key}"), message));
        }
        // A method that needs strategy labels must get them from somewhere.
        let a = &self.algorithm;
        if self.task.kind() == TaskKind::Jsonl {
            require(
                !(a.name.needs_labels() && a.judge == JudgeSource::Task),
                origin,
                "algorithm.name",
                format!(
                    "`{}` needs strategy labels but the jsonl task has no labeler; use algorithm.judge = \"lm\", or grpo, drgrpo, setrl-mean or setrl-max",
                    a.name
                ),
            )?;
        }
        // A compact answer takes two tokens a step: a shorter response cannot hold the longest.
        if let TaskSection::Reach(c) = &self.task {
            require(
                c.style != PromptStyle::Compact || self.rollout.max_new_tokens >= 2 * c.max_steps,
                origin,
                "rollout.max_new_tokens",
                format!(
                    "is {} but task.reach.max_steps = {} needs {} tokens for the longest compact answer; set rollout.max_new_tokens = {}",
                    self.rollout.max_new_tokens,
                    c.max_steps,
                    2 * c.max_steps,
                    2 * c.max_steps + 1
                ),
            )?;
        }
        self.validate_model_for_task(origin)
    }

    /// The model must exist and read the task's prompts: the tiny model knows only the
    /// built-in synthetic tasks in their compact style.
    fn validate_model_for_task(&self, origin: &str) -> Result<(), ConfigError> {
        match &self.model.source {
            ModelSource::Tiny => {
                let style = match &self.task {
                    TaskSection::Reach(c) => Some(("task.reach.style", c.style)),
                    TaskSection::Countdown(c) => Some(("task.countdown.style", c.style)),
                    TaskSection::Digits(_) => None,
                    TaskSection::Jsonl(_) => {
                        return Err(err(
                            origin,
                            "model.source",
                            "the `tiny` model is only for the built-in synthetic tasks; give a model path",
                        ));
                    }
                };
                if let Some((key, PromptStyle::Instruct)) = style {
                    return Err(err(
                        origin,
                        key,
                        "the `tiny` model reads only the `compact` style",
                    ));
                }
            }
            ModelSource::Path(path) if !path.exists() => {
                return Err(err(
                    origin,
                    "model.source",
                    format!(
                        "`{}` does not exist (run scripts/fetch-model.sh for SmolLM2)",
                        path.display()
                    ),
                ));
            }
            ModelSource::Path(_) => {}
        }
        Ok(())
    }
}
