//! The trainer end to end on a tiny model: resuming equals not stopping, a POLY-EPO step moves
//! probability towards generations with positive marginal advantage, and bad input is named.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use polyepo::rl::config::TrainConfig;

mod common;
use common::{small_config, temp_root};
use polyepo::rl::judge::TaskJudge;
use polyepo::rl::tasks::Task;
use polyepo::rl::train::policy::Policy;
use polyepo::rl::train::sequences::response_log_probs;
use polyepo::rl::train::{
    Event, StepMetrics, TrainOptions, build_task, rollout, run_dir, step_prompts, train, update,
};
use polyepo_engine::optim::AdamW;

fn run(
    cfg: &TrainConfig,
    dir: &Path,
    resume: bool,
    stop_after: Option<u64>,
) -> polyepo::rl::train::RunSummary {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut on_event = move |e: Event<'_>| {
        if let (Event::Step(m), Some(s)) = (e, stop_after)
            && m.step == s
        {
            flag.store(true, Ordering::SeqCst);
        }
    };
    train(
        cfg,
        dir,
        TrainOptions {
            resume,
            stop,
            on_event: &mut on_event,
        },
    )
    .unwrap()
}

fn metrics(dir: &Path) -> Vec<StepMetrics> {
    run_dir::read_metrics(dir)
        .unwrap()
        .iter()
        .map(StepMetrics::without_timings)
        .collect()
}

#[test]
fn stopped_and_resumed_run_equals_uninterrupted_run() {
    let root = temp_root("resume");
    let cfg = small_config();
    let straight = root.join("straight");
    let summary = run(&cfg, &straight, false, None);
    assert_eq!(summary.steps, 4);
    assert!(!summary.interrupted);
    assert!(summary.final_model.join("model.safetensors").exists());

    // Stopped after step 2 (as Ctrl-C does), then resumed from its checkpoint.
    let split = root.join("split");
    let first = run(&cfg, &split, false, Some(2));
    assert!(first.interrupted && first.steps == 2);
    // A new run may not silently overwrite it.
    let refused = train(
        &cfg,
        &split,
        TrainOptions {
            resume: false,
            stop: Arc::new(AtomicBool::new(false)),
            on_event: &mut |_| {},
        },
    );
    assert!(refused.unwrap_err().to_string().contains("--resume"));
    let second = run(&cfg, &split, true, None);
    assert_eq!(second.steps, 4);

    let (a, b) = (metrics(&straight), metrics(&split));
    assert_eq!(a.len(), 4);
    assert_eq!(a, b, "resumed metrics differ from the uninterrupted run");
    // Learning happened at all: some step had a non-zero gradient and loss.
    assert!(a.iter().any(|m| m.update.grad_norm > 0.0));
    std::fs::remove_dir_all(&root).ok();
}

/// The first step's rollout of `cfg` (labelled by the task, seed 7).
fn first_step_samples(
    policy: &Policy,
    task: &dyn Task,
    cfg: &TrainConfig,
) -> rollout::RolloutBatch {
    let judge = TaskJudge::new(task);
    let prompts = step_prompts(task, cfg, 0);
    rollout::collect(
        policy,
        task,
        Some(&judge),
        &prompts,
        &cfg.rollout,
        &cfg.algorithm,
        7,
    )
    .unwrap()
    .0
}

/// Asserts that a step moved the weights from `initial` to `reference`, and that `other`
/// landed within 0.1% of that step's length of the same place.
fn assert_same_step(initial: &[f32], reference: &[f32], other: &[f32], context: &str) {
    let moved: f32 = reference
        .iter()
        .zip(initial)
        .map(|(a, b)| (a - b).abs())
        .sum();
    let differ: f32 = reference
        .iter()
        .zip(other)
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(moved > 0.0, "{context}: the step moved nothing");
    assert!(
        differ <= 1e-3 * moved,
        "{context}: the weights ended {differ} away from a step of {moved}"
    );
}

