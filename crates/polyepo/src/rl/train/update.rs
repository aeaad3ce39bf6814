//! The policy update: PPO epochs over mini-batches of whole prompt groups, each an
//! AdamW step on the clipped surrogate with the generations' advantages.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::error::{TrainError, TrainResult};
use super::policy::Policy;
use super::rollout::{RolloutBatch, Sample, SampleGroup};
use super::sequences::response_log_probs;
use crate::rl::config::{OptimSection, TrainConfig};
use crate::rl::loss::{Aggregation, LossConfig, LossInputs, ppo_loss};
use candle_core::backprop::GradStore;
use polyepo_engine::model::NamedVar;
use polyepo_engine::model::logprobs::token_entropy;
use polyepo_engine::optim::{AdamW, grad_norm};

/// The update's statistics, averaged over the step's optimizer steps and logged as they
/// are in `metrics.jsonl` (flattened into [`super::StepMetrics`]): a new statistic is one
/// field here and its line in [`UpdateStats::add`].
#[serde_with::apply(f64 => #[serde(deserialize_with = "super::metrics::null_as_nan")])]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStats {
    /// Policy-gradient loss.
    #[serde(rename = "losses/policy_loss")]
    pub pg_loss: f64,
    /// Clipped-token fraction.
    #[serde(rename = "losses/clipfrac")]
    pub clipfrac: f64,
    /// KL(π_old‖π) estimate (over the tokens the update was computed on: see
    /// [`UpdateSettings::skip_zero_advantage`]; the same for `clipfrac`, `ref_kl`, `entropy`).
    #[serde(rename = "losses/approx_kl")]
    pub approx_kl: f64,
    /// KL to the reference.
    #[serde(rename = "losses/ref_kl")]
    pub ref_kl: f64,
    /// Mean token entropy of the policy on its responses.
    #[serde(rename = "losses/entropy")]
    pub entropy: f64,
    /// Global gradient norm before clipping.
    #[serde(rename = "losses/grad_norm")]
    pub grad_norm: f64,
    /// Learning rate of the last step.
    #[serde(rename = "charts/learning_rate")]
    pub lr: f64,
    /// Seconds computing π_old (and π_ref) before the first optimizer step (absent from
    /// runs made before it was logged).
    #[serde(rename = "time/pi_old", default)]
    pub pi_old_s: f64,
}

impl UpdateStats {
    /// Adds one optimizer step's statistics: the loss and the gradient norm over every
    /// step, the token statistics over the steps that computed any sequence (`measured`).
    fn add(&mut self, s: &UpdateStats, measured: bool) {
        self.pg_loss += s.pg_loss;
        self.grad_norm += s.grad_norm;
        self.lr = s.lr;
        if measured {
            self.clipfrac += s.clipfrac;
            self.approx_kl += s.approx_kl;
            self.ref_kl += s.ref_kl;
            self.entropy += s.entropy;
        }
    }

    /// Turns the sums of [`UpdateStats::add`] into means over `steps` optimizer steps, of
    /// which `measured` computed any sequence.
    fn mean(mut self, steps: f64, measured: f64) -> Self {
        let measured = measured.max(1.0);
        self.pg_loss /= steps;
        self.grad_norm /= steps;
        self.clipfrac /= measured;
        self.approx_kl /= measured;
        self.ref_kl /= measured;
        self.entropy /= measured;
        self
    }
}

/// What the update reads from the configuration: the loss, the optimizer schedule, and the
/// rollout settings that shaped the samples.
#[derive(Debug, Clone, Copy)]
pub struct UpdateSettings<'a> {
    /// Sampling temperature, applied to the training log-probs as it was when sampling.
    pub temperature: f64,
    /// Longest response (the `seq-mean-token-sum-norm` divisor).
    pub max_response_len: usize,
    /// The policy loss.
    pub loss: &'a LossConfig,
    /// Optimizer, clipping, epochs and mini-batches.
    pub optim: &'a OptimSection,
    /// Leave sequences whose advantage is exactly zero out of the forward and backward
    /// passes (π_old included). Their clipped-surrogate term is zero, so the gradient is the
    /// same while the mini-batch's normaliser still counts them; with sparse rewards most
    /// groups are all-zero, so this is most of the update's time. Only exact when the loss
    /// has no term without the advantage: `of` sets it when `loss.kl_coef` and
    /// `loss.entropy_coef` are zero. An all-zero mini-batch still takes its (zero-gradient)
    /// AdamW step, since momentum moves the weights.
    pub skip_zero_advantage: bool,
}

impl<'a> UpdateSettings<'a> {
    /// The update settings of `cfg`.
    pub fn of(cfg: &'a TrainConfig) -> Self {
        Self {
            temperature: cfg.rollout.temperature,
            max_response_len: cfg.rollout.max_new_tokens,
            loss: &cfg.loss,
            optim: &cfg.optim,
            skip_zero_advantage: cfg.loss.kl_coef == 0.0 && cfg.loss.entropy_coef == 0.0,
        }
    }
}

