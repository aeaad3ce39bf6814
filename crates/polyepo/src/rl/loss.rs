//! The policy loss: PPO's clipped surrogate (no critic) with clip-higher and dual clip,
//! three aggregations over tokens and sequences, and optional KL and entropy terms.
//! Variable names follow the PPO literature (`ratio`, `pg_losses`, `clipfrac`).

use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};

/// How per-token losses become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    /// Mean over every response token of the mini-batch.
    TokenMean,
    /// Mean over tokens within a sequence, then over sequences.
    SeqMeanTokenMean,
    /// Sum over tokens within a sequence divided by the maximum response length, then mean
    /// over sequences (the paper's setting; no length bias either way).
    SeqMeanTokenSumNorm,
}

/// KL estimator against the reference policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlEstimator {
    /// log π − log π_ref.
    K1,
    /// exp(log π_ref − log π) − (log π_ref − log π) − 1 (unbiased, non-negative).
    K3,
}

/// Loss hyperparameters; defaults are the paper's (docs/design.md §1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// Lower clip ε_low: the ratio is kept ≥ 1 − ε_low.
    pub clip_low: f64,
    /// Upper clip ε_high ("clip-higher"): the ratio is kept ≤ 1 + ε_high.
    pub clip_high: f64,
    /// Dual clip c: for negative advantages the loss is at most −A·c (0 disables).
    pub dual_clip: f64,
    /// Token/sequence aggregation.
    pub aggregation: Aggregation,
    /// Weight of the KL penalty to the frozen reference (0 disables it and the reference).
    pub kl_coef: f64,
    /// KL estimator.
    pub kl_estimator: KlEstimator,
    /// Weight of the entropy bonus (0 disables).
    pub entropy_coef: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            clip_low: 0.2,
            clip_high: 0.28,
            dual_clip: 3.0,
            aggregation: Aggregation::SeqMeanTokenSumNorm,
            kl_coef: 0.0,
            kl_estimator: KlEstimator::K3,
            entropy_coef: 0.0,
        }
    }
}

/// Per-token inputs of the loss for one mini-batch, all (B, T) f32 except `advantages` (B).
#[derive(Debug)]
pub struct LossInputs<'a> {
    /// log π_θ of the taken tokens (differentiable).
    pub log_probs: &'a Tensor,
    /// log π_old of the taken tokens (from the sampling policy, constant).
    pub old_log_probs: &'a Tensor,
    /// Advantage of each sequence, broadcast to its tokens.
    pub advantages: &'a Tensor,
    /// 1 on response tokens, 0 on prompt and padding.
    pub mask: &'a Tensor,
    /// log π_ref, when a KL penalty is used.
    pub ref_log_probs: Option<&'a Tensor>,
    /// Per-token entropy (differentiable), when an entropy bonus is used.
    pub entropy: Option<&'a Tensor>,
    /// The maximum response length (for `seq-mean-token-sum-norm`).
    pub max_response_len: usize,
}

/// The loss and what to log about it.
#[derive(Debug)]
pub struct LossOutput {
    /// Scalar to differentiate.
    pub loss: Tensor,
    /// The policy-gradient part.
    pub pg_loss: f64,
    /// Fraction of response tokens whose ratio was clipped.
    pub clipfrac: f64,
    /// Mean of (ratio − 1) − log ratio over response tokens (≈ KL(π_old‖π)).
    pub approx_kl: f64,
    /// Aggregated KL to the reference (0 without one).
    pub ref_kl: f64,
}

/// Aggregates a (B, T) per-token quantity under the mask.
pub fn aggregate(
    values: &Tensor,
    mask: &Tensor,
    mode: Aggregation,
    max_response_len: usize,
) -> Result<Tensor> {
    let masked = (values * mask)?;
    match mode {
        Aggregation::TokenMean => {
            masked.sum_all()? / mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64
        }
        Aggregation::SeqMeanTokenMean => {
            let per_seq = masked.sum(1)?.div(&mask.sum(1)?.clamp(1.0, f64::MAX)?)?;
            per_seq.mean_all()
        }
        Aggregation::SeqMeanTokenSumNorm => {
            (masked.sum(1)? / max_response_len.max(1) as f64)?.mean_all()
        }
    }
}

/// PPO's clipped surrogate with dual clip, plus KL and entropy terms.
pub fn ppo_loss(inputs: &LossInputs<'_>, cfg: &LossConfig) -> Result<LossOutput> {
    let mask = inputs.mask;
    let advantages = inputs
        .advantages
        .unsqueeze(1)?
        .broadcast_as(inputs.log_probs.shape())?; // (B, T)
    let log_ratio = (inputs.log_probs - inputs.old_log_probs)?;
    let ratio = log_ratio.exp()?;
    let neg_adv = advantages.neg()?;
    let pg_losses1 = (&neg_adv * &ratio)?;
    let pg_losses2 = (&neg_adv * ratio.clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high)?)?;
    let clipped = pg_losses1.maximum(&pg_losses2)?;
    let pg_losses = if cfg.dual_clip > 0.0 {
        // For A < 0 the surrogate is also bounded by −A·c, so a huge ratio cannot blow it up.
        let pg_losses3 = (&neg_adv * cfg.dual_clip)?;
        let dual = clipped.minimum(&pg_losses3)?;
        let negative = advantages.lt(0.0)?.to_dtype(DType::F32)?;
        ((&negative * dual)? + ((1.0 - &negative)? * &clipped)?)?
    } else {
        clipped
    };
    let agg = |v: &Tensor| aggregate(v, mask, cfg.aggregation, inputs.max_response_len);
    let pg_loss = agg(&pg_losses)?;
    let mut loss = pg_loss.clone();
    let mut ref_kl = 0.0;
    if let (Some(ref_lp), true) = (inputs.ref_log_probs, cfg.kl_coef > 0.0) {
        let kl = match cfg.kl_estimator {
            KlEstimator::K1 => (inputs.log_probs - ref_lp)?,
            KlEstimator::K3 => {
                let d = (ref_lp - inputs.log_probs)?;
                ((d.exp()? - &d)? - 1.0)?
            }
        };
        let kl = agg(&kl)?;
        ref_kl = kl.to_scalar::<f32>()? as f64;
        loss = (loss + (kl * cfg.kl_coef)?)?;
    }
    if let (Some(entropy), true) = (inputs.entropy, cfg.entropy_coef > 0.0) {
        loss = (loss - (agg(entropy)? * cfg.entropy_coef)?)?;
    }
    let tokens = mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
    let clipfrac = (pg_losses2.gt(&pg_losses1)?.to_dtype(DType::F32)? * mask)?
        .sum_all()?
        .to_scalar::<f32>()? as f64
        / tokens;
    let approx_kl = (((&ratio - 1.0)? - &log_ratio)? * mask)?
        .sum_all()?
        .to_scalar::<f32>()? as f64
        / tokens;
    Ok(LossOutput {
        pg_loss: pg_loss.to_scalar::<f32>()? as f64,
        loss,
        clipfrac,
        approx_kl,
        ref_kl,
    })
}
