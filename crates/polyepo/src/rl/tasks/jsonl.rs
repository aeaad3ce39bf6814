//! A task from the user's JSON Lines data: `{"prompt": "...", "answer": "..."}` per line,
//! graded by exact match or numerically. It has no strategy labeler: train it with a
//! per-generation algorithm (grpo, drgrpo, setrl mean/max) or an LM judge.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use setrl::Strategy;
use thiserror::Error;

use super::{Prompt, Spec, Task};

/// How a response is compared with the reference answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Match {
    /// Trimmed strings are equal.
    Exact,
    /// The last number in the response equals the answer (|Δ| ≤ 1e-6 · max(1, |answer|)).
    Numeric,
    /// Math answers: the final answer is extracted (`\boxed{}`, "the answer is", `####`, the
    /// last number) and checked for equivalence (fractions, roots, percentages, expressions).
    Math,
}

/// Settings of a JSONL task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// Training data.
    pub train: PathBuf,
    /// Held-out data.
    pub eval: PathBuf,
    /// Grading rule.
    #[serde(default = "default_match")]
    pub r#match: Match,
}

fn default_match() -> Match {
    Match::Numeric
}

/// A malformed data file.
#[derive(Debug, Error)]
pub enum JsonlError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not a valid record.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    prompt: String,
    answer: serde_json::Value,
}

/// Reads one data file; every non-empty line must be `{"prompt": string, "answer": string|number}`.
pub fn read_records(path: &Path) -> Result<Vec<Prompt>, JsonlError> {
    let text = std::fs::read_to_string(path).map_err(|source| JsonlError::Io {
        path: path.into(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| JsonlError::Line {
            path: path.into(),
            line: i + 1,
            message,
        };
        let record: Record = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "{e}; each line must be {{\"prompt\": \"...\", \"answer\": \"...\"}}"
            ))
        })?;
        let answer = match record.answer {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(bad(format!(
                    "field `answer` must be a string or a number, got {other}"
                )));
            }
        };
        if record.prompt.trim().is_empty() {
            return Err(bad("field `prompt` is empty".into()));
        }
        if answer.trim().is_empty() {
            // No response could ever match it: every reward would be 0.
            return Err(bad(
                "field `answer` is empty: give the reference answer".into()
            ));
        }
        out.push(Prompt {
            text: record.prompt,
            spec: Spec::Answer(answer),
        });
    }
    if out.is_empty() {
        return Err(JsonlError::Line {
            path: path.into(),
            line: 0,
            message: "the file holds no records".into(),
        });
    }
    Ok(out)
}

/// The last number in `text` (integers, decimals, a leading minus, thousands commas).
pub fn last_number(text: &str) -> Option<f64> {
    let cleaned = text.replace(',', "");
    let mut best = None;
    let mut current = String::new();
    for c in cleaned.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() || c == '.' || (c == '-' && current.is_empty()) {
            current.push(c);
        } else {
            if let Ok(v) = current.trim_end_matches('.').parse::<f64>() {
                best = Some(v);
            }
            current.clear();
            if c == '-' {
                current.push(c);
            }
        }
    }
    best
}

/// A task over JSONL prompt/answer pairs.
#[derive(Debug, Clone)]
pub struct JsonlTask {
    train: Vec<Prompt>,
    eval: Vec<Prompt>,
    rule: Match,
}

impl JsonlTask {
    /// Reads both files.
    pub fn new(cfg: &JsonlConfig) -> Result<Self, JsonlError> {
        Ok(Self {
            train: read_records(&cfg.train)?,
            eval: read_records(&cfg.eval)?,
            rule: cfg.r#match,
        })
    }
}

impl Task for JsonlTask {
    fn name(&self) -> &str {
        "jsonl"
    }
    fn train_prompts(&self) -> &[Prompt] {
        &self.train
    }
    fn eval_prompts(&self) -> &[Prompt] {
        &self.eval
    }
    fn reward(&self, prompt: &Prompt, response: &str) -> f64 {
        let Spec::Answer(answer) = &prompt.spec else {
            return 0.0;
        };
        let ok = match self.rule {
            Match::Exact => response.trim() == answer.trim(),
            Match::Numeric => match (last_number(response), last_number(answer)) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                _ => false,
            },
            Match::Math => polyepo_judge::math::verify(response, answer),
        };
        f64::from(u8::from(ok))
    }
    fn strategy(&self, _prompt: &Prompt, _response: &str) -> Option<Strategy> {
        None
    }
    fn has_labeler(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_extracted() {
        assert_eq!(last_number("so the answer is 1,234."), Some(1234.0));
        assert_eq!(last_number("-3 and then -4.5"), Some(-4.5));
        assert_eq!(last_number("none"), None);
    }

    #[test]
    fn bad_lines_are_named() {
        let dir = std::env::temp_dir().join(format!("polyepo-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\": \"1+1?\", \"answer\": 2}\n\n{\"prompt\": \"2+2?\"}\n",
        )
        .unwrap();
        let err = read_records(&path).unwrap_err().to_string();
        assert!(
            err.contains("data.jsonl:3:") && err.contains("answer"),
            "{err}"
        );
        std::fs::write(&path, "{\"prompt\": \"1+1?\", \"answer\": [2]}\n").unwrap();
        let err = read_records(&path).unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("`answer`"), "{err}");
        std::fs::write(&path, "{\"prompt\": \"1+1?\", \"answer\": \" \"}\n").unwrap();
        let err = read_records(&path).unwrap_err().to_string();
        assert!(
            err.contains(":1:") && err.contains("`answer` is empty"),
            "{err}"
        );
        std::fs::write(&path, "{\"prompt\": \"1+1?\", \"answer\": \"2\"}\n").unwrap();
        let task = JsonlTask::new(&JsonlConfig {
            train: path.clone(),
            eval: path.clone(),
            r#match: Match::Numeric,
        })
        .unwrap();
        assert_eq!(task.reward(&task.train[0], "It is 2."), 1.0);
        assert_eq!(task.reward(&task.train[0], "It is 3."), 0.0);
        let math = JsonlTask::new(&JsonlConfig {
            train: path.clone(),
            eval: path.clone(),
            r#match: Match::Math,
        })
        .unwrap();
        assert_eq!(
            math.reward(&math.train[0], "1+1 is \\boxed{\\frac{4}{2}}"),
            1.0
        );
        assert_eq!(math.reward(&math.train[0], "The answer is 3."), 0.0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
