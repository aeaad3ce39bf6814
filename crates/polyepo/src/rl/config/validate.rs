//! Checks of values that parse but cannot work together. Closed sets of values are enums
//! (see `values.rs`), so what is left here is ranges and combinations.

use super::{ConfigError, JudgeSource, ModelSource, TaskKind, TrainConfig, err};
use crate::rl::tasks::PromptStyle;

impl TrainConfig {
    /// Checks values that parse but cannot work; the error names the key and the fix.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let e = |key: &str, msg: String| Err(err(origin, key, msg));
        let r = &self.rollout;
        if r.samples_per_prompt < 2 {
            return e(
                "rollout.samples_per_prompt",
                format!(
                    "is {}; groups need N >= 2 generations",
                    r.samples_per_prompt
                ),
            );
        }
        if r.prompts_per_step == 0 {
            return e("rollout.prompts_per_step", "must be at least 1".into());
        }
        let a = &self.algorithm;
        if a.set_size == 0 || a.set_size >= r.samples_per_prompt {
            return e(
                "algorithm.set_size",
                format!(
                    "is {}; set RL needs 1 <= n < N = {}",
                    a.set_size, r.samples_per_prompt
                ),
            );
        }
        let o = &self.optim;
        if o.minibatches == 0 || o.minibatches > r.prompts_per_step {
            return e(
                "optim.minibatches",
                format!(
                    "is {}; use 1..={} (prompts per step)",
                    o.minibatches, r.prompts_per_step
                ),
            );
        }
        if o.ppo_epochs == 0 {
            return e("optim.ppo_epochs", "must be at least 1".into());
        }
        if !(o.adamw.lr > 0.0) {
            return e("optim.lr", format!("is {}; must be > 0", o.adamw.lr));
        }
        if !(r.temperature > 0.0) {
            return e(
                "rollout.temperature",
                format!("is {}; RL needs sampling (> 0)", r.temperature),
            );
        }
        if self.loss.clip_low < 0.0 || self.loss.clip_low >= 1.0 {
            return e(
                "loss.clip_low",
                format!("is {}; use 0 <= clip_low < 1", self.loss.clip_low),
            );
        }
        if self.loss.dual_clip != 0.0 && self.loss.dual_clip <= 1.0 {
            return e(
                "loss.dual_clip",
                format!(
                    "is {}; use 0 (off) or a value > 1 (paper: 3)",
                    self.loss.dual_clip
                ),
            );
        }
        if self.task.kind == TaskKind::Jsonl {
            if self.task.jsonl.is_none() {
                return e(
                    "task.jsonl",
                    "task.kind = \"jsonl\" needs [task.jsonl] with `train` and `eval` paths".into(),
                );
            }
            if a.name.needs_labels() && a.judge == JudgeSource::Task {
                return e(
                    "algorithm.name",
                    format!(
                        "`{}` needs strategy labels but the jsonl task has no labeler; use algorithm.judge = \"lm\", or grpo, drgrpo, setrl-mean or setrl-max",
                        a.name
                    ),
                );
            }
        }
        match &self.model.source {
            ModelSource::Tiny => {
                let style = match self.task.kind {
                    TaskKind::Reach => Some(("task.reach.style", self.task.reach.style)),
                    TaskKind::Countdown => {
                        Some(("task.countdown.style", self.task.countdown.style))
                    }
                    TaskKind::Digits => None,
                    TaskKind::Jsonl => {
                        return e(
                            "model.source",
                            "the `tiny` model is only for the built-in synthetic tasks; give a model path"
                                .into(),
                        );
                    }
                };
                if let Some((key, PromptStyle::Instruct)) = style {
                    return e(
                        key,
                        "the `tiny` model reads only the `compact` style".into(),
                    );
                }
            }
            ModelSource::Path(path) if !path.exists() => {
                return e(
                    "model.source",
                    format!(
                        "`{}` does not exist (run scripts/fetch-model.sh for SmolLM2)",
                        path.display()
                    ),
                );
            }
            ModelSource::Path(_) => {}
        }
        Ok(())
    }
}
