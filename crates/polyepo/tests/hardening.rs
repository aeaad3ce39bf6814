//! Regression tests for hostile or unlucky input: each case once crashed, hung, ran out of
//! memory or silently corrupted a run (issue 10's list); now it is a clear error that names
//! the key, file or line, and nothing saved is lost.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use polyepo::rl::config::TrainConfig;
use polyepo::rl::train::run_dir::read_metrics;
use polyepo::rl::train::{TrainOptions, build_task, train};

mod common;
use common::{small_config, temp_root};

fn polyepo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polyepo"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Trains `cfg` into `dir`; `resume` continues it.
fn run(cfg: &TrainConfig, dir: &Path, resume: bool) -> Result<u64, String> {
    train(
        cfg,
        dir,
        TrainOptions {
            resume,
            stop: Arc::new(AtomicBool::new(false)),
            on_event: &mut |_| {},
        },
    )
    .map(|s| s.steps)
    .map_err(|e| e.to_string())
}

#[test]
fn every_unworkable_setting_is_refused_naming_its_key() {
    // (override, the key the error must name); each of these used to hang, panic, run to
    // the end on NaN, or run out of memory.
    let cases: &[(&[&str], &str)] = &[
        (&["optim.beta1=1.0"], "optim.beta1"),
        (&["optim.beta2=2"], "optim.beta2"),
        (&["optim.eps=0"], "optim.eps"),
        (&["optim.lr=inf"], "optim.lr"),
        (&["optim.weight_decay=nan"], "optim.weight_decay"),
        (&["optim.grad_clip=-1"], "optim.grad_clip"),
        (&["loss.kl_coef=-0.1"], "loss.kl_coef"),
        (&["algorithm.lambda=nan"], "algorithm.lambda"),
        (&["task.reach.set_size=0"], "task.reach.set_size"),
        (&["task.reach.set_size=50"], "task.reach.set_size"),
        (&["task.reach.min_solutions=1"], "task.reach.min_solutions"),
        (&["task.reach.habits=3"], "task.reach.habits"),
        (&["task.reach.train_steps=[]"], "task.reach.set_size"),
        (
            &["task.reach.train_steps=[0,0,0]"],
            "task.reach.train_steps",
        ),
        (&["task.reach.train_prompts=0"], "task.reach.train_prompts"),
        (
            &["task.kind=digits", "task.digits.set_size=0"],
            "task.digits.set_size",
        ),
        (
            &["task.kind=digits", "task.digits.train_digits=[]"],
            "task.digits.train_digits",
        ),
        (
            &["task.kind=digits", "task.digits.lengths=[]"],
            "task.digits.lengths",
        ),
        (
            &["task.kind=digits", "task.digits.lengths=[0]"],
            "task.digits.lengths",
        ),
        (
            &["task.kind=digits", "task.digits.lengths=[1000]"],
            "task.digits.lengths",
        ),
        (
            &["task.kind=countdown", "task.countdown.numbers=0"],
            "task.countdown.numbers",
        ),
        (
            &["task.kind=countdown", "task.countdown.numbers=50"],
            "task.countdown.numbers",
        ),
        (
            &["task.kind=countdown", "task.countdown.max_number=0"],
            "task.countdown.max_number",
        ),
        (&["warmup.skew=0"], "warmup.skew"),
        (&["warmup.skew=-1"], "warmup.skew"),
        (&["warmup.batch=0"], "warmup.batch"),
        (
            &["rollout.samples_per_prompt=100000000"],
            "rollout.samples_per_prompt",
        ),
        (&["rollout.top_p=0"], "rollout.top_p"),
        (&["rollout.max_new_tokens=0"], "rollout.max_new_tokens"),
        (&["judge.timeout_s=0"], "judge.timeout_s"),
    ];
    for (overrides, key) in cases {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let err = TrainConfig::load(None, &overrides)
            .expect_err(&format!("{overrides:?} was accepted"))
            .to_string();
        assert!(err.contains(key), "{overrides:?}: {err}");
    }
}

