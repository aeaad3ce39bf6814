//! Fused, differentiable kernels for the places where composed candle ops cost the most
//! memory and time in training: the masked attention softmax, RoPE, RMSNorm, the
//! vocabulary log-softmax, and products with frozen weights. candle's own fused kernels have no backward pass (docs/design.md §3); these carry
//! one. Each forward keeps one output tensor where the composition kept five or six, and
//! each backward is one pass. CPU f32/f64 only; other devices and dtypes fall back to the
//! differentiable compositions, which the tests check them against.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, DType, Layout, Result, Shape, Tensor,
};
use num_traits::Float;
use rayon::prelude::*;

/// Rows are processed in parallel in chunks of this many rows.
const ROWS_PER_TASK: usize = 16;

fn slice<'a, T>(data: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    let (a, b) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input must be contiguous")))?;
    Ok(&data[a..b])
}

/// Whether the fused kernels apply to `t`.
fn fusable(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Runs a kernel on f32 or f64 storages: each `storage / layout => name` binds `name` to the
/// contiguous slice; every storage must have the same float dtype.
macro_rules! float_kernel {
    ($op:expr, $($s:ident / $l:ident => $v:ident),+ ; $body:expr) => {
        match ($($s,)+) {
            ($(CpuStorage::F32($v),)+) => {
                $(let $v = slice($v, $l, $op)?;)+
                CpuStorage::F32($body)
            }
            ($(CpuStorage::F64($v),)+) => {
                $(let $v = slice($v, $l, $op)?;)+
                CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: inputs must all be f32 or all f64", $op),
        }
    };
}

// ---------------------------------------------------------------- softmax over the last dim

struct Softmax;
struct SoftmaxGrad;
/// Softmax of scores + mask, the mask (B, 1, T, S) broadcast over the H heads of (B, H, T, S).
struct MaskedSoftmax;

fn masked_softmax_rows<T: Float + Send + Sync>(
    x: &[T],
    mask: &[T],
    heads: usize,
    t: usize,
    s: usize,
) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(s)
        .zip(x.par_chunks(s))
        .enumerate()
        .for_each(|(row, (o, x))| {
            // row = (b·H + h)·T + i  →  mask row b·T + i
            let (b, i) = (row / (heads * t), row % t);
            let m = &mask[(b * t + i) * s..(b * t + i + 1) * s];
            let mut max = T::neg_infinity();
            for ((o, &x), &m) in o.iter_mut().zip(x).zip(m) {
                *o = x + m;
                max = max.max(*o);
            }
            let mut sum = T::zero();
            for o in o.iter_mut() {
                *o = (*o - max).exp();
                sum = sum + *o;
            }
            let inv = sum.recip();
            o.iter_mut().for_each(|o| *o = *o * inv);
        });
    out
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax-diff"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, h, t, s) = l1.shape().dims4()?;
        let out = float_kernel!("masked-softmax", s1 / l1 => x, s2 / l2 => m; masked_softmax_rows(x, m, h, t, s));
        Ok((out, l1.shape().clone()))
    }
    fn bwd(
        &self,
        _x: &Tensor,
        _m: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((
            Some(res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?),
            None,
        ))
    }
}

/// softmax(scores + mask) over the last dimension, with a backward pass to the scores.
///
/// # Shapes
/// scores: (B, H, T, S), mask: (B, 1, T, S) → (B, H, T, S).
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, _, t, s) = scores.dims4()?;
    if fusable(scores) && mask.dtype() == scores.dtype() && mask.dims() == [b, 1, t, s] {
        return scores
            .contiguous()?
            .apply_op2(&mask.contiguous()?, MaskedSoftmax);
    }
    softmax_last_dim(&scores.broadcast_add(mask)?)
}

fn softmax_rows<T: Float + Send + Sync>(x: &[T], dim: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(dim * ROWS_PER_TASK)
        .zip(x.par_chunks(dim * ROWS_PER_TASK))
        .for_each(|(o, x)| {
            for (o, x) in o.chunks_mut(dim).zip(x.chunks(dim)) {
                let max = x.iter().copied().fold(T::neg_infinity(), T::max);
                let mut sum = T::zero();
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = (x - max).exp();
                    sum = sum + *o;
                }
                let inv = sum.recip();
                o.iter_mut().for_each(|o| *o = *o * inv);
            }
        });
    out
}

