//! RMSNorm, in a differentiable composition for training and candle's fused kernel for
//! sampling (the fused kernel records no backward pass: DESIGN.md §3).

use candle_core::{D, Result, Tensor};

/// y = x / sqrt(mean(x²) + ε) · w over the last dimension.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// Per-channel gain.
    pub weight: Tensor,
    /// ε.
    pub eps: f64,
}

impl RmsNorm {
    /// `fused = true` uses candle's kernel (inference only; no gradient).
    pub fn forward(&self, x: &Tensor, fused: bool) -> Result<Tensor> {
        if fused {
            let x = x.contiguous()?;
            return candle_nn::ops::rms_norm(&x, &self.weight, self.eps as f32);
        }
        let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        x.broadcast_mul(&inv_rms)?.broadcast_mul(&self.weight)
    }
}