#[test]
fn a_task_whose_prompts_cannot_be_made_fails_instead_of_hanging() {
    // Valid ranges, but no allowed set of {+5, +7} reaches any target three ways.
    let cfg = TrainConfig::load(
        None,
        &[
            "task.reach.train_steps=[5, 7]".into(),
            "task.reach.set_size=2".into(),
        ],
    )
    .unwrap();
    let err = build_task(&cfg)
        .err()
        .expect("impossible task built")
        .to_string();
    assert!(
        err.contains("task.reach") && err.contains("prompts"),
        "{err}"
    );
}

#[test]
fn eval_and_judge_refuse_unusable_flags() {
    for args in [
        &["eval", "--model", "nope", "--k", "0"][..],
        &["eval", "--model", "nope", "--samples", "0"],
        &["eval", "--model", "nope", "--samples", "100000000"],
    ] {
        let out = polyepo(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains("--k") || err.contains("--samples"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let input = temp_root("judgeflags").join("groups.jsonl");
    std::fs::write(&input, "{\"prompt\":\"p\",\"responses\":[\"a\"]}\n").unwrap();
    let out = polyepo(&[
        "judge",
        "--input",
        input.to_str().unwrap(),
        "--endpoint",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--timeout",
        "0",
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("timeout"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unbounded_inputs_are_read_with_a_bound() {
    // A config or an advantages input without end (a device) is refused, not read forever.
    let out = polyepo(&["train", "--config", "/dev/zero"]);
    assert!(
        !out.status.success() && stderr(&out).contains("/dev/zero"),
        "{}",
        stderr(&out)
    );
    let out = polyepo(&["advantages", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("/dev/zero:1"), "{}", stderr(&out));
}

fn advantages_with_stdin(input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_polyepo"))
        .arg("advantages")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn advantages_refuse_overflow_and_invalid_utf8_as_bad_input() {
    // Finite rewards whose advantages overflow used to be written as `null`, exit 0.
    let out = advantages_with_stdin(b"{\"objective\":\"drgrpo\",\"rewards\":[1e308,1e308,0]}\n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("rewards"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    // Invalid UTF-8 is bad input (status 2, as README says), naming the line.
    let out = advantages_with_stdin(b"{\"objective\":\"grpo\",\"rewards\":[1,0]}\n\xff\xfe\n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("<stdin>:2"), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn a_fresh_run_never_mixes_with_an_earlier_one() {
    let root = temp_root("mix");
    let dir = root.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    // An earlier run killed before its first checkpoint left metrics behind.
    std::fs::write(dir.join("metrics.jsonl"), "{\"step\":1}\n").unwrap();
    let err = run(&small_config(), &dir, false).unwrap_err();
    assert!(err.contains("already holds a run"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap(),
        "{\"step\":1}\n"
    );
    // Resuming it says there is no checkpoint instead of appending.
    let err = run(&small_config(), &dir, true).unwrap_err();
    assert!(err.contains("no checkpoint"), "{err}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn resume_falls_back_to_the_newest_valid_checkpoint() {
    let root = temp_root("fallback");
    let dir = root.join("run");
    let mut cfg = small_config();
    cfg.run.checkpoint_every = 1;
    cfg.run.steps = 3;
    assert_eq!(run(&cfg, &dir, false), Ok(3));
    let checkpoints = dir.join("checkpoints");
    // The pointer is lost and the newest checkpoint has a flipped byte.
    std::fs::remove_file(checkpoints.join("latest")).unwrap();
    let weights = checkpoints.join("step-000003/weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&weights, bytes).unwrap();
    cfg.run.steps = 4;
    let mut log = Vec::new();
    let summary = train(
        &cfg,
        &dir,
        TrainOptions {
            resume: true,
            stop: Arc::new(AtomicBool::new(false)),
            on_event: &mut |e| {
                if let polyepo::rl::train::Event::Log(m) = e {
                    log.push(m)
                }
            },
        },
    )
    .unwrap();
    assert_eq!(summary.steps, 4);
    let log = log.join("\n");
    assert!(
        log.contains("step-000003") && log.contains("checksum"),
        "{log}"
    );
    assert!(
        log.contains("resuming from") && log.contains("step-000002"),
        "{log}"
    );
    // Metrics: steps 1, 2 kept, 3 redone, then 4 — no duplicates, no gaps.
    let steps: Vec<u64> = read_metrics(&dir).unwrap().iter().map(|m| m.step).collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn metrics_with_non_finite_values_read_back_and_garbled_lines_are_named() {
    let root = temp_root("metrics");
    let dir = root.join("run");
    let mut cfg = small_config();
    cfg.run.steps = 2;
    cfg.run.checkpoint_every = 1;
    assert_eq!(run(&cfg, &dir, false), Ok(2));
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    // A NaN is written as null by JSON; it reads back as NaN.
    let nulled = text.replacen(
        "\"losses/policy_loss\":",
        "\"losses/policy_loss\":null,\"x\":",
        1,
    );
    std::fs::write(&path, &nulled).unwrap();
    let m = read_metrics(&dir).unwrap();
    assert!(m[0].update.pg_loss.is_nan());
    // A garbled line stops resume and names the line instead of dropping the step.
    let garbled = text
        .replacen('{', "{garbage", 2)
        .replacen("{garbage", "{", 1);
    std::fs::write(&path, garbled).unwrap();
    cfg.run.steps = 3;
    let err = run(&cfg, &dir, true).unwrap_err();
    assert!(
        err.contains("metrics.jsonl") && err.contains("line 2"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_diverging_run_stops_with_the_step_and_keeps_its_finite_checkpoints() {
    let root = temp_root("diverge");
    let dir = root.join("run");
    let mut cfg = small_config();
    cfg.run.steps = 6;
    cfg.run.checkpoint_every = 1;
    cfg.optim.adamw.lr = 1e30;
    cfg.optim.grad_clip = 0.0;
    // One optimizer step per RL step: step 1 ends with huge but finite weights (saved),
    // a later forward overflows.
    cfg.optim.minibatches = 1;
    let err = run(&cfg, &dir, false).unwrap_err();
    assert!(
        err.contains("not a finite number") && err.contains("step "),
        "{err}"
    );
    // What was saved holds finite weights.
    let saved: Vec<_> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path().join("weights.safetensors"))
        .filter(|p| p.exists())
        .collect();
    assert!(!saved.is_empty(), "{err}");
    for weights in saved {
        let tensors = polyepo_engine::model::checkpoint::load_tensors(&weights).unwrap();
        for (name, t) in tensors {
            let sum = t
                .to_dtype(candle_core::DType::F64)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(sum.is_finite(), "{name} in {}", weights.display());
        }
    }
    std::fs::remove_dir_all(&root).ok();
}

#[cfg(unix)]
#[test]
fn sigterm_saves_a_checkpoint_like_ctrl_c() {
    let root = temp_root("sigterm");
    let dir = root.join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_polyepo"))
        .args([
            "train",
            "--quiet",
            "--out",
            dir.to_str().unwrap(),
            "--set",
            "run.steps=100000",
            "--set",
            "run.checkpoint_every=0",
            "--set",
            "warmup.steps=10",
            "--set",
            "rollout.prompts_per_step=2",
            "--set",
            "rollout.samples_per_prompt=4",
            "--set",
            "algorithm.set_size=2",
            "--set",
            "optim.minibatches=1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a first step, then ask it to stop the way a job scheduler does.
    let metrics = dir.join("metrics.jsonl");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(true, |t| t.is_empty()) {
        assert!(start.elapsed().as_secs() < 120, "no step after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(dir.join("checkpoints/latest").exists(), "{err}");
    assert!(err.contains("stopped after step"), "{err}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn device_check_runs_on_the_cpu_and_a_missing_cuda_build_is_named() {
    let out = polyepo(&["device-check", "--device", "cpu"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("kv-cache decode vs full recompute") && text.contains("all 20 checks passed"),
        "{text}"
    );
    if cfg!(not(feature = "cuda")) {
        let out = polyepo(&["device-check", "--device", "cuda"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("--features cuda"), "{}", stderr(&out));
    }
}
