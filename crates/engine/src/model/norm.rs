//! RMSNorm: our differentiable kernel for training, candle's fused kernel for sampling
//! (candle's records no backward pass: docs/design.md §3).

use candle_core::{Result, Tensor};

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
        super::ops::rms_norm(x, &self.weight, self.eps)
    }
}
