//! Runs a study: for every seed, the starting policy's evaluation (the base row) and every
//! arm's training run with its evaluations. Resumable: finished runs are not retrained, an
//! interrupted one resumes from its checkpoint, and a stored evaluation is reused only when
//! it was made with the same settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::archive::{Archive, Wanted, unit_name};
use super::plan::{Arm, BASE_ROW, EvalSplit, StudyPlan};
use crate::app::eval::{EvalReport, EvalSettings, evaluate};
use crate::rl::config::{ModelSource, TrainConfig};
use crate::rl::train::run_dir::{EvalOf, RunDir, read_metrics};
use crate::rl::train::{
    Event, StepMetrics, TrainError, TrainOptions, TrainResult, build_task, policy, train, warmup,
};
use polyepo_engine::atomic::write_atomic;
use polyepo_engine::model::{Llama, TextTokenizer, load_model};

/// One seed of one row: its evaluations and training record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRun {
    /// Seed.
    pub seed: u64,
    /// The final policy evaluated at each of the study's temperatures, in plan order.
    pub evals: Vec<EvalReport>,
    /// (step, evaluation at the main temperature) along training, the base at step 0 and
    /// the final policy last (empty for the base row).
    pub along: Vec<(u64, EvalReport)>,
    /// The training metrics (empty for the base row).
    pub metrics: Vec<StepMetrics>,
    /// The final policy on each of the plan's further held-out splits, at the main
    /// temperature, in plan order.
    #[serde(default)]
    pub splits: Vec<(EvalSplit, EvalReport)>,
}

/// Every seed of one row of the study.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowRuns {
    /// Row label (an arm's name, or `base`).
    pub name: String,
    /// Whether this is the starting policy.
    pub is_base: bool,
    /// One entry per seed, in the plan's seed order.
    pub runs: Vec<SeedRun>,
}

/// Everything a study measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyRuns {
    /// Evaluation temperatures, the main one first.
    pub temperatures: Vec<f64>,
    /// Samples per held-out prompt.
    pub samples: usize,
    /// Training steps per run.
    pub steps: u64,
    /// The base row first, then the arms in plan order.
    pub rows: Vec<RowRuns>,
}

/// Progress of a study.
#[derive(Debug)]
pub enum StudyEvent<'a> {
    /// Starting unit `index` of `total` (one training run, or one base evaluation).
    Run {
        /// Which one (0-based).
        index: usize,
        /// How many in all.
        total: usize,
        /// Its directory.
        dir: &'a Path,
    },
    /// Evaluating a policy.
    Evaluating {
        /// The run directory.
        dir: &'a Path,
        /// What is evaluated (`final at T=1`, `step 50`).
        what: String,
    },
    /// An event of the current training run.
    Train(Event<'a>),
}

/// Where a study keeps an evaluation of the run in `dir` (the names are `RunDir`'s).
fn eval_file(dir: &Path, of: EvalOf<'_>, settings: &EvalSettings) -> PathBuf {
    RunDir::at(dir).study_eval_path(of, settings.temperature, settings.samples)
}

fn stored(path: &Path, settings: &EvalSettings) -> Option<EvalReport> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<EvalReport>(&text)
        .ok()
        .filter(|r| r.settings.as_ref() == Some(settings))
}

fn save(path: &Path, report: &EvalReport) -> TrainResult<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    }
    let json = serde_json::to_vec_pretty(report).map_err(|e| TrainError::file(path, e))?;
    write_atomic(path, &json).map_err(|e| TrainError::io(path, e))
}

/// The steps strictly inside a run of `steps` at which the policy is evaluated along training.
fn along_steps(every: u64, steps: u64) -> Vec<u64> {
    if every == 0 {
        return Vec::new();
    }
    (1..)
        .map(|i| i * every)
        .take_while(|&s| s < steps)
        .collect()
}

