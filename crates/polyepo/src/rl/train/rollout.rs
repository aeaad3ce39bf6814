//! One step's experience: sample N generations per prompt, grade them, label their
//! strategies, and turn each group into per-generation advantages with setrl.

use std::time::Instant;

use setrl::{Group, Strategy};

use super::error::TrainResult;
use super::policy::Policy;
use crate::rl::config::{AlgorithmSection, RolloutSection};
use crate::rl::judge::{JudgeError, StrategyJudge};
use crate::rl::tasks::{Prompt, Task};
use polyepo_engine::sample::{SamplingParams, generate};

/// One generation with everything the update and the metrics need.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Index of its prompt group within the step.
    pub group: usize,
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
    /// Marginal set advantage (or the baseline algorithm's advantage).
    pub advantage: f64,
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
) -> TrainResult<(Vec<Sample>, StageSeconds)> {
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

    // Reward and strategy labels, one prompt group at a time.
    let start = Instant::now();
    let groups: Vec<(Prompt, Vec<String>)> = prompts
        .iter()
        .zip(generations.chunks(n))
        .map(|(p, chunk)| (p.clone(), chunk.iter().map(|c| c.text.clone()).collect()))
        .collect();
    // All groups of the batch at once: an LM judge runs its requests concurrently.
    let labelled = match judge {
        Some(j) => j.label_batch(&groups),
        None => groups
            .iter()
            .map(|_| Ok(vec![Strategy::Cluster(0); n]))
            .collect(),
    };
    let mut skipped = vec![false; prompts.len()];
    let mut samples = Vec::with_capacity(rows.len());
    for (g, ((prompt, chunk), labels)) in prompts
        .iter()
        .zip(generations.chunks(n))
        .zip(labelled)
        .enumerate()
    {
        let labels = match labels {
            Ok(l) => l,
            // The judge's `skip` policy: this prompt teaches nothing this step.
            Err(JudgeError::Skipped(_)) => {
                skipped[g] = true;
                vec![Strategy::Degenerate; n]
            }
            Err(e) => return Err(e.into()),
        };
        for (generation, strategy) in chunk.iter().zip(labels) {
            samples.push(Sample {
                group: g,
                prompt_tokens: encoded[g].clone(),
                response_tokens: generation.tokens.clone(),
                text: generation.text.clone(),
                reward: task.reward(prompt, &generation.text),
                strategy,
                advantage: 0.0,
            });
        }
    }
    times.judge = start.elapsed().as_secs_f64();

    // Advantages per group.
    let start = Instant::now();
    let method = algorithm.method(seed);
    for (g, group_samples) in samples.chunks_mut(n).enumerate() {
        if skipped[g] {
            continue;
        }
        let group = Group::new(
            group_samples.iter().map(|s| s.reward).collect(),
            group_samples.iter().map(|s| s.strategy).collect(),
        )?;
        let adv = method
            .reseeded(seed.wrapping_add(g as u64))
            .compute(&group)?;
        for (s, a) in group_samples.iter_mut().zip(adv.advantages) {
            s.advantage = a;
        }
    }
    times.advantage = start.elapsed().as_secs_f64();
    Ok((samples, times))
}
