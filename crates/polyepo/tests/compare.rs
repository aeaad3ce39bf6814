//! Evaluation, reports and studies on tiny runs: the files exist, parse, and hold every row
//! and seed with intervals; a second invocation resumes instead of retraining.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use polyepo::app::eval::EvalReport;
use polyepo::app::report::training_report;
use polyepo::app::study::{EvalSplit, StudyEvent, StudyPlan, StudySummary, run_and_report};
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

/// A study plan over the small config: base + two arms × two seeds, evaluated along training.
fn small_plan(root: &std::path::Path, samples: usize) -> StudyPlan {
    let mut set: Vec<String> = [
        "run.steps=4",
        "task.reach.train_prompts=32",
        "task.reach.eval_prompts=8",
        "warmup.steps=40",
        "warmup.batch=16",
        "rollout.prompts_per_step=4",
        "rollout.samples_per_prompt=4",
        "algorithm.set_size=2",
        "optim.lr=1e-3",
    ]
    .map(String::from)
    .to_vec();
    set.push("rollout.max_new_tokens=10".into());
    let text = format!(
        "name = \"small\"\nseeds = \"0-1\"\nruns = {:?}\nset = {:?}\n[eval]\nsamples = {samples}\nevery = 2\nresamples = 200\n[[arm]]\nname = \"POLY-EPO\"\nset = [\"algorithm.name=polyepo\"]\n[[arm]]\nname = \"GRPO\"\nset = [\"algorithm.name=grpo\"]\n",
        root.join("runs"),
        set
    );
    let path = root.join(format!("small-{samples}.toml"));
    std::fs::write(&path, text).unwrap();
    StudyPlan::load(&path).unwrap()
}

