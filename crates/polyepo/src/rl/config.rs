//! The training configuration: every hyperparameter in one TOML document, with defaults that
//! run the built-in synthetic task, `--set key=value` overrides, and validation that names
//! the key and the fix.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rl::judge::lm::LmJudgeConfig;
use crate::rl::loss::LossConfig;
use crate::rl::tasks::countdown::CountdownConfig;
use crate::rl::tasks::digits::DigitsConfig;
use crate::rl::tasks::jsonl::JsonlConfig;
use crate::rl::tasks::reach::ReachConfig;
use polyepo_engine::model::LoraConfig;
use polyepo_engine::optim::{AdamWConfig, LrSchedule};

/// The advantage estimator that drives the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// POLY-EPO: set RL with the polychromatic objective.
    Polyepo,
    /// Set RL with the mean objective.
    SetrlMean,
    /// Set RL with the max objective (pass@n).
    SetrlMax,
    /// GRPO (std-normalised group advantage).
    Grpo,
    /// Dr.GRPO (mean-centred group advantage).
    Drgrpo,
    /// Additive diversity bonus on the reward.
    DiversityBonus,
}

impl Algorithm {
    /// Whether the advantage needs strategy labels.
    pub fn needs_labels(self) -> bool {
        matches!(self, Algorithm::Polyepo | Algorithm::DiversityBonus)
    }
}

/// Run identity, length and bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Run name: the run directory is `runs/<name>` unless `--out` says otherwise.
    pub name: String,
    /// Seed of everything random (sampling, prompt order, initialisation).
    pub seed: u64,
    /// RL steps (one batch of prompts each).
    pub steps: u64,
    /// Write a checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
}

/// Which task, and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskSection {
    /// `reach`, `digits` or `countdown` (built-in synthetic) or `jsonl` (your data).
    pub kind: String,
    /// Settings of `reach`.
    pub reach: ReachConfig,
    /// Settings of `digits`.
    pub digits: DigitsConfig,
    /// Settings of `countdown`.
    pub countdown: CountdownConfig,
    /// Settings of `jsonl`.
    pub jsonl: Option<JsonlConfig>,
}

/// The small model the synthetic task trains from scratch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TinyModel {
    /// Residual width.
    pub hidden_size: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// SwiGLU width.
    pub intermediate_size: usize,
}

impl Default for TinyModel {
    fn default() -> Self {
        Self {
            hidden_size: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate_size: 192,
        }
    }
}

/// The policy model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// `tiny` (a small model trained from scratch with a supervised warm-up) or a path to
    /// an HF directory or a .gguf file.
    pub source: String,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `f32`, `bf16` or `f16`.
    pub dtype: String,
    /// LoRA adapters; absent = full fine-tuning.
    pub lora: Option<LoraConfig>,
    /// Shape of the `tiny` model.
    pub tiny: TinyModel,
}

/// The supervised warm-up that creates the base policy for the `tiny` model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmupSection {
    /// Optimizer steps.
    pub steps: u64,
    /// Demonstrations per step.
    pub batch: usize,
    /// Peak learning rate (warm-up + cosine).
    pub lr: f64,
    /// Strategy skew of the demonstrations: rank r is drawn with weight skew^r.
    pub skew: f64,
}

/// How generations are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSection {
    /// Prompts per RL step.
    pub prompts_per_step: usize,
    /// Generations per prompt N.
    pub samples_per_prompt: usize,
    /// Sampling temperature (also applied to the training log-probs).
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Top-k (0 = off).
    pub top_k: usize,
    /// Longest response.
    pub max_new_tokens: usize,
}

/// The advantage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlgorithmSection {
    /// `polyepo`, `setrl-mean`, `setrl-max`, `grpo`, `drgrpo` or `diversity-bonus`.
    pub name: Algorithm,
    /// Set size n (set RL).
    pub set_size: usize,
    /// `exact` (all C(N, n) sets, closed form) or `sampled`.
    pub estimator: String,
    /// Sets per generation for `sampled`.
    pub sets: usize,
    /// λ of `diversity-bonus`.
    pub lambda: f64,
    /// Who labels strategies: `task` (the task's program labeler), `lm` (the LM judge of
    /// `[judge]`) or `both` (the task's labeler where it has one, the LM judge otherwise).
    pub judge: String,
}

/// Optimizer and PPO schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimSection {
    /// AdamW.
    #[serde(flatten)]
    pub adamw: AdamWConfig,
    /// Global grad-norm clip (0 = off).
    pub grad_clip: f64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Passes over each step's rollouts.
    pub ppo_epochs: usize,
    /// Optimizer steps per epoch (the prompts are split into this many mini-batches).
    pub minibatches: usize,
}