/// Runs the configured PPO epochs over a step's rollout at RL step `step` (1-based, for
/// errors): plan the mini-batches, score π_old (and π_ref) before the weights move, then
/// one AdamW step per mini-batch and epoch.
pub fn ppo_update(
    policy: &Policy,
    opt: &mut AdamW,
    batch: &RolloutBatch,
    settings: &UpdateSettings<'_>,
    step: u64,
) -> TrainResult<UpdateStats> {
    let plans = plan_minibatches(batch, settings);
    let start = std::time::Instant::now();
    let mut scored = score_before_update(policy, &plans, settings.temperature)?;
    let mut stats = UpdateStats {
        pi_old_s: start.elapsed().as_secs_f64(),
        ..UpdateStats::default()
    };
    // Optimizer steps, and those that computed any sequence (the statistics' denominator).
    let (mut count, mut measured) = (0.0, 0.0);
    for _epoch in 0..settings.optim.ppo_epochs {
        for (plan, before) in plans.iter().zip(&mut scored) {
            let s = minibatch_step(policy, opt, plan, before, settings, step)?;
            let computed = !plan.active.is_empty();
            stats.add(&s, computed);
            count += 1.0;
            measured += f64::from(u8::from(computed));
        }
    }
    Ok(stats.mean(count, measured))
}

/// One optimizer step's sequences: the whole mini-batch's groups (whose sizes normalise the
/// loss) and the sequences computed (all, or those with a non-zero advantage) in
/// micro-batches.
struct MinibatchPlan<'s> {
    groups: &'s [SampleGroup],
    active: Vec<&'s Sample>,
    micro_batch: usize,
}

impl<'s> MinibatchPlan<'s> {
    /// Every sequence of the mini-batch, computed or not.
    fn all(&self) -> impl Iterator<Item = &'s Sample> {
        self.groups.iter().flat_map(|g| g.samples())
    }

    /// The number of sequences of the mini-batch.
    fn len(&self) -> usize {
        self.groups.iter().map(|g| g.samples().len()).sum()
    }

    /// The computed sequences, one forward and backward pass per slice.
    fn micro_batches(&self) -> impl Iterator<Item = &[&'s Sample]> {
        self.active.chunks(self.micro_batch.max(1))
    }
}

/// Mini-batches of whole prompt groups, `optim.minibatches` of them.
fn plan_minibatches<'s>(
    batch: &'s RolloutBatch,
    settings: &UpdateSettings<'_>,
) -> Vec<MinibatchPlan<'s>> {
    let per_minibatch = batch
        .groups()
        .len()
        .div_ceil(settings.optim.minibatches)
        .max(1);
    batch
        .groups()
        .chunks(per_minibatch)
        .map(|groups| {
            let active: Vec<&Sample> = groups
                .iter()
                .flat_map(|g| g.samples())
                .filter(|s| !settings.skip_zero_advantage || s.advantage != 0.0)
                .collect();
            let micro_batch = match settings.optim.micro_batch {
                0 => active.len(),
                m => m,
            };
            MinibatchPlan {
                groups,
                active,
                micro_batch,
            }
        })
        .collect()
}

/// What a mini-batch's sequences scored before the update: π_old per micro-batch (`None`
/// until the first pass fills it) and π_ref (empty without a reference model).
struct ScoredBefore {
    old: Vec<Option<Tensor>>,
    reference: Vec<Tensor>,
}

/// π_old (and π_ref) for every micro-batch, before any update changes the weights. The
/// first mini-batch's π_old is its first training pass itself (the weights have not moved
/// yet, so it is exactly π_θ there): one forward pass fewer per step.
fn score_before_update(
    policy: &Policy,
    plans: &[MinibatchPlan<'_>],
    temperature: f64,
) -> TrainResult<Vec<ScoredBefore>> {
    let frozen = policy.model.frozen();
    let pad = policy.tokenizer.pad_id;
    let mut out = Vec::with_capacity(plans.len());
    for (i, plan) in plans.iter().enumerate() {
        let mut scored = ScoredBefore {
            old: Vec::new(),
            reference: Vec::new(),
        };
        for chunk in plan.micro_batches() {
            let (p, r) = tokens(chunk);
            scored.old.push(if i == 0 {
                None
            } else {
                Some(response_log_probs(&frozen, &p, &r, pad, temperature)?.log_probs)
            });
            if let Some(ref_model) = &policy.reference {
                scored
                    .reference
                    .push(response_log_probs(ref_model, &p, &r, pad, temperature)?.log_probs);
            }
        }
        out.push(scored);
    }
    Ok(out)
}

/// The prompt and response tokens of `samples`.
fn tokens(samples: &[&Sample]) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    (
        samples.iter().map(|s| s.prompt_tokens.clone()).collect(),
        samples.iter().map(|s| s.response_tokens.clone()).collect(),
    )
}

