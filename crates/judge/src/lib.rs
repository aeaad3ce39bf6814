//! Judges of model responses that need no model of their own: the math verifier (is this
//! final answer right?) and the LM judge (which reasoning strategy does each response use?).
//!
//! Both the Rust trainer and the Python package (`python/`) use this crate, so a response is
//! verified and labelled by the same code whichever engine trains on it. It depends on no
//! tensor library: the Python wheel builds in seconds.
#![deny(missing_docs)]

pub mod guard;
pub mod lm;
pub mod math;
pub mod outcome;
pub mod prompts;

use thiserror::Error;

/// Why a group of responses could not be labelled.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum JudgeError {
    /// The judge has no opinion on this task (e.g. a task without a labeler).
    #[error(
        "the task `{0}` has no strategy labeler: use an LM judge or a per-generation algorithm"
    )]
    NoLabeler(String),
    /// The judge failed for a reason it names.
    #[error("{0}")]
    Failed(String),
    /// The judge could not label the group and its failure policy is `skip`: the group's
    /// advantages become zero.
    #[error("judge skipped the group ({0})")]
    Skipped(outcome::JudgeFailure),
    /// The judge failed on most groups for several steps in a row (see [`guard`]): training
    /// on would learn nothing.
    #[error("{0}")]
    Unusable(String),
}

/// A stable 63-bit id for a canonical strategy string (FNV-1a), so cluster ids do not
/// depend on the order strategies were seen in. Also keys the judge's cache.
pub fn strategy_id(canonical: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 1) as i64
}