/// dx = p ⊙ (g − Σ g ⊙ p).
fn softmax_grad_rows<T: Float + Send + Sync>(p: &[T], g: &[T], dim: usize) -> Vec<T> {
    let mut out = vec![T::zero(); p.len()];
    out.par_chunks_mut(dim * ROWS_PER_TASK)
        .zip(
            p.par_chunks(dim * ROWS_PER_TASK)
                .zip(g.par_chunks(dim * ROWS_PER_TASK)),
        )
        .for_each(|(o, (p, g))| {
            for (o, (p, g)) in o.chunks_mut(dim).zip(p.chunks(dim).zip(g.chunks(dim))) {
                let dot = p.iter().zip(g).fold(T::zero(), |acc, (&p, &g)| acc + p * g);
                for ((o, &p), &g) in o.iter_mut().zip(p).zip(g) {
                    *o = p * (g - dot);
                }
            }
        });
    out
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-diff"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dim = l.dims()[l.dims().len() - 1];
        Ok((
            float_kernel!("softmax", s / l => x; softmax_rows(x, dim)),
            l.shape().clone(),
        ))
    }
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?,
        ))
    }
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "softmax-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dim = l1.dims()[l1.dims().len() - 1];
        let out =
            float_kernel!("softmax-grad", s1 / l1 => p, s2 / l2 => g; softmax_grad_rows(p, g, dim));
        Ok((out, l1.shape().clone()))
    }
}

/// Softmax over the last dimension, with a backward pass.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fusable(x) {
        return x.contiguous()?.apply_op1(Softmax);
    }
    // Shift by the row max (a constant for the gradient: softmax is shift-invariant).
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

// ---------------------------------------------------------------- rotary embedding

/// Rotate-half RoPE: [x1·cos − x2·sin, x2·cos + x1·sin], cos/sin (B, 1, T, D/2) broadcast
/// over heads. Its backward is the inverse rotation, i.e. the same op with −sin.
struct Rope {
    inverse: bool,
}

fn rope_rows<T: Float + Send + Sync>(
    x: &[T],
    cos: &[T],
    sin: &[T],
    heads: usize,
    t: usize,
    d: usize,
    inverse: bool,
) -> Vec<T> {
    let half = d / 2;
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .enumerate()
        .for_each(|(row, (o, x))| {
            let (b, i) = (row / (heads * t), row % t);
            let base = (b * t + i) * half;
            for j in 0..half {
                let (c, s) = (
                    cos[base + j],
                    if inverse {
                        -sin[base + j]
                    } else {
                        sin[base + j]
                    },
                );
                let (x1, x2) = (x[j], x[j + half]);
                o[j] = x1 * c - x2 * s;
                o[j + half] = x2 * c + x1 * s;
            }
        });
    out
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "rope-diff"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, h, t, d) = l1.shape().dims4()?;
        let out = float_kernel!("rope", s1 / l1 => x, s2 / l2 => c, s3 / l3 => sn; rope_rows(x, c, sn, h, t, d, self.inverse));
        Ok((out, l1.shape().clone()))
    }
    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gx = grad.contiguous()?.apply_op3_no_bwd(
            cos,
            sin,
            &Rope {
                inverse: !self.inverse,
            },
        )?;
        Ok((Some(gx), None, None))
    }
}

/// Rotates x by its positions' angles (rotate-half layout), with a backward pass to x.
///
/// # Shapes
/// x: (B, H, T, D), cos/sin: (B, 1, T, D/2) → (B, H, T, D).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if fusable(x) && cos.dtype() == x.dtype() {
        return x.contiguous()?.apply_op3(
            &cos.contiguous()?,
            &sin.contiguous()?,
            Rope { inverse: false },
        );
    }
    let half = x.dim(3)? / 2;
    let x1 = x.narrow(3, 0, half)?;
    let x2 = x.narrow(3, half, half)?;
    let r1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let r2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Tensor::cat(&[r1, r2], 3)
}

// ---------------------------------------------------------------- RMSNorm

struct RmsNormOp {
    eps: f64,
}
struct RmsNormGradX {
    eps: f64,
}
struct RmsNormGradW {
    eps: f64,
}

fn inv_rms<T: Float>(x: &[T], eps: f64) -> T {
    let ms = x.iter().fold(T::zero(), |a, &v| a + v * v) / T::from(x.len()).unwrap_or(T::one());
    (ms + T::from(eps).unwrap_or(T::zero())).sqrt().recip()
}

