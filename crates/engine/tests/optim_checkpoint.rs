//! AdamW against hand computation, schedules, and bit-exact save/load round trips.

mod common;
use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use polyepo_engine::model::checkpoint::{load_tensors, restore_vars, save_tensors};
use polyepo_engine::model::{Batch, Llama, LlamaConfig};
use polyepo_engine::optim::{AdamW, AdamWConfig, LrSchedule, grad_norm};

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("polyepo-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Gradients of Σ w·p for a fixed w are exactly w: a GradStore holding chosen gradients.
fn grads_equal_to(var: &Var, g: &[f32]) -> GradStore {
    let w = Tensor::new(g, &Device::Cpu)
        .unwrap()
        .to_dtype(var.dtype())
        .unwrap();
    (var.as_tensor() * w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
}

#[test]
fn one_adamw_step_matches_hand_computation() {
    let var = Var::new(&[1.0f32, -2.0, 0.5], &Device::Cpu).unwrap();
    let cfg = AdamWConfig {
        lr: 0.1,
        weight_decay: 0.01,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(vec![("p".into(), var.clone())], cfg).unwrap();
    opt.step(&grads_equal_to(&var, &[0.1, -0.2, 0.0]), 0.1, 1.0)
        .unwrap();
    // Step 1: m̂ = g, v̂ = g², so the Adam update is g / (|g| + ε) = sign(g) (0 where g = 0);
    // p ← p·(1 − lr·wd) − lr·sign(g).
    let eps = 1e-8f64;
    let expected = [
        1.0 * (1.0 - 0.001) - 0.1 * (0.1 / (0.1 + eps)),
        -2.0 * (1.0 - 0.001) + 0.1 * (0.2 / (0.2 + eps)),
        0.5 * (1.0 - 0.001),
    ];
    let got: Vec<f32> = var.as_tensor().to_vec1().unwrap();
    for (g, e) in got.iter().zip(expected) {
        assert!((*g as f64 - e).abs() < 1e-6, "{got:?} vs {expected:?}");
    }
    // Step 2 with g = (0.3, 0.3, 0.3) and grad_scale 0.5 (effective g = 0.15):
    // m = 0.9·m1 + 0.1·g, v = 0.999·v1 + 0.001·g², bias corrections 1 − β^2.
    let before: Vec<f32> = var.as_tensor().to_vec1().unwrap();
    opt.step(&grads_equal_to(&var, &[0.3, 0.3, 0.3]), 0.1, 0.5)
        .unwrap();
    let after: Vec<f32> = var.as_tensor().to_vec1().unwrap();
    for (i, g1) in [0.1f64, -0.2, 0.0].iter().enumerate() {
        let g2 = 0.15;
        let m = 0.9 * 0.1 * g1 + 0.1 * g2;
        let v = 0.999 * 0.001 * g1 * g1 + 0.001 * g2 * g2;
        let update = (m / (1.0 - 0.81)) / ((v / (1.0 - 0.999f64.powi(2))).sqrt() + eps);
        let expected = before[i] as f64 * (1.0 - 0.001) - 0.1 * update;
        assert!(
            (after[i] as f64 - expected).abs() < 1e-6,
            "param {i}: {} vs {expected}",
            after[i]
        );
    }
    assert_eq!(opt.steps_taken(), 2);
}

#[test]
fn in_place_and_tensor_paths_agree() {
    let data: Vec<f32> = (0..1000)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let grads: Vec<f32> = (0..1000)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 100.0)
        .collect();
    let fast = Var::new(data.as_slice(), &Device::Cpu).unwrap();
    let slow = Var::new(data.as_slice(), &Device::Cpu)
        .unwrap()
        .as_tensor()
        .to_dtype(DType::F64)
        .unwrap();
    let slow = Var::from_tensor(&slow).unwrap();
    let cfg = AdamWConfig {
        lr: 0.01,
        ..AdamWConfig::default()
    };
    let mut a = AdamW::new(vec![("p".into(), fast.clone())], cfg.clone()).unwrap();
    let mut b = AdamW::new(vec![("p".into(), slow.clone())], cfg).unwrap();
    for _ in 0..3 {
        a.step(&grads_equal_to(&fast, &grads), 0.01, 0.7).unwrap();
        b.step(&grads_equal_to(&slow, &grads), 0.01, 0.7).unwrap();
    }
    let x: Vec<f32> = fast.as_tensor().to_vec1().unwrap();
    let y: Vec<f64> = slow.as_tensor().to_vec1().unwrap();
    for (x, y) in x.iter().zip(&y) {
        assert!((*x as f64 - y).abs() < 1e-5);
    }
}

#[test]
fn grad_norm_is_the_global_l2_norm() {
    let a = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
    let b = Var::new(&[3.0f32], &Device::Cpu).unwrap();
    let w = Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap();
    let loss = ((a.as_tensor() * w).unwrap().sum_all().unwrap()
        + (b.as_tensor() * 12.0).unwrap().sum_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let params = vec![("a".to_string(), a), ("b".to_string(), b)];
    assert!((grad_norm(&params, &grads).unwrap() - 13.0).abs() < 1e-9);
}

#[test]
fn schedules_follow_their_definitions() {
    assert_eq!(LrSchedule::Constant.lr(1e-6, 1000), 1e-6);
    let s = LrSchedule::WarmupCosine {
        warmup_steps: 10,
        total_steps: 110,
        min_ratio: 0.1,
    };
    assert!((s.lr(1.0, 0) - 0.1).abs() < 1e-12);
    assert!((s.lr(1.0, 9) - 1.0).abs() < 1e-12);
    assert!((s.lr(1.0, 10) - 1.0).abs() < 1e-12);
    assert!((s.lr(1.0, 60) - 0.55).abs() < 1e-12);
    assert!((s.lr(1.0, 110) - 0.1).abs() < 1e-12);
    assert!((s.lr(1.0, 500) - 0.1).abs() < 1e-12);
}

fn logits(model: &Llama) -> Tensor {
    let batch = Batch::left_padded(&[vec![1, 2, 3, 4], vec![5, 6]], 0, &Device::Cpu).unwrap();
    model
        .forward(&batch.tokens, &batch.positions, &batch.mask)
        .unwrap()
}

#[test]
fn weights_and_optimizer_state_round_trip_bit_exactly() {
    let dir = temp_dir("ckpt");
    let mut model = Llama::random(LlamaConfig::tiny(40), 1, &Device::Cpu).unwrap();
    let vars = model.train_all().unwrap();
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWConfig {
            lr: 1e-2,
            ..AdamWConfig::default()
        },
    )
    .unwrap();
    let batch = Batch::left_padded(&[vec![1, 2, 3, 4]], 0, &Device::Cpu).unwrap();
    let step = |opt: &mut AdamW, model: &Llama| {
        let loss = model
            .forward(&batch.tokens, &batch.positions, &batch.mask)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        opt.step(&loss.backward().unwrap(), 1e-2, 1.0).unwrap();
    };
    step(&mut opt, &model);
    save_tensors(&dir.join("model.safetensors"), &model.named_tensors()).unwrap();
    save_tensors(
        &dir.join("optimizer.safetensors"),
        &opt.state_tensors().unwrap(),
    )
    .unwrap();
    // No temp files are left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");

    // Resume: a fresh model from the saved weights and optimizer state.
    let mut resumed = Llama::random(LlamaConfig::tiny(40), 99, &Device::Cpu).unwrap();
    let resumed_vars = resumed.train_all().unwrap();
    let weights = load_tensors(&dir.join("model.safetensors")).unwrap();
    restore_vars(&resumed_vars, &weights, &dir).unwrap();
    assert_eq!(
        common::bits(&logits(&model)),
        common::bits(&logits(&resumed))
    );
    let mut resumed_opt = AdamW::new(
        resumed_vars,
        AdamWConfig {
            lr: 1e-2,
            ..AdamWConfig::default()
        },
    )
    .unwrap();
    resumed_opt
        .load_state(
            &load_tensors(&dir.join("optimizer.safetensors")).unwrap(),
            1,
        )
        .unwrap();
    // The next step is identical, bit for bit.
    step(&mut opt, &model);
    step(&mut resumed_opt, &resumed);
    assert_eq!(
        common::bits(&logits(&model)),
        common::bits(&logits(&resumed))
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn lora_adapters_round_trip_and_mismatches_are_named() {
    let dir = temp_dir("lora");
    let mut model = Llama::random(LlamaConfig::tiny(40), 1, &Device::Cpu).unwrap();
    let vars = common::add_lora(&mut model, 2, 7);
    for (_, v) in &vars {
        v.set(&Tensor::randn(0f32, 0.1, v.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    let adapters: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    save_tensors(&dir.join("adapter_model.safetensors"), &adapters).unwrap();
    let mut other = Llama::random(LlamaConfig::tiny(40), 1, &Device::Cpu).unwrap();
    let other_vars = common::add_lora(&mut other, 2, 8);
    let loaded = load_tensors(&dir.join("adapter_model.safetensors")).unwrap();
    restore_vars(&other_vars, &loaded, &dir).unwrap();
    assert_eq!(common::bits(&logits(&model)), common::bits(&logits(&other)));
    // A rank mismatch names the tensor.
    let mut wrong = Llama::random(LlamaConfig::tiny(40), 1, &Device::Cpu).unwrap();
    let wrong_vars = common::add_lora(&mut wrong, 3, 8);
    let err = restore_vars(&wrong_vars, &loaded, &dir)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lora_A.weight") && err.contains("shape"),
        "{err}"
    );
    let missing: HashMap<String, Tensor> = HashMap::new();
    let err = restore_vars(&wrong_vars, &missing, &dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs `f` on a pool of `threads` threads.
fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn gradients_do_not_depend_on_the_thread_count() {
    // Reductions over many rows (the RMSNorm weight gradient) and over many chunks (the
    // gradient norm) must add in a fixed order, or training changes with the machine's load.
    let (rows, d) = (4096, 64);
    let x: Vec<f32> = (0..rows * d)
        .map(|i| (((i * 7919) % 1000) as f32 - 500.0) * 10f32.powi((i % 5) as i32 - 2))
        .collect();
    let x = Tensor::from_vec(x, (rows, d), &Device::Cpu).unwrap();
    let w = Var::ones(d, DType::F32, &Device::Cpu).unwrap();
    let run = || {
        let y = polyepo_engine::model::ops::rms_norm(&x, w.as_tensor(), 1e-6).unwrap();
        let grads = (y * &x).unwrap().sum_all().unwrap().backward().unwrap();
        let dw = common::bits(grads.get(w.as_tensor()).unwrap());
        let norm = grad_norm(&[("w".to_owned(), w.clone())], &grads).unwrap();
        (dw, norm.to_bits())
    };
    let one = with_threads(1, run);
    for threads in [2, 3, 4] {
        assert!(with_threads(threads, run) == one, "{threads} threads");
    }
}

#[test]
fn bf16_parameters_train_through_an_f32_master_copy() {
    // Updates of 1e-3 on parameters near 1 are below half a bf16 step (2^-8): rounded on
    // their own they would vanish every step. Through the f32 master the bf16 parameters
    // follow an f32 run to within one bf16 step.
    let data: Vec<f32> = (0..64).map(|i| 1.0 + i as f32 / 256.0).collect();
    let grads: Vec<f32> = (0..64)
        .map(|i| if i % 2 == 0 { 0.5 } else { -0.25 })
        .collect();
    let reference = Var::new(data.as_slice(), &Device::Cpu).unwrap();
    let half = Var::from_tensor(&reference.as_tensor().to_dtype(DType::BF16).unwrap()).unwrap();
    let start: Vec<f32> = half
        .as_tensor()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap();
    let cfg = AdamWConfig {
        lr: 1e-3,
        ..AdamWConfig::default()
    };
    let mut a = AdamW::new(vec![("p".into(), reference.clone())], cfg.clone()).unwrap();
    let mut b = AdamW::new(vec![("p".into(), half.clone())], cfg).unwrap();
    for _ in 0..50 {
        a.step(&grads_equal_to(&reference, &grads), 1e-3, 1.0)
            .unwrap();
        b.step(&grads_equal_to(&half, &grads), 1e-3, 1.0).unwrap();
    }
    let want: Vec<f32> = reference.as_tensor().to_vec1().unwrap();
    let got: Vec<f32> = half
        .as_tensor()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap();
    for i in 0..64 {
        assert!(
            (got[i] - want[i]).abs() <= 2f32.powi(-7),
            "{i}: {} vs {}",
            got[i],
            want[i]
        );
        assert!(
            (got[i] - start[i]).abs() >= 0.03,
            "{i}: the bf16 parameter did not move ({} → {})",
            start[i],
            got[i]
        );
    }
    // The moments round-trip through a checkpoint's tensors on this path too.
    let saved: HashMap<String, Tensor> = b.state_tensors().unwrap().into_iter().collect();
    let mut c = AdamW::new(vec![("p".into(), half.clone())], AdamWConfig::default()).unwrap();
    c.load_state(&saved, 50).unwrap();
    let again: HashMap<String, Tensor> = c.state_tensors().unwrap().into_iter().collect();
    assert_eq!(common::bits(&saved["p.m"]), common::bits(&again["p.m"]));
}
