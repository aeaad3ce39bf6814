//! A linear layer `y = x Wᵀ + b`, optionally with a LoRA adapter `+ (α/r) · x Aᵀ Bᵀ`.

use candle_core::{Result, Tensor};

use super::file_blocks::{WeightBlocks, weight_product};
use super::lora_product::lora_product;

/// A low-rank adapter: A is (r, in), B is (out, r); only these two are trained.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// Down projection (r, in).
    pub a: Tensor,
    /// Up projection (out, r); starts at zero so the adapted model equals the base.
    pub b: Tensor,
    /// α / r.
    pub scale: f64,
}

/// A dense layer whose weight follows the HF (out, in) layout.
#[derive(Debug, Clone)]
pub struct Linear {
    /// (out, in).
    pub weight: Tensor,
    /// (out,), Qwen2's q/k/v projections only.
    pub bias: Option<Tensor>,
    /// The adapter, when LoRA targets this layer.
    pub lora: Option<LoraAdapter>,
    /// The model file's blocks of `weight`, for products of a few rows (decoding): see
    /// [`super::file_blocks`]. Bound to the loaded tensor, so unused once it is replaced.
    pub(crate) blocks: Option<WeightBlocks>,
}

impl Linear {
    /// A plain layer.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
            blocks: None,
        }
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// # Shapes
    /// x: (B, T, in) → (B, T, out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d_in) = x.dims3()?;
        let x2 = x.reshape((b * t, d_in))?;
        let adapted = match &self.lora {
            Some(l) => lora_product(&x2, &self.weight, &l.a, &l.b, l.scale)?,
            None => None,
        };
        let mut y = match adapted {
            Some(y) => y,
            None => {
                let mut y = weight_product(&x2, &self.weight, self.blocks.as_ref())?;
                if let Some(lora) = &self.lora {
                    // (B·T, in) · (in, r) · (r, out): the rank-r path never forms (out, in).
                    let delta = x2.matmul(&lora.a.t()?)?.matmul(&lora.b.t()?)?;
                    y = (y + (delta * lora.scale)?)?;
                }
                y
            }
        };
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        y.reshape((b, t, self.out_dim()))
    }

    /// W + (α/r)·B·A: the weight with the adapter folded in, for export and fast sampling.
    pub fn merged_weight(&self) -> Result<Tensor> {
        match &self.lora {
            None => Ok(self.weight.clone()),
            Some(l) => self.weight.detach() + (l.b.detach().matmul(&l.a.detach())? * l.scale)?,
        }
    }
}
