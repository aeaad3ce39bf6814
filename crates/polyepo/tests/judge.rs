//! The LM judge against the project's own OpenAI-compatible server running SmolLM2: the
//! protocol, the reply validation, retries, the failure policies, the cache, and that the
//! API key never shows. The tests check plumbing, not the judge's taste.

#[path = "../../engine/tests/common/mod.rs"]
mod engine_common;
use std::path::PathBuf;

use candle_core::{DType, Device};
use polyepo::app::serve::{ServeLimits, Server};
use polyepo::rl::judge::lm::{FailurePolicy, LmJudge, LmJudgeConfig, ResponseFormat};
use polyepo::rl::judge::outcome::{FailureReason, OutcomeKind};
use polyepo::rl::judge::{JudgeError, StrategyJudge};
use polyepo::rl::tasks::{Prompt, Spec};
use polyepo_engine::model::load_model;
use setrl::Strategy;

fn server() -> Server {
    let path = engine_common::smollm2_path();
    let loaded = load_model(&path, DType::F32, &Device::Cpu).unwrap();
    Server::start(
        loaded.model,
        loaded.tokenizer,
        "smollm2".into(),
        "127.0.0.1:0",
        ServeLimits {
            max_new_tokens: 128,
            ..ServeLimits::default()
        },
        4,
    )
    .unwrap()
}

/// A short run on the tiny model whose strategy labels come from the LM judge, with
/// `extra` overrides (the judge's endpoint and the like).
fn lm_judged_training(extra: &[String]) -> polyepo::rl::config::TrainConfig {
    let mut set: Vec<String> = [
        "task.reach.train_prompts=32",
        "task.reach.eval_prompts=8",
        "warmup.steps=20",
        "warmup.batch=8",
        "rollout.prompts_per_step=4",
        "rollout.samples_per_prompt=4",
        "algorithm.set_size=2",
        "algorithm.judge=lm",
    ]
    .map(String::from)
    .to_vec();
    set.extend_from_slice(extra);
    polyepo::rl::config::TrainConfig::load(None, &set).unwrap()
}

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polyepo-judge-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A prompt file SmolLM2 follows greedily: copy a fixed JSON reply. It exercises the whole
/// success path (HTTP, chat template, generation, reply parsing) with a real model.
fn copy_prompt(dir: &std::path::Path) -> String {
    let path = dir.join("copy.txt");
    std::fs::write(&path, "Task {problem}. Copy this text exactly and write nothing else:\n{\"1\": {\"chain_of_thought\": \"a\", \"cluster_id\": 0}, \"2\": {\"chain_of_thought\": \"b\", \"cluster_id\": 1}, \"3\": {\"chain_of_thought\": \"c\", \"cluster_id\": 100}}").unwrap();
    path.to_string_lossy().into_owned()
}

fn prompt() -> Prompt {
    Prompt {
        text: "What is 2+3?".into(),
        spec: Spec::Unverified,
    }
}

fn responses() -> Vec<String> {
    vec![
        "2+3=5".into(),
        "Count up from 2: 3, 4, 5.".into(),
        "banana banana".into(),
    ]
}