/// Everything a training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Run identity and length.
    pub run: RunSection,
    /// Task.
    pub task: TaskSection,
    /// Policy model.
    pub model: ModelSection,
    /// Supervised warm-up (tiny model only).
    pub warmup: WarmupSection,
    /// Sampling.
    pub rollout: RolloutSection,
    /// Advantage.
    pub algorithm: AlgorithmSection,
    /// Policy loss.
    pub loss: LossConfig,
    /// Optimizer.
    pub optim: OptimSection,
    /// The LM judge (used when `algorithm.judge` is `lm` or `both`).
    pub judge: LmJudgeConfig,
}

impl Default for TrainConfig {
    /// The built-in synthetic default: POLY-EPO on `reach` with a small model; runs in a few
    /// minutes on 2 CPU cores. The loss settings are the paper's; the learning rate is the
    /// small model's (the paper's 1e-6 is for 7B models and would not move it).
    fn default() -> Self {
        Self {
            run: RunSection {
                name: "polyepo-reach".into(),
                seed: 0,
                steps: 200,
                checkpoint_every: 50,
            },
            task: TaskSection {
                kind: "reach".into(),
                reach: ReachConfig::default(),
                digits: DigitsConfig::default(),
                countdown: CountdownConfig::default(),
                jsonl: None,
            },
            model: ModelSection {
                source: "tiny".into(),
                device: "cpu".into(),
                dtype: "f32".into(),
                lora: None,
                tiny: TinyModel::default(),
            },
            warmup: WarmupSection {
                steps: 400,
                batch: 64,
                lr: 3e-3,
                skew: 0.25,
            },
            rollout: RolloutSection {
                prompts_per_step: 32,
                samples_per_prompt: 8,
                temperature: 1.0,
                top_p: 1.0,
                top_k: 0,
                max_new_tokens: 10,
            },
            algorithm: AlgorithmSection {
                name: Algorithm::Polyepo,
                set_size: 4,
                estimator: "exact".into(),
                sets: 16,
                lambda: 0.5,
                judge: "task".into(),
            },
            loss: LossConfig::default(),
            optim: OptimSection {
                adamw: AdamWConfig {
                    lr: 2e-4,
                    ..AdamWConfig::default()
                },
                grad_clip: 0.3,
                schedule: LrSchedule::Constant,
                ppo_epochs: 1,
                minibatches: 2,
            },
            judge: LmJudgeConfig::default(),
        }
    }
}

/// Each section's defaults are the built-in default's, so a file may set any subset of keys.
macro_rules! section_defaults {
    ($($ty:ident => $field:ident),*) => {$(
        impl Default for $ty {
            fn default() -> Self {
                TrainConfig::default().$field
            }
        }
    )*};
}
section_defaults!(RunSection => run, TaskSection => task, ModelSection => model, WarmupSection => warmup,
    RolloutSection => rollout, AlgorithmSection => algorithm, OptimSection => optim);

/// A configuration error: the key at fault and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: `{key}`: {message}")]
pub struct ConfigError {
    /// File (or `--set`) the error came from.
    pub origin: String,
    /// Dotted key.
    pub key: String,
    /// What is wrong and the fix.
    pub message: String,
}

fn err(origin: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        origin: origin.into(),
        key: key.into(),
        message: message.into(),
    }
}

/// Parses a `--set` value: TOML syntax when it parses (numbers, booleans, arrays, quoted
/// strings), a bare string otherwise.
fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

