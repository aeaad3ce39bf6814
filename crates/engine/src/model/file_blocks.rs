//! Frozen weights multiplied straight from the model file's quantized blocks, and the one
//! place that picks the kernel of a product with a frozen weight.
//!
//! A GGUF model is trained against the f32 dequantization of its blocks; decoding reads
//! every weight once per token, so reading the blocks (Q4_1: 0.625 bytes a weight) instead
//! of the f32 copy (4 bytes) is most of decoding's speed. The blocks kernels multiply by
//! bit-identical weights ([`crate::kernels::blocks`]), so this costs no precision: a sampled
//! token's log-prob differs from the training path's only by the order of summation.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, TensorId};

use crate::kernels::blocks::BlockWeights;

/// The file's blocks of one weight tensor, bound to that very tensor: they are used only
/// while the layer still holds it (a merged adapter, a full fine-tune's variable or a cast
/// makes a new tensor, whose id differs, and the f32 weight takes over).
#[derive(Debug, Clone)]
pub struct WeightBlocks {
    of: TensorId,
    blocks: Arc<BlockWeights>,
}

impl WeightBlocks {
    /// Binds `blocks` to `weight` when the blocks decode to it bit for bit (a CPU f32
    /// weight); `None` otherwise.
    pub fn bind(weight: &Tensor, blocks: BlockWeights) -> Result<Option<Self>> {
        if !weight.device().is_cpu() || weight.dtype() != DType::F32 || weight.is_variable() {
            return Ok(None);
        }
        let (rows, cols) = weight.dims2()?;
        if blocks.shape() != (rows, cols) {
            return Ok(None);
        }
        let data = weight.flatten_all()?.to_vec1::<f32>()?;
        Ok(blocks.decodes_to(&data).then(|| Self {
            of: weight.id(),
            blocks: Arc::new(blocks),
        }))
    }

    /// Whether `weight` is the tensor these blocks were bound to.
    pub fn binds(&self, weight: &Tensor) -> bool {
        weight.id() == self.of
    }

    /// The blocks, if `weight` is the tensor they were bound to.
    fn of(&self, weight: &Tensor) -> Option<&BlockWeights> {
        self.binds(weight).then_some(&*self.blocks)
    }
}

/// A product with a weight on the engine's kernels, as a candle op without a backward pass
/// (used on inputs outside any graph).
struct WeightProduct<'a> {
    blocks: Option<&'a BlockWeights>,
}

impl CustomOp2 for WeightProduct<'_> {
    fn name(&self) -> &'static str {
        "weight-product"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        super::ops::product_fwd(s1, l1, s2, l2, self.blocks, "weight-product")
    }
}

/// `x · wᵀ` for a weight `w` (out, in) of a linear layer, with the kernel its shape calls for:
/// inside an autograd graph [`super::ops::frozen_product`] (which gives a trained weight its
/// gradient and a frozen one none); outside one, [`untracked_product`].
///
/// # Shapes
/// x: (M, in), w: (out, in) → (M, out).
pub fn weight_product(x: &Tensor, w: &Tensor, blocks: Option<&WeightBlocks>) -> Result<Tensor> {
    if x.track_op() || w.track_op() {
        return super::ops::frozen_product(x, w);
    }
    untracked_product(x, w, blocks)
}

/// `x · wᵀ` of an input outside any autograd graph and a weight that is not trained, on a
/// CPU in f32 or f64: the few-rows kernels for ≤ [`MAX_FEW_ROWS`](crate::kernels::MAX_FEW_ROWS) f32 rows (from the file's
/// blocks when `blocks` belong to `w`), gemm without a zero-filled output otherwise
/// ([`super::ops::product_fwd`]); candle's matmul on other devices and dtypes.
///
/// # Shapes
/// x: (M, in), w: (out, in) → (M, out).
pub fn untracked_product(x: &Tensor, w: &Tensor, blocks: Option<&WeightBlocks>) -> Result<Tensor> {
    if !super::ops::engine_product_fits(x, w) {
        return x.matmul(&w.t()?);
    }
    let op = WeightProduct {
        blocks: blocks.and_then(|b| b.of(w)),
    };
    x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &op)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use crate::kernels::MAX_FEW_ROWS;

    use super::*;
    use crate::kernels::blocks::BlockFormat;
    use candle_core::quantized::{GgmlDType, QTensor};

    fn blocks_of(t: &Tensor) -> (Tensor, BlockWeights) {
        let q = QTensor::quantize(t, GgmlDType::Q4_1).unwrap();
        let (n, k) = t.dims2().unwrap();
        let b = BlockWeights::from_ggml(BlockFormat::Q4_1, n, k, &q.data().unwrap()).unwrap();
        (q.dequantize(&Device::Cpu).unwrap(), b)
    }

    #[test]
    fn blocks_bind_only_to_the_weight_they_decode_to() {
        let t = Tensor::randn(0f32, 1.0, (8, 64), &Device::Cpu).unwrap();
        let (w, b) = blocks_of(&t);
        assert!(
            WeightBlocks::bind(&t, b.clone()).unwrap().is_none(),
            "t is not the decoded weight"
        );
        let bound = WeightBlocks::bind(&w, b).unwrap().unwrap();
        assert!(bound.of(&w).is_some() && bound.of(&w.detach()).is_some());
        // A new tensor with the same values (a cast, a merge) is not the bound weight.
        assert!(bound.of(&(w.clone() * 1.0).unwrap()).is_none());
    }

    #[test]
    fn few_rows_products_equal_candles_matmul() {
        let t = Tensor::randn(0f32, 1.0, (40, 96), &Device::Cpu).unwrap();
        let (w, b) = blocks_of(&t);
        let bound = WeightBlocks::bind(&w, b).unwrap();
        for m in [1, 5, MAX_FEW_ROWS, MAX_FEW_ROWS + 1] {
            let x = Tensor::randn(0f32, 1.0, (m, 96), &Device::Cpu).unwrap();
            let want = x.matmul(&w.t().unwrap()).unwrap();
            for blocks in [None, bound.as_ref()] {
                let got = untracked_product(&x, &w, blocks).unwrap();
                let d = crate::parity::max_abs(&(&got - &want).unwrap()).unwrap();
                assert!(d < 1e-4, "m={m} blocks={}: {d}", blocks.is_some());
            }
        }
    }
}
