//! Per-step metrics with stable, namespaced keys (`reward/mean`, `losses/clipfrac`, ...),
//! written one JSON object per line to `metrics.jsonl`.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use setrl::Strategy;

use super::rollout::{RolloutBatch, Sample, StageSeconds};
use super::update::UpdateStats;

/// JSON has no NaN or infinity: serde_json writes a non-finite value as `null`. Reading
/// `null` back as NaN keeps every metrics line readable, so a run that went non-finite can
/// still be resumed from an earlier checkpoint and reported.
pub(crate) fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Everything logged for one RL step. Every number reads `null` back as NaN.
#[serde_with::apply(f64 => #[serde(deserialize_with = "null_as_nan")])]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Step number (1-based).
    pub step: u64,
    /// Mean reward over all generations.
    #[serde(rename = "reward/mean")]
    pub reward_mean: f64,
    /// Fraction of prompts with at least one correct generation.
    #[serde(rename = "reward/prompt_success_rate")]
    pub success_rate: f64,
    /// Distinct non-degenerate strategies per prompt.
    #[serde(rename = "diversity/clusters_all")]
    pub clusters_all: f64,
    /// Distinct strategies among correct generations, per prompt.
    #[serde(rename = "diversity/clusters_correct")]
    pub clusters_correct: f64,
    /// Distinct strategies among incorrect generations, per prompt.
    #[serde(rename = "diversity/clusters_incorrect")]
    pub clusters_incorrect: f64,
    /// Degenerate generations per prompt.
    #[serde(rename = "diversity/degenerate")]
    pub degenerate: f64,
    /// Fraction of generations with a positive advantage.
    #[serde(rename = "advantage/positive_fraction")]
    pub positive_adv: f64,
    /// Fraction of incorrect generations (reward 0) with a positive advantage: how often
    /// the objective pays for a wrong answer because its strategy is new to the group.
    #[serde(rename = "advantage/positive_incorrect", default)]
    pub positive_incorrect: f64,
    /// Mean advantage of the correct generations: how much a right answer is paid.
    #[serde(rename = "advantage/correct_mean", default)]
    pub correct_advantage: f64,
    /// Mean response length in tokens.
    #[serde(rename = "rollout/response_tokens")]
    pub response_len: f64,
    /// Mean prompt length in tokens (absent from runs made before it was logged).
    #[serde(rename = "rollout/prompt_tokens", default)]
    pub prompt_len: f64,
    /// The update's statistics (`losses/*`, `charts/learning_rate`, `time/pi_old`).
    #[serde(flatten)]
    pub update: UpdateStats,
    /// Generated tokens per second during sampling.
    #[serde(rename = "perf/rollout_tokens_per_s")]
    pub tokens_per_s: f64,
    /// Seconds sampling.
    #[serde(rename = "time/rollout")]
    pub time_rollout: f64,
    /// Seconds rewarding and labelling.
    #[serde(rename = "time/judge")]
    pub time_judge: f64,
    /// Seconds computing advantages.
    #[serde(rename = "time/advantage")]
    pub time_advantage: f64,
    /// Seconds updating the policy (π_old included).
    #[serde(rename = "time/update")]
    pub time_update: f64,
    /// LM judge requests this step (retries included; 0 with the task's labeler).
    #[serde(rename = "judge/calls", default)]
    pub judge_calls: f64,
    /// LM judge retries this step.
    #[serde(rename = "judge/retries", default)]
    pub judge_retries: f64,
    /// Groups the LM judge failed to label this step (all reasons).
    #[serde(rename = "judge/failures", default)]
    pub judge_failures: f64,
    /// Failures by reason this step (`timeout`, `connection`, `http-503`, `invalid-reply`, ...).
    #[serde(
        rename = "judge/failure_reasons",
        default,
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub judge_failure_reasons: std::collections::BTreeMap<String, u64>,
    /// Seconds spent waiting for the LM judge this step.
    #[serde(rename = "judge/latency_s", default)]
    pub judge_latency: f64,
}