fn rms_rows<T: Float + Send + Sync>(x: &[T], w: &[T], eps: f64) -> Vec<T> {
    let d = w.len();
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(o, x)| {
            for (o, x) in o.chunks_mut(d).zip(x.chunks(d)) {
                let r = inv_rms(x, eps);
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                    *o = x * r * w;
                }
            }
        });
    out
}

/// dx = r·(w⊙g) − x·r³/d·Σ(w⊙g⊙x).
fn rms_grad_x_rows<T: Float + Send + Sync>(x: &[T], w: &[T], g: &[T], eps: f64) -> Vec<T> {
    let d = w.len();
    let dt = T::from(d).unwrap_or(T::one());
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(
            x.par_chunks(d * ROWS_PER_TASK)
                .zip(g.par_chunks(d * ROWS_PER_TASK)),
        )
        .for_each(|(o, (x, g))| {
            for (o, (x, g)) in o.chunks_mut(d).zip(x.chunks(d).zip(g.chunks(d))) {
                let r = inv_rms(x, eps);
                let dot = x
                    .iter()
                    .zip(g)
                    .zip(w)
                    .fold(T::zero(), |a, ((&x, &g), &w)| a + x * g * w);
                let k = r * r * r * dot / dt;
                for (((o, &x), &g), &w) in o.iter_mut().zip(x).zip(g).zip(w) {
                    *o = r * w * g - x * k;
                }
            }
        });
    out
}

/// dw = Σ_rows g ⊙ x · r.
fn rms_grad_w_rows<T: Float + Send + Sync>(x: &[T], g: &[T], d: usize, eps: f64) -> Vec<T> {
    x.par_chunks(d * ROWS_PER_TASK)
        .zip(g.par_chunks(d * ROWS_PER_TASK))
        .map(|(x, g)| {
            let mut acc = vec![T::zero(); d];
            for (x, g) in x.chunks(d).zip(g.chunks(d)) {
                let r = inv_rms(x, eps);
                for ((a, &x), &g) in acc.iter_mut().zip(x).zip(g) {
                    *a = *a + g * x * r;
                }
            }
            acc
        })
        // Collected in chunk order and added in that order, so the result does not depend
        // on how rayon split the work (a parallel `reduce` would, by float rounding).
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![T::zero(); d], |mut a, b| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a = *a + b);
            a
        })
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "rms-norm-diff"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = float_kernel!("rms-norm", s1 / l1 => x, s2 / l2 => w; rms_rows(x, w, self.eps));
        Ok((out, l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        // A frozen gain (LoRA training) or a constant input needs no gradient: skip the pass.
        let gx = match x.track_op() {
            true => Some(x.apply_op3_no_bwd(w, &grad, &RmsNormGradX { eps: self.eps })?),
            false => None,
        };
        let gw = match w.track_op() {
            true => Some(
                x.apply_op2_no_bwd(&grad, &RmsNormGradW { eps: self.eps })?
                    .reshape(w.shape())?,
            ),
            false => None,
        };
        Ok((gx, gw))
    }
}

impl CustomOp3 for RmsNormGradX {
    fn name(&self) -> &'static str {
        "rms-norm-grad-x"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = float_kernel!("rms-norm-grad", s1 / l1 => x, s2 / l2 => w, s3 / l3 => g; rms_grad_x_rows(x, w, g, self.eps));
        Ok((out, l1.shape().clone()))
    }
}

impl CustomOp2 for RmsNormGradW {
    fn name(&self) -> &'static str {
        "rms-norm-grad-w"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = l1.dims()[l1.dims().len() - 1];
        let out = float_kernel!("rms-norm-grad", s1 / l1 => x, s2 / l2 => g; rms_grad_w_rows(x, g, d, self.eps));
        Ok((out, Shape::from(d)))
    }
}

/// y = x / sqrt(mean(x²) + ε) · w over the last dimension, with a backward pass for x and w.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if fusable(x) && x.dtype() == w.dtype() {
        return x
            .contiguous()?
            .apply_op2(&w.contiguous()?, RmsNormOp { eps });
    }
    let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv_rms)?.broadcast_mul(w)
}

// ---------------------------------------------------------------- log-softmax at targets

