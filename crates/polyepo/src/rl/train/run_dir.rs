//! The run directory: resolved config, metrics, atomic checkpoints, and the final model.
//!
//! ```text
//! runs/<name>/config.toml             the resolved configuration
//! runs/<name>/metrics.jsonl           one JSON object per step
//! runs/<name>/checkpoints/step-000020 weights (trainable tensors), optimizer, state.json
//! runs/<name>/checkpoints/latest      name of the newest complete checkpoint
//! runs/<name>/final/                  the trained model in Hugging Face layout
//! runs/<name>/eval.json               the latest held-out evaluation (`polyepo eval`)
//! runs/<name>/evals/final-t0.4-m64.json          a study's evaluations (final policy, final
//! runs/<name>/evals/final-<split>-t0.4-m64.json  policy on a further split, a checkpoint),
//! runs/<name>/evals/step-000050-t0.4-m64.json    named by temperature and samples per prompt
//! ```
//!
//! [`RunDir`] is the only code that knows these names: the trainer, `eval`, `serve` and
//! `compare` all ask it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{TrainError, TrainResult};
use super::metrics::StepMetrics;
use super::policy::Policy;
use crate::rl::config::TrainConfig;
use polyepo_engine::atomic::write_atomic;
use polyepo_engine::model::checkpoint::{export_hf, load_tensors, restore_vars, save_tensors};
use polyepo_engine::optim::AdamW;

/// How many checkpoints to keep (older ones are deleted once a newer one is complete).
const KEEP_CHECKPOINTS: usize = 2;

/// The tensor files of a checkpoint, each covered by a checksum in `state.json`.
const CHECKPOINT_FILES: [&str; 2] = ["weights.safetensors", "optimizer.safetensors"];

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    /// RL steps completed.
    step: u64,
    /// Optimizer steps taken (for bias correction and the schedule).
    optimizer_steps: u64,
    /// CRC-32C of each tensor file, taken as it was written: flipped bytes are caught on
    /// resume (absent in checkpoints written before checksums were recorded).
    #[serde(default)]
    checksums: std::collections::BTreeMap<String, u32>,
}

/// CRC-32C of a file's bytes.
fn checksum(path: &Path) -> TrainResult<u32> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    Ok(crc32c::crc32c(&bytes))
}

