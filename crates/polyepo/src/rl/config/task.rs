//! The task section: which task, and only that task's settings. `[task] kind = "digits"`
//! with a `[task.digits]` table (every key optional); the sections of other tasks that a
//! document may also hold (a config written before this type, or `--set task.kind=...` over
//! the default document) are read, checked, and dropped.

use serde::{Deserialize, Serialize};

use super::validate::{MAX_TASK_PROMPTS, require};
use super::{ConfigError, TaskKind};
use crate::rl::tasks::Task;
use crate::rl::tasks::countdown::{Countdown, CountdownConfig};
use crate::rl::tasks::digits::{Digits, DigitsConfig};
use crate::rl::tasks::jsonl::{JsonlConfig, JsonlTask};
use crate::rl::tasks::reach::{self, Reach, ReachConfig};
use crate::rl::train::error::TrainResult;

/// Which task, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TaskDocument", into = "TaskDocument")]
pub enum TaskSection {
    /// The built-in reach domain.
    Reach(ReachConfig),
    /// The built-in digits domain.
    Digits(DigitsConfig),
    /// The built-in countdown domain.
    Countdown(CountdownConfig),
    /// The user's JSON Lines data.
    Jsonl(JsonlConfig),
}

/// The TOML form: `kind` and one table per task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskDocument {
    #[serde(default)]
    kind: Option<TaskKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reach: Option<ReachConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digits: Option<DigitsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    countdown: Option<CountdownConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jsonl: Option<JsonlConfig>,
}

impl TryFrom<TaskDocument> for TaskSection {
    type Error = String;
    fn try_from(doc: TaskDocument) -> Result<Self, String> {
        Ok(match doc.kind.unwrap_or(TaskKind::Reach) {
            TaskKind::Reach => TaskSection::Reach(doc.reach.unwrap_or_default()),
            TaskKind::Digits => TaskSection::Digits(doc.digits.unwrap_or_default()),
            TaskKind::Countdown => TaskSection::Countdown(doc.countdown.unwrap_or_default()),
            TaskKind::Jsonl => {
                TaskSection::Jsonl(doc.jsonl.ok_or(
                    "task.kind = \"jsonl\" needs [task.jsonl] with `train` and `eval` paths",
                )?)
            }
        })
    }
}

impl From<TaskSection> for TaskDocument {
    fn from(task: TaskSection) -> Self {
        let kind = Some(task.kind());
        match task {
            TaskSection::Reach(c) => TaskDocument {
                kind,
                reach: Some(c),
                ..TaskDocument::default()
            },
            TaskSection::Digits(c) => TaskDocument {
                kind,
                digits: Some(c),
                ..TaskDocument::default()
            },
            TaskSection::Countdown(c) => TaskDocument {
                kind,
                countdown: Some(c),
                ..TaskDocument::default()
            },
            TaskSection::Jsonl(c) => TaskDocument {
                kind,
                jsonl: Some(c),
                ..TaskDocument::default()
            },
        }
    }
}

impl TaskSection {
    /// Which task this is.
    pub fn kind(&self) -> TaskKind {
        match self {
            TaskSection::Reach(_) => TaskKind::Reach,
            TaskSection::Digits(_) => TaskKind::Digits,
            TaskSection::Countdown(_) => TaskKind::Countdown,
            TaskSection::Jsonl(_) => TaskKind::Jsonl,
        }
    }

    /// The task these settings describe, its prompts generated (or read).
    pub fn build(&self) -> TrainResult<Box<dyn Task>> {
        Ok(match self {
            TaskSection::Reach(c) => Box::new(Reach::new(c)?),
            TaskSection::Digits(c) => Box::new(Digits::new(c)?),
            TaskSection::Countdown(c) => Box::new(Countdown::new(c)?),
            TaskSection::Jsonl(c) => Box::new(JsonlTask::new(c)?),
        })
    }

    /// The built-in task `kind` with its default settings; `None` for `jsonl`, which needs
    /// the paths of its data.
    pub fn defaults_for(kind: TaskKind) -> Option<Self> {
        match kind {
            TaskKind::Reach => Some(TaskSection::Reach(ReachConfig::default())),
            TaskKind::Digits => Some(TaskSection::Digits(DigitsConfig::default())),
            TaskKind::Countdown => Some(TaskSection::Countdown(CountdownConfig::default())),
            TaskKind::Jsonl => None,
        }
    }

