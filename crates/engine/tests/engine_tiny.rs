//! The engine on tiny random models: gradients reach every trainable tensor and match finite
//! differences, the KV cache reproduces a full recompute, left padding changes nothing.

mod common;
use candle_core::{DType, Device, Tensor};
use polyepo_engine::model::logprobs::{token_entropy, token_log_probs};
use polyepo_engine::model::{Batch, Llama, LlamaConfig, LoraConfig};
use polyepo_engine::parity::cache_difference;

fn tiny(variant: &str) -> LlamaConfig {
    let mut cfg = LlamaConfig::tiny(50);
    match variant {
        "qwen2" => cfg.attention_bias = true,
        "qwen3" => cfg.qk_norm = true,
        "untied" => cfg.tie_word_embeddings = false,
        _ => {}
    }
    cfg
}

/// A loss that touches every real position: Σ w · (log π(next token) + 0.1 · entropy), with
/// w = 0 on padding (as in training, where padded positions never count).
fn loss(model: &Llama, rows: &[Vec<u32>]) -> candle_core::Result<Tensor> {
    let batch = Batch::left_padded(rows, 0, model.device())?;
    let logits = model.forward(&batch.tokens, &batch.positions, &batch.mask)?;
    let (b, t) = batch.dims()?;
    let lp = token_log_probs(
        &logits.narrow(1, 0, t - 1)?,
        &batch.tokens.narrow(1, 1, t - 1)?,
    )?;
    let weights: Vec<f32> = (0..b * (t - 1))
        .map(|i| {
            if i % (t - 1) < batch.pads[i / (t - 1)] {
                0.0
            } else {
                0.5 + (i % 7) as f32 / 7.0
            }
        })
        .collect();
    let weights = Tensor::from_vec(weights, (b, t - 1), model.device())?.to_dtype(lp.dtype())?;
    let ent = token_entropy(&logits.narrow(1, 0, t - 1)?)?;
    ((lp + (ent * 0.1)?)? * weights)?.sum_all()
}

fn rows() -> Vec<Vec<u32>> {
    vec![
        vec![3, 17, 5, 9, 22, 41, 8],
        vec![7, 7, 30],
        vec![12, 1, 44, 2, 19],
    ]
}

#[test]
fn every_trainable_tensor_gets_a_nonzero_gradient() {
    for variant in ["llama", "qwen2", "qwen3", "untied"] {
        let mut model = Llama::random(tiny(variant), 1, &Device::Cpu).unwrap();
        let vars = model.train_all().unwrap();
        let grads = loss(&model, &rows()).unwrap().backward().unwrap();
        for (name, var) in &vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{variant}: no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{variant}: gradient of {name} is {norm}"
            );
        }
    }
}

#[test]
fn lora_trains_only_adapters_and_all_of_them() {
    let mut model = Llama::random(tiny("untied"), 2, &Device::Cpu).unwrap();
    let mut cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    cfg.targets.push("lm_head".into());
    let vars = model.add_lora(&cfg, 3).unwrap();
    assert_eq!(vars.len(), 2 * (7 * 2 + 1));
    // B starts at zero, which zeroes A's gradient; give B a value as after a first step.
    for (name, var) in &vars {
        if name.contains("lora_B") {
            var.set(
                &(Tensor::ones(var.shape(), DType::F32, &Device::Cpu).unwrap() * 0.01).unwrap(),
            )
            .unwrap();
        }
    }
    let grads = loss(&model, &rows()).unwrap().backward().unwrap();
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert!(
            g.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0,
            "{name}"
        );
    }
    // The frozen base receives no gradient at all.
    for (name, t) in model.named_tensors() {
        if !name.contains("lora_") {
            assert!(grads.get(&t).is_none(), "frozen {name} got a gradient");
        }
    }
}

#[test]
fn lora_merge_preserves_the_function() {
    let mut model = Llama::random(tiny("llama"), 4, &Device::Cpu).unwrap();
    let vars = common::add_lora(&mut model, 2, 5);
    for (_, var) in &vars {
        let noise = Tensor::randn(0f32, 0.05, var.shape(), &Device::Cpu).unwrap();
        var.set(&noise).unwrap();
    }
    let batch = Batch::left_padded(&rows(), 0, &Device::Cpu).unwrap();
    let before = model
        .forward(&batch.tokens, &batch.positions, &batch.mask)
        .unwrap();
    model.merge_lora().unwrap();
    assert!(
        model
            .named_tensors()
            .iter()
            .all(|(n, _)| !n.contains("lora_"))
    );
    let after = model
        .forward(&batch.tokens, &batch.positions, &batch.mask)
        .unwrap();
    let diff = (before - after)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-5, "merged model differs by {diff}");
}

