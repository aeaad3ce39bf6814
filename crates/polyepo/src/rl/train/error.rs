//! Errors of a training run.

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
    /// A file of the run directory could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, e: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }
}

/// Result alias for training.
pub type TrainResult<T> = Result<T, TrainError>;