#[test]
fn a_study_reports_every_row_with_intervals_and_resumes_without_retraining() {
    let root = temp_root("study");
    let out = root.join("report");
    let runs = root.join("runs");
    let plan = small_plan(&root, 4);
    let mut evaluations = 0;
    let run = |plan: &StudyPlan, evaluations: &mut usize| {
        run_and_report(
            plan,
            &runs,
            &out,
            Arc::new(AtomicBool::new(false)),
            &mut |e| {
                if matches!(e, StudyEvent::Evaluating { .. }) {
                    *evaluations += 1;
                }
            },
        )
        .unwrap()
        .unwrap()
        .0
    };
    let summary = run(&plan, &mut evaluations);
    // base at 1 temperature, and per arm: step 2 along training + the final policy.
    assert_eq!(evaluations, 2 * (1 + 2 * 2));
    let names: Vec<&str> = summary.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["base", "POLY-EPO", "GRPO"]);
    for row in &summary.rows {
        assert_eq!(row.seeds, 2);
        let h = &row.held_out[0];
        let ks: Vec<usize> = h.pass_at.iter().map(|(k, _)| *k).collect();
        assert_eq!(ks, [1, 2, 4]);
        assert!(
            h.pass_at
                .windows(2)
                .all(|w| w[0].1.mean <= w[1].1.mean + 1e-12)
        );
        for (_, i) in &h.pass_at {
            assert!(i.lo <= i.mean + 1e-12 && i.mean <= i.hi + 1e-12, "{i:?}");
        }
        // The discovery split covers every held-out prompt.
        let d = row.discovery.as_ref().unwrap();
        assert_eq!(d.unseen_prompts + d.seen_prompts, 8);
        assert_eq!(row.training.is_some(), row.name != "base");
        if row.name != "base" {
            let steps: Vec<u64> = row.along.iter().map(|a| a.step).collect();
            assert_eq!(steps, [0, 2, 4]);
        }
    }
    // Each row's pass@M is the mean over seeds of its evaluations' own pass@M.
    for row in ["POLY-EPO", "GRPO"] {
        let slug = row.to_lowercase();
        let mean: f64 = [0, 1]
            .iter()
            .map(|s| {
                let path = runs.join(format!("{slug}-seed{s}/evals/final-t1-m4.json"));
                let e: EvalReport =
                    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
                e.pass_at_max_k()
            })
            .sum::<f64>()
            / 2.0;
        let got = summary
            .rows
            .iter()
            .find(|r| r.name == row)
            .unwrap()
            .held_out[0]
            .at(4)
            .unwrap()
            .mean;
        assert!((got - mean).abs() < 1e-12, "{row}: {got} vs {mean}");
    }
    // Paired tests against the first arm, for the other rows.
    let paired: Vec<&str> = summary.paired.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(paired, ["base", "GRPO"]);
    assert!(summary.paired.iter().all(|p| p.pass_at_max.seeds == 2));
    let md = std::fs::read_to_string(out.join("README.md")).unwrap();
    for needle in [
        "| base |",
        "| POLY-EPO |",
        "| GRPO |",
        "Discovery split",
        "Paired differences",
        "pass_at_k.svg",
    ] {
        assert!(md.contains(needle), "{needle} missing:\n{md}");
    }
    let _: StudySummary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for stem in [
        "pass_at_k",
        "training_reward",
        "training_correct_strategies",
        "along_pass_at_1",
    ] {
        assert_chart(&out.join(stem));
    }

    // Re-running resumes: nothing retrains and nothing is evaluated again.
    let metrics_written = || {
        std::fs::metadata(runs.join("poly-epo-seed0/metrics.jsonl"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = metrics_written();
    let mut again = 0;
    run(&plan, &mut again);
    assert_eq!(again, 0);
    assert_eq!(metrics_written(), before);

    // Another evaluation setting evaluates the final policies again, without retraining,
    // and keeps the earlier results beside the new ones.
    let mut redone = 0;
    let more = small_plan(&root, 6);
    let summary = run(&more, &mut redone);
    assert_eq!(redone, 2 * 3);
    assert_eq!(summary.samples, 6);
    assert_eq!(metrics_written(), before);
    assert!(runs.join("grpo-seed1/evals/final-t1-m4.json").exists());

    // A further held-out split evaluates every final policy (and the base) once more, at the
    // main temperature, with its own table and paired differences.
    let mut more = more;
    more.eval.splits.push(EvalSplit {
        name: "training".into(),
        set: vec!["task.reach.held_out=training".into()],
    });
    let mut on_split = 0;
    let summary = run(&more, &mut on_split);
    assert_eq!(on_split, 3 * 2);
    assert_eq!(metrics_written(), before);
    assert_eq!(summary.splits.len(), 1);
    let split = &summary.splits[0];
    assert_eq!(split.prompts, 8);
    let names: Vec<&str> = split.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["base", "POLY-EPO", "GRPO"]);
    let paired: Vec<&str> = split.paired.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(paired, ["base", "GRPO"]);
    // The split's prompts are not the main held-out ones, so its figures are its own.
    let per_prompt = |path: &str| {
        let e: EvalReport =
            serde_json::from_str(&std::fs::read_to_string(runs.join(path)).unwrap()).unwrap();
        e.per_prompt
    };
    let split_file = std::fs::read_dir(runs.join("grpo-seed0/evals"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("final-training"))
        .expect("the split's evaluation file");
    assert_ne!(
        per_prompt(&format!("grpo-seed0/evals/{split_file}")),
        per_prompt("grpo-seed0/evals/final-t1-m6.json")
    );
    let md = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(md.contains("## Held-out split `training`"), "{md}");

    // A fresh machine without `runs/` takes every unit from the archive beside the report:
    // nothing is trained or evaluated, and the summary is the same.
    let archived: Vec<String> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(archived.len(), 2 * 3, "{archived:?}");
    assert!(
        archived.iter().all(|f| f.ends_with(".json.gz")),
        "{archived:?}"
    );
    // A plain JSON unit of an earlier version is read as well.
    let gz = out.join("runs/grpo-seed1.json.gz");
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()),
        &mut plain,
    )
    .unwrap();
    std::fs::write(out.join("runs/grpo-seed1.json"), plain).unwrap();
    std::fs::remove_file(&gz).unwrap();
    let away = root.join("runs-away");
    std::fs::rename(&runs, &away).unwrap();
    let mut from_archive = 0;
    let again = run(&more, &mut from_archive);
    assert_eq!(from_archive, 0);
    assert!(!runs.join("grpo-seed0").exists());
    assert_eq!(
        serde_json::to_string(&again).unwrap(),
        serde_json::to_string(&summary).unwrap()
    );
    // A unit whose config no longer matches is made again, not taken from the archive.
    let mut shorter = more.clone();
    shorter.arms[1].set.push("run.steps=3".into());
    let mut retrained = 0;
    run_and_report(
        &shorter,
        &runs,
        &out,
        Arc::new(AtomicBool::new(false)),
        &mut |e| {
            if matches!(e, StudyEvent::Evaluating { .. }) {
                retrained += 1;
            }
        },
    )
    .unwrap()
    .unwrap();
    // GRPO at both seeds: step 2 along training, the final policy and the split.
    assert_eq!(retrained, 2 * 3);
    assert!(runs.join("grpo-seed0/metrics.jsonl").exists());
    assert!(!runs.join("poly-epo-seed0").exists());
    std::fs::remove_dir_all(&runs).unwrap();
    std::fs::rename(&away, &runs).unwrap();
    // The runs on disk put the archive back in step without evaluating anything.
    let mut restored = 0;
    run(&more, &mut restored);
    assert_eq!(restored, 0);

    // A shared runs directory refuses to hand an arm a run made with another config.
    let mut changed = more.clone();
    changed.arms[1].set.push("loss.clip_high=0.3".into());
    let err = run_and_report(
        &changed,
        &runs,
        &out,
        Arc::new(AtomicBool::new(false)),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("another config") && err.contains("GRPO"),
        "{err}"
    );

    // A single run's training report.
    let run_dir = runs.join("grpo-seed1");
    let files = training_report("grpo-seed1", &read_metrics(&run_dir).unwrap(), &run_dir).unwrap();
    assert!(files.iter().all(|f| f.exists()));
    for stem in ["reward", "strategies", "entropy"] {
        assert_chart(&run_dir.join(stem));
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn experiment_cli_names_the_file_and_key_of_a_bad_plan() {
    let root = temp_root("badplan");
    let plan = root.join("plan.toml");
    std::fs::write(
        &plan,
        "name = \"x\"\nseeds = \"0-1\"\n[[arm]]\nname = \"a\"\nset = [\"rollout.samples_per_prompt=many\"]\n",
    )
    .unwrap();
    let (ok, err) = polyepo(&["experiment", plan.to_str().unwrap()]);
    assert!(
        !ok && err.contains("plan.toml")
            && err.contains("arm[0]")
            && err.contains("samples_per_prompt"),
        "{err}"
    );
    std::fs::write(&plan, "name = \"x\"\nseeds = \"2-1\"\n").unwrap();
    let (ok, err) = polyepo(&["experiment", plan.to_str().unwrap()]);
    assert!(
        !ok && err.contains("plan.toml") && err.contains("2-1"),
        "{err}"
    );
    // A split may only change the task, and only to a valid value.
    for (set, needles) in [
        ("optim.lr=0", vec!["eval.split[0]", "task.*"]),
        (
            "task.reach.held_out=sideways",
            vec!["eval.split[0]", "held_out"],
        ),
    ] {
        std::fs::write(
            &plan,
            format!(
                "name = \"x\"\nseeds = \"0\"\n[[arm]]\nname = \"a\"\nset = []\n[[eval.split]]\nname = \"s\"\nset = [\"{set}\"]\n"
            ),
        )
        .unwrap();
        let (ok, err) = polyepo(&["experiment", plan.to_str().unwrap()]);
        assert!(!ok && err.contains("plan.toml"), "{err}");
        for needle in needles {
            assert!(err.contains(needle), "{needle} missing: {err}");
        }
    }
    let (ok, err) = polyepo(&["compare", "--seeds", "1,1"]);
    assert!(!ok && err.contains("twice"), "{err}");
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
    // Each prompt records which correct strategies it found; with no habits the warm-up
    // may show every solution, so none is undemonstrated.
    assert!(report.per_prompt.iter().any(|p| p.correct_strategies > 0));
    for p in &report.per_prompt {
        assert_eq!(p.correct_strategy_ids.len(), p.correct_strategies);
        assert!(p.correct_strategy_ids.is_sorted());
        assert_eq!(p.correct_undemonstrated, Some(Vec::new()));
    }
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
