//! Property tests over the three readers of user input: the configuration loader (with
//! `--set` overrides), the JSONL dataset reader and `polyepo advantages` lines. Whatever the
//! input, they return a value or an error; they never panic, hang or produce non-finite
//! advantages.

use polyepo::rl::advantage_request::{RequestOptions, parse_request};
use polyepo::rl::config::TrainConfig;
use polyepo::rl::tasks::jsonl::read_records;
use polyepo::rl::train::build_task;
use proptest::prelude::*;

/// Keys whose values steer generation loops, sizes or arithmetic.
const KEYS: &[&str] = &[
    "run.steps",
    "task.kind",
    "task.reach.train_prompts",
    "task.reach.eval_prompts",
    "task.reach.train_steps",
    "task.reach.set_size",
    "task.reach.min_solutions",
    "task.reach.habits",
    "task.digits.train_digits",
    "task.digits.set_size",
    "task.digits.lengths",
    "task.countdown.numbers",
    "task.countdown.max_number",
    "warmup.batch",
    "warmup.skew",
    "rollout.samples_per_prompt",
    "rollout.prompts_per_step",
    "rollout.top_p",
    "rollout.max_new_tokens",
    "algorithm.set_size",
    "algorithm.estimator",
    "algorithm.sets",
    "algorithm.lambda",
    "optim.lr",
    "optim.beta1",
    "optim.beta2",
    "optim.eps",
    "optim.grad_clip",
    "optim.minibatches",
    "loss.clip_low",
    "loss.dual_clip",
    "judge.timeout_s",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        (-20i64..40).prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        Just("-inf".to_owned()),
        prop::collection::vec(-12i64..12, 0..6).prop_map(|v| format!("{v:?}")),
        prop::sample::select(vec![
            "reach",
            "digits",
            "countdown",
            "jsonl",
            "sampled",
            "x"
        ])
        .prop_map(str::to_owned),
        "[a-z\\[\\]=\"{}.,]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_config_loader_errors_or_yields_a_buildable_task(
        sets in prop::collection::vec((prop::sample::select(KEYS), value()), 1..4)
    ) {
        let overrides: Vec<String> = sets.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Ok(cfg) = TrainConfig::load(None, &overrides) {
            // A configuration that loads builds its task or says why, in bounded time.
            let _ = build_task(&cfg);
        }
    }

    #[test]
    fn the_jsonl_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let dir = std::env::temp_dir().join(format!("polyepo-fuzz-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_records(&path);
    }

    #[test]
    fn advantage_lines_error_or_give_finite_advantages(
        objective in prop::sample::select(vec![
            "polychromatic", "mean", "max", "grpo", "drgrpo", "diversity-bonus", "bogus",
        ]),
        rewards in prop::collection::vec(
            prop_oneof![any::<f64>(), -2.0f64..2.0, Just(1e308)], 0..10),
        clusters in prop::option::of(prop::collection::vec(prop::option::of(-3i64..4), 0..10)),
        set_size in prop::option::of(0usize..12),
        estimator in prop::option::of(prop::sample::select(vec!["exact", "enumerate", "sampled"])),
        sets in prop::option::of(prop_oneof![0usize..40, Just(usize::MAX)]),
        lambda in prop::option::of(any::<f64>()),
    ) {
        let mut line = serde_json::json!({ "objective": objective, "rewards": rewards });
        if let Some(c) = clusters { line["clusters"] = serde_json::json!(c); }
        if let Some(n) = set_size { line["set_size"] = serde_json::json!(n); }
        if let Some(e) = estimator { line["estimator"] = serde_json::json!(e); }
        if let Some(k) = sets { line["sets"] = serde_json::json!(k); }
        if let Some(l) = lambda { line["lambda"] = serde_json::json!(l); }
        let options = RequestOptions { degenerate_id: Some(3), max_sets: 1 << 16 };
        if let Ok(request) = parse_request(&line.to_string())
            && let Ok(reply) = request.compute(options) {
                prop_assert!(reply.advantages.iter().all(|a| a.is_finite()), "{line}");
                prop_assert_eq!(reply.advantages.len(), request.rewards.len());
            }
    }
}
