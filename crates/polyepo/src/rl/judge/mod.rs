//! Strategy judges: who labels each response of a prompt group with a strategy cluster.
//! The task's own program labeler is one; an LM judge over an OpenAI-compatible API plugs in
//! beside it through the same trait.

pub mod lm;
pub mod prompts;

use setrl::Strategy;
use thiserror::Error;

use crate::rl::tasks::{Prompt, Task};

/// Why a group could not be labelled.
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
    Skipped(String),
}

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
