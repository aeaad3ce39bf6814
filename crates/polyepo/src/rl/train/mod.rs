//! The on-policy training loop (docs/design.md §1): for each batch of prompts, sample N
//! generations each → reward → strategy labels → marginal set advantages → PPO update.

pub mod error;
pub mod metrics;
pub mod policy;
pub mod rollout;
pub mod run_dir;
pub mod sequences;
pub mod tensorboard;
pub mod update;
pub mod warmup;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

pub use error::{TrainError, TrainResult};
pub use metrics::StepMetrics;

use crate::rl::config::{JudgeSource, ModelSource, TrainConfig};
use crate::rl::judge::lm::LmJudge;
use crate::rl::judge::noisy::NoisyJudge;
use crate::rl::judge::{StrategyJudge, TaskJudge};
use crate::rl::tasks::{Prompt, Task};
use policy::Policy;
use polyepo_engine::model::{Llama, TextTokenizer};
use polyepo_engine::optim::AdamW;
use run_dir::RunDir;

/// What the loop reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// A line for the log.
    Log(String),
    /// The loop is about to run steps `from + 1 ..= total`.
    Start {
        /// Steps already done (resume).
        from: u64,
        /// Total steps.
        total: u64,
    },
    /// A step finished.
    Step(&'a StepMetrics),
    /// A periodic checkpoint was saved (`run.checkpoint_every`): the policy as it is now,
    /// for callers that evaluate along training.
    Checkpoint {
        /// Steps done.
        step: u64,
        /// The policy's model.
        model: &'a Llama,
        /// Its tokenizer.
        tokenizer: &'a TextTokenizer,
    },
}

/// How to run.
pub struct TrainOptions<'a> {
    /// Continue from the run directory's latest checkpoint.
    pub resume: bool,
    /// Set (e.g. by Ctrl-C) to finish the current step, save and stop.
    pub stop: Arc<AtomicBool>,
    /// Progress and log sink.
    pub on_event: &'a mut dyn FnMut(Event<'_>),
}

/// What a finished (or stopped) run leaves behind.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Steps completed.
    pub steps: u64,
    /// The exported final model.
    pub final_model: PathBuf,
    /// Whether the run was stopped before its last step.
    pub interrupted: bool,
}

/// The task `cfg` describes.
pub fn build_task(cfg: &TrainConfig) -> TrainResult<Box<dyn Task>> {
    cfg.task.build()
}

/// The strategy judge `algorithm.judge` selects (none when nothing can label this task).
pub fn build_judge<'a>(
    cfg: &TrainConfig,
    task: &'a dyn Task,
) -> TrainResult<Option<Box<dyn StrategyJudge + 'a>>> {
    let use_lm = match cfg.algorithm.judge {
        JudgeSource::Lm => true,
        JudgeSource::Both => !task.has_labeler(),
        JudgeSource::Task => false,
    };
    let judge: Option<Box<dyn StrategyJudge + 'a>> = if use_lm {
        Some(Box::new(LmJudge::new(cfg.judge.clone())?))
    } else {
        task.has_labeler()
            .then(|| Box::new(TaskJudge::new(task)) as Box<dyn StrategyJudge + 'a>)
    };
    let noise = cfg.algorithm.label_noise;
    Ok(match judge {
        Some(inner) if noise.p > 0.0 => Some(Box::new(NoisyJudge::new(
            inner,
            noise,
            cfg.judge.failure_policy,
            cfg.run.seed,
        ))),
        other => other,
    })
}

/// The prompts of step `step` (0-based): consecutive slices of per-epoch shuffles of the
/// training prompts, a pure function of (seed, step) so a resumed run sees the same data.
pub fn step_prompts(task: &dyn Task, cfg: &TrainConfig, step: u64) -> Vec<Prompt> {
    let all = task.train_prompts();
    let per_step = cfg.rollout.prompts_per_step;
    let start = step as usize * per_step;
    let mut order_of_epoch: Option<(usize, Vec<usize>)> = None;
    (start..start + per_step)
        .map(|i| {
            let (epoch, within) = (i / all.len(), i % all.len());
            if order_of_epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let mut order: Vec<usize> = (0..all.len()).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                    cfg.run.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9),
                ));
                order_of_epoch = Some((epoch, order));
            }
            let order = &order_of_epoch.as_ref().map(|(_, o)| o).expect("set above");
            all[order[within]].clone()
        })
        .collect()
}

