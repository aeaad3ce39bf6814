//! `x · Wᵀ + s · (x · Aᵀ) · Bᵀ` as one node of the autograd graph, for a frozen W and a
//! trained low-rank adapter (A, B).
//!
//! Composed from candle ops the adapted layer is five nodes (two products, a scale, an add,
//! the frozen product), and candle's backward starts each node's input gradient from a
//! zeroed tensor and adds into it: for the (M, out) outputs that is two full passes over
//! memory per node and per layer. As one node the backward is four small products and one
//! large one (the input's `g · W`), computed directly:
//! gB = s · gᵀ · (x Aᵀ), g_xa = s · g · B, gA = g_xaᵀ · x, gx = g · W + g_xa · A.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// The op: W (frozen) and s are the layer's; x, A and B are the node's inputs.
struct LoraProduct {
    w: Tensor,
    scale: f64,
}

impl CustomOp3 for LoraProduct {
    fn name(&self) -> &'static str {
        "lora-product"
    }
    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (storage, lw) = self.w.storage_and_layout();
        let candle_core::Storage::Cpu(w) = &*storage else {
            candle_core::bail!("lora-product: the weight is not on the CPU");
        };
        super::ops::lora_fwd(x, lx, w, lw, a, la, b, lb, self.scale)
    }
    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Detached operands: a gradient must not hold on to the forward graph (gradients
        // outlive it in the gradient store; that once kept 1.2 GiB of an RL step alive).
        let (x, a, b) = (&x.detach(), &a.detach(), &b.detach());
        let xa = x.matmul(&a.t()?)?; // (M, r)
        let g_b = (g.t()?.matmul(&xa)? * self.scale)?; // (out, r)
        let g_xa = (g.matmul(b)? * self.scale)?; // (M, r)
        let g_a = g_xa.t()?.matmul(x)?; // (r, in)
        let g_x = (g.matmul(&self.w)? + g_xa.matmul(a)?)?; // (M, in)
        Ok((Some(g_x), Some(g_a), Some(g_b)))
    }
}

/// `x · wᵀ + scale · (x · aᵀ) · bᵀ` with one graph node when w is frozen and the inputs are
/// CPU floats of one dtype; `None` where the composition must be used instead.
///
/// # Shapes
/// x: (M, in), w: (out, in), a: (r, in), b: (out, r) → (M, out).
pub fn lora_product(
    x: &Tensor,
    w: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
) -> Result<Option<Tensor>> {
    let fits = !w.track_op()
        && (x.track_op() || a.track_op() || b.track_op())
        && super::ops::engine_product_fits(x, w)
        && [a, b].iter().all(|t| t.dtype() == x.dtype());
    if !fits {
        return Ok(None);
    }
    let op = LoraProduct {
        w: w.detach().contiguous()?,
        scale,
    };
    Ok(Some(x.contiguous()?.apply_op3(
        &a.contiguous()?,
        &b.contiguous()?,
        op,
    )?))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn one_node_gives_the_compositions_value_and_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (6, 5), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f64, 1.0, (4, 5), &dev).unwrap();
        let a = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 5), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f64, 1.0, (4, 2), &dev).unwrap()).unwrap();
        let g = Tensor::randn(0f64, 1.0, (6, 4), &dev).unwrap();
        let h = x.as_tensor().sqr().unwrap(); // an input inside a graph
        let fused = lora_product(&h, &w, a.as_tensor(), b.as_tensor(), 1.5)
            .unwrap()
            .unwrap();
        let plain = (h.matmul(&w.t().unwrap()).unwrap()
            + (h.matmul(&a.as_tensor().t().unwrap())
                .unwrap()
                .matmul(&b.as_tensor().t().unwrap())
                .unwrap()
                * 1.5)
                .unwrap())
        .unwrap();
        let diff = |p: &Tensor, q: &Tensor| crate::parity::max_abs(&(p - q).unwrap()).unwrap();
        assert!(diff(&fused, &plain) < 1e-12);
        let gf = (fused * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &g).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &a, &b] {
            let (f, p) = (gf.get(v).unwrap(), gp.get(v).unwrap());
            assert!(diff(f, p) < 1e-10 && crate::parity::max_abs(p).unwrap() > 0.0);
        }
        // Regression: gradients built from the tracked operands kept the forward graph alive
        // (1.2 GiB more peak memory in an RL step). (x's gradient passes through candle's
        // own `sqr` backward, which does keep one.)
        assert!(!gf.get(&a).unwrap().track_op() && !gf.get(&b).unwrap().track_op());
        // A frozen input and frozen adapter (sampling) take the composition.
        let (ad, bd) = (a.as_tensor().detach(), b.as_tensor().detach());
        assert!(
            lora_product(&h.detach(), &w, &ad, &bd, 1.0)
                .unwrap()
                .is_none()
        );
    }
}