/// Runs one study (runs under `runs_root`), returning `None` when stopped. A unit found in
/// `archive` with the config and evaluation settings the plan asks for is taken from there
/// (the machine may not have `runs/` any more); every unit made is archived.
pub fn run_study(
    plan: &StudyPlan,
    runs_root: &Path,
    archive: &Archive,
    stop: Arc<AtomicBool>,
    on_event: &mut dyn FnMut(StudyEvent<'_>),
) -> TrainResult<Option<StudyRuns>> {
    std::fs::create_dir_all(runs_root).map_err(|e| TrainError::io(runs_root, e))?;
    let first = plan.base_config(plan.seeds.0[0])?;
    let temperatures = plan.temperatures(first.rollout.temperature);
    let settings_at = |cfg: &TrainConfig, temperature: f64| EvalSettings {
        samples: plan.eval.samples,
        temperature,
        max_new_tokens: cfg.rollout.max_new_tokens,
        ..EvalSettings::default()
    };
    let mut rows = vec![RowRuns {
        name: BASE_ROW.into(),
        is_base: true,
        runs: Vec::new(),
    }];
    rows.extend(plan.arms.iter().map(|a| RowRuns {
        name: a.name.clone(),
        is_base: false,
        runs: Vec::new(),
    }));
    let total = plan.seeds.0.len() * rows.len();
    let mut index = 0;
    for &seed in &plan.seeds.0 {
        // The base row of this seed: every arm of the seed starts from this policy.
        let base_cfg = plan.base_config(seed)?;
        let base_unit = unit_name(BASE_ROW, seed);
        let base_dir = runs_root.join(&base_unit);
        on_event(StudyEvent::Run {
            index,
            total,
            dir: &base_dir,
        });
        index += 1;
        let base_settings: Vec<EvalSettings> = temperatures
            .iter()
            .map(|&t| settings_at(&base_cfg, t))
            .collect();
        let wanted = Wanted {
            config: &base_cfg,
            evals: &base_settings,
            splits: &plan.eval.splits,
        };
        let base_run = match archive.find(&base_unit, &wanted) {
            Some(run) => run,
            None => {
                let (evals, splits) = evaluate_all(
                    &base_cfg,
                    &base_dir,
                    &temperatures,
                    &plan.eval.splits,
                    &settings_at,
                    &mut |cfg, dir, log| base_model(cfg, dir, log),
                    on_event,
                )?;
                let run = SeedRun {
                    seed,
                    evals,
                    along: Vec::new(),
                    metrics: Vec::new(),
                    splits,
                };
                archive.keep(&base_unit, &base_cfg, &run)?;
                run
            }
        };
        let base_eval = base_run.evals[0].clone();
        rows[0].runs.push(base_run);
        for (arm_index, arm) in plan.arms.iter().enumerate() {
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let unit = unit_name(&arm.slug(), seed);
            let dir = runs_root.join(&unit);
            on_event(StudyEvent::Run {
                index,
                total,
                dir: &dir,
            });
            index += 1;
            let cfg = plan.arm_config(arm, seed)?;
            let settings: Vec<EvalSettings> =
                temperatures.iter().map(|&t| settings_at(&cfg, t)).collect();
            let wanted = Wanted {
                config: &cfg,
                evals: &settings,
                splits: &plan.eval.splits,
            };
            if let Some(run) = archive.find(&unit, &wanted) {
                rows[1 + arm_index].runs.push(run);
                continue;
            }
            let Some(run) = run_arm(
                plan,
                arm,
                &cfg,
                seed,
                &dir,
                &temperatures,
                &settings_at,
                &base_eval,
                stop.clone(),
                on_event,
            )?
            else {
                return Ok(None);
            };
            archive.keep(&unit, &cfg, &run)?;
            rows[1 + arm_index].runs.push(run);
        }
    }
    Ok(Some(StudyRuns {
        temperatures,
        samples: plan.eval.samples,
        steps: first.run.steps,
        rows,
    }))
}

type ModelOpener<'a> =
    dyn FnMut(&TrainConfig, &Path, &mut dyn FnMut(String)) -> TrainResult<PathBuf> + 'a;

/// The starting policy of `cfg`: the cached warm-up of the tiny model (trained first if
/// missing, into the cache every run of the study shares), or the model on disk.
fn base_model(cfg: &TrainConfig, dir: &Path, log: &mut dyn FnMut(String)) -> TrainResult<PathBuf> {
    match &cfg.model.source {
        ModelSource::Tiny => {
            let task = build_task(cfg)?;
            warmup::cached_base(cfg, task.as_ref(), &RunDir::at(dir).cache_dir(), log)
        }
        ModelSource::Path(path) => Ok(path.clone()),
    }
}

/// Evaluations of one policy: one per temperature, then one per further split.
type Evaluations = (Vec<EvalReport>, Vec<(EvalSplit, EvalReport)>);

/// Evaluates the model `open` names at every temperature, then on every further split at the
/// main temperature (stored results reused).
fn evaluate_all(
    cfg: &TrainConfig,
    dir: &Path,
    temperatures: &[f64],
    splits: &[EvalSplit],
    settings_at: &dyn Fn(&TrainConfig, f64) -> EvalSettings,
    open: &mut ModelOpener<'_>,
    on_event: &mut dyn FnMut(StudyEvent<'_>),
) -> TrainResult<Evaluations> {
    let mut loaded: Option<(Llama, TextTokenizer)> = None;
    let main = settings_at(cfg, temperatures[0]);
    // (what, file, settings, task) for every evaluation, the temperatures first.
    let mut jobs = Vec::with_capacity(temperatures.len() + splits.len());
    for &t in temperatures {
        let settings = settings_at(cfg, t);
        jobs.push((
            format!("T = {t}"),
            eval_file(dir, EvalOf::Final, &settings),
            settings,
            build_task(cfg)?,
        ));
    }
    for split in splits {
        jobs.push((
            format!("split `{}`", split.name),
            eval_file(dir, EvalOf::FinalOnSplit(&split.slug()), &main),
            main.clone(),
            build_task(&split.config_for(cfg)?)?,
        ));
    }
    let mut out = Vec::with_capacity(jobs.len());
    for (what, path, settings, task) in jobs {
        if let Some(report) = stored(&path, &settings) {
            out.push(report);
            continue;
        }
        if loaded.is_none() {
            let model_dir = open(cfg, dir, &mut |m| {
                on_event(StudyEvent::Train(Event::Log(m)))
            })?;
            let device = policy::open_device(cfg.model.device)?;
            let l = load_model(&model_dir, cfg.model.dtype.into(), &device)?;
            loaded = Some((l.model, l.tokenizer));
        }
        let (model, tokenizer) = loaded.as_ref().expect("loaded above");
        on_event(StudyEvent::Evaluating { dir, what });
        let report = evaluate(model, tokenizer, task.as_ref(), &settings, None)?;
        save(&path, &report)?;
        out.push(report);
    }
    let by_split = out.split_off(temperatures.len());
    Ok((out, splits.iter().cloned().zip(by_split).collect()))
}

/// Trains one arm at one seed (or finds it trained) and evaluates it.
#[allow(clippy::too_many_arguments)]
fn run_arm(
    plan: &StudyPlan,
    arm: &Arm,
    cfg: &TrainConfig,
    seed: u64,
    dir: &Path,
    temperatures: &[f64],
    settings_at: &dyn Fn(&TrainConfig, f64) -> EvalSettings,
    base_eval: &EvalReport,
    stop: Arc<AtomicBool>,
    on_event: &mut dyn FnMut(StudyEvent<'_>),
) -> TrainResult<Option<SeedRun>> {
    let run = RunDir::at(dir);
    let main = settings_at(cfg, temperatures[0]);
    // A shared runs directory must not hand one arm another arm's run.
    // Compared as configs, not text, so a key added to the config since keeps old runs;
    // the checkpoint period does not change training, so studies that evaluate along
    // training at different periods (or not at all) share runs too.
    let same_training = |existing: &str| {
        toml::from_str::<TrainConfig>(existing).is_ok_and(|mut old| {
            old.run.checkpoint_every = cfg.run.checkpoint_every;
            old == *cfg
        })
    };
    if let Ok(existing) = std::fs::read_to_string(run.config_path())
        && !same_training(&existing)
    {
        return Err(TrainError::file(
            run.config_path(),
            format!(
                "this run was made with another config than arm `{}` at seed {seed} has now; rename the arm or move the directory away",
                arm.name
            ),
        ));
    }
    if !run.is_finished() {
        let resume = run.has_checkpoint();
        if !resume && dir.exists() {
            // Stopped before its first checkpoint: nothing worth keeping, and the study owns
            // the directory, so the run starts again.
            std::fs::remove_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        }
        let task = build_task(cfg)?;
        let mut failure: Option<TrainError> = None;
        let summary = train(
            cfg,
            dir,
            TrainOptions {
                resume,
                stop,
                on_event: &mut |e| match e {
                    // Evaluate along training while the policy is in memory.
                    Event::Checkpoint {
                        step,
                        model,
                        tokenizer,
                    } if plan.eval.every > 0 && step < cfg.run.steps => {
                        let path = eval_file(dir, EvalOf::Step(step), &main);
                        if stored(&path, &main).is_some() || failure.is_some() {
                            return;
                        }
                        on_event(StudyEvent::Evaluating {
                            dir,
                            what: format!("step {step}"),
                        });
                        let result = evaluate(model, tokenizer, task.as_ref(), &main, None)
                            .map_err(TrainError::from)
                            .and_then(|report| save(&path, &report));
                        failure = result.err();
                    }
                    other => on_event(StudyEvent::Train(other)),
                },
            },
        )?;
        if let Some(e) = failure {
            return Err(e);
        }
        if summary.interrupted {
            return Ok(None);
        }
    }
    let final_model = run.final_model();
    let (evals, splits) = evaluate_all(
        cfg,
        dir,
        temperatures,
        &plan.eval.splits,
        settings_at,
        &mut |_, _, _| Ok(final_model.clone()),
        on_event,
    )?;
    let mut along = vec![(0, base_eval.clone())];
    for step in along_steps(plan.eval.every, cfg.run.steps) {
        if let Some(report) = stored(&eval_file(dir, EvalOf::Step(step), &main), &main) {
            along.push((step, report));
        }
    }
    along.push((cfg.run.steps, evals[0].clone()));
    Ok(Some(SeedRun {
        seed,
        evals,
        along,
        metrics: read_metrics(dir)?,
        splits,
    }))
}
