//! The run directory: resolved config, metrics, atomic checkpoints, and the final model.
//!
//! ```text
//! runs/<name>/config.toml             the resolved configuration
//! runs/<name>/metrics.jsonl           one JSON object per step
//! runs/<name>/checkpoints/step-000020 weights (trainable tensors), optimizer, state.json
//! runs/<name>/checkpoints/latest      name of the newest complete checkpoint
//! runs/<name>/final/                  the trained model in Hugging Face layout
//! runs/<name>/eval.json               the latest held-out evaluation (`polyepo eval`)
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

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    /// RL steps completed.
    step: u64,
    /// Optimizer steps taken (for bias correction and the schedule).
    optimizer_steps: u64,
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
        if !resume && run.latest_checkpoint().is_some() {
            return Err(TrainError::io(
                root,
                "already holds a run with checkpoints: pass `--resume` to continue it, or choose another `--out` / run.name",
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
            Err(TrainError::io(
                &self.root,
                "is a run that has not finished (no final/ model): resume it with `polyepo train --resume`",
            ))
        }
    }

    /// Where `polyepo eval` writes this run's evaluation.
    pub fn eval_path(&self) -> PathBuf {
        self.root.join("eval.json")
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

    /// The newest complete checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Option<PathBuf> {
        let name = std::fs::read_to_string(self.checkpoints().join("latest")).ok()?;
        let dir = self.checkpoints().join(name.trim());
        dir.join("state.json").exists().then_some(dir)
    }

    /// Writes a checkpoint for `step`: into a temp directory, renamed into place, then the
    /// `latest` pointer is replaced atomically. A crash at any point leaves the previous
    /// checkpoint intact and pointed to.
    pub fn save_checkpoint(&self, step: u64, policy: &Policy, opt: &AdamW) -> TrainResult<PathBuf> {
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
        let state = CheckpointState {
            step,
            optimizer_steps: opt.steps_taken(),
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| TrainError::io(&tmp, e))?;
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

    /// Restores the newest checkpoint into `policy` and `opt`; returns the step it ended.
    pub fn restore(&self, policy: &Policy, opt: &mut AdamW) -> TrainResult<u64> {
        let dir = self
            .latest_checkpoint()
            .ok_or_else(|| TrainError::io(self.checkpoints(), "no checkpoint to resume from"))?;
        let state_path = dir.join("state.json");
        let text =
            std::fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
        let state: CheckpointState =
            serde_json::from_str(&text).map_err(|e| TrainError::io(&state_path, e))?;
        let weights_path = dir.join("weights.safetensors");
        restore_vars(&policy.vars, &load_tensors(&weights_path)?, &weights_path)?;
        opt.load_state(
            &load_tensors(&dir.join("optimizer.safetensors"))?,
            state.optimizer_steps,
        )?;
        self.truncate_metrics(state.step)?;
        Ok(state.step)
    }

    /// Drops metric lines of steps after `step` (they will be recomputed on resume).
    fn truncate_metrics(&self, step: u64) -> TrainResult<()> {
        let path = self.metrics_path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<StepMetrics>(l).is_ok_and(|m| m.step <= step))
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(&path, kept.as_bytes()).map_err(|e| TrainError::io(&path, e))
    }

    /// Appends one step's metrics.
    pub fn append_metrics(&self, m: &StepMetrics) -> TrainResult<()> {
        let path = self.metrics_path();
        let line = serde_json::to_string(m).map_err(|e| TrainError::io(&path, e))?;
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
                .map_err(|e| TrainError::io(&path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}
