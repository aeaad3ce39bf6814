//! The training configuration: every hyperparameter in one TOML document, with defaults that
//! run the built-in synthetic task, `--set key=value` overrides, and validation that names
//! the key and the fix.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use setrl::Strategy;

mod load;
mod task;
mod validate;
mod values;

pub use task::TaskSection;

pub use values::{
    Algorithm, DTypeSpec, DeviceSpec, EstimatorKind, JudgeSource, ModelSource, TaskKind,
};

use crate::rl::judge::lm::LmJudgeConfig;
use crate::rl::loss::LossConfig;
use crate::rl::tasks::reach::ReachConfig;
use polyepo_engine::model::LoraConfig;
use polyepo_engine::optim::{AdamWConfig, LrSchedule};

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
    pub source: ModelSource,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: DeviceSpec,
    /// `f32`, `bf16` or `f16`.
    pub dtype: DTypeSpec,
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
    /// `exact` (all C(N, n) sets, closed form), `enumerate` (all sets, one by one) or
    /// `sampled`.
    pub estimator: EstimatorKind,
    /// Sets per generation for `sampled`.
    pub sets: usize,
    /// λ of `diversity-bonus`.
    pub lambda: f64,
    /// Who labels strategies: `task` (the task's program labeler), `lm` (the LM judge of
    /// `[judge]`) or `both` (the task's labeler where it has one, the LM judge otherwise).
    pub judge: JudgeSource,
    /// Noise added to the strategy labels (an ablation of a weak judge; off by default).
    pub label_noise: LabelNoise,
    /// How wrong answers are labelled: `clusters` (as the judge labels them, so distinct
    /// wrong answers are distinct strategies, as reach's labeler does) or `degenerate` (every
    /// answer with reward 0 counts in the mean reward and the set size, never as a strategy,
    /// as the paper's judge prompt asks of errors with one logic).
    pub wrong_answers: WrongAnswers,
}

/// How answers with reward 0 are labelled before the advantages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WrongAnswers {
    /// The judge's labels stand.
    #[default]
    Clusters,
    /// Every wrong answer is degenerate: no diversity credit for being wrong differently.
    Degenerate,
}

impl WrongAnswers {
    /// The label a sample with `reward` and the judge's `strategy` takes into the advantages.
    pub fn label(self, reward: f64, strategy: Strategy) -> Strategy {
        match self {
            WrongAnswers::Degenerate if reward <= 0.0 => Strategy::Degenerate,
            _ => strategy,
        }
    }
}

/// How a weak strategy judge is simulated on top of an exact one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelNoise {
    /// `merge` (a cluster joins the one seen before it in its group; the first never moves), `split` (each of a cluster's
    /// responses becomes its own cluster) or `fail` (the whole group is unlabelled and
    /// `judge.failure_policy` applies).
    pub kind: LabelNoiseKind,
    /// Probability per cluster (per group for `fail`); 0 = exact labels.
    pub p: f64,
}

impl Default for LabelNoise {
    fn default() -> Self {
        Self {
            kind: LabelNoiseKind::Merge,
            p: 0.0,
        }
    }
}

/// What [`LabelNoise`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelNoiseKind {
    /// Two strategies judged the same.
    Merge,
    /// One strategy judged as several.
    Split,
    /// The judge fails on the group.
    Fail,
}

