//! Per-token log-probabilities and entropies from logits, with differentiable ops only.

use candle_core::{D, DType, Result, Tensor};

/// log-sum-exp over the vocabulary, shifted by the (detached) max for stability.
fn log_sum_exp(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&max)
}

/// Half-precision logits are widened for the log-sum-exp; f32 and f64 are kept.
fn widened(logits: &Tensor) -> Result<Tensor> {
    match logits.dtype() {
        DType::F32 | DType::F64 => logits.contiguous(),
        _ => logits.to_dtype(DType::F32),
    }
}

/// log π(target) at every position.
///
/// # Shapes
/// logits: (B, T, V), targets: (B, T) u32 → (B, T), f32 (f64 for f64 logits).
pub fn token_log_probs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    super::ops::log_prob_at(&widened(logits)?, targets)
}

/// Entropy −Σ p log p of the next-token distribution at every position.
///
/// # Shapes
/// logits: (B, T, V) → (B, T), f32 (f64 for f64 logits).
pub fn token_entropy(logits: &Tensor) -> Result<Tensor> {
    let logits = widened(logits)?;
    let log_p = logits.broadcast_sub(&log_sum_exp(&logits)?)?;
    (log_p.exp()? * &log_p)?.sum(D::Minus1)?.neg()
}