struct LogProbAt;
struct LogProbAtGrad;

fn targets_of(s: &CpuStorage, l: &Layout) -> Result<Vec<usize>> {
    match s {
        CpuStorage::U32(t) => Ok(slice(t, l, "log-prob")?
            .iter()
            .map(|&t| t as usize)
            .collect()),
        CpuStorage::I64(t) => Ok(slice(t, l, "log-prob")?
            .iter()
            .map(|&t| t as usize)
            .collect()),
        _ => candle_core::bail!("log-prob: targets must be u32 or i64"),
    }
}

fn log_prob_rows<T: Float + Send + Sync>(x: &[T], targets: &[usize], v: usize) -> Vec<T> {
    x.par_chunks(v)
        .zip(targets.par_iter())
        .map(|(x, &t)| {
            let max = x.iter().copied().fold(T::neg_infinity(), T::max);
            let lse = x.iter().fold(T::zero(), |a, &v| a + (v - max).exp()).ln() + max;
            x[t.min(v - 1)] - lse
        })
        .collect()
}

/// dx = g · (onehot(t) − softmax(x)), row by row.
fn log_prob_grad_rows<T: Float + Send + Sync>(
    x: &[T],
    targets: &[usize],
    g: &[T],
    v: usize,
) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(v)
        .zip(x.par_chunks(v))
        .zip(targets.par_iter().zip(g.par_iter()))
        .for_each(|((o, x), (&t, &g))| {
            let max = x.iter().copied().fold(T::neg_infinity(), T::max);
            let sum = x.iter().fold(T::zero(), |a, &v| a + (v - max).exp());
            let scale = g / sum;
            for (o, &x) in o.iter_mut().zip(x) {
                *o = -(x - max).exp() * scale;
            }
            o[t.min(v - 1)] = o[t.min(v - 1)] + g;
        });
    out
}

impl CustomOp2 for LogProbAt {
    fn name(&self) -> &'static str {
        "log-prob-at"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let v = l1.dims()[l1.dims().len() - 1];
        let targets = targets_of(s2, l2)?;
        Ok((
            float_kernel!("log-prob", s1 / l1 => x; log_prob_rows(x, &targets, v)),
            l2.shape().clone(),
        ))
    }
    fn bwd(
        &self,
        x: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((
            Some(x.apply_op3_no_bwd(targets, &grad.contiguous()?, &LogProbAtGrad)?),
            None,
        ))
    }
}

impl CustomOp3 for LogProbAtGrad {
    fn name(&self) -> &'static str {
        "log-prob-at-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let v = l1.dims()[l1.dims().len() - 1];
        let targets = targets_of(s2, l2)?;
        let out = float_kernel!("log-prob-grad", s1 / l1 => x, s3 / l3 => g; log_prob_grad_rows(x, &targets, g, v));
        Ok((out, l1.shape().clone()))
    }
}

/// log softmax(x)[target] for every row, with a backward pass to x.
///
/// # Shapes
/// x: (..., V), targets: (...) u32 → (...).
pub fn log_prob_at(x: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if fusable(x) {
        return x.contiguous()?.apply_op2(&targets.contiguous()?, LogProbAt);
    }
    let max = x.max_keepdim(D::Minus1)?.detach();
    let lse = x
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&max)?;
    let picked = x.gather(&targets.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?;
    (picked - lse)?.squeeze(D::Minus1)
}

// ---------------------------------------------------------------- products with a weight

/// `x · wᵀ` of contiguous slices, x (m, k) and w (n, k), by gemm (its AVX-512 kernels where
/// the CPU has them), into an output that is never zero-filled first (gemm writes every
/// element; candle's matmul zeroes its output).
fn gemm_wt<T: Float + 'static>(x: &[T], m: usize, k: usize, w: &[T], n: usize) -> Vec<T> {
    if k == 0 {
        // An empty sum: gemm may then leave the output unwritten.
        return vec![T::zero(); m * n];
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let mut out = Vec::with_capacity(m * n);
    // SAFETY: x holds m·k and w n·k elements (checked by the callers' shapes); dst (m, n)
    // row-major is fully written because read_dst is false, after which the length is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            // rhs = wᵀ (k, n): element (l, j) is w[j·k + l].
            w.as_ptr(),
            k as isize,
            1,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(m * n);
    }
    out
}

