//! One step's experience: sample N generations per prompt, grade them, label their
//! strategies, and turn each group into per-generation advantages with setrl. The result is
//! a [`RolloutBatch`]: one group of exactly N samples per prompt, so that everything after
//! (advantages, the update's mini-batches, the metrics) walks groups, never positions.

use std::time::Instant;

use setrl::{Group, Strategy};

use super::error::{TrainError, TrainResult};
use super::policy::Policy;
use crate::rl::config::{AlgorithmSection, RolloutSection};
use crate::rl::judge::outcome::JudgeFailure;
use crate::rl::judge::{JudgeError, StrategyJudge};
use crate::rl::tasks::{Prompt, Task};
use polyepo_engine::sample::{SamplingParams, generate};

/// One generation with everything the update and the metrics need.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Prompt tokens.
    pub prompt_tokens: Vec<u32>,
    /// Generated tokens (stop token included).
    pub response_tokens: Vec<u32>,
    /// Decoded response.
    pub text: String,
    /// Verifier reward.
    pub reward: f64,
    /// Strategy label (`Degenerate` for gibberish).
    pub strategy: Strategy,
    /// Marginal set advantage (or the baseline algorithm's advantage); zero in a skipped
    /// group.
    pub advantage: f64,
}

/// One prompt's N generations and whether the judge labelled them.
#[derive(Debug, Clone)]
pub struct SampleGroup {
    samples: Vec<Sample>,
    skipped: Option<JudgeFailure>,
}

impl SampleGroup {
    /// The generations, in sampling order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Why the judge skipped this group (`judge.failure_policy = "skip"`), if it did. A
    /// skipped group keeps advantage zero, so it adds nothing to the gradient, yet it still
    /// counts in the loss's normaliser and in the step's metrics as a prompt sampled.
    pub fn skipped(&self) -> Option<&JudgeFailure> {
        self.skipped.as_ref()
    }
}

/// A step's rollout: one [`SampleGroup`] of exactly `group_size` samples per prompt, in the
/// order of the step's prompts. The shape is checked once, here, so no consumer re-derives
/// groups from positions.
#[derive(Debug, Clone)]
pub struct RolloutBatch {
    group_size: usize,
    groups: Vec<SampleGroup>,
}

impl RolloutBatch {
    /// A batch of `groups`, each of which must hold `group_size` (> 0) samples.
    pub fn new(group_size: usize, groups: Vec<SampleGroup>) -> TrainResult<Self> {
        if group_size == 0 {
            return Err(TrainError::Shape("a group of 0 samples per prompt".into()));
        }
        if let Some((bad, g)) = groups
            .iter()
            .enumerate()
            .find(|(_, g)| g.samples.len() != group_size)
        {
            return Err(TrainError::Shape(format!(
                "group {bad} holds {} samples, not the {group_size} per prompt of rollout.samples_per_prompt",
                g.samples.len()
            )));
        }
        Ok(Self { group_size, groups })
    }

    /// Samples per group (N).
    pub fn group_size(&self) -> usize {
        self.group_size
    }

    /// The groups, one per prompt.
    pub fn groups(&self) -> &[SampleGroup] {
        &self.groups
    }

    /// Every sample, group after group.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.groups.iter().flat_map(|g| &g.samples)
    }

    /// Every sample, mutably (the shape cannot change through it): for callers that set
    /// advantages themselves, as the update's tests do.
    pub fn samples_mut(&mut self) -> impl Iterator<Item = &mut Sample> {
        self.groups.iter_mut().flat_map(|g| &mut g.samples)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.groups.len() * self.group_size
    }

    /// Whether the batch holds no groups.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Wall-clock seconds of each stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageSeconds {
    /// Sampling.
    pub rollout: f64,
    /// Reward and strategy labels.
    pub judge: f64,
    /// Advantages.
    pub advantage: f64,
}