/// Trains the policy `cfg` describes, writing everything into `run_dir`.
pub fn train(cfg: &TrainConfig, run_dir: &Path, opts: TrainOptions<'_>) -> TrainResult<RunSummary> {
    let on_event = opts.on_event;
    let run = RunDir::open(run_dir, cfg, opts.resume)?;
    let task = build_task(cfg)?;
    // Opened before the warm-up, so a device that cannot open fails now, not minutes later.
    let device = policy::open_device(cfg.model.device)?;

    // Warm-up: the tiny model has no pretraining, so a supervised phase on the task's
    // demonstrations makes its base policy (cached, shared by every run with the same
    // settings). A model from disk is its own base.
    let base = match &cfg.model.source {
        ModelSource::Tiny => warmup::cached_base(cfg, task.as_ref(), &run.cache_dir(), &mut |m| {
            on_event(Event::Log(m))
        })?,
        ModelSource::Path(path) => path.clone(),
    };
    let policy = Policy::build(
        &base,
        &cfg.model,
        &device,
        cfg.loss.kl_coef > 0.0,
        cfg.run.seed,
        task.wants_chat_template(),
    )?;
    let judge = build_judge(cfg, task.as_ref())?;
    let judge = judge.as_deref();
    let mut judge_guard = judge.and_then(|j| j.guard());
    let mut opt = AdamW::new(policy.vars.clone(), cfg.optim.adamw.clone())?;
    let update_settings = update::UpdateSettings::of(cfg);
    let mut step = if opts.resume {
        run.restore(&policy, &mut opt, &mut |m| on_event(Event::Log(m)))?
    } else {
        0
    };
    if cfg.optim.adamw.lr == 0.0 {
        on_event(Event::Log(
            "warning: optim.lr = 0: a control run, the policy will not change".into(),
        ));
    }
    on_event(Event::Start {
        from: step,
        total: cfg.run.steps,
    });
    let mut events =
        tensorboard::EventWriter::create(run.root()).map_err(|e| TrainError::io(run.root(), e))?;
    let mut saved_at = step;
    let mut interrupted = false;

    while step < cfg.run.steps {
        // Rollout → reward → judge → advantage, on this step's prompts.
        let prompts = step_prompts(task.as_ref(), cfg, step);
        let seed = cfg.run.seed.wrapping_mul(1_000_003).wrapping_add(step);
        let judge_before = judge.and_then(|j| j.stats()).unwrap_or_default();
        let (batch, times) = rollout::collect(
            &policy,
            task.as_ref(),
            judge,
            &prompts,
            &cfg.rollout,
            &cfg.algorithm,
            seed,
        )?;
        let judge_after = judge.and_then(|j| j.stats()).unwrap_or_default();
        let failed = judge_after.failures_since(&judge_before) as usize;
        if failed > 0 {
            on_event(Event::Log(format!(
                "step {}: the judge failed on {failed} of {} groups (policy {}); last: {}",
                step + 1,
                prompts.len(),
                cfg.judge.failure_policy.name(),
                judge_after.last_failure.as_deref().unwrap_or("?"),
            )));
        }
        if let Some(guard) = &mut judge_guard {
            guard
                .observe(prompts.len(), failed, judge_after.last_failure.as_deref())
                .map_err(TrainError::from)?;
        }

        // Policy update.
        let start = std::time::Instant::now();
        let stats = update::ppo_update(&policy, &mut opt, &batch, &update_settings, step + 1)?;
        step += 1;

        // Log.
        let mut m = StepMetrics::from_batch(step, &batch, times);
        m.time_update = start.elapsed().as_secs_f64();
        m.set_judge(&judge_before, &judge_after);
        m.update = stats;
        run.append_metrics(&m)?;
        events
            .scalars(step, &m.scalars())
            .map_err(|e| TrainError::io(events.path(), e))?;
        on_event(Event::Step(&m));

        // Checkpoint.
        let stop = opts.stop.load(Ordering::SeqCst);
        let periodic = cfg.run.checkpoint_every > 0 && step % cfg.run.checkpoint_every == 0;
        if stop || periodic {
            let dir = run.save_checkpoint(step, &policy, &opt)?;
            saved_at = step;
            on_event(Event::Log(format!("checkpoint {}", dir.display())));
            if periodic {
                on_event(Event::Checkpoint {
                    step,
                    model: &policy.model,
                    tokenizer: &policy.tokenizer,
                });
            }
        }
        if stop && step < cfg.run.steps {
            interrupted = true;
            on_event(Event::Log(format!(
                "stopped after step {step}; resume with `polyepo train --resume {}`",
                run.root().display()
            )));
            break;
        }
    }
    if saved_at != step {
        run.save_checkpoint(step, &policy, &opt)?;
    }
    let final_model = run.save_final(&policy)?;
    Ok(RunSummary {
        run_dir: run.root().to_owned(),
        steps: step,
        final_model,
        interrupted,
    })
}