/// The forward pass of every product with a weight, `x · wᵀ`: the few-rows kernels for a few
/// f32 rows (from the model file's blocks of w when given), gemm otherwise.
pub(crate) fn product_fwd(
    x: &CpuStorage,
    lx: &Layout,
    w: &CpuStorage,
    lw: &Layout,
    blocks: Option<&crate::kernels::blocks::BlockWeights>,
    op: &str,
) -> Result<(CpuStorage, Shape)> {
    let (m, k) = lx.shape().dims2()?;
    let (n, kw) = lw.shape().dims2()?;
    if k != kw {
        candle_core::bail!("{op}: x is (.., {k}) but the weight is ({n}, {kw})");
    }
    let out = match (x, w) {
        // A few f32 rows (decoding-sized products inside a graph) take the few-rows kernel.
        (CpuStorage::F32(x), CpuStorage::F32(w)) if m <= crate::kernels::MAX_FEW_ROWS => {
            let (x, w) = (slice(x, lx, op)?, slice(w, lw, op)?);
            let (mut out, level) = (vec![0f32; m * n], crate::kernels::SimdLevel::get());
            match blocks {
                Some(b) => b.rows_times(level, x, m, &mut out),
                None => crate::kernels::dense::rows_times_weight(level, x, m, k, w, n, &mut out),
            }
            CpuStorage::F32(out)
        }
        _ => float_kernel!(op, x / lx => x, w / lw => w; gemm_wt(x, m, k, w, n)),
    };
    Ok((out, Shape::from((m, n))))
}

/// The forward pass of an adapted layer, `x · wᵀ + s · (x · aᵀ) · bᵀ`: the weight's product
/// as [`product_fwd`] computes it, plus the rank-r path by gemm, added in place.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lora_fwd(
    x: &CpuStorage,
    lx: &Layout,
    w: &CpuStorage,
    lw: &Layout,
    a: &CpuStorage,
    la: &Layout,
    b: &CpuStorage,
    lb: &Layout,
    scale: f64,
) -> Result<(CpuStorage, Shape)> {
    const OP: &str = "lora-product";
    fn add_low_rank<T: Float + 'static>(
        mut y: Vec<T>,
        (x, a, b): (&[T], &[T], &[T]),
        (m, k, r, n): (usize, usize, usize, usize),
        scale: T,
    ) -> Vec<T> {
        let xa = gemm_wt(x, m, k, a, r); // (M, r)
        let delta = gemm_wt(&xa, m, r, b, n); // (M, out)
        for (y, d) in y.iter_mut().zip(delta) {
            *y = *y + d * scale;
        }
        y
    }
    let (y, shape) = product_fwd(x, lx, w, lw, None, OP)?;
    let (m, k) = lx.shape().dims2()?;
    let (r, n) = (la.shape().dims2()?.0, shape.dims2()?.1);
    let out = match (y, x, a, b) {
        (CpuStorage::F32(y), CpuStorage::F32(x), CpuStorage::F32(a), CpuStorage::F32(b)) => {
            let xab = (slice(x, lx, OP)?, slice(a, la, OP)?, slice(b, lb, OP)?);
            CpuStorage::F32(add_low_rank(y, xab, (m, k, r, n), scale as f32))
        }
        (CpuStorage::F64(y), CpuStorage::F64(x), CpuStorage::F64(a), CpuStorage::F64(b)) => {
            let xab = (slice(x, lx, OP)?, slice(a, la, OP)?, slice(b, lb, OP)?);
            CpuStorage::F64(add_low_rank(y, xab, (m, k, r, n), scale))
        }
        _ => candle_core::bail!("{OP}: x, W, A and B must all be f32 or all f64"),
    };
    Ok((out, shape))
}

/// Whether `x · wᵀ` can take the engine's products: CPU floats (f32 or f64) of one dtype and
/// a 2-D weight. Anything else takes candle's matmul.
pub(crate) fn engine_product_fits(x: &Tensor, w: &Tensor) -> bool {
    fusable(x) && x.dtype() == w.dtype() && w.rank() == 2
}

/// `x · wᵀ` for a weight that is not trained: the backward pass gives x the gradient
/// `grad · w` and w none.
struct FrozenProduct {
    /// (out, in), never trained.
    w: Tensor,
}

