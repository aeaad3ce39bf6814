//! Left-padded batches: token, position and attention-mask tensors for rows of different
//! lengths, so that a padded row computes exactly what it computes alone.

use candle_core::{Device, Result, Tensor};

use super::llama::MASKED;

/// Rows of tokens, left-padded to a common length T.
#[derive(Debug, Clone)]
pub struct Batch {
    /// (B, T) u32.
    pub tokens: Tensor,
    /// (B, T) u32: 0, 1, 2, ... from each row's first real token (pads at 0).
    pub positions: Tensor,
    /// (B, 1, T, T) additive causal + padding mask.
    pub mask: Tensor,
    /// Number of pad tokens in front of each row.
    pub pads: Vec<usize>,
}

impl Batch {
    /// Left-pads `rows` with `pad_id`. Every row must be non-empty.
    pub fn left_padded(rows: &[Vec<u32>], pad_id: u32, device: &Device) -> Result<Self> {
        let t = rows.iter().map(Vec::len).max().unwrap_or(0);
        if rows.is_empty() || rows.iter().any(Vec::is_empty) {
            candle_core::bail!("a batch needs at least one row and no empty rows");
        }
        let b = rows.len();
        let pads: Vec<usize> = rows.iter().map(|r| t - r.len()).collect();
        let mut tokens = Vec::with_capacity(b * t);
        let mut positions = Vec::with_capacity(b * t);
        for (row, &pad) in rows.iter().zip(&pads) {
            tokens.extend(std::iter::repeat_n(pad_id, pad));
            tokens.extend_from_slice(row);
            positions.extend(std::iter::repeat_n(0u32, pad));
            positions.extend(0..row.len() as u32);
        }
        Ok(Self {
            tokens: Tensor::from_vec(tokens, (b, t), device)?,
            positions: Tensor::from_vec(positions, (b, t), device)?,
            mask: attention_mask(&pads, 0, t, device)?,
            pads,
        })
    }

    /// (B, T).
    pub fn dims(&self) -> Result<(usize, usize)> {
        self.tokens.dims2()
    }
}

/// The additive mask for `t` new queries after `past` cached positions: query i (slot
/// past + i) sees key slot j when j <= past + i and j is not one of the row's `pads[b]`
/// leading pad slots.
///
/// # Shapes
/// → (B, 1, t, past + t) f32.
pub fn attention_mask(pads: &[usize], past: usize, t: usize, device: &Device) -> Result<Tensor> {
    let s = past + t;
    let mut data = Vec::with_capacity(pads.len() * t * s);
    for &pad in pads {
        for i in 0..t {
            data.extend((0..s).map(|j| {
                if j <= past + i && j >= pad {
                    0.0
                } else {
                    MASKED
                }
            }));
        }
    }
    Tensor::from_vec(data, (pads.len(), 1, t, s), device)
}
