//! What labelling one group came to, as a type: the trainer, `polyepo judge` and the Python
//! package read the same [`Outcome`] instead of parsing a status string.

use std::fmt;

use setrl::Strategy;

/// Why the judge could not label a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    /// The API answered with this HTTP status (429 and 5xx are retried).
    Http(u16),
    /// No reply (or no whole reply) within `timeout_s`.
    Timeout,
    /// The endpoint could not be reached or the connection broke.
    Connection,
    /// The reply was not the JSON the judge asks for.
    InvalidReply,
    /// The labelling thread panicked (a bug; the group is treated as failed).
    Panic,
    /// A failure injected on purpose (the `label_noise.kind = fail` ablation).
    Simulated,
}

impl fmt::Display for FailureReason {
    /// The reason's name in metrics and logs: `http-503`, `timeout`, `connection`,
    /// `invalid-reply`, `panic`, `simulated`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Http(code) => write!(f, "http-{code}"),
            FailureReason::Timeout => f.write_str("timeout"),
            FailureReason::Connection => f.write_str("connection"),
            FailureReason::InvalidReply => f.write_str("invalid-reply"),
            FailureReason::Panic => f.write_str("panic"),
            FailureReason::Simulated => f.write_str("simulated"),
        }
    }
}

/// A failed group: why, and what went wrong (with the start of a reply that could not be
/// used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeFailure {
    /// The kind of failure.
    pub reason: FailureReason,
    /// A sentence for a person.
    pub detail: String,
}

impl fmt::Display for JudgeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// What labelling one group came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The judge's reply labelled every response.
    Labelled(Vec<Strategy>),
    /// The labels of an identical earlier request, from the cache.
    Cached(Vec<Strategy>),
    /// The judge failed and the failure policy is `skip`: no labels, so the group's
    /// advantages are zero.
    Skipped(JudgeFailure),
    /// The judge failed and the failure policy (`distinct` or `single`) gave these labels.
    Failed {
        /// The failure.
        failure: JudgeFailure,
        /// The labels the failure policy gave.
        labels: Vec<Strategy>,
    },
}

/// The four outcomes without their data: what a count or a Python enum needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeKind {
    /// See [`Outcome::Labelled`].
    Labelled,
    /// See [`Outcome::Cached`].
    Cached,
    /// See [`Outcome::Skipped`].
    Skipped,
    /// See [`Outcome::Failed`].
    Failed,
}

impl OutcomeKind {
    /// The name in files and logs: `labelled`, `cached`, `skipped`, `failed`.
    pub fn name(self) -> &'static str {
        match self {
            OutcomeKind::Labelled => "labelled",
            OutcomeKind::Cached => "cached",
            OutcomeKind::Skipped => "skipped",
            OutcomeKind::Failed => "failed",
        }
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Outcome {
    /// Which of the four outcomes this is.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Labelled(_) => OutcomeKind::Labelled,
            Outcome::Cached(_) => OutcomeKind::Cached,
            Outcome::Skipped(_) => OutcomeKind::Skipped,
            Outcome::Failed { .. } => OutcomeKind::Failed,
        }
    }

    /// The labels to train with: `None` for a skipped group.
    pub fn labels(&self) -> Option<&[Strategy]> {
        match self {
            Outcome::Labelled(l) | Outcome::Cached(l) | Outcome::Failed { labels: l, .. } => {
                Some(l)
            }
            Outcome::Skipped(_) => None,
        }
    }

    /// Why the judge failed, if it did.
    pub fn failure(&self) -> Option<&JudgeFailure> {
        match self {
            Outcome::Skipped(f) | Outcome::Failed { failure: f, .. } => Some(f),
            Outcome::Labelled(_) | Outcome::Cached(_) => None,
        }
    }

    /// Whether the labels came from the judge (a reply or the cache).
    pub fn is_ok(&self) -> bool {
        self.failure().is_none()
    }
}
