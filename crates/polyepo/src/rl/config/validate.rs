//! Checks of values that parse but cannot work together. Closed sets of values are enums
//! (see `values.rs`), so what is left here is ranges and combinations.

use super::{ConfigError, JudgeSource, ModelSource, TaskKind, TaskSection, TrainConfig, err};
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

impl TrainConfig {
    /// Checks values that parse but cannot work; the error names the key and the fix.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let r = &self.rollout;
        require(
            r.samples_per_prompt >= 2,
            origin,
            "rollout.samples_per_prompt",
            format!(
                "is {}; groups need N >= 2 generations",
                r.samples_per_prompt
            ),
        )?;
        require(
            r.prompts_per_step >= 1,
            origin,
            "rollout.prompts_per_step",
            "must be at least 1",
        )?;
        let rows = r.prompts_per_step.saturating_mul(r.samples_per_prompt);
        require(
            rows <= MAX_ROWS_PER_STEP,
            origin,
            "rollout.samples_per_prompt",
            format!(
                "{} prompts × {} samples = {rows} generations per step; at most {MAX_ROWS_PER_STEP} fit in memory: lower rollout.samples_per_prompt or rollout.prompts_per_step",
                r.prompts_per_step, r.samples_per_prompt
            ),
        )?;
        require(
            (1..=MAX_NEW_TOKENS).contains(&r.max_new_tokens),
            origin,
            "rollout.max_new_tokens",
            format!("is {}; use 1..={MAX_NEW_TOKENS}", r.max_new_tokens),
        )?;
        require(
            r.top_p > 0.0 && r.top_p <= 1.0,
            origin,
            "rollout.top_p",
            format!("is {}; use 0 < top_p <= 1 (1 = off)", r.top_p),
        )?;
        let a = &self.algorithm;
        require(
            a.set_size >= 1 && a.set_size < r.samples_per_prompt,
            origin,
            "algorithm.set_size",
            format!(
                "is {}; set RL needs 1 <= n < N = {}",
                a.set_size, r.samples_per_prompt
            ),
        )?;
        let o = &self.optim;
        require(
            (1..=r.prompts_per_step).contains(&o.minibatches),
            origin,
            "optim.minibatches",
            format!(
                "is {}; use 1..={} (prompts per step)",
                o.minibatches, r.prompts_per_step
            ),
        )?;
        require(
            o.ppo_epochs >= 1,
            origin,
            "optim.ppo_epochs",
            "must be at least 1",
        )?;
        require(
            o.micro_batch <= MAX_ROWS_PER_STEP,
            origin,
            "optim.micro_batch",
            format!(
                "is {}; use 0 (whole mini-batches) or 1..={MAX_ROWS_PER_STEP} sequences",
                o.micro_batch
            ),
        )?;
        require(
            o.adamw.lr >= 0.0 && o.adamw.lr.is_finite(),
            origin,
            "optim.lr",
            format!(
                "is {}; must be a finite number > 0 (or 0 for a control run that changes nothing)",
                o.adamw.lr
            ),
        )?;
        let w = &o.adamw;
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
            finite_in(o.grad_clip, 0.0, f64::MAX),
            origin,
            "optim.grad_clip",
            format!(
                "is {}; use 0 (off) or a finite number > 0 (paper: 0.3)",
                o.grad_clip
            ),
        )?;
        if let polyepo_engine::optim::LrSchedule::WarmupCosine { min_ratio, .. } = o.schedule {
            require(
                finite_in(min_ratio, 0.0, 1.0),
                origin,
                "optim.schedule.min_ratio",
                format!("is {min_ratio}; use 0 <= min_ratio <= 1"),
            )?;
        }
        require(
            r.temperature > 0.0 && r.temperature.is_finite(),
            origin,
            "rollout.temperature",
            format!("is {}; RL needs sampling (> 0)", r.temperature),
        )?;
        require(
            (0.0..1.0).contains(&self.loss.clip_low),
            origin,
            "loss.clip_low",
            format!("is {}; use 0 <= clip_low < 1", self.loss.clip_low),
        )?;
        require(
            finite_in(self.loss.clip_high, 0.0, f64::MAX),
            origin,
            "loss.clip_high",
            format!(
                "is {}; use a finite number >= 0 (paper: 0.28)",
                self.loss.clip_high
            ),
        )?;
        require(
            finite_in(self.loss.kl_coef, 0.0, f64::MAX),
            origin,
            "loss.kl_coef",
            format!(
                "is {}; use 0 (off) or a finite number > 0",
                self.loss.kl_coef
            ),
        )?;
        require(
            self.loss.entropy_coef.is_finite(),
            origin,
            "loss.entropy_coef",
            format!(
                "is {}; use a finite number (0 = off)",
                self.loss.entropy_coef
            ),
        )?;
        require(
            a.lambda.is_finite(),
            origin,
            "algorithm.lambda",
            format!("is {}; use a finite number (default 0.5)", a.lambda),
        )?;
        require(
            (0.0..=1.0).contains(&a.label_noise.p),
            origin,
            "algorithm.label_noise.p",
            format!(
                "is {}; use a probability in [0, 1] (0 = exact labels)",
                a.label_noise.p
            ),
        )?;
        require(
            a.sets >= 1,
            origin,
            "algorithm.sets",
            "must be at least 1 set per generation",
        )?;
        require(
            self.loss.dual_clip == 0.0
                || (self.loss.dual_clip > 1.0 && self.loss.dual_clip.is_finite()),
            origin,
            "loss.dual_clip",
            format!(
                "is {}; use 0 (off) or a value > 1 (paper: 3)",
                self.loss.dual_clip
            ),
        )?;
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
        self.task.validate(origin)?;
        self.validate_warmup_and_judge(origin)?;
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

    fn validate_warmup_and_judge(&self, origin: &str) -> Result<(), ConfigError> {
        let w = &self.warmup;
        require(w.batch >= 1, origin, "warmup.batch", "must be at least 1")?;
        require(
            w.lr > 0.0 && w.lr.is_finite(),
            origin,
            "warmup.lr",
            format!("is {}; use a finite number > 0", w.lr),
        )?;
        require(
            w.skew > 0.0 && w.skew.is_finite(),
            origin,
            "warmup.skew",
            format!(
                "is {}; use a finite number > 0 (< 1 prefers a few strategies, 1 is uniform)",
                w.skew
            ),
        )?;
        match self.judge.problem() {
            Some((key, message)) => Err(err(origin, &format!("judge.{key}"), message)),
            None => Ok(()),
        }
    }
}