/// Sample → reward → judge → advantage for one batch of prompts.
pub fn collect(
    policy: &Policy,
    task: &dyn Task,
    judge: Option<&dyn StrategyJudge>,
    prompts: &[Prompt],
    rollout: &RolloutSection,
    algorithm: &AlgorithmSection,
    seed: u64,
) -> TrainResult<(RolloutBatch, StageSeconds)> {
    let n = rollout.samples_per_prompt;
    let mut times = StageSeconds::default();

    // Sample: every prompt N times, in one batch.
    let start = Instant::now();
    let encoded: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| policy.encode_prompt(p))
        .collect::<TrainResult<_>>()?;
    let rows: Vec<Vec<u32>> = encoded
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), n))
        .collect();
    let params = SamplingParams {
        max_new_tokens: rollout.max_new_tokens,
        temperature: rollout.temperature,
        top_p: rollout.top_p,
        top_k: rollout.top_k,
        stop_strings: Vec::new(),
        seed,
        top_logprobs: 0,
    };
    let generations = generate(&policy.model, &policy.tokenizer, &rows, &params)?;
    times.rollout = start.elapsed().as_secs_f64();

    // Reward and strategy labels. The sampler returns one generation per row, N rows per
    // prompt in prompt order: this is the one place that reads that layout.
    let start = Instant::now();
    let texts: Vec<(Prompt, Vec<String>)> = prompts
        .iter()
        .zip(generations.chunks(n))
        .map(|(p, chunk)| (p.clone(), chunk.iter().map(|c| c.text.clone()).collect()))
        .collect();
    // All groups of the batch at once: an LM judge runs its requests concurrently.
    let labelled = match judge {
        Some(j) => j.label_batch(&texts),
        None => texts
            .iter()
            .map(|_| Ok(vec![Strategy::Cluster(0); n]))
            .collect(),
    };
    let mut groups = Vec::with_capacity(prompts.len());
    for (((prompt, prompt_tokens), chunk), labels) in prompts
        .iter()
        .zip(&encoded)
        .zip(generations.chunks(n))
        .zip(labelled)
    {
        let (labels, skipped) = match labels {
            Ok(l) => (l, None),
            // The judge's `skip` policy: this prompt teaches nothing this step.
            Err(JudgeError::Skipped(why)) => (vec![Strategy::Degenerate; n], Some(why)),
            Err(e) => return Err(e.into()),
        };
        let samples = chunk
            .iter()
            .zip(labels)
            .map(|(generation, strategy)| {
                let reward = task.reward(prompt, &generation.text);
                let strategy = algorithm.wrong_answers.label(reward, strategy);
                Sample {
                    prompt_tokens: prompt_tokens.clone(),
                    response_tokens: generation.tokens.clone(),
                    text: generation.text.clone(),
                    reward,
                    strategy,
                    advantage: 0.0,
                }
            })
            .collect();
        groups.push(SampleGroup { samples, skipped });
    }
    let mut batch = RolloutBatch::new(n, groups)?;
    times.judge = start.elapsed().as_secs_f64();

    // Advantages per labelled group.
    let start = Instant::now();
    let method = algorithm.method(seed);
    for (g, group) in batch.groups.iter_mut().enumerate() {
        if group.skipped.is_some() {
            continue;
        }
        let scored = Group::new(
            group.samples.iter().map(|s| s.reward).collect(),
            group.samples.iter().map(|s| s.strategy).collect(),
        )?;
        let adv = method
            .reseeded(seed.wrapping_add(g as u64))
            .compute(&scored)?;
        for (s, a) in group.samples.iter_mut().zip(adv.advantages) {
            s.advantage = a;
        }
    }
    times.advantage = start.elapsed().as_secs_f64();
    Ok((batch, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(len: usize) -> SampleGroup {
        let sample = Sample {
            prompt_tokens: vec![1, 2],
            response_tokens: vec![3],
            text: "x".into(),
            reward: 1.0,
            strategy: Strategy::Cluster(0),
            advantage: 0.0,
        };
        SampleGroup {
            samples: vec![sample; len],
            skipped: None,
        }
    }

    #[test]
    fn a_batch_holds_groups_of_exactly_n_samples() {
        let batch = RolloutBatch::new(3, vec![group(3), group(3)]).unwrap();
        assert_eq!((batch.len(), batch.groups().len()), (6, 2));
        assert_eq!(batch.samples().count(), 6);
        let err = RolloutBatch::new(3, vec![group(3), group(2)]).unwrap_err();
        assert!(err.to_string().contains("group 1 holds 2 samples"), "{err}");
        assert!(RolloutBatch::new(0, Vec::new()).is_err());
    }
}
