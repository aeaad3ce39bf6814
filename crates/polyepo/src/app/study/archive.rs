//! The study's results kept beside its report (`docs/experiments/<name>/runs/`), one gzipped
//! JSON file per row and seed: the config it was made with, its evaluations and its training
//! metrics, never weights (a unit of a 512-prompt study is ~300 KB of JSON, ~45 KB gzipped;
//! plain `.json` files of earlier sessions are still read). A study spans sessions and machines: a later `polyepo experiment` on a machine
//! without `runs/` takes a unit from here instead of training it again, as long as the config
//! and the evaluation settings are the ones the plan asks for now.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::EvalSplit;
use super::run::SeedRun;
use crate::app::eval::EvalSettings;
use crate::rl::config::TrainConfig;
use crate::rl::train::{TrainError, TrainResult};
use polyepo_engine::atomic::write_atomic;

/// The name of a row's directory and archive file at one seed (`grpo-seed3`).
pub fn unit_name(slug: &str, seed: u64) -> String {
    format!("{slug}-seed{seed}")
}

/// One archived unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ArchivedUnit {
    /// The training config (TOML) the unit was made with.
    config: String,
    /// What it measured.
    run: SeedRun,
}

/// The archive directory of one study.
#[derive(Debug, Clone)]
pub struct Archive {
    dir: PathBuf,
}

/// What a unit must match to be taken from the archive.
pub struct Wanted<'a> {
    /// The config the plan gives the unit now.
    pub config: &'a TrainConfig,
    /// Evaluation settings of the final policy, one per temperature, in plan order.
    pub evals: &'a [EvalSettings],
    /// The further held-out splits the plan evaluates on (at the main settings).
    pub splits: &'a [EvalSplit],
}

impl Archive {
    /// The archive inside a study's report directory.
    pub fn in_report(report_dir: &Path) -> Self {
        Self {
            dir: report_dir.join("runs"),
        }
    }

    fn path(&self, unit: &str) -> PathBuf {
        self.dir.join(format!("{unit}.json.gz"))
    }

    /// The archived unit's JSON: the gzipped file, else a plain one of an earlier version.
    fn read(&self, unit: &str) -> Option<String> {
        use std::io::Read;
        match std::fs::File::open(self.path(unit)) {
            Ok(file) => {
                let mut text = String::new();
                flate2::read::GzDecoder::new(file)
                    .read_to_string(&mut text)
                    .ok()?;
                Some(text)
            }
            Err(_) => std::fs::read_to_string(self.dir.join(format!("{unit}.json"))).ok(),
        }
    }

    /// The archived unit, if it was made with the wanted config and evaluated with the wanted
    /// settings. An unreadable file counts as absent (the unit is then made again and the file
    /// replaced), so a damaged archive costs time, never a wrong figure.
    pub fn find(&self, unit: &str, wanted: &Wanted<'_>) -> Option<SeedRun> {
        let text = self.read(unit)?;
        let archived: ArchivedUnit = serde_json::from_str(&text).ok()?;
        let mut old: TrainConfig = toml::from_str(&archived.config).ok()?;
        // The checkpoint period does not change training (as for runs on disk).
        old.run.checkpoint_every = wanted.config.run.checkpoint_every;
        if &old != wanted.config {
            return None;
        }
        // Evaluations along training are those the run made with the main settings, as a run
        // on disk would give them, so the final evaluations decide.
        let run = archived.run;
        let evals_match = run.evals.len() == wanted.evals.len()
            && run
                .evals
                .iter()
                .zip(wanted.evals)
                .all(|(r, s)| r.settings.as_ref() == Some(s));
        let splits_match =
            run.splits.len() == wanted.splits.len()
                && run.splits.iter().zip(wanted.splits).all(|((split, r), s)| {
                    split == s && r.settings.as_ref() == wanted.evals.first()
                });
        (evals_match && splits_match).then_some(run)
    }

    /// Keeps `run`, made with `config`, under `unit` (written atomically).
    pub fn keep(&self, unit: &str, config: &TrainConfig, run: &SeedRun) -> TrainResult<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        let path = self.path(unit);
        let config = toml::to_string(config).map_err(|e| TrainError::file(&path, e))?;
        let archived = ArchivedUnit {
            config,
            run: run.clone(),
        };
        let json = serde_json::to_vec(&archived).map_err(|e| TrainError::file(&path, e))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &json).map_err(|e| TrainError::io(&path, e))?;
        let bytes = gz.finish().map_err(|e| TrainError::io(&path, e))?;
        write_atomic(&path, &bytes).map_err(|e| TrainError::io(&path, e))
    }
}
