//! In-place AdamW with decoupled weight decay, global grad-norm clipping and learning-rate
//! schedules.
//!
//! candle's own AdamW allocates several full-size tensors per parameter per step (seconds
//! per step at 135M parameters on CPU, docs/design.md §3). Here the moments of f32 CPU
//! parameters live in plain `Vec<f32>` and the update runs in one fused pass over (param,
//! grad, m, v), in place on the parameter's storage through candle's `InplaceOp2`, split
//! across cores with rayon. Other parameters (GPU, bf16/f16) are updated on their own device
//! with tensor ops, bf16/f16 ones through an f32 master copy.

use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::NamedVar;

/// AdamW hyperparameters; the defaults are the paper's (docs/design.md §1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// First-moment decay β1.
    pub beta1: f64,
    /// Second-moment decay β2.
    pub beta2: f64,
    /// ε added to √v̂.
    pub eps: f64,
    /// Decoupled weight decay (multiplies lr · param).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-6,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// How the learning rate moves over training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum LrSchedule {
    /// The peak rate throughout (the paper's setting).
    Constant,
    /// Linear warm-up to the peak over `warmup_steps`, then cosine decay to
    /// `min_ratio` × peak at `total_steps`.
    WarmupCosine {
        /// Steps of linear warm-up.
        warmup_steps: u64,
        /// Step at which the decay ends.
        total_steps: u64,
        /// Final rate as a fraction of the peak.
        min_ratio: f64,
    },
}

impl LrSchedule {
    /// The rate for optimizer step `step` (0-based) given the peak `lr`.
    pub fn lr(&self, lr: f64, step: u64) -> f64 {
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::WarmupCosine {
                warmup_steps,
                total_steps,
                min_ratio,
            } => {
                if step < warmup_steps {
                    return lr * (step + 1) as f64 / warmup_steps as f64;
                }
                let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                let progress = ((step - warmup_steps) as f64 / span).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                lr * (min_ratio + (1.0 - min_ratio) * cosine)
            }
        }
    }
}

/// Runs `f` on the f32 contents of a CPU tensor without copying.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!(
            "expected an f32 CPU tensor, got {:?} on {:?}",
            t.dtype(),
            t.device().location()
        );
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("non-contiguous".into()))?;
    Ok(f(&data[start..end]))
}

/// √(Σ‖g‖²) over the gradients of `params` (missing gradients count as zero).
pub fn grad_norm(params: &[NamedVar], grads: &GradStore) -> Result<f64> {
    let mut total = 0.0f64;
    for (_, var) in params {
        if let Some(g) = grads.get(var.as_tensor()) {
            total += if g.dtype() == DType::F32 && g.device().is_cpu() {
                with_f32(g, |s| {
                    // Partial sums in chunk order, added in that order: the result does not
                    // depend on how rayon split the work (a parallel `sum` would).
                    let partials: Vec<f64> = s
                        .par_chunks(1 << 16)
                        .map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
                        .collect();
                    partials.iter().sum::<f64>()
                })?
            } else {
                g.to_dtype(DType::F64)?
                    .sqr()?
                    .sum_all()?
                    .to_scalar::<f64>()?
            };
        }
    }
    Ok(total.sqrt())
}

/// One parameter's first and second moments, in host memory.
#[derive(Debug, Clone)]
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

/// One parameter's optimizer state. A contiguous f32 parameter on the CPU is updated in
/// place by the fused kernel with its moments in host memory. Any other parameter (on a GPU,
/// or in bf16/f16) keeps f32 moments on its own device and is updated with tensor ops there,
/// so a step never copies parameters to the host; a bf16/f16 parameter also keeps an f32
/// master copy and becomes the master rounded to its dtype after each step. Without the
/// master, an update smaller than half a bf16 step (2⁻⁹·|p|) would be rounded away every
/// step and the parameter would never move.
#[derive(Debug)]
enum State {
    Host(Moments),
    Device {
        m: Tensor,
        v: Tensor,
        /// f32 copy of a bf16/f16 parameter; `None` for f32 and f64 parameters.
        master: Option<Tensor>,
    },
}

impl State {
    fn new(var: &Var) -> Result<Self> {
        if var.dtype() == DType::F32 && var.device().is_cpu() && var.as_tensor().is_contiguous() {
            return Ok(State::Host(Moments {
                m: vec![0.0; var.elem_count()],
                v: vec![0.0; var.elem_count()],
            }));
        }
        let zeros = || Tensor::zeros(var.shape(), DType::F32, var.device());
        Ok(State::Device {
            m: zeros()?,
            v: zeros()?,
            master: master_of(var)?,
        })
    }
}

/// A fresh f32 copy of a bf16/f16 parameter (none for f32 or f64 ones).
fn master_of(var: &Var) -> Result<Option<Tensor>> {
    if !matches!(var.dtype(), DType::BF16 | DType::F16) {
        return Ok(None);
    }
    Ok(Some(var.as_tensor().detach().to_dtype(DType::F32)?))
}

/// The optimizer: parameters, their moments and the step count.
#[derive(Debug)]
pub struct AdamW {
    /// Hyperparameters.
    pub config: AdamWConfig,
    params: Vec<NamedVar>,
    states: Vec<State>,
    step: u64,
}

/// One fused AdamW update of an f32 CPU parameter, run in place by candle.
struct AdamWUpdate<'a> {
    moments: Mutex<&'a mut Moments>,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32,
    grad_scale: f32,
    bias1: f32,
    bias2: f32,
}

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

