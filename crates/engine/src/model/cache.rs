//! The key/value cache for decoding: preallocated per layer, written in place, one shared
//! length (rows differ only by left padding, which the attention mask hides).

use candle_core::{DType, Device, Result, Tensor};

use super::config::LlamaConfig;

/// Keys and values of every layer for positions `0..len()`.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>, // each (B, KV, capacity, D)
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Room for `capacity` positions of `batch` rows.
    pub fn new(
        cfg: &LlamaConfig,
        batch: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (batch, cfg.num_key_value_heads, capacity, cfg.head_dim);
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, dtype, device)?,
                    Tensor::zeros(shape, dtype, device)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            len: 0,
            capacity,
        })
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends layer `layer`'s new keys and values and returns all cached ones.
    ///
    /// # Shapes
    /// k, v: (B, KV, T, D) → two (B, KV, len + T, D) views.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        if self.len + t > self.capacity {
            candle_core::bail!(
                "KV cache overflow: {} + {t} positions exceed capacity {}",
                self.len,
                self.capacity
            );
        }
        let (kc, vc) = &self.layers[layer];
        kc.slice_set(&k.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.contiguous()?, 2, self.len)?;
        Ok((
            kc.narrow(2, 0, self.len + t)?,
            vc.narrow(2, 0, self.len + t)?,
        ))
    }

    /// A cache of `rows.len()` rows with room for `capacity` positions, row i holding a copy
    /// of this cache's row `rows[i]`: a prompt sampled N times is prefilled once.
    ///
    /// # Shapes
    /// rows: (B',) u32 → layers (B', KV, capacity, D).
    pub fn gather(&self, rows: &Tensor, capacity: usize) -> Result<Self> {
        if capacity < self.len {
            candle_core::bail!(
                "KV cache gather: capacity {capacity} is below the {} cached positions",
                self.len
            );
        }
        let b = rows.dim(0)?;
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| {
                let grow = |t: &Tensor| -> Result<Tensor> {
                    let (_, kv, _, d) = t.dims4()?;
                    let out = Tensor::zeros((b, kv, capacity, d), t.dtype(), t.device())?;
                    let cached = t.narrow(2, 0, self.len)?.contiguous()?;
                    out.slice_set(&cached.index_select(rows, 0)?, 2, 0)?;
                    Ok(out)
                };
                Ok((grow(k)?, grow(v)?))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            len: self.len,
            capacity,
        })
    }

    /// Marks `t` more positions as filled, once every layer has appended them.
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}