    /// Checks the chosen task's ranges; keys are named `task.<kind>.<field>`.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let prompts = |key: &str, n: usize| {
            require(
                (1..=MAX_TASK_PROMPTS).contains(&n),
                origin,
                key,
                format!("is {n}; use 1..={MAX_TASK_PROMPTS}"),
            )
        };
        match self {
            TaskSection::Reach(c) => {
                prompts("task.reach.train_prompts", c.train_prompts)?;
                prompts("task.reach.eval_prompts", c.eval_prompts)?;
                let mut steps = c.train_steps.clone();
                steps.sort_unstable();
                steps.dedup();
                require(
                    steps.len() == c.train_steps.len()
                        && steps.iter().all(|s| (1..=9).contains(&s.abs())),
                    origin,
                    "task.reach.train_steps",
                    format!(
                        "is {:?}; use distinct steps from ±1..±9, e.g. [1, 2, 3, 5, -1, -2]",
                        c.train_steps
                    ),
                )?;
                require(
                    c.targets[0] <= c.targets[1],
                    origin,
                    "task.reach.targets",
                    format!(
                        "is {:?}; use [smallest, largest] with smallest <= largest, e.g. [-6, 12]",
                        c.targets
                    ),
                )?;
                require(
                    c.set_size >= 2 && c.set_size <= c.train_steps.len(),
                    origin,
                    "task.reach.set_size",
                    format!(
                        "is {}; use 2..={} (the number of train_steps)",
                        c.set_size,
                        c.train_steps.len()
                    ),
                )?;
                require(
                    c.min_solutions >= 2,
                    origin,
                    "task.reach.min_solutions",
                    format!(
                        "is {}; use 2 or more (a prompt with one correct strategy leaves nothing to explore)",
                        c.min_solutions
                    ),
                )?;
                require(
                    (1..=12).contains(&c.max_steps)
                        && reach::multisets(c.set_size, c.max_steps) <= reach::MAX_ENUMERATED,
                    origin,
                    "task.reach.max_steps",
                    format!(
                        "is {} with set_size {}; use 1..=12, and fewer steps with larger sets (each prompt's answers are enumerated: at most {} multisets)",
                        c.max_steps,
                        c.set_size,
                        reach::MAX_ENUMERATED
                    ),
                )?;
                require(
                    c.habits < c.min_solutions,
                    origin,
                    "task.reach.habits",
                    format!(
                        "is {}; use 0 (off) or fewer than task.reach.min_solutions = {}, so every prompt keeps a correct strategy the warm-up never shows",
                        c.habits, c.min_solutions
                    ),
                )
            }
            TaskSection::Digits(c) => {
                prompts("task.digits.train_prompts", c.train_prompts)?;
                prompts("task.digits.eval_prompts", c.eval_prompts)?;
                let mut digits = c.train_digits.clone();
                digits.sort_unstable();
                digits.dedup();
                require(
                    !digits.is_empty()
                        && digits.len() == c.train_digits.len()
                        && digits.iter().all(|d| (1..=9).contains(d)),
                    origin,
                    "task.digits.train_digits",
                    format!(
                        "is {:?}; use distinct digits from 1..9, e.g. [1, 2, 3, 5, 7]",
                        c.train_digits
                    ),
                )?;
                require(
                    c.set_size >= 2 && c.set_size <= c.train_digits.len(),
                    origin,
                    "task.digits.set_size",
                    format!(
                        "is {}; use 2..={} (the number of train_digits)",
                        c.set_size,
                        c.train_digits.len()
                    ),
                )?;
                require(
                    !c.lengths.is_empty() && c.lengths.iter().all(|l| (2..=9).contains(l)),
                    origin,
                    "task.digits.lengths",
                    format!("is {:?}; use lengths from 2..9, e.g. [3, 4]", c.lengths),
                )
            }
            TaskSection::Countdown(c) => {
                prompts("task.countdown.train_prompts", c.train_prompts)?;
                prompts("task.countdown.eval_prompts", c.eval_prompts)?;
                require(
                    (2..=6).contains(&c.numbers),
                    origin,
                    "task.countdown.numbers",
                    format!("is {}; use 2..=6 numbers per prompt", c.numbers),
                )?;
                require(
                    (1..=10_000).contains(&c.max_number),
                    origin,
                    "task.countdown.max_number",
                    format!("is {}; use 1..=10000", c.max_number),
                )?;
                if let Some(m) = c.eval_max_number {
                    require(
                        (1..=40_000).contains(&m),
                        origin,
                        "task.countdown.eval_max_number",
                        format!("is {m}; use 1..=40000, or leave it out for 4 × max_number"),
                    )?;
                }
                require(
                    (1..=32).contains(&c.demos),
                    origin,
                    "task.countdown.demos",
                    format!("is {}; use 1..=32 demonstrations per prompt", c.demos),
                )
            }
            TaskSection::Jsonl(_) => Ok(()),
        }
    }
}