impl AlgorithmSection {
    /// The setrl method these settings name; a sampled estimator draws from `seed`.
    pub fn method(&self, seed: u64) -> setrl::Method {
        self.name.method(&setrl::MethodParams {
            set_size: self.set_size,
            estimator: self.estimator,
            sets: self.sets,
            seed,
            lambda: self.lambda,
            max_sets: setrl::DEFAULT_MAX_SETS,
        })
    }
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
    /// Sequences per forward and backward pass inside a mini-batch, their gradients
    /// accumulated into one optimizer step (0 = the whole mini-batch at once). Bounds the
    /// activation memory; the step is the same up to the order of floating-point sums.
    pub micro_batch: usize,
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
            task: TaskSection::Reach(ReachConfig::default()),
            model: ModelSection {
                source: ModelSource::Tiny,
                device: DeviceSpec::Cpu,
                dtype: DTypeSpec::F32,
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
                estimator: EstimatorKind::Exact,
                sets: 16,
                lambda: 0.5,
                judge: JudgeSource::Task,
                label_noise: LabelNoise::default(),
                wrong_answers: WrongAnswers::Clusters,
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
                micro_batch: 0,
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

pub(crate) fn err(origin: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        origin: origin.into(),
        key: key.into(),
        message: message.into(),
    }
}

impl TrainConfig {
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
    use crate::rl::tasks::digits::DigitsConfig;

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
    fn a_longer_step_bound_needs_room_to_write_its_answers() {
        let load = |set: &[&str]| {
            TrainConfig::load(None, &set.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        let e = load(&["task.reach.max_steps=8"]).unwrap_err().to_string();
        assert!(
            e.contains("rollout.max_new_tokens") && e.contains("= 17"),
            "{e}"
        );
        let cfg = load(&["task.reach.max_steps=8", "rollout.max_new_tokens=17"]).unwrap();
        assert!(matches!(&cfg.task, TaskSection::Reach(c) if c.max_steps == 8));
        for bad in ["task.reach.max_steps=0", "task.reach.max_steps=13"] {
            let e = load(&[bad, "rollout.max_new_tokens=40"])
                .unwrap_err()
                .to_string();
            assert!(e.contains("task.reach.max_steps"), "{e}");
        }
        // Large sets with a long bound would enumerate millions of answers per prompt.
        let e = load(&[
            "task.reach.max_steps=12",
            "rollout.max_new_tokens=25",
            "task.reach.train_steps=[1,2,3,4,5,6,7,8,9,-1,-2,-3]",
            "task.reach.set_size=9",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("task.reach.max_steps") && e.contains("fewer steps"),
            "{e}"
        );
    }

    #[test]
    fn wrong_answers_labelled_degenerate_earn_no_diversity_credit() {
        // Six correct answers in one strategy, two wrong ones in clusters of their own.
        let rewards = vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0];
        let judged: Vec<Strategy> = [1, 1, 1, 1, 1, 1, 3, 4]
            .into_iter()
            .map(Strategy::Cluster)
            .collect();
        let polyepo = AlgorithmSection::default().method(0);
        let advantages = |wrong: WrongAnswers| {
            let labels = rewards
                .iter()
                .zip(&judged)
                .map(|(&r, &s)| wrong.label(r, s))
                .collect();
            let group = setrl::Group::new(rewards.clone(), labels).unwrap();
            polyepo.compute(&group).unwrap().advantages
        };
        let clustered = advantages(WrongAnswers::Clusters);
        let degenerate = advantages(WrongAnswers::Degenerate);
        // As judged, a wrong answer in a cluster of its own raises its sets' diversity ...
        assert!(clustered[6..].iter().all(|&a| a > 0.0), "{clustered:?}");
        // ... labelled degenerate it only lowers their mean reward.
        assert!(degenerate[6..].iter().all(|&a| a < 0.0), "{degenerate:?}");
        assert!(degenerate[..6].iter().all(|&a| a > 0.0), "{degenerate:?}");
        // Correct answers keep their labels.
        assert_eq!(WrongAnswers::Degenerate.label(1.0, judged[0]), judged[0]);
    }

    #[test]
    fn every_shipped_config_loads() {
        // Relative model paths in configs/ are relative to the repository root.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for entry in std::fs::read_dir(root.join("configs")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: toml::Table = toml::from_str(&text).unwrap();
            // Deserialises and validates everything but the model file's presence (the
            // model is fetched separately).
            let cfg: TrainConfig = toml::Value::Table(doc).try_into().unwrap();
            let mut without_model = cfg.clone();
            without_model.model.source = ModelSource::Tiny;
            match &mut without_model.task {
                TaskSection::Reach(c) => c.style = crate::rl::tasks::PromptStyle::Compact,
                TaskSection::Countdown(c) => c.style = crate::rl::tasks::PromptStyle::Compact,
                _ => {}
            }
            if let Err(e) = without_model.validate(&path.display().to_string()) {
                panic!("{}: {e}", path.display());
            }
        }
    }

    #[test]
    fn only_the_chosen_task_has_a_section() {
        let text = toml::to_string(&TrainConfig::default()).unwrap();
        assert!(text.contains("[task.reach]"), "{text}");
        assert!(!text.contains("[task.digits]") && !text.contains("[task.countdown]"));
        // `--set task.kind=...` over the default document: the reach table is dropped, the
        // chosen task gets its defaults plus whatever else is set.
        let cfg = TrainConfig::load(
            None,
            &["task.kind=digits".into(), "task.digits.lengths=[3]".into()],
        )
        .unwrap();
        let TaskSection::Digits(d) = &cfg.task else {
            panic!("{:?}", cfg.task)
        };
        assert_eq!(d.lengths, vec![3]);
        assert_eq!(d.train_digits, DigitsConfig::default().train_digits);
        // A bad key of the chosen task still names its full path.
        let e = TrainConfig::load(None, &["task.reach.set_sise=3".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("task.reach") && e.contains("set_sise"), "{e}");
        let e = TrainConfig::load(None, &["task.kind=jsonl".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[task.jsonl]"), "{e}");
    }

    #[test]
    fn configs_written_with_every_task_section_still_load() {
        // What `polyepo config` wrote before the task section held one task: runs of that
        // time have it as their config.toml.
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/config-all-task-sections.toml");
        let old = TrainConfig::load(Some(&path), &[]).unwrap();
        assert_eq!(old, TrainConfig::default());
        let digits = TrainConfig::load(Some(&path), &["task.kind=digits".into()]).unwrap();
        assert_eq!(digits.task, TaskSection::Digits(DigitsConfig::default()));
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