impl StepMetrics {
    /// Fills the rollout statistics from one step's rollout.
    pub fn from_batch(step: u64, batch: &RolloutBatch, times: StageSeconds) -> Self {
        let groups = batch.groups().len().max(1) as f64;
        let mut m = StepMetrics {
            step,
            ..Default::default()
        };
        for group in batch.groups() {
            let group = group.samples();
            let distinct = |keep: &dyn Fn(&Sample) -> bool| {
                group
                    .iter()
                    .filter(|s| keep(s))
                    .filter_map(|s| match s.strategy {
                        Strategy::Cluster(c) => Some(c),
                        Strategy::Degenerate => None,
                    })
                    .collect::<HashSet<_>>()
                    .len() as f64
            };
            m.clusters_all += distinct(&|_| true);
            m.clusters_correct += distinct(&|s| s.reward > 0.0);
            m.clusters_incorrect += distinct(&|s| s.reward <= 0.0);
            m.degenerate += group
                .iter()
                .filter(|s| s.strategy == Strategy::Degenerate)
                .count() as f64;
            m.success_rate += f64::from(u8::from(group.iter().any(|s| s.reward > 0.0)));
        }
        m.clusters_all /= groups;
        m.clusters_correct /= groups;
        m.clusters_incorrect /= groups;
        m.degenerate /= groups;
        m.success_rate /= groups;
        let samples: Vec<&Sample> = batch.samples().collect();
        let count = samples.len().max(1) as f64;
        m.reward_mean = samples.iter().map(|s| s.reward).sum::<f64>() / count;
        m.positive_adv = samples.iter().filter(|s| s.advantage > 0.0).count() as f64 / count;
        let (correct, incorrect): (Vec<&Sample>, Vec<&Sample>) =
            samples.iter().copied().partition(|s| s.reward > 0.0);
        m.positive_incorrect = incorrect.iter().filter(|s| s.advantage > 0.0).count() as f64
            / incorrect.len().max(1) as f64;
        m.correct_advantage =
            correct.iter().map(|s| s.advantage).sum::<f64>() / correct.len().max(1) as f64;
        let tokens: usize = samples.iter().map(|s| s.response_tokens.len()).sum();
        m.response_len = tokens as f64 / count;
        m.prompt_len = samples
            .iter()
            .map(|s| s.prompt_tokens.len() as f64)
            .sum::<f64>()
            / count;
        m.tokens_per_s = tokens as f64 / times.rollout.max(1e-9);
        m.time_rollout = times.rollout;
        m.time_judge = times.judge;
        m.time_advantage = times.advantage;
        m
    }

    /// Every metric but the step, as (key, value) pairs for TensorBoard.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map
                .into_iter()
                .filter(|(k, _)| k != "step")
                .filter_map(|(k, v)| Some((k, v.as_f64()?)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Fills the judge counters from the difference of two snapshots.
    pub fn set_judge(
        &mut self,
        before: &crate::rl::judge::lm::JudgeStats,
        after: &crate::rl::judge::lm::JudgeStats,
    ) {
        self.judge_calls = (after.calls - before.calls) as f64;
        self.judge_retries = (after.retries - before.retries) as f64;
        self.judge_latency = after.latency_s - before.latency_s;
        for (reason, count) in &after.failures {
            let delta = count - before.failures.get(reason).copied().unwrap_or(0);
            if delta > 0 {
                self.judge_failure_reasons.insert(reason.clone(), delta);
            }
        }
        self.judge_failures = after.failures_since(before) as f64;
    }

    /// The metrics that do not depend on wall-clock time (for resume comparisons).
    pub fn without_timings(&self) -> Self {
        Self {
            tokens_per_s: 0.0,
            time_rollout: 0.0,
            time_judge: 0.0,
            time_advantage: 0.0,
            time_update: 0.0,
            update: UpdateStats {
                pi_old_s: 0.0,
                ..self.update
            },
            judge_latency: 0.0,
            ..self.clone()
        }
    }
}