impl candle_core::InplaceOp2 for AdamWUpdate<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (CpuStorage::F32(param), CpuStorage::F32(grad)) = (s1, s2) else {
            candle_core::bail!("adamw: in-place update needs f32 parameters and gradients");
        };
        let (p0, p1) = l1
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("adamw: param not contiguous".into()))?;
        let (g0, g1) = l2
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("adamw: grad not contiguous".into()))?;
        let mut moments = self
            .moments
            .lock()
            .map_err(|_| candle_core::Error::Msg("adamw: poisoned".into()))?;
        let Moments { m, v } = &mut **moments;
        let (param, grad) = (&mut param[p0..p1], &grad[g0..g1]);
        if param.len() != grad.len() || param.len() != m.len() {
            candle_core::bail!(
                "adamw: size mismatch (param {}, grad {}, state {})",
                param.len(),
                grad.len(),
                m.len()
            );
        }
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                for i in 0..p.len() {
                    let g = g[i] * self.grad_scale;
                    m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g;
                    v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * g * g;
                    let update = (m[i] / self.bias1) / ((v[i] / self.bias2).sqrt() + self.eps);
                    p[i] = p[i] * (1.0 - self.lr * self.decay) - self.lr * update;
                }
            });
        Ok(())
    }
}

impl AdamW {
    /// An optimizer over `params` with zeroed moments.
    pub fn new(params: Vec<NamedVar>, config: AdamWConfig) -> Result<Self> {
        let states = params
            .iter()
            .map(|(_, v)| State::new(v))
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            params,
            states,
            step: 0,
        })
    }

    /// The parameters, with their names.
    pub fn params(&self) -> &[NamedVar] {
        &self.params
    }

    /// Steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// One update at learning rate `lr`, with every gradient multiplied by `grad_scale`
    /// (the clipping factor, applied on the fly). Parameters without a gradient are left
    /// alone (not even decayed), as in PyTorch.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c = &self.config;
        for ((_, var), state) in self.params.iter().zip(self.states.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let grad = grad.contiguous()?;
            match state {
                State::Host(moments) => {
                    let op = AdamWUpdate {
                        moments: Mutex::new(moments),
                        lr: lr as f32,
                        beta1: c.beta1 as f32,
                        beta2: c.beta2 as f32,
                        eps: c.eps as f32,
                        decay: c.weight_decay as f32,
                        grad_scale: grad_scale as f32,
                        bias1: 1.0 - (c.beta1 as f32).powi(t),
                        bias2: 1.0 - (c.beta2 as f32).powi(t),
                    };
                    var.as_tensor().inplace_op2(&grad, &op)?;
                }
                State::Device { m, v, master } => {
                    device_step(var, &grad, m, v, master, c, lr, grad_scale, t)?;
                }
            }
        }
        Ok(())
    }

    /// The moments as named tensors (`<param>.m`, `<param>.v`) for checkpoints.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for ((name, var), state) in self.params.iter().zip(&self.states) {
            let cpu = &candle_core::Device::Cpu;
            let (m, v) = match state {
                State::Host(mo) => (
                    Tensor::from_slice(&mo.m, var.shape(), cpu)?,
                    Tensor::from_slice(&mo.v, var.shape(), cpu)?,
                ),
                State::Device { m, v, .. } => (m.to_device(cpu)?, v.to_device(cpu)?),
            };
            out.push((format!("{name}.m"), m));
            out.push((format!("{name}.v"), v));
        }
        Ok(out)
    }

    /// Restores moments and the step count saved by [`AdamW::state_tensors`].
    pub fn load_state(
        &mut self,
        tensors: &std::collections::HashMap<String, Tensor>,
        step: u64,
    ) -> Result<()> {
        for ((name, var), state) in self.params.iter().zip(self.states.iter_mut()) {
            let read = |suffix: &str| -> Result<Tensor> {
                let key = format!("{name}.{suffix}");
                let t = tensors.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimizer state lacks `{key}`"))
                })?;
                if t.dims() != var.dims() {
                    candle_core::bail!(
                        "optimizer state `{key}` has shape {:?}, the parameter {:?}",
                        t.dims(),
                        var.dims()
                    );
                }
                t.to_dtype(DType::F32)
            };
            match state {
                State::Host(mo) => {
                    mo.m = read("m")?.flatten_all()?.to_vec1()?;
                    mo.v = read("v")?.flatten_all()?.to_vec1()?;
                }
                State::Device { m, v, master } => {
                    *m = read("m")?.to_device(var.device())?;
                    *v = read("v")?.to_device(var.device())?;
                    // The master restarts from the restored (rounded) parameter: checkpoints
                    // hold the model in its own dtype, not the f32 master.
                    *master = master_of(var)?;
                }
            }
        }
        self.step = step;
        Ok(())
    }
}

/// The update with tensor ops on the parameter's own device, in f32: moments and (for a
/// bf16/f16 parameter) the master copy stay there.
#[allow(clippy::too_many_arguments)]
fn device_step(
    var: &Var,
    grad: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    master: &mut Option<Tensor>,
    c: &AdamWConfig,
    lr: f64,
    scale: f64,
    t: i32,
) -> Result<()> {
    let g = (grad.detach().to_dtype(DType::F32)? * scale)?;
    *m = ((&*m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
    *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
    let m_hat = (&*m / (1.0 - c.beta1.powi(t)))?;
    let v_hat = (&*v / (1.0 - c.beta2.powi(t)))?;
    let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
    let p = match master {
        Some(p) => p.clone(),
        None => var.as_tensor().detach(),
    };
    let update = update.to_dtype(p.dtype())?;
    let p = ((p * (1.0 - lr * c.weight_decay))? - (update * lr)?)?;
    match master {
        Some(slot) => {
            var.set(&p.to_dtype(var.dtype())?)?;
            *slot = p;
        }
        None => var.set(&p)?,
    }
    Ok(())
}