impl CustomOp1 for FrozenProduct {
    fn name(&self) -> &'static str {
        "frozen-product"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (storage, layout) = self.w.storage_and_layout();
        let candle_core::Storage::Cpu(w) = &*storage else {
            candle_core::bail!("frozen-product: the weight is not on the CPU");
        };
        product_fwd(s, l, w, layout, None, "frozen-product")
    }
    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// `x · wᵀ` for a trained weight: one node whose backward gives w its gradient `gradᵀ · x`
/// as an (out, in) tensor. candle's `x.matmul(&w.t())` forms the gradient of the transposed
/// view and adds it back into w's through a strided, transposing pass, on top of a zeroed
/// buffer of the weight's size.
struct TrainedProduct;

impl CustomOp2 for TrainedProduct {
    fn name(&self) -> &'static str {
        "trained-product"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        product_fwd(s1, l1, s2, l2, None, "trained-product")
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let x_tracked = x.track_op();
        // Detached operands: a gradient must not hold on to the forward graph (it is kept in
        // the gradient store after the graph is dropped).
        let (x, w) = (x.detach(), w.detach());
        let grad_x = x_tracked.then(|| grad.matmul(&w)).transpose()?;
        Ok((grad_x, Some(grad.t()?.matmul(&x)?)))
    }
}

