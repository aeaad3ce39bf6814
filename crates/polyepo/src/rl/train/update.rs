//! The policy update: PPO epochs over mini-batches of whole prompt groups, each an
//! AdamW step on the clipped surrogate with the generations' advantages.

use candle_core::{DType, Tensor};

use super::error::{TrainError, TrainResult};
use super::policy::Policy;
use super::rollout::Sample;
use super::sequences::response_log_probs;
use crate::rl::config::{OptimSection, TrainConfig};
use crate::rl::loss::{LossConfig, LossInputs, ppo_loss};
use polyepo_engine::model::logprobs::token_entropy;
use polyepo_engine::optim::{AdamW, grad_norm};

/// Averages over the step's optimizer steps.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateStats {
    /// Policy-gradient loss.
    pub pg_loss: f64,
    /// Clipped-token fraction.
    pub clipfrac: f64,
    /// KL(π_old‖π) estimate.
    pub approx_kl: f64,
    /// KL to the reference.
    pub ref_kl: f64,
    /// Mean token entropy.
    pub entropy: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Seconds computing π_old (and π_ref) before the first optimizer step.
    pub pi_old_s: f64,
}

/// What the update reads from the configuration: the loss, the optimizer schedule, and the
/// rollout settings that shaped the samples.
#[derive(Debug, Clone, Copy)]
pub struct UpdateSettings<'a> {
    /// Generations per prompt N (mini-batches hold whole groups).
    pub group_size: usize,
    /// Sampling temperature, applied to the training log-probs as it was when sampling.
    pub temperature: f64,
    /// Longest response (the `seq-mean-token-sum-norm` divisor).
    pub max_response_len: usize,
    /// The policy loss.
    pub loss: &'a LossConfig,
    /// Optimizer, clipping, epochs and mini-batches.
    pub optim: &'a OptimSection,
}

impl<'a> UpdateSettings<'a> {
    /// The update settings of `cfg`.
    pub fn of(cfg: &'a TrainConfig) -> Self {
        Self {
            group_size: cfg.rollout.samples_per_prompt,
            temperature: cfg.rollout.temperature,
            max_response_len: cfg.rollout.max_new_tokens,
            loss: &cfg.loss,
            optim: &cfg.optim,
        }
    }
}

/// Runs the configured PPO epochs over `samples` (grouped by prompt, N per group).
pub fn ppo_update(
    policy: &Policy,
    opt: &mut AdamW,
    samples: &[Sample],
    settings: &UpdateSettings<'_>,
) -> TrainResult<UpdateStats> {
    let UpdateSettings {
        group_size: n,
        temperature,
        max_response_len,
        loss,
        optim,
    } = *settings;
    let groups = samples.len() / n;
    let per_minibatch = groups.div_ceil(optim.minibatches) * n;
    let minibatches: Vec<&[Sample]> = samples.chunks(per_minibatch).collect();
    let pad = policy.tokenizer.pad_id;
    let tokens = |mb: &[Sample]| -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
        (
            mb.iter().map(|s| s.prompt_tokens.clone()).collect(),
            mb.iter().map(|s| s.response_tokens.clone()).collect(),
        )
    };

    // π_old (and π_ref) for every mini-batch, before any update changes the weights.
    let start = std::time::Instant::now();
    let frozen = policy.model.frozen();
    let mut old = Vec::with_capacity(minibatches.len());
    let mut reference = Vec::with_capacity(minibatches.len());
    for mb in &minibatches {
        let (p, r) = tokens(mb);
        old.push(response_log_probs(&frozen, &p, &r, pad, temperature)?.log_probs);
        if let Some(ref_model) = &policy.reference {
            reference.push(response_log_probs(ref_model, &p, &r, pad, temperature)?.log_probs);
        }
    }
    drop(frozen);

    let mut stats = UpdateStats {
        pi_old_s: start.elapsed().as_secs_f64(),
        ..UpdateStats::default()
    };
    let mut count = 0.0;
    for _epoch in 0..optim.ppo_epochs {
        for (i, mb) in minibatches.iter().enumerate() {
            let (p, r) = tokens(mb);
            let scored = response_log_probs(&policy.model, &p, &r, pad, temperature)?;
            let advantages = Tensor::from_vec(
                mb.iter().map(|s| s.advantage as f32).collect::<Vec<_>>(),
                mb.len(),
                policy.model.device(),
            )?;
            let entropy = if loss.entropy_coef > 0.0 {
                Some(token_entropy(&scored.logits)?)
            } else {
                None
            };
            let out = ppo_loss(
                &LossInputs {
                    log_probs: &scored.log_probs,
                    old_log_probs: &old[i],
                    advantages: &advantages,
                    mask: &scored.mask,
                    ref_log_probs: reference.get(i),
                    entropy: entropy.as_ref(),
                    max_response_len,
                },
                loss,
            )?;
            let grads = out.loss.backward()?;
            let norm = grad_norm(&policy.vars, &grads)?;
            let scale = if optim.grad_clip > 0.0 && norm > optim.grad_clip {
                optim.grad_clip / norm
            } else {
                1.0
            };
            let lr = optim.schedule.lr(optim.adamw.lr, opt.steps_taken());
            // One non-finite value would poison every weight: stop before the step.
            for (quantity, value) in [("policy loss", out.pg_loss), ("gradient norm", norm)] {
                if !value.is_finite() {
                    return Err(TrainError::NonFinite {
                        step: 0,
                        quantity: quantity.into(),
                        value,
                    });
                }
            }
            opt.step(&grads, lr, scale)?;

            // Entropy for the log, from the same logits without a graph.
            let ent = match &entropy {
                Some(e) => e.detach(),
                None => token_entropy(&scored.logits.detach())?,
            };
            let tokens_in_mb = scored.mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
            stats.entropy += (ent * &scored.mask)?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?
                / tokens_in_mb;
            stats.pg_loss += out.pg_loss;
            stats.clipfrac += out.clipfrac;
            stats.approx_kl += out.approx_kl;
            stats.ref_kl += out.ref_kl;
            stats.grad_norm += norm;
            stats.lr = lr;
            count += 1.0;
        }
    }
    for v in [
        &mut stats.pg_loss,
        &mut stats.clipfrac,
        &mut stats.approx_kl,
        &mut stats.ref_kl,
        &mut stats.entropy,
        &mut stats.grad_norm,
    ] {
        *v /= count;
    }
    Ok(stats)
}