/// One AdamW step on a mini-batch: the gradient accumulated over its micro-batches, each
/// weighted by its share of the mini-batch's tokens (token mean) or sequences (per-sequence
/// means), so that the step is the whole mini-batch's. The statistics average over the
/// computed tokens.
fn minibatch_step(
    policy: &Policy,
    opt: &mut AdamW,
    plan: &MinibatchPlan<'_>,
    before: &mut ScoredBefore,
    settings: &UpdateSettings<'_>,
    step: u64,
) -> TrainResult<UpdateStats> {
    let UpdateSettings {
        temperature,
        max_response_len,
        loss,
        optim,
        ..
    } = *settings;
    let pad = policy.tokenizer.pad_id;
    // The normaliser counts every sequence, skipped or not: the same loss as computing all
    // of them.
    let mb_tokens = response_tokens(plan.all()).max(1) as f64;
    let active_tokens = response_tokens(plan.active.iter().copied()).max(1) as f64;
    let active_share = plan.active.len().max(1) as f64 / plan.len() as f64;
    let mut grads: Option<GradStore> = None;
    let mut stats = UpdateStats::default();
    let mut entropy_sum = 0.0;
    for (c, chunk) in plan.micro_batches().enumerate() {
        let (p, r) = tokens(chunk);
        let scored = response_log_probs(&policy.model, &p, &r, pad, temperature)?;
        let old_log_probs = before.old[c].get_or_insert_with(|| scored.log_probs.detach());
        let advantages = Tensor::from_vec(
            chunk.iter().map(|s| s.advantage as f32).collect::<Vec<_>>(),
            chunk.len(),
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
                old_log_probs,
                advantages: &advantages,
                mask: &scored.mask,
                ref_log_probs: before.reference.get(c),
                entropy: entropy.as_ref(),
                max_response_len,
            },
            loss,
        )?;
        let chunk_tokens = response_tokens(chunk.iter().copied()) as f64;
        let token_share = chunk_tokens / mb_tokens;
        let stat_share = chunk_tokens / active_tokens;
        let share = match loss.aggregation {
            Aggregation::TokenMean => token_share,
            _ => chunk.len() as f64 / plan.len() as f64,
        };
        let weighted = if share == 1.0 {
            out.loss
        } else {
            (out.loss * share)?
        };
        grads = Some(accumulate(grads, weighted.backward()?, &policy.vars)?);
        stats.pg_loss += share * out.pg_loss;
        stats.clipfrac += stat_share * out.clipfrac;
        stats.approx_kl += stat_share * out.approx_kl;
        stats.ref_kl += share / active_share * out.ref_kl;

        // Entropy for the log, from the same logits without a graph.
        let ent = match &entropy {
            Some(e) => e.detach(),
            None => token_entropy(&scored.logits.detach())?,
        };
        entropy_sum += (ent * &scored.mask)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
    }
    // An all-zero mini-batch still steps: AdamW's momentum moves the weights.
    let grads = match grads {
        Some(grads) => grads,
        None => zero_grads(&policy.vars)?,
    };
    let norm = grad_norm(&policy.vars, &grads)?;
    let scale = if optim.grad_clip > 0.0 && norm > optim.grad_clip {
        optim.grad_clip / norm
    } else {
        1.0
    };
    let lr = optim.schedule.lr(optim.adamw.lr, opt.steps_taken());
    // One non-finite value would poison every weight: stop before the step.
    for (quantity, value) in [("policy loss", stats.pg_loss), ("gradient norm", norm)] {
        if !value.is_finite() {
            return Err(TrainError::NonFinite {
                step,
                quantity: quantity.into(),
                value,
            });
        }
    }
    opt.step(&grads, lr, scale)?;
    stats.entropy = entropy_sum / active_tokens;
    stats.grad_norm = norm;
    stats.lr = lr;
    Ok(stats)
}

/// Response tokens in `samples` (the tokens the loss is taken over).
fn response_tokens<'s>(samples: impl Iterator<Item = &'s Sample>) -> usize {
    samples.map(|s| s.response_tokens.len()).sum()
}

/// A zero gradient for every variable: the step of a mini-batch whose every advantage is
/// zero (candle's `GradStore` has no public constructor, so it comes from a backward pass
/// of a zero-weighted sum; the zero is a tensor, since backprop drops a constant `* 0.0`
/// and AdamW would then skip the variables instead of stepping them).
fn zero_grads(vars: &[NamedVar]) -> candle_core::Result<GradStore> {
    let mut total: Option<Tensor> = None;
    for (_, var) in vars {
        let sum = var.as_tensor().sum_all()?;
        let term = sum.mul(&sum.zeros_like()?)?;
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    match total {
        Some(t) => t.backward(),
        None => Tensor::zeros((), DType::F32, &candle_core::Device::Cpu)?.backward(),
    }
}

/// `total` plus `more`, variable by variable (the first micro-batch's gradients as they are).
fn accumulate(
    total: Option<GradStore>,
    more: GradStore,
    vars: &[NamedVar],
) -> candle_core::Result<GradStore> {
    let Some(mut total) = total else {
        return Ok(more);
    };
    for (_, var) in vars {
        if let Some(g) = more.get(var.as_tensor()) {
            let sum = match total.get(var.as_tensor()) {
                Some(t) => (t + g)?,
                None => g.clone(),
            };
            total.insert(var.as_tensor(), sum);
        }
    }
    Ok(total)
}