/// Every trainable weight of `policy`, in order, as one vector.
fn flat_weights(policy: &Policy) -> Vec<f32> {
    policy
        .vars
        .iter()
        .flat_map(|(_, v)| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn one_polyepo_step_raises_the_best_generation() {
    let root = temp_root("step");
    let cfg = small_config();
    let task = build_task(&cfg).unwrap();
    let policy = common::warmed_up_policy(&cfg, task.as_ref(), &root.join(".cache"));
    let samples = first_step_samples(&policy, task.as_ref(), &cfg);
    let best = samples
        .samples()
        .max_by(|a, b| a.advantage.total_cmp(&b.advantage))
        .unwrap()
        .clone();
    assert!(
        best.advantage > 0.0,
        "no generation with positive advantage in this batch"
    );
    let seq_log_prob = |p: &Policy| -> f32 {
        let s = response_log_probs(
            &p.model.frozen(),
            std::slice::from_ref(&best.prompt_tokens),
            std::slice::from_ref(&best.response_tokens),
            p.tokenizer.pad_id,
            1.0,
        )
        .unwrap();
        (s.log_probs * s.mask)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let before = seq_log_prob(&policy);
    let mut opt = AdamW::new(policy.vars.clone(), cfg.optim.adamw.clone()).unwrap();
    update::ppo_update(
        &policy,
        &mut opt,
        &samples,
        &update::UpdateSettings::of(&cfg),
        1,
    )
    .unwrap();
    let after = seq_log_prob(&policy);
    assert!(after > before, "log π(best) went from {before} to {after}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn micro_batches_take_the_same_step_as_whole_mini_batches() {
    // For every loss aggregation, a mini-batch in micro-batches of 3 sequences (uneven
    // split) moves the weights as the whole mini-batch does, up to float summation order.
    let root = temp_root("micro");
    for aggregation in [
        "token-mean",
        "seq-mean-token-mean",
        "seq-mean-token-sum-norm",
    ] {
        let mut cfg = small_config();
        cfg.loss.aggregation = serde_json::from_value(serde_json::json!(aggregation)).unwrap();
        let task = build_task(&cfg).unwrap();
        let step = |micro_batch: usize| -> (Vec<f32>, update::UpdateStats) {
            let policy = common::warmed_up_policy(&cfg, task.as_ref(), &root.join(".cache"));
            let samples = first_step_samples(&policy, task.as_ref(), &cfg);
            let mut settings_cfg = cfg.clone();
            settings_cfg.optim.micro_batch = micro_batch;
            let mut opt = AdamW::new(policy.vars.clone(), cfg.optim.adamw.clone()).unwrap();
            let stats = update::ppo_update(
                &policy,
                &mut opt,
                &samples,
                &update::UpdateSettings::of(&settings_cfg),
                1,
            )
            .unwrap();
            (flat_weights(&policy), stats)
        };
        let ((whole, whole_stats), (micro, micro_stats)) = (step(0), step(3));
        // AdamW's first step barely sees the gradient's scale; the gradient norm and the
        // loss do, so a wrongly weighted accumulation shows there.
        for (what, a, b) in [
            (
                "gradient norm",
                whole_stats.grad_norm,
                micro_stats.grad_norm,
            ),
            ("policy loss", whole_stats.pg_loss, micro_stats.pg_loss),
            ("entropy", whole_stats.entropy, micro_stats.entropy),
            ("clip fraction", whole_stats.clipfrac, micro_stats.clipfrac),
        ] {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs() + 1e-6,
                "{aggregation}: {what} {a} whole vs {b} in micro-batches"
            );
        }
        let initial = flat_weights(&common::warmed_up_policy(
            &cfg,
            task.as_ref(),
            &root.join(".cache"),
        ));
        assert_same_step(
            &initial,
            &whole,
            &micro,
            &format!("{aggregation}, micro-batches against the whole mini-batch"),
        );
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn skipping_zero_advantage_sequences_takes_the_same_steps() {
    // Two epochs of two mini-batches; the first mini-batch's advantages are all zero (its
    // AdamW steps then move the weights by momentum alone) and one sequence of the second is
    // zero. Leaving those sequences out of the passes must give the weights, the gradient
    // norm and the loss of computing them, in micro-batches and whole.
    let root = temp_root("skip");
    let mut cfg = small_config();
    cfg.optim.ppo_epochs = 2;
    let task = build_task(&cfg).unwrap();
    for micro_batch in [0, 3] {
        let step = |skip: bool| -> (Vec<f32>, update::UpdateStats) {
            let policy = common::warmed_up_policy(&cfg, task.as_ref(), &root.join(".cache"));
            let mut samples = first_step_samples(&policy, task.as_ref(), &cfg);
            assert_eq!(samples.len(), 16);
            for (i, s) in samples.samples_mut().enumerate() {
                s.advantage = match i {
                    0..=7 | 9 => 0.0,
                    _ => (i as f64 - 11.5) * 0.1,
                };
            }
            let mut settings_cfg = cfg.clone();
            settings_cfg.optim.micro_batch = micro_batch;
            let mut settings = update::UpdateSettings::of(&settings_cfg);
            assert!(
                settings.skip_zero_advantage,
                "on for a loss without KL or entropy"
            );
            settings.skip_zero_advantage = skip;
            let mut opt = AdamW::new(policy.vars.clone(), cfg.optim.adamw.clone()).unwrap();
            let stats = update::ppo_update(&policy, &mut opt, &samples, &settings, 1).unwrap();
            (flat_weights(&policy), stats)
        };
        let ((all, all_stats), (skipped, skipped_stats)) = (step(false), step(true));
        for (what, a, b) in [
            (
                "gradient norm",
                all_stats.grad_norm,
                skipped_stats.grad_norm,
            ),
            ("policy loss", all_stats.pg_loss, skipped_stats.pg_loss),
        ] {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs() + 1e-7,
                "micro {micro_batch}: {what} {a} computing all vs {b} skipping"
            );
        }
        let initial = flat_weights(&common::warmed_up_policy(
            &cfg,
            task.as_ref(),
            &root.join(".cache"),
        ));
        assert_same_step(
            &initial,
            &all,
            &skipped,
            &format!("micro {micro_batch}, skipping against computing all"),
        );
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn cli_names_bad_keys_and_missing_models() {
    let bin = env!("CARGO_BIN_EXE_polyepo");
    let out = std::process::Command::new(bin)
        .args(["train", "--set", "loss.clip_hihg=0.3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("clip_hihg"), "{err}");
    let out = std::process::Command::new(bin)
        .args(["train", "--set", "model.source=/nope/model.gguf"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("model.source") && err.contains("/nope/model.gguf"),
        "{err}"
    );
}

#[test]
fn the_digits_domain_trains_from_its_own_warm_up() {
    let root = temp_root("digits");
    let mut cfg = small_config();
    cfg.task = polyepo::rl::config::TaskSection::Digits(polyepo::rl::tasks::digits::DigitsConfig {
        train_prompts: 32,
        eval_prompts: 8,
        ..Default::default()
    });
    cfg.run.steps = 2;
    let summary = run(&cfg, &root.join("run"), false, None);
    assert_eq!(summary.steps, 2);
    let m = metrics(&root.join("run"));
    // The warmed-up base already answers in the digits format: some correct strategies.
    assert!(m.iter().any(|s| s.clusters_correct > 0.0), "{m:?}");
    std::fs::remove_dir_all(&root).ok();
}