impl TrainConfig {
    /// Loads `file` (or the default), applies `overrides` (`key.path=value`), validates.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let (mut doc, origin) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err(&path.display().to_string(), "(file)", e.to_string()))?;
                let doc: toml::Table = toml::from_str(&text)
                    .map_err(|e| err(&path.display().to_string(), "(syntax)", e.to_string()))?;
                (doc, path.display().to_string())
            }
            None => (
                toml::Table::try_from(TrainConfig::default())
                    .map_err(|e| err("default", "(all)", e.to_string()))?,
                "built-in default".into(),
            ),
        };
        for o in overrides {
            let (key, raw) = o.split_once('=').ok_or_else(|| {
                err(
                    "--set",
                    o,
                    "expected key.path=value, e.g. loss.clip_high=0.28",
                )
            })?;
            let key = key.trim();
            let mut table = &mut doc;
            let parts: Vec<&str> = key.split('.').collect();
            for part in &parts[..parts.len() - 1] {
                table = table
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .ok_or_else(|| {
                        err("--set", key, format!("`{part}` is a value, not a section"))
                    })?;
            }
            table.insert(parts[parts.len() - 1].to_string(), parse_value(raw.trim()));
        }
        let origin = if overrides.is_empty() {
            origin
        } else {
            format!("{origin} with --set")
        };
        let cfg: TrainConfig =
            serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| {
                let key = e.path().to_string();
                let message = e.into_inner().to_string();
                err(
                    &origin,
                    &key,
                    format!("{message} (see `polyepo config` for every key and its default)"),
                )
            })?;
        cfg.validate(&origin)?;
        Ok(cfg)
    }

    /// Checks values that parse but cannot work.
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
        if !matches!(a.estimator.as_str(), "exact" | "sampled") {
            return e(
                "algorithm.estimator",
                format!("is `{}`; use `exact` or `sampled`", a.estimator),
            );
        }
        if !matches!(a.judge.as_str(), "task" | "lm" | "both") {
            return e(
                "algorithm.judge",
                format!(
                    "is `{}`; use `task` (the task's labeler), `lm` (the [judge] API) or `both` (the task's labeler where it has one, the LM judge otherwise)",
                    a.judge
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
        match self.task.kind.as_str() {
            "reach" | "digits" | "countdown" => {}
            "jsonl" if self.task.jsonl.is_none() => {
                return e(
                    "task.jsonl",
                    "task.kind = \"jsonl\" needs [task.jsonl] with `train` and `eval` paths".into(),
                );
            }
            "jsonl" => {
                if a.name.needs_labels() && a.judge == "task" {
                    return e(
                        "algorithm.name",
                        format!(
                            "`{}` needs strategy labels but the jsonl task has no labeler; use algorithm.judge = \"lm\", or grpo, drgrpo, setrl-mean or setrl-max",
                            serde_json::to_string(&a.name).unwrap_or_default()
                        ),
                    );
                }
            }
            other => {
                return e(
                    "task.kind",
                    format!("is `{other}`; use `reach`, `digits`, `countdown` or `jsonl`"),
                );
            }
        }
        if let Err(m) = polyepo_engine::model::device::parse_dtype(&self.model.dtype) {
            return e("model.dtype", m);
        }
        let device_ok = self.model.device == "cpu"
            || self.model.device == "cuda"
            || self
                .model
                .device
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<usize>().is_ok());
        if !device_ok {
            return e(
                "model.device",
                format!("is `{}`; use cpu, cuda or cuda:N", self.model.device),
            );
        }
        if self.model.source == "tiny"
            && self.task.kind == "reach"
            && self.task.reach.style != "compact"
        {
            return e(
                "task.reach.style",
                "the `tiny` model reads only the `compact` style".into(),
            );
        }
        if self.model.source == "tiny"
            && self.task.kind == "countdown"
            && self.task.countdown.style != "compact"
        {
            return e(
                "task.countdown.style",
                "the `tiny` model reads only the `compact` style".into(),
            );
        }
        if !matches!(self.task.countdown.style.as_str(), "compact" | "instruct") {
            return e(
                "task.countdown.style",
                format!(
                    "is `{}`; use `compact` or `instruct`",
                    self.task.countdown.style
                ),
            );
        }
        if !matches!(self.task.reach.style.as_str(), "compact" | "instruct") {
            return e(
                "task.reach.style",
                format!(
                    "is `{}`; use `compact` or `instruct`",
                    self.task.reach.style
                ),
            );
        }
        if self.model.source == "tiny" && self.task.kind == "jsonl" {
            return e(
                "model.source",
                "the `tiny` model is only for the built-in synthetic tasks; give a model path"
                    .into(),
            );
        }
        if self.model.source != "tiny" && !Path::new(&self.model.source).exists() {
            return e(
                "model.source",
                format!(
                    "`{}` does not exist (run scripts/fetch-model.sh for SmolLM2)",
                    self.model.source
                ),
            );
        }
        Ok(())
    }

    /// The resolved configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The run directory: `out` when given, `runs/<name>` otherwise.
    pub fn run_dir(&self, out: Option<&Path>) -> PathBuf {
        out.map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("runs").join(&self.run.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_toml() {
        let text = TrainConfig::default().to_toml();
        let parsed: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(parsed, TrainConfig::default());
    }

    #[test]
    fn overrides_apply_and_errors_name_the_key() {
        let cfg = TrainConfig::load(
            None,
            &["loss.clip_high=0.3".into(), "algorithm.name=grpo".into()],
        )
        .unwrap();
        assert_eq!(cfg.loss.clip_high, 0.3);
        assert_eq!(cfg.algorithm.name, Algorithm::Grpo);
        let e = TrainConfig::load(None, &["loss.clip_hgh=0.3".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("clip_hgh"), "{e}");
        let e = TrainConfig::load(None, &["algorithm.set_size=8".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("algorithm.set_size") && e.contains("n < N"),
            "{e}"
        );
        let e = TrainConfig::load(None, &["loss.aggregation=mean".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("loss.aggregation") && e.contains("token-mean"),
            "{e}"
        );
        let e = TrainConfig::load(None, &["rollout.samples_per_prompt=\"eight\"".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("rollout.samples_per_prompt"), "{e}");
    }

    #[test]
    fn file_errors_name_the_file_and_key() {
        let dir = std::env::temp_dir().join(format!("polyepo-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[optim]\nlr = -1.0\n").unwrap();
        let e = TrainConfig::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("optim.lr"), "{e}");
        std::fs::write(&path, "[optim\nlr = 1\n").unwrap();
        let e = TrainConfig::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("syntax"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