#[test]
fn gradient_matches_finite_differences() {
    let mut cfg = tiny("qwen3");
    cfg.attention_bias = true;
    let device = Device::Cpu;
    let mut model = Llama::random(cfg, 6, &device).unwrap();
    model.to_dtype(DType::F64).unwrap();
    let vars = model.train_all().unwrap();
    let rows = rows();
    let grads = loss(&model, &rows).unwrap().backward().unwrap();
    let eps = 1e-5;
    let mut checked = 0;
    for (name, var) in vars.iter().step_by(3) {
        let analytic: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let original: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        // The entry with the largest gradient and one fixed entry.
        let biggest = (0..analytic.len())
            .max_by(|&a, &b| analytic[a].abs().total_cmp(&analytic[b].abs()))
            .unwrap();
        for index in [biggest, original.len() / 2] {
            let eval = |delta: f64| {
                let mut data = original.clone();
                data[index] += delta;
                var.set(&Tensor::from_vec(data, var.shape(), &device).unwrap())
                    .unwrap();
                loss(&model, &rows).unwrap().to_scalar::<f64>().unwrap()
            };
            let numeric = (eval(eps) - eval(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(original.clone(), var.shape(), &device).unwrap())
                .unwrap();
            let tol = 1e-6 + 1e-4 * numeric.abs().max(analytic[index].abs());
            assert!(
                (numeric - analytic[index]).abs() < tol,
                "{name}[{index}]: numeric {numeric} vs analytic {}",
                analytic[index]
            );
            checked += 1;
        }
    }
    assert!(checked >= 10);
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    polyepo_engine::parity::max_abs(&(a - b).unwrap()).unwrap()
}

#[test]
fn kv_cache_decoding_equals_full_recompute() {
    // Prefill the first 4 slots, then decode one slot at a time with the fused kernels, and
    // compare every real position with one full forward pass (the check `device-check` runs).
    for variant in ["llama", "qwen3"] {
        let model = Llama::random(tiny(variant), 7, &Device::Cpu).unwrap();
        let d = cache_difference(&model, &rows(), 4).unwrap();
        assert!(d < 1e-4, "{variant}: {d}");
    }
}

#[test]
fn left_padded_batch_equals_rows_alone() {
    let model = Llama::random(tiny("qwen2"), 8, &Device::Cpu).unwrap();
    let rows = rows();
    let batch = Batch::left_padded(&rows, 0, &Device::Cpu).unwrap();
    let (_, t) = batch.dims().unwrap();
    let logits = model
        .forward(&batch.tokens, &batch.positions, &batch.mask)
        .unwrap();
    let lp = token_log_probs(
        &logits.narrow(1, 0, t - 1).unwrap(),
        &batch.tokens.narrow(1, 1, t - 1).unwrap(),
    )
    .unwrap();
    for (i, row) in rows.iter().enumerate() {
        let alone = Batch::left_padded(std::slice::from_ref(row), 0, &Device::Cpu).unwrap();
        let n = row.len();
        let l = model
            .forward(&alone.tokens, &alone.positions, &alone.mask)
            .unwrap();
        let lp_alone = token_log_probs(
            &l.narrow(1, 0, n - 1).unwrap(),
            &alone.tokens.narrow(1, 1, n - 1).unwrap(),
        )
        .unwrap();
        let batched = lp.get(i).unwrap().narrow(0, t - n, n - 1).unwrap();
        let d = max_diff(&batched, &lp_alone.get(0).unwrap());
        assert!(d < 1e-5, "row {i}: {d}");
    }
}

#[test]
fn fused_and_differentiable_paths_agree() {
    let model = Llama::random(tiny("qwen3"), 9, &Device::Cpu).unwrap();
    let batch = Batch::left_padded(&rows(), 0, &Device::Cpu).unwrap();
    let slow = model
        .forward(&batch.tokens, &batch.positions, &batch.mask)
        .unwrap();
    let fast = model
        .detached()
        .forward(&batch.tokens, &batch.positions, &batch.mask)
        .unwrap();
    assert!(max_diff(&slow, &fast) < 1e-4);
    // Shared storage: the detached copy sees later updates to the trainable weights.
    let mut trained = model.clone();
    let vars = trained.train_all().unwrap();
    let mut det = trained.detached();
    assert_eq!(vars[0].0, "model.embed_tokens.weight");
    vars[0]
        .1
        .set(&vars[0].1.as_tensor().zeros_like().unwrap())
        .unwrap();
    let emb = det.named_tensors()[0].1.clone();
    assert_eq!(
        emb.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
}
