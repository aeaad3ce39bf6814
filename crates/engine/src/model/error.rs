//! Errors of loading, saving and running a model: each names the file (and the tensor)
//! involved and, where there is one, the fix.

use std::path::PathBuf;
use thiserror::Error;

/// Why a model could not be loaded, saved or run.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tensor the architecture needs is not in the weights.
    #[error("{origin}: tensor `{name}` is missing (is this a {arch} checkpoint?)")]
    MissingTensor {
        /// File or directory the weights came from.
        origin: String,
        /// HF name of the tensor.
        name: String,
        /// Architecture that needs it.
        arch: String,
    },
    /// A tensor has the wrong shape for the configuration.
    #[error("{origin}: tensor `{name}` has shape {found:?}, the config implies {expected:?}")]
    ShapeMismatch {
        /// File or directory the weights came from.
        origin: String,
        /// HF name of the tensor.
        name: String,
        /// Shape the configuration implies.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// The file is well-formed but describes something polyepo cannot run.
    #[error("{origin}: {message}")]
    Unsupported {
        /// The file.
        origin: String,
        /// What is unsupported and what is.
        message: String,
    },
    /// The file is malformed.
    #[error("{origin}: {message}")]
    Format {
        /// The file.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for model operations.
pub type ModelResult<T> = std::result::Result<T, ModelError>;

impl ModelError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A format error for `origin`.
    pub fn format(origin: impl std::fmt::Display, message: impl Into<String>) -> Self {
        Self::Format {
            origin: origin.to_string(),
            message: message.into(),
        }
    }
}
