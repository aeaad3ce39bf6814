//! Errors of a training run.

use std::path::PathBuf;

use thiserror::Error;

/// Why a run stopped with an error.
#[derive(Debug, Error)]
pub enum TrainError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::rl::config::ConfigError),
    /// Model loading, saving or running failed.
    #[error(transparent)]
    Model(#[from] polyepo_engine::model::ModelError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading task data failed.
    #[error(transparent)]
    Data(#[from] crate::rl::tasks::jsonl::JsonlError),
    /// Labelling strategies failed.
    #[error(transparent)]
    Judge(#[from] crate::rl::judge::JudgeError),
    /// Computing advantages failed.
    #[error(transparent)]
    SetRl(#[from] setrl::SetRlError),
    /// A loss, gradient or weight became NaN or infinite: the run stops before the value
    /// reaches the weights or a checkpoint.
    #[error(
        "step {step}: {quantity} is {value}, not a finite number; the run stopped before applying it (checkpoints hold only finite weights). Lower optim.lr, set optim.grad_clip, or check the rewards"
    )]
    NonFinite {
        /// The RL step (1-based) during which it happened.
        step: u64,
        /// What became non-finite (`loss`, `gradient norm`, a weight's name, ...).
        quantity: String,
        /// Its value.
        value: f64,
    },
    /// A step's rollout does not have the shape the algorithm needs (N samples per prompt).
    #[error("rollout batch: {0}")]
    Shape(String),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents cannot be used (unparseable, corrupt, made with
    /// another config), or a value could not be encoded for it.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, and the fix.
        problem: String,
    },
    /// A run directory is not in the state the command needs (it already holds a run, has
    /// not finished, has no usable checkpoint).
    #[error("{path}: {problem}")]
    RunState {
        /// The run directory (or its checkpoints).
        path: PathBuf,
        /// What state it is in, and the fix.
        problem: String,
    },
    /// The warm-up found no demonstrations to learn from.
    #[error("warm-up: the task `{task}` yields no demonstrations")]
    NoDemonstrations {
        /// The task's name.
        task: String,
    },
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A problem with the contents of the file at `path`.
    pub fn file(path: impl Into<PathBuf>, problem: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.into(),
            problem: problem.to_string(),
        }
    }

    /// A run directory at `path` in the wrong state for the command.
    pub fn run_state(path: impl Into<PathBuf>, problem: impl std::fmt::Display) -> Self {
        Self::RunState {
            path: path.into(),
            problem: problem.to_string(),
        }
    }
}

/// Result alias for training.
pub type TrainResult<T> = Result<T, TrainError>;