/// `x · wᵀ` inside an autograd graph. A weight that is not trained (the base weights under
/// LoRA) gets no gradient: candle's matmul backward would form the gradient of both operands,
/// a full-size product thrown away plus a zeroed buffer of the weight's size. A trained weight
/// (a variable) gets its gradient from one node (see `TrainedProduct`). Another device or
/// dtype takes candle's matmul.
///
/// # Shapes
/// x: (M, in), w: (out, in) → (M, out).
pub fn frozen_product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !engine_product_fits(x, w) {
        return x.matmul(&w.t()?);
    }
    if w.is_variable() {
        return x.contiguous()?.apply_op2(&w.contiguous()?, TrainedProduct);
    }
    if !x.track_op() {
        return x.matmul(&w.t()?);
    }
    x.contiguous()?.apply_op1(FrozenProduct {
        w: w.detach().contiguous()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn composed_softmax(x: &Tensor) -> Tensor {
        let max = x.max_keepdim(D::Minus1).unwrap().detach();
        let e = x.broadcast_sub(&max).unwrap().exp().unwrap();
        e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap()
    }

    fn close(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    #[test]
    fn frozen_products_give_the_input_gradient_and_skip_the_weights() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (6, 5), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f64, 1.0, (4, 5), &dev).unwrap();
        let g = Tensor::randn(0f64, 1.0, (6, 4), &dev).unwrap();
        let h = x.as_tensor().sqr().unwrap(); // an input inside a graph
        let fused = frozen_product(&h, &w).unwrap();
        let plain = h.matmul(&w.t().unwrap()).unwrap();
        assert_eq!(close(&fused, &plain), 0.0);
        let gf = (fused * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &g).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(close(gf.get(&x).unwrap(), gp.get(&x).unwrap()) < 1e-12);
        // The plain matmul formed a (4, 5) gradient for the frozen weight (stored under its
        // transposed view); the fused product forms none.
        let weight_sized = |grads: &candle_core::backprop::GradStore| {
            grads
                .get_ids()
                .filter_map(|id| grads.get_id(*id))
                .filter(|t| t.elem_count() == 20)
                .count()
        };
        assert_eq!(weight_sized(&gp), 1);
        assert_eq!(weight_sized(&gf), 0);
        // A trainable weight gets the gradient candle's matmul gives it, and so does x.
        let v = Var::from_tensor(&w).unwrap();
        let trained = frozen_product(&h, v.as_tensor()).unwrap();
        let plain = h.matmul(&v.as_tensor().t().unwrap()).unwrap();
        assert!(close(&trained, &plain) < 1e-12);
        let gt = (trained * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gp = (plain * &g).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(close(gt.get(&v).unwrap(), gp.get(&v).unwrap()) < 1e-12);
        // Regression: a weight gradient formed from the tracked input held the whole forward
        // graph (training memory grew by the graph every round).
        assert!(!gt.get(&v).unwrap().track_op());
        assert!(close(gt.get(&x).unwrap(), gp.get(&x).unwrap()) < 1e-12);
    }

    #[test]
    fn fused_kernels_match_compositions_in_value_and_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (3, 5, 7), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f64, 0.3, 7, &dev).unwrap()).unwrap();
        let g = Tensor::randn(0f64, 1.0, (3, 5, 7), &dev).unwrap();
        let targets = Tensor::new(
            &[[0u32, 6, 3, 2, 1], [5, 5, 4, 0, 6], [1, 2, 3, 4, 5]],
            &dev,
        )
        .unwrap();
        let gt = Tensor::randn(0f64, 1.0, (3, 5), &dev).unwrap();

        // softmax
        let fused = softmax_last_dim(x.as_tensor()).unwrap();
        let plain = composed_softmax(x.as_tensor());
        assert!(close(&fused, &plain) < 1e-12);
        let gf = (fused * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &g).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(close(gf.get(&x).unwrap(), gp.get(&x).unwrap()) < 1e-12);

        // masked softmax over heads, against softmax(x + mask); rope against the composition
        let x4 = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, 4, 4), &dev).unwrap()).unwrap();
        let mask = Tensor::randn(0f64, 1.0, (2, 1, 4, 4), &dev).unwrap();
        let g4 = Tensor::randn(0f64, 1.0, (2, 3, 4, 4), &dev).unwrap();
        let fused = masked_softmax(x4.as_tensor(), &mask).unwrap();
        let plain = composed_softmax(&x4.as_tensor().broadcast_add(&mask).unwrap());
        assert!(close(&fused, &plain) < 1e-12);
        let gf = (fused * &g4)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gp = (plain * &g4)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(close(gf.get(&x4).unwrap(), gp.get(&x4).unwrap()) < 1e-12);
        let cos = Tensor::randn(0f64, 1.0, (2, 1, 4, 2), &dev).unwrap();
        let sin = Tensor::randn(0f64, 1.0, (2, 1, 4, 2), &dev).unwrap();
        let fused = rope(x4.as_tensor(), &cos, &sin).unwrap();
        let (x1, x2) = (
            x4.as_tensor().narrow(3, 0, 2).unwrap(),
            x4.as_tensor().narrow(3, 2, 2).unwrap(),
        );
        let r1 = (x1.broadcast_mul(&cos).unwrap() - x2.broadcast_mul(&sin).unwrap()).unwrap();
        let r2 = (x2.broadcast_mul(&cos).unwrap() + x1.broadcast_mul(&sin).unwrap()).unwrap();
        let plain = Tensor::cat(&[r1, r2], 3).unwrap();
        assert!(close(&fused, &plain) < 1e-12);
        let gf = (fused * &g4)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gp = (plain * &g4)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(close(gf.get(&x4).unwrap(), gp.get(&x4).unwrap()) < 1e-12);

        // rms norm
        let fused = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap();
        let inv = (x
            .as_tensor()
            .sqr()
            .unwrap()
            .mean_keepdim(D::Minus1)
            .unwrap()
            + 1e-5)
            .unwrap()
            .sqrt()
            .unwrap()
            .recip()
            .unwrap();
        let plain = x
            .as_tensor()
            .broadcast_mul(&inv)
            .unwrap()
            .broadcast_mul(w.as_tensor())
            .unwrap();
        assert!(close(&fused, &plain) < 1e-12);
        let gf = (fused * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &g).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(close(gf.get(&x).unwrap(), gp.get(&x).unwrap()) < 1e-12);
        assert!(close(gf.get(&w).unwrap(), gp.get(&w).unwrap()) < 1e-12);

        // log-prob at targets
        let fused = log_prob_at(x.as_tensor(), &targets).unwrap();
        let max = x.as_tensor().max_keepdim(D::Minus1).unwrap().detach();
        let lse = x
            .as_tensor()
            .broadcast_sub(&max)
            .unwrap()
            .exp()
            .unwrap()
            .sum_keepdim(D::Minus1)
            .unwrap()
            .log()
            .unwrap()
            .broadcast_add(&max)
            .unwrap();
        let plain = (x
            .as_tensor()
            .gather(&targets.unsqueeze(2).unwrap(), 2)
            .unwrap()
            - lse)
            .unwrap()
            .squeeze(2)
            .unwrap();
        assert!(close(&fused, &plain) < 1e-12);
        let gf = (fused * &gt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gp = (plain * &gt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(close(gf.get(&x).unwrap(), gp.get(&x).unwrap()) < 1e-12);
    }
}