/// The first trainable tensor that holds a NaN or an infinity, with its value.
fn first_non_finite(policy: &Policy) -> TrainResult<Option<(String, f64)>> {
    for (name, var) in &policy.vars {
        let total = var
            .as_tensor()
            .to_dtype(candle_core::DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        if !total.is_finite() {
            return Ok(Some((name.clone(), total)));
        }
    }
    Ok(None)
}

/// Which policy of a run a study evaluated, and on which prompts.
#[derive(Debug, Clone, Copy)]
pub enum EvalOf<'a> {
    /// The final policy on the task's held-out prompts.
    Final,
    /// The final policy on a further split (its file-name slug).
    FinalOnSplit(&'a str),
    /// The checkpoint after this many steps, on the held-out prompts.
    Step(u64),
}

/// A run's directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens `root` for a new run (refusing to overwrite a run with checkpoints) or for
    /// resuming one, and writes the resolved config.
    pub fn open(root: &Path, cfg: &TrainConfig, resume: bool) -> TrainResult<Self> {
        let run = Self {
            root: root.to_owned(),
        };
        // A fresh run never mixes with an earlier one's metrics or checkpoints.
        let earlier = [
            run.config_path(),
            run.metrics_path(),
            run.checkpoints(),
            run.final_model(),
        ];
        if !resume && earlier.iter().any(|p| p.exists()) {
            return Err(TrainError::run_state(
                root,
                "already holds a run: pass `--resume` to continue it, or choose another `--out` / run.name",
            ));
        }
        std::fs::create_dir_all(root).map_err(|e| TrainError::io(root, e))?;
        write_atomic(&run.config_path(), cfg.to_toml().as_bytes())
            .map_err(|e| TrainError::io(run.config_path(), e))?;
        Ok(run)
    }

    /// The run directory at `root`, whatever it holds (for readers of a known run).
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// `path` as a run directory when it is one (it holds the run's `config.toml`), for
    /// commands that take either a run or a model.
    pub fn detect(path: &Path) -> Option<Self> {
        let run = Self {
            root: path.to_owned(),
        };
        run.config_path().is_file().then_some(run)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The resolved configuration the run was trained with.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The exported final model (HF layout).
    pub fn final_model(&self) -> PathBuf {
        self.root.join("final")
    }

    /// Whether training finished: the final model is exported (the export is renamed into
    /// place, so its presence means it is complete).
    pub fn is_finished(&self) -> bool {
        self.final_model().join("model.safetensors").is_file()
    }

    /// The final model, or an error that says why the run has none yet.
    pub fn finished_model(&self) -> TrainResult<PathBuf> {
        if self.is_finished() {
            Ok(self.final_model())
        } else {
            Err(TrainError::run_state(
                &self.root,
                "is a run that has not finished (no final/ model): resume it with `polyepo train --resume`",
            ))
        }
    }

    /// Where `polyepo eval` writes this run's evaluation.
    pub fn eval_path(&self) -> PathBuf {
        self.root.join("eval.json")
    }

    /// Where a study keeps an evaluation of this run at `temperature` with `samples` per
    /// prompt: named by its settings, so studies that evaluate the same run differently keep
    /// each other's results.
    pub fn study_eval_path(&self, of: EvalOf<'_>, temperature: f64, samples: usize) -> PathBuf {
        let what = match of {
            EvalOf::Final => "final".to_owned(),
            EvalOf::FinalOnSplit(split) => format!("final-{split}"),
            EvalOf::Step(step) => format!("step-{step:06}"),
        };
        self.root
            .join("evals")
            .join(format!("{what}-t{temperature}-m{samples}.json"))
    }

    /// The per-step metrics file.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// Where warm-up caches live: beside the run directories.
    pub fn cache_dir(&self) -> PathBuf {
        self.root
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(".cache")
    }

    fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The newest complete checkpoint the `latest` pointer names, if any.
    pub fn latest_checkpoint(&self) -> Option<PathBuf> {
        let name = std::fs::read_to_string(self.checkpoints().join("latest")).ok()?;
        let dir = self.checkpoints().join(name.trim());
        dir.join("state.json").exists().then_some(dir)
    }

    /// Every `step-N` checkpoint directory, newest first (the `latest` pointer's first).
    fn checkpoint_candidates(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.checkpoints())
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs.reverse();
        if let Some(latest) = self.latest_checkpoint() {
            dirs.retain(|d| *d != latest);
            dirs.insert(0, latest);
        }
        dirs
    }

    /// Whether there is any checkpoint to resume from.
    pub fn has_checkpoint(&self) -> bool {
        !self.checkpoint_candidates().is_empty()
    }

    /// Writes a checkpoint for `step`: into a temp directory, renamed into place, then the
    /// `latest` pointer is replaced atomically. A crash at any point leaves the previous
    /// checkpoint intact and pointed to.
    pub fn save_checkpoint(&self, step: u64, policy: &Policy, opt: &AdamW) -> TrainResult<PathBuf> {
        // Only finite weights are saved, so rotation never drops the last good checkpoint.
        if let Some((name, value)) = first_non_finite(policy)? {
            return Err(TrainError::NonFinite {
                step,
                quantity: format!("weight `{name}` (its sum)"),
                value,
            });
        }
        let name = format!("step-{step:06}");
        let dir = self.checkpoints().join(&name);
        let tmp = self.checkpoints().join(format!(".{name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        let weights: Vec<_> = policy
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        save_tensors(&tmp.join("weights.safetensors"), &weights)?;
        save_tensors(&tmp.join("optimizer.safetensors"), &opt.state_tensors()?)?;
        let checksums = CHECKPOINT_FILES
            .iter()
            .map(|f| Ok((f.to_string(), checksum(&tmp.join(f))?)))
            .collect::<TrainResult<_>>()?;
        let state = CheckpointState {
            step,
            optimizer_steps: opt.steps_taken(),
            checksums,
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| TrainError::file(&tmp, e))?;
        write_atomic(&tmp.join("state.json"), &json).map_err(|e| TrainError::io(&tmp, e))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(|e| TrainError::io(&dir, e))?;
        write_atomic(&self.checkpoints().join("latest"), name.as_bytes())
            .map_err(|e| TrainError::io(&dir, e))?;
        self.prune(&name);
        Ok(dir)
    }

    fn prune(&self, newest: &str) {
        let Ok(entries) = std::fs::read_dir(self.checkpoints()) else {
            return;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("step-"))
            .collect();
        names.sort();
        let keep_from = names.len().saturating_sub(KEEP_CHECKPOINTS);
        for old in &names[..keep_from] {
            if old != newest {
                let _ = std::fs::remove_dir_all(self.checkpoints().join(old));
            }
        }
    }

    /// Restores the newest valid checkpoint into `policy` and `opt` and returns the step it
    /// ended with. A checkpoint is valid when its state parses, its files match the checksums
    /// recorded when they were written, and its weights are finite; invalid ones are skipped
    /// with a message through `log`, so a lost `latest` pointer or a corrupt newest checkpoint
    /// falls back to the one before.
    pub fn restore(
        &self,
        policy: &Policy,
        opt: &mut AdamW,
        log: &mut dyn FnMut(String),
    ) -> TrainResult<u64> {
        let candidates = self.checkpoint_candidates();
        if candidates.is_empty() {
            return Err(TrainError::run_state(
                self.checkpoints(),
                "no checkpoint to resume from (the run stopped before its first checkpoint): start it again without --resume in a new directory",
            ));
        }
        let mut problems = Vec::new();
        for dir in candidates {
            match self.restore_from(&dir, policy, opt) {
                Ok(step) => {
                    log(format!("resuming from {} (step {step})", dir.display()));
                    self.truncate_metrics(step)?;
                    return Ok(step);
                }
                Err(e) => {
                    log(format!("skipping checkpoint {}: {e}", dir.display()));
                    problems.push(e.to_string());
                }
            }
        }
        Err(TrainError::run_state(
            self.checkpoints(),
            format!(
                "no valid checkpoint to resume from: {}",
                problems.join("; ")
            ),
        ))
    }

    fn restore_from(&self, dir: &Path, policy: &Policy, opt: &mut AdamW) -> TrainResult<u64> {
        let state_path = dir.join("state.json");
        let text =
            std::fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
        let state: CheckpointState =
            serde_json::from_str(&text).map_err(|e| TrainError::file(&state_path, e))?;
        for (file, expected) in &state.checksums {
            let path = dir.join(file);
            let found = checksum(&path)?;
            if found != *expected {
                return Err(TrainError::file(
                    &path,
                    format!(
                        "checksum {found:08x} differs from {expected:08x} recorded when it was written: the file is corrupt"
                    ),
                ));
            }
        }
        let weights_path = dir.join("weights.safetensors");
        restore_vars(&policy.vars, &load_tensors(&weights_path)?, &weights_path)?;
        if let Some((name, value)) = first_non_finite(policy)? {
            return Err(TrainError::NonFinite {
                step: state.step,
                quantity: format!("weight `{name}` in {}", weights_path.display()),
                value,
            });
        }
        opt.load_state(
            &load_tensors(&dir.join("optimizer.safetensors"))?,
            state.optimizer_steps,
        )?;
        Ok(state.step)
    }

    /// Drops metric lines of steps after `step` (they will be recomputed on resume).
    fn truncate_metrics(&self, step: u64) -> TrainResult<()> {
        let path = self.metrics_path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let mut kept = String::new();
        for (i, line) in text.lines().enumerate() {
            // A line that does not parse is an error, never silently dropped data.
            let m: StepMetrics = serde_json::from_str(line).map_err(|e| {
                TrainError::file(
                    &path,
                    format!("line {}: {e}; fix or remove that line", i + 1),
                )
            })?;
            if m.step <= step {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        write_atomic(&path, kept.as_bytes()).map_err(|e| TrainError::io(&path, e))
    }

    /// Appends one step's metrics.
    pub fn append_metrics(&self, m: &StepMetrics) -> TrainResult<()> {
        let path = self.metrics_path();
        let line = serde_json::to_string(m).map_err(|e| TrainError::file(&path, e))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        writeln!(f, "{line}").map_err(|e| TrainError::io(&path, e))
    }

    /// Exports the trained policy (adapters merged) to `final/` in HF layout.
    pub fn save_final(&self, policy: &Policy) -> TrainResult<PathBuf> {
        let dir = self.final_model();
        let tmp = self.root.join(".final.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        export_hf(&policy.model, &policy.tokenizer, &tmp)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(|e| TrainError::io(&dir, e))?;
        Ok(dir)
    }
}

/// Reads a run's metrics file.
pub fn read_metrics(root: &Path) -> TrainResult<Vec<StepMetrics>> {
    let path = RunDir::at(root).metrics_path();
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::file(&path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}
