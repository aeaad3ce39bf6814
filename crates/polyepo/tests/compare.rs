//! Evaluation, reports and comparisons on tiny runs: the files exist, parse, and hold every
//! algorithm and seed; a second invocation resumes instead of retraining.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use polyepo::app::compare::{Comparison, compare};
use polyepo::app::eval::{EvalReport, EvalSettings};
use polyepo::app::report::training_report;
use polyepo::rl::config::Algorithm;
use polyepo::rl::train::run_dir::read_metrics;

mod common;
use common::{small_config, temp_root};

fn assert_chart(stem: &std::path::Path) {
    let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.contains("<svg"),
        "{}",
        stem.display()
    );
    let png = std::fs::read(stem.with_extension("png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn comparison_of_two_tiny_runs_holds_every_algorithm_and_seed() {
    let root = temp_root("compare");
    let mut cfg = small_config();
    cfg.run.steps = 3;
    let eval = EvalSettings {
        samples: 4,
        max_new_tokens: 10,
        ..EvalSettings::default()
    };
    let algos = [Algorithm::Polyepo, Algorithm::Grpo];
    let seeds = [0, 1];
    let out = root.join("cmp");
    let run_compare = |eval: &EvalSettings| {
        compare(
            &cfg,
            &algos,
            &seeds,
            &out,
            eval,
            Arc::new(AtomicBool::new(false)),
            &mut |_| {},
        )
        .unwrap()
        .unwrap()
    };
    let c = run_compare(&eval);
    assert_eq!(c.runs.len(), 4);
    for a in algos {
        for s in seeds {
            assert!(
                c.runs.iter().any(|r| r.algorithm == a && r.seed == s),
                "{a:?} seed {s}"
            );
        }
    }
    assert_eq!(c.summary.len(), 2);
    // The JSON parses back, pass@k is monotone in k, and the report and charts exist.
    let parsed: Comparison =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(parsed.runs.len(), 4);
    for r in &parsed.runs {
        let p: Vec<f64> = r.eval.pass_at_k.values().copied().collect();
        assert_eq!(p.len(), 4);
        assert!(p.windows(2).all(|w| w[0] <= w[1] + 1e-12), "{p:?}");
    }
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("| polyepo |") && md.contains("| grpo |") && md.contains("pass_at_k.svg"));
    for stem in ["pass_at_k", "correct_strategies", "reward"] {
        assert_chart(&out.join(stem));
    }

    // Re-running resumes: every run is already evaluated, so nothing retrains.
    // When the first run's metrics were last written: unchanged means it did not retrain.
    let metrics_written = || {
        std::fs::metadata(out.join("polyepo-seed0/metrics.jsonl"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = metrics_written();
    let again = run_compare(&eval);
    assert_eq!(metrics_written(), before);
    assert_eq!(
        serde_json::to_string(&again.runs[0].eval).unwrap(),
        serde_json::to_string(&c.runs[0].eval).unwrap()
    );

    // A changed evaluation setting redoes the evaluation (without retraining).
    let more = EvalSettings {
        samples: 6,
        ..eval.clone()
    };
    let redone = run_compare(&more);
    assert!(redone.runs.iter().all(|r| r.eval.samples == 6));
    assert_eq!(redone.max_k, 6);
    assert_eq!(metrics_written(), before);

    // A single run's training report.
    let run = out.join("grpo-seed1");
    let files = training_report("grpo-seed1", &read_metrics(&run).unwrap(), &run).unwrap();
    assert!(files.iter().all(|f| f.exists()));
    for stem in ["reward", "strategies", "entropy"] {
        assert_chart(&run.join(stem));
    }
    let eval: EvalReport =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval.samples, 6);
    assert_eq!(eval.settings, Some(more));
    assert!(eval.degenerate_fraction >= 0.0 && eval.degenerate_fraction <= 1.0);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn eval_cli_writes_eval_json_and_a_chart() {
    let root = temp_root("evalcli");
    let mut cfg = small_config();
    cfg.run.steps = 1;
    let run = root.join("run");
    polyepo::rl::train::train(
        &cfg,
        &run,
        polyepo::rl::train::TrainOptions {
            resume: false,
            stop: Arc::new(AtomicBool::new(false)),
            on_event: &mut |_| {},
        },
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_polyepo"))
        .args([
            "eval",
            "--model",
            run.to_str().unwrap(),
            "--samples",
            "8",
            "--k",
            "1,8",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| 1 |")
            && stdout.contains("| 8 |")
            && stdout.contains("pooled distinct correct strategies"),
        "{stdout}"
    );
    let report: EvalReport =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report.pass_at_k.len(), 8);
    assert_chart(&run.join("eval_pass_at_k"));
    std::fs::remove_dir_all(&root).ok();
}

fn polyepo(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_polyepo"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eval_refuses_a_bad_task_a_broken_config_and_an_unfinished_run() {
    let root = temp_root("evalbad");
    // A typo in --task is an error that lists the tasks (it used to evaluate reach).
    let (ok, err) = polyepo(&["eval", "--model", "nope", "--task", "countdwn"]);
    assert!(
        !ok && err.contains("countdwn") && err.contains("countdown"),
        "{err}"
    );
    // A broken --config names the file and the key (it used to fall back to the defaults).
    let cfg = root.join("broken.toml");
    std::fs::write(&cfg, "[rollout]\nsamples_per_prompt = \"many\"\n").unwrap();
    let (ok, err) = polyepo(&["eval", "--model", "nope", "--config", cfg.to_str().unwrap()]);
    assert!(
        !ok && err.contains("broken.toml") && err.contains("rollout.samples_per_prompt"),
        "{err}"
    );
    // A run directory without a final model says so instead of failing to load it.
    let run = root.join("unfinished");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.toml"), small_config().to_toml()).unwrap();
    for command in ["eval", "serve"] {
        let (ok, err) = polyepo(&[command, "--model", run.to_str().unwrap()]);
        assert!(!ok && err.contains("not finished"), "{command}: {err}");
    }
    std::fs::remove_dir_all(&root).ok();
}