#[test]
fn labels_a_group_through_the_real_server_and_caches_it() {
    let server = server();
    let dir = temp("ok");
    let cfg = LmJudgeConfig {
        endpoint: format!("http://{}/v1", server.addr),
        model: "smollm2".into(),
        prompt: copy_prompt(&dir),
        max_tokens: 96,
        cache: Some(dir.join("cache.jsonl")),
        ..LmJudgeConfig::default()
    };
    let judge = LmJudge::new(cfg.clone()).unwrap();
    let labels = judge.label(&prompt(), &responses()).unwrap();
    assert_eq!(
        labels,
        vec![
            Strategy::Cluster(0),
            Strategy::Cluster(1),
            Strategy::Degenerate
        ]
    );
    assert_eq!(judge.stats().calls, 1);
    assert_eq!(judge.stats().labelled, 1);
    // The same group again: answered from the cache, no request.
    let again = judge.label_group(&prompt().text, &responses());
    assert_eq!(again.kind(), OutcomeKind::Cached);
    assert_eq!(judge.stats().calls, 1);
    // A new judge reads the cache file: re-running an evaluation does not pay twice.
    let fresh = LmJudge::new(cfg).unwrap();
    assert_eq!(
        fresh.label_group(&prompt().text, &responses()).kind(),
        OutcomeKind::Cached
    );
    assert_eq!(fresh.stats().calls, 0);
    // Concurrent groups (different prompts, so different requests) are all answered.
    let problems: Vec<String> = (1..=4).map(|i| format!("number {i}")).collect();
    let responses = responses();
    let groups: Vec<(&str, &[String])> = problems
        .iter()
        .map(|p| (p.as_str(), responses.as_slice()))
        .collect();
    let labelled = judge.label_groups(&groups);
    assert!(
        labelled.iter().all(|l| l.kind() == OutcomeKind::Labelled),
        "{labelled:?}"
    );
    assert_eq!(judge.stats().calls, 5);
    server.shutdown();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn invalid_replies_are_retried_counted_and_handled_by_policy() {
    let server = server();
    let base = LmJudgeConfig {
        endpoint: format!("http://{}/v1", server.addr),
        model: "smollm2".into(),
        prompt: "generic".into(),
        max_tokens: 8, // far too short for a JSON reply: always invalid
        retries: 1,
        backoff_s: 0.01,
        ..LmJudgeConfig::default()
    };
    for (policy, expected) in [
        (
            FailurePolicy::Distinct,
            Some(vec![
                Strategy::Cluster(0),
                Strategy::Cluster(1),
                Strategy::Cluster(2),
            ]),
        ),
        (FailurePolicy::Single, Some(vec![Strategy::Cluster(0); 3])),
        (FailurePolicy::Skip, None),
    ] {
        let judge = LmJudge::new(LmJudgeConfig {
            failure_policy: policy,
            ..base.clone()
        })
        .unwrap();
        let result = judge.label(&prompt(), &responses());
        match expected {
            Some(labels) => assert_eq!(result.unwrap(), labels),
            None => assert!(
                matches!(result, Err(JudgeError::Skipped(ref f)) if f.reason == FailureReason::InvalidReply)
            ),
        }
        let stats = judge.stats();
        assert_eq!((stats.calls, stats.retries), (2, 1));
        assert_eq!(stats.failures.get("invalid-reply"), Some(&1));
        // What failed is kept, with the start of the reply that could not be used.
        let last = stats.last_failure.unwrap_or_default();
        assert!(
            last.starts_with("invalid-reply: ") && last.contains("the reply began \""),
            "{last}"
        );
    }
    // A request the server refuses (max_tokens over its limit) is a 400: not retried.
    let judge = LmJudge::new(LmJudgeConfig {
        max_tokens: 100_000,
        ..base
    })
    .unwrap();
    let l = judge.label_group(&prompt().text, &responses());
    assert_eq!(
        l.failure().map(|f| f.reason),
        Some(FailureReason::Http(400))
    );
    assert_eq!(judge.stats().calls, 1);
    server.shutdown();
}

#[test]
fn latency_runs_to_the_end_of_the_reply_and_timeouts_say_so() {
    let server = server();
    let dir = temp("latency");
    let judge = LmJudge::new(LmJudgeConfig {
        endpoint: format!("http://{}/v1", server.addr),
        model: "smollm2".into(),
        prompt: copy_prompt(&dir),
        max_tokens: 96,
        response_format: ResponseFormat::None,
        ..LmJudgeConfig::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let labelled = judge.label_group(&prompt().text, &responses());
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(labelled.kind(), OutcomeKind::Labelled, "{labelled:?}");
    // The reply outlasts a heartbeat, so the server sent its headers before the reply.
    assert!(wall > 0.5, "a {wall} s reply proves nothing here");
    let latency = judge.stats().latency_s;
    assert!(
        latency > 0.8 * wall && latency <= wall,
        "latency {latency} s of a {wall} s call"
    );
    server.shutdown();

    // A server that accepts and never answers: the failure is a timeout, not an invalid reply.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let judge = LmJudge::new(LmJudgeConfig {
        endpoint: format!("http://{}/v1", silent.local_addr().unwrap()),
        timeout_s: 0.3,
        retries: 0,
        ..LmJudgeConfig::default()
    })
    .unwrap();
    let l = judge.label_group("p", &responses());
    let failure = l.failure().expect("a silent server fails");
    assert_eq!(failure.reason, FailureReason::Timeout, "{failure}");
    assert!(failure.detail.contains("timeout_s = 0.3"), "{failure}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_endpoints_and_unwritable_caches_are_refused_at_construction() {
    for (endpoint, says) in [
        ("127.0.0.1:8000/v1", "not an http"),
        ("http:///v1", "names no host"),
        ("http://host:port/v1", "port \"port\""),
    ] {
        let e = LmJudge::new(LmJudgeConfig {
            endpoint: endpoint.into(),
            ..LmJudgeConfig::default()
        })
        .err()
        .unwrap_or_else(|| panic!("{endpoint} accepted"));
        let text = e.to_string();
        assert!(text.contains("`endpoint`") && text.contains(says), "{text}");
    }
    let e = LmJudge::new(LmJudgeConfig {
        cache: Some("/nonexistent-dir/cache.jsonl".into()),
        ..LmJudgeConfig::default()
    })
    .err()
    .expect("unwritable cache accepted");
    assert!(
        e.to_string()
            .contains("cannot write /nonexistent-dir/cache.jsonl"),
        "{e}"
    );
}

#[test]
fn a_run_whose_judge_fails_on_every_group_stops_naming_the_judge() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = temp("guard");
    let cfg = lm_judged_training(&[
        "run.steps=10".into(),
        format!("judge.endpoint=\"http://{closed}/v1\""),
        "judge.retries=0".into(),
    ]);
    let run = dir.join("run");
    let mut logged = Vec::new();
    let e = polyepo::rl::train::train(
        &cfg,
        &run,
        polyepo::rl::train::TrainOptions {
            resume: false,
            stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            on_event: &mut |e| {
                if let polyepo::rl::train::Event::Log(line) = e {
                    logged.push(line);
                }
            },
        },
    )
    .expect_err("a run with an unreachable judge finished");
    let text = e.to_string();
    assert!(
        text.contains(&format!("model `judge` at http://{closed}/v1"))
            && text.contains("failed on 4 of 4 groups")
            && text.contains("3 consecutive steps")
            && text.contains("last failure: connection"),
        "{text}"
    );
    // Two steps were trained (and logged with the failure) before the third tripped it.
    let metrics = polyepo::rl::train::run_dir::read_metrics(&run).unwrap();
    assert_eq!(metrics.len(), 2);
    assert!(
        logged
            .iter()
            .any(|l| l.contains("step 1: the judge failed on 4 of 4 groups (policy skip)")),
        "{logged:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unreachable_endpoints_fail_cleanly_and_never_show_the_key() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = temp("key");
    let input = dir.join("groups.jsonl");
    std::fs::write(
        &input,
        "{\"prompt\": \"2+3?\", \"responses\": [\"5\", \"five\"]}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_polyepo"))
        .args([
            "judge",
            "--input",
            input.to_str().unwrap(),
            "--endpoint",
            &format!("http://{closed}/v1"),
            "--model",
            "m",
        ])
        .args([
            "--retries",
            "2",
            "--backoff",
            "0.01",
            "--failure-policy",
            "distinct",
        ])
        .env("POLYEPO_JUDGE_API_KEY", "sk-very-secret-123")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["clusters"], serde_json::json!([0, 1]));
    assert_eq!(line["outcome"], "failed");
    assert_eq!(line["reason"], "connection");
    assert!(
        stderr.contains("\"connection\":1") && stderr.contains("\"retries\":2"),
        "{stderr}"
    );
    assert!(!stdout.contains("sk-very-secret") && !stderr.contains("sk-very-secret"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn training_can_take_its_strategy_labels_from_the_lm_judge() {
    let server = server();
    let dir = temp("train");
    let prompt_file = dir.join("copy4.txt");
    std::fs::write(&prompt_file, "Copy this text exactly and write nothing else:\n{\"1\": {\"chain_of_thought\": \"a\", \"cluster_id\": 0}, \"2\": {\"chain_of_thought\": \"b\", \"cluster_id\": 1}, \"3\": {\"chain_of_thought\": \"a\", \"cluster_id\": 0}, \"4\": {\"chain_of_thought\": \"d\", \"cluster_id\": 100}}\n\nReference: {problem}").unwrap();
    let cfg = lm_judged_training(&[
        "run.steps=1".into(),
        format!("judge.endpoint=\"http://{}/v1\"", server.addr),
        "judge.model=\"smollm2\"".into(),
        format!("judge.prompt=\"{}\"", prompt_file.display()),
        "judge.max_tokens=96".into(),
        "judge.retries=0".into(),
    ]);
    let run = dir.join("run");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    polyepo::rl::train::train(
        &cfg,
        &run,
        polyepo::rl::train::TrainOptions {
            resume: false,
            stop,
            on_event: &mut |_| {},
        },
    )
    .unwrap();
    let m = &polyepo::rl::train::run_dir::read_metrics(&run).unwrap()[0];
    assert_eq!(m.judge_calls, 4.0, "one request per prompt");
    assert_eq!(m.judge_failures, 0.0);
    // The judge's labels, not the task's: clusters 0 and 1 in every group, one degenerate.
    assert_eq!(m.clusters_all, 2.0);
    assert_eq!(m.degenerate, 1.0);
    server.shutdown();
    std::fs::remove_dir_all(&dir).ok();
}
