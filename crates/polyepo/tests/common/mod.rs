//! Helpers shared by the trainer and comparison tests.
#![allow(dead_code)]

use std::path::PathBuf;

use std::path::Path;

use polyepo::rl::config::TrainConfig;
use polyepo::rl::tasks::Task;
use polyepo::rl::train::policy::{self, Policy};
use polyepo::rl::train::warmup;

/// A run small enough for a test: tiny warm-up, 4 prompts × 4 samples per step.
pub fn small_config() -> TrainConfig {
    TrainConfig::load(
        None,
        &[
            "run.steps=4".into(),
            "run.checkpoint_every=0".into(),
            "task.reach.train_prompts=32".into(),
            "task.reach.eval_prompts=8".into(),
            "warmup.steps=40".into(),
            "warmup.batch=16".into(),
            "rollout.prompts_per_step=4".into(),
            "rollout.samples_per_prompt=4".into(),
            "algorithm.set_size=2".into(),
            "optim.lr=1e-3".into(),
        ],
    )
    .unwrap()
}

pub fn temp_root(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polyepo-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The trainer's starting policy for `cfg` (tiny model): the cached warm-up, made trainable.
pub fn warmed_up_policy(cfg: &TrainConfig, task: &dyn Task, cache: &Path) -> Policy {
    let base = warmup::cached_base(cfg, task, cache, &mut |_| {}).unwrap();
    Policy::build(
        &base,
        &cfg.model,
        &policy::open_device(cfg.model.device).unwrap(),
        cfg.loss.kl_coef > 0.0,
        cfg.run.seed,
        task.wants_chat_template(),
    )
    .unwrap()
}
