//! Strategy judges: who labels each response of a prompt group with a strategy cluster.
//! The task's own program labeler is one; an LM judge over an OpenAI-compatible API plugs in
//! beside it through the same trait. The LM judge itself lives in `polyepo-judge` (shared
//! with the Python package); this module adapts it to the trainer's tasks.

pub mod noisy;

pub use polyepo_judge::{JudgeError, guard, lm, outcome, prompts};

use lm::{JudgeStats, LmJudge};
use outcome::Outcome;
use setrl::Strategy;

use crate::rl::tasks::{Prompt, Task};

/// Labels the N responses to one prompt with strategy clusters.
pub trait StrategyJudge: Send + Sync {
    /// One label per response, in order.
    fn label(&self, prompt: &Prompt, responses: &[String]) -> Result<Vec<Strategy>, JudgeError>;

    /// Labels many groups; judges that call a service run them concurrently.
    fn label_batch(
        &self,
        groups: &[(Prompt, Vec<String>)],
    ) -> Vec<Result<Vec<Strategy>, JudgeError>> {
        groups.iter().map(|(p, r)| self.label(p, r)).collect()
    }

    /// Counters of the judge's calls, when it makes any.
    fn stats(&self) -> Option<lm::JudgeStats> {
        None
    }

    /// The guard that stops a run whose judge keeps failing, for judges that can fail.
    fn guard(&self) -> Option<guard::FailureGuard> {
        None
    }
}

/// The task's own programmatic labeler.
pub struct TaskJudge<'a> {
    task: &'a dyn Task,
}

impl<'a> TaskJudge<'a> {
    /// Wraps `task`.
    pub fn new(task: &'a dyn Task) -> Self {
        Self { task }
    }
}

impl StrategyJudge for TaskJudge<'_> {
    fn label(&self, prompt: &Prompt, responses: &[String]) -> Result<Vec<Strategy>, JudgeError> {
        responses
            .iter()
            .map(|r| {
                self.task
                    .strategy(prompt, r)
                    .ok_or_else(|| JudgeError::NoLabeler(self.task.name().into()))
            })
            .collect()
    }
}

/// A skipped group (no labels) becomes [`JudgeError::Skipped`], so the trainer zeroes it.
fn into_result(outcome: Outcome) -> Result<Vec<Strategy>, JudgeError> {
    match outcome {
        Outcome::Labelled(labels) | Outcome::Cached(labels) | Outcome::Failed { labels, .. } => {
            Ok(labels)
        }
        Outcome::Skipped(failure) => Err(JudgeError::Skipped(failure)),
    }
}

impl StrategyJudge for LmJudge {
    fn label(&self, prompt: &Prompt, responses: &[String]) -> Result<Vec<Strategy>, JudgeError> {
        into_result(self.label_group(&prompt.text, responses))
    }

    fn label_batch(
        &self,
        groups: &[(Prompt, Vec<String>)],
    ) -> Vec<Result<Vec<Strategy>, JudgeError>> {
        let borrowed: Vec<(&str, &[String])> = groups
            .iter()
            .map(|(p, r)| (p.text.as_str(), r.as_slice()))
            .collect();
        self.label_groups(&borrowed)
            .into_iter()
            .map(into_result)
            .collect()
    }

    fn stats(&self) -> Option<JudgeStats> {
        Some(LmJudge::stats(self))
    }

    fn guard(&self) -> Option<guard::FailureGuard> {
        Some(LmJudge::guard(self))
    }
}
