//! Device parity: the engine on another device (a GPU) against the CPU, on tiny random
//! models with the same weights. The fused CPU kernels fall back to candle's compositions
//! elsewhere, and candle's fused ops can silently drop gradients, so a new device is trusted
//! only after this: logits, token log-probs and the gradient of a training loss agree with
//! the CPU within a stated tolerance, every trainable tensor gets a gradient there, and a
//! KV-cache decode on that device equals a full recompute on it.
//!
//! `polyepo device-check --device cuda` prints the report; on the CPU (CPU against itself)
//! the parity rows are trivially exact and the cache and gradient rows still mean something,
//! which is what keeps this code from rotting on machines without a GPU.

use candle_core::{DType, Device, Tensor};

use crate::model::batch::attention_mask;
use crate::model::logprobs::{token_entropy, token_log_probs};
use crate::model::{Batch, KvCache, Llama, LlamaConfig, ModelResult};

/// Tolerances of the checks, for f32 on both sides. GPU matmuls sum in another order (and
/// cuBLAS may use TF32-free but differently blocked kernels), so exact equality is not
/// expected; these bounds are about 100× the differences seen between CPU thread counts.
pub const LOGIT_TOLERANCE: f32 = 1e-3;
/// Largest allowed |Δ log-prob| per token.
pub const LOG_PROB_TOLERANCE: f32 = 1e-3;
/// Largest allowed gradient difference, relative to the tensor's largest CPU gradient.
pub const GRADIENT_TOLERANCE: f32 = 1e-3;
/// Largest allowed |Δ logit| between a KV-cache decode and a full recompute (same device).
pub const CACHE_TOLERANCE: f32 = 1e-4;

/// One line of the report: what was compared, the measured difference and its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct ParityCheck {
    /// Model variant and quantity, e.g. `qwen3 logits`.
    pub name: String,
    /// Largest difference found (absolute, or relative where the name says so).
    pub difference: f32,
    /// The bound it must stay under.
    pub tolerance: f32,
}

impl ParityCheck {
    /// Whether the difference is within the bound (NaN never is).
    pub fn passed(&self) -> bool {
        self.difference <= self.tolerance
    }
}

/// The tiny model variants the checks run on: plain Llama (tied head), Qwen2 (attention
/// biases), Qwen3 (q/k norms) and an untied LM head, so every weight kind is covered.
pub fn variants() -> Vec<(&'static str, LlamaConfig)> {
    let base = LlamaConfig::tiny(50);
    let with = |f: fn(&mut LlamaConfig)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    vec![
        ("llama", base.clone()),
        ("qwen2", with(|c| c.attention_bias = true)),
        ("qwen3", with(|c| c.qk_norm = true)),
        ("untied", with(|c| c.tie_word_embeddings = false)),
    ]
}

/// Left-padded rows of different lengths, so padding and masking are part of every check.
fn rows() -> Vec<Vec<u32>> {
    vec![
        vec![3, 17, 5, 9, 22, 41, 8, 13, 2],
        vec![7, 7, 30],
        vec![12, 1, 44, 2, 19, 6],
    ]
}

/// Logits and token log-probs of `rows` (zero at padded positions, whose values nothing
/// uses and which may differ freely), and a loss that touches every real position
/// (weighted log-probs plus a small entropy term, zero weight on padding).
fn forward(model: &Llama, rows: &[Vec<u32>]) -> ModelResult<(Tensor, Tensor, Tensor)> {
    let device = model.device();
    let batch = Batch::left_padded(rows, 0, device)?;
    let logits = model.forward(&batch.tokens, &batch.positions, &batch.mask)?;
    let (b, t) = batch.dims()?;
    // 1 at real positions, 0 at padding: (B, T).
    let real: Vec<f32> = batch
        .pads
        .iter()
        .flat_map(|&pad| (0..t).map(move |p| f32::from(u8::from(p >= pad))))
        .collect();
    let real = Tensor::from_vec(real, (b, t), device)?.to_dtype(logits.dtype())?;
    let real_head = real.narrow(1, 0, t - 1)?;
    let head = logits.narrow(1, 0, t - 1)?;
    let lp = token_log_probs(&head, &batch.tokens.narrow(1, 1, t - 1)?)?;
    let pattern: Vec<f32> = (0..b * (t - 1))
        .map(|i| 0.5 + (i % 7) as f32 / 7.0)
        .collect();
    let weights =
        (Tensor::from_vec(pattern, (b, t - 1), device)?.to_dtype(lp.dtype())? * &real_head)?;
    let loss = ((&lp + (token_entropy(&head)? * 0.1)?)? * weights)?.sum_all()?;
    Ok((
        logits.broadcast_mul(&real.unsqueeze(2)?)?,
        (lp * real_head)?,
        loss,
    ))
}

/// The largest absolute value in `t`, as f32: the size every check here compares.
pub fn max_abs(t: &Tensor) -> ModelResult<f32> {
    Ok(t.abs()?
        .max_all()?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?)
}

fn max_diff(a: &Tensor, b: &Tensor) -> ModelResult<f32> {
    let b = b.to_device(a.device())?.to_dtype(a.dtype())?;
    max_abs(&(a - b)?)
}

