//! The ways a set-RL computation can be asked something it cannot answer.

use thiserror::Error;

/// Why a group, a set size or an estimator request was refused.
///
/// Every variant names the offending value so that a caller can report it to the user
/// without re-deriving it.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SetRlError {
    /// A group must hold at least one generation.
    #[error("the group is empty: a group needs at least one generation")]
    EmptyGroup,
    /// Rewards and strategy labels must describe the same generations.
    #[error("{rewards} rewards but {clusters} strategy labels: give one label per reward")]
    LengthMismatch {
        /// Number of rewards given.
        rewards: usize,
        /// Number of strategy labels given.
        clusters: usize,
    },
    /// Rewards must be finite numbers (no NaN, no infinity).
    #[error("reward {index} is {value}: rewards must be finite")]
    NonFiniteReward {
        /// Position of the reward in the group.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// The set size must satisfy 1 <= n <= N.
    #[error(
        "set size {set_size} is invalid for a group of {group_size}: use 1 <= n <= {group_size}"
    )]
    InvalidSetSize {
        /// The requested set size n.
        set_size: usize,
        /// The group size N.
        group_size: usize,
    },
    /// Exhaustive enumeration would visit more sets than the caller allows.
    #[error(
        "enumerating C({group_size}, {set_size}) = {sets:.3e} sets exceeds the limit of {limit}: \
         use the exact or the sampled estimator, or raise the limit"
    )]
    TooManySets {
        /// The group size N.
        group_size: usize,
        /// The set size n.
        set_size: usize,
        /// C(N, n), as a float because it may not fit any integer type.
        sets: f64,
        /// The configured maximum.
        limit: u64,
    },
    /// Sampling would draw more sets than the caller allows (N · K > limit).
    #[error(
        "sampling {sets} sets for each of {group_size} generations exceeds the limit of {limit} sets: \
         use fewer sets per generation, the exact estimator, or raise the limit"
    )]
    TooManySampledSets {
        /// The group size N.
        group_size: usize,
        /// Sets per generation K.
        sets: usize,
        /// The configured maximum.
        limit: u64,
    },
    /// Finite rewards so large that an advantage overflowed (e.g. rewards near 1e308).
    #[error(
        "advantage {index} is {value}: the rewards are too large to average in floating point; rescale them"
    )]
    NonFiniteAdvantage {
        /// Position of the generation in the group.
        index: usize,
        /// The overflowed value.
        value: f64,
    },
    /// The sampled estimator needs at least one set per generation.
    #[error("the sampled estimator needs at least one set per generation (got 0)")]
    NoSampledSets,
    /// pass@k needs 0 <= correct <= samples and 1 <= k <= samples.
    #[error(
        "pass@{k} with {correct} correct out of {samples} samples is undefined: need correct <= samples and 1 <= k <= samples"
    )]
    InvalidPassAtK {
        /// Number of samples drawn.
        samples: usize,
        /// Number of correct samples.
        correct: usize,
        /// The k in pass@k.
        k: usize,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, SetRlError>;