/// Runs every check of one variant on `device` against the CPU.
fn check_variant(name: &str, cfg: &LlamaConfig, device: &Device) -> ModelResult<Vec<ParityCheck>> {
    let seed = 11;
    let mut cpu = Llama::random(cfg.clone(), seed, &Device::Cpu)?;
    let mut dev = Llama::random(cfg.clone(), seed, device)?;
    let cpu_vars = cpu.train_all()?;
    let dev_vars = dev.train_all()?;
    let rows = rows();
    let (cpu_logits, cpu_lp, cpu_loss) = forward(&cpu, &rows)?;
    let (dev_logits, dev_lp, dev_loss) = forward(&dev, &rows)?;
    let mut checks = vec![
        ParityCheck {
            name: format!("{name}: logits vs cpu"),
            difference: max_diff(&cpu_logits, &dev_logits)?,
            tolerance: LOGIT_TOLERANCE,
        },
        ParityCheck {
            name: format!("{name}: token log-probs vs cpu"),
            difference: max_diff(&cpu_lp, &dev_lp)?,
            tolerance: LOG_PROB_TOLERANCE,
        },
    ];
    let cpu_grads = cpu_loss.backward()?;
    let dev_grads = dev_loss.backward()?;
    let (mut worst, mut missing) = (0f32, Vec::new());
    for ((var_name, c), (_, d)) in cpu_vars.iter().zip(&dev_vars) {
        let (Some(gc), Some(gd)) = (cpu_grads.get(c.as_tensor()), dev_grads.get(d.as_tensor()))
        else {
            missing.push(var_name.clone());
            continue;
        };
        let scale = max_abs(gc)?;
        // NaN or zero: no usable gradient either way.
        let usable = |x: f32| x.is_finite() && x > 0.0;
        if !usable(scale) || !usable(max_abs(gd)?) {
            missing.push(var_name.clone());
            continue;
        }
        worst = worst.max(max_diff(gc, gd)? / scale);
    }
    checks.push(ParityCheck {
        name: format!(
            "{name}: gradients vs cpu (relative, {} tensors)",
            cpu_vars.len()
        ),
        difference: worst,
        tolerance: GRADIENT_TOLERANCE,
    });
    checks.push(ParityCheck {
        name: if missing.is_empty() {
            format!("{name}: tensors without a nonzero gradient")
        } else {
            format!(
                "{name}: tensors without a nonzero gradient ({})",
                missing.join(", ")
            )
        },
        difference: missing.len() as f32,
        tolerance: 0.0,
    });
    checks.push(ParityCheck {
        name: format!("{name}: kv-cache decode vs full recompute"),
        difference: cache_difference(&dev, &rows, 4)?,
        tolerance: CACHE_TOLERANCE,
    });
    Ok(checks)
}

/// Largest logit difference, over real (non-pad) positions, between decoding `rows` through
/// the KV cache (a prefill of `prefill` slots, then one slot at a time, with the fused
/// inference kernels) and one full forward pass, on the model's device.
pub fn cache_difference(model: &Llama, rows: &[Vec<u32>], prefill: usize) -> ModelResult<f32> {
    let device = model.device().clone();
    let full = Batch::left_padded(rows, 0, &device)?;
    let (b, t) = full.dims()?;
    let reference = model.forward(&full.tokens, &full.positions, &full.mask)?;
    let fast = model.detached();
    let mut cache = KvCache::new(&model.cfg, b, t, model.dtype(), &device)?;
    let prefill = prefill.clamp(1, t);
    let mut worst = 0f32;
    let mut start = 0;
    while start < t {
        let len = if start == 0 { prefill } else { 1 };
        let mask = attention_mask(&full.pads, start, len, &device)?;
        let hidden = fast.forward_hidden(
            &full.tokens.narrow(1, start, len)?,
            &full.positions.narrow(1, start, len)?,
            &mask,
            Some(&mut cache),
        )?;
        let got = fast.logits(&hidden)?;
        for row in 0..b {
            for pos in start.max(full.pads[row])..start + len {
                let d = max_diff(
                    &got.get(row)?.get(pos - start)?,
                    &reference.get(row)?.get(pos)?,
                )?;
                worst = worst.max(d);
            }
        }
        start += len;
    }
    Ok(worst)
}

/// Every check on `device`, variant by variant. An error means a check could not run at
/// all (e.g. an op the device lacks), which is itself a failed parity.
pub fn check_device(device: &Device) -> ModelResult<Vec<ParityCheck>> {
    let mut all = Vec::new();
    for (name, cfg) in variants() {
        all.extend(check_variant(name, &cfg, device)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_passes_against_itself_and_nan_never_passes() {
        let checks = check_device(&Device::Cpu).unwrap();
        assert_eq!(checks.len(), 5 * variants().len());
        for c in &checks {
            assert!(c.passed(), "{c:?}");
        }
        // The CPU against itself is exact; the cache row compares two different code paths.
        assert!(
            checks
                .iter()
                .filter(|c| c.name.contains("vs cpu"))
                .all(|c| c.difference == 0.0)
        );
        assert!(
            !ParityCheck {
                name: "x".into(),
                difference: f32::NAN,
                tolerance: 1.0
            }
            .passed()
        );
    }
}
