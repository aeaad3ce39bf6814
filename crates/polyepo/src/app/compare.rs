//! `polyepo compare`: train several algorithms from the same base policy with the same
//! budget and seeds, evaluate each on held-out prompts, and report the comparison (JSON,
//! Markdown table with mean ± standard deviation over seeds, charts). Resumable: finished
//! runs are kept, interrupted ones resume from their checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::app::eval::{EvalReport, EvalSettings, evaluate};
use crate::app::plot::{Chart, Series, save_chart};
use crate::app::report::{curve, pass_curve};
use crate::rl::config::{Algorithm, TrainConfig};
use crate::rl::train::run_dir::{RunDir, read_metrics};
use crate::rl::train::{
    Event, StepMetrics, TrainError, TrainOptions, TrainResult, build_task, train,
};

/// One (algorithm, seed) cell of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Seed.
    pub seed: u64,
    /// Held-out evaluation of the final policy.
    pub eval: EvalReport,
}

/// Mean and standard deviation over seeds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Spread {
    /// Mean over seeds.
    pub mean: f64,
    /// Sample standard deviation over seeds (0 for one seed).
    pub std: f64,
}

/// Per-algorithm summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlgorithmSummary {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// pass@1 on held-out prompts.
    pub pass_at_1: Spread,
    /// pass@k at the largest k.
    pub pass_at_max_k: Spread,
    /// Distinct correct strategies per held-out prompt.
    pub correct_strategies_per_prompt: Spread,
    /// Distinct correct strategies pooled over the held-out set.
    pub pooled_correct_strategies: Spread,
    /// Mean held-out reward.
    pub mean_reward: Spread,
}

/// `compare.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// The largest k evaluated (= samples per prompt).
    pub max_k: usize,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// One entry per algorithm, in the order given.
    pub summary: Vec<AlgorithmSummary>,
}

fn spread(values: &[f64]) -> Spread {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Spread {
        mean,
        std: var.sqrt(),
    }
}

/// The directory of one run of the comparison.
pub fn run_dir(out: &Path, algorithm: Algorithm, seed: u64) -> PathBuf {
    out.join(format!("{}-seed{seed}", algorithm.name()))
}

/// Progress of a comparison.
#[derive(Debug)]
pub enum CompareEvent<'a> {
    /// Starting run `index` of `total` (0-based).
    Run {
        /// Which run.
        index: usize,
        /// How many.
        total: usize,
        /// Its directory.
        dir: &'a Path,
    },
    /// An event of the current training run.
    Train(Event<'a>),
}

/// Trains and evaluates every (algorithm, seed), then writes `compare.json`, `compare.md`
/// and the charts into `out`.
pub fn compare(
    base: &TrainConfig,
    algorithms: &[Algorithm],
    seeds: &[u64],
    out: &Path,
    eval: &EvalSettings,
    stop: Arc<AtomicBool>,
    on_event: &mut dyn FnMut(CompareEvent<'_>),
) -> TrainResult<Option<Comparison>> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let plan: Vec<(Algorithm, u64)> = seeds
        .iter()
        .flat_map(|&s| algorithms.iter().map(move |&a| (a, s)))
        .collect();
    let mut runs = Vec::with_capacity(plan.len());
    for (index, &(algorithm, seed)) in plan.iter().enumerate() {
        let dir = run_dir(out, algorithm, seed);
        on_event(CompareEvent::Run {
            index,
            total: plan.len(),
            dir: &dir,
        });
        let run = RunDir::at(&dir);
        let eval_path = run.eval_path();
        // A stored evaluation counts only if it was made with these settings.
        let stored = std::fs::read_to_string(&eval_path)
            .ok()
            .and_then(|text| serde_json::from_str::<EvalReport>(&text).ok())
            .filter(|report| report.settings.as_ref() == Some(eval));
        if let Some(report) = stored {
            runs.push(RunResult {
                algorithm,
                seed,
                eval: report,
            });
            continue;
        }
        let mut cfg = base.clone();
        cfg.algorithm.name = algorithm;
        cfg.run.seed = seed;
        cfg.run.name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !run.is_finished() {
            let resume = run.has_checkpoint();
            if !resume && dir.exists() {
                // Stopped before its first checkpoint: nothing worth keeping, and this
                // comparison owns the directory, so the run starts again.
                std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
            }
            let summary = train(
                &cfg,
                &dir,
                TrainOptions {
                    resume,
                    stop: stop.clone(),
                    on_event: &mut |e| on_event(CompareEvent::Train(e)),
                },
            )?;
            if summary.interrupted {
                return Ok(None);
            }
        }
        let device = crate::rl::train::policy::open_device(cfg.model.device)?;
        let loaded =
            polyepo_engine::model::load_model(&run.final_model(), cfg.model.dtype.into(), &device)?;
        let task = build_task(&cfg)?;
        let report = evaluate(&loaded.model, &loaded.tokenizer, task.as_ref(), eval, None)?;
        let json = serde_json::to_vec_pretty(&report).map_err(|e| TrainError::io(&eval_path, e))?;
        polyepo_engine::atomic::write_atomic(&eval_path, &json)
            .map_err(|e| TrainError::io(&eval_path, e))?;
        runs.push(RunResult {
            algorithm,
            seed,
            eval: report,
        });
    }

    let summary: Vec<AlgorithmSummary> = algorithms
        .iter()
        .map(|&a| {
            let mine: Vec<&RunResult> = runs.iter().filter(|r| r.algorithm == a).collect();
            let over = |f: &dyn Fn(&EvalReport) -> f64| {
                spread(&mine.iter().map(|r| f(&r.eval)).collect::<Vec<_>>())
            };
            AlgorithmSummary {
                algorithm: a,
                pass_at_1: over(&|e| e.pass_at_k.get(&1).copied().unwrap_or(0.0)),
                pass_at_max_k: over(&|e| e.pass_at_max_k()),
                correct_strategies_per_prompt: over(&|e| e.correct_strategies_per_prompt),
                pooled_correct_strategies: over(&|e| e.pooled_correct_strategies as f64),
                mean_reward: over(&|e| e.mean_reward),
            }
        })
        .collect();
    let comparison = Comparison {
        max_k: eval.samples,
        runs,
        summary,
    };
    let path = out.join("compare.json");
    let json = serde_json::to_vec_pretty(&comparison).map_err(|e| TrainError::io(&path, e))?;
    polyepo_engine::atomic::write_atomic(&path, &json).map_err(|e| TrainError::io(&path, e))?;
    write_report(&comparison, algorithms, seeds, out)?;
    Ok(Some(comparison))
}

/// Mean over seeds of per-step curves (steps aligned by index).
fn mean_curve(curves: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let len = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..len)
        .map(|i| {
            (
                curves[0][i].0,
                curves.iter().map(|c| c[i].1).sum::<f64>() / curves.len() as f64,
            )
        })
        .collect()
}

fn write_report(
    c: &Comparison,
    algorithms: &[Algorithm],
    seeds: &[u64],
    out: &Path,
) -> TrainResult<()> {
    let chart_err = |e: String| TrainError::io(out, e);
    let mut pass = Vec::new();
    let mut strategies = Vec::new();
    let mut reward = Vec::new();
    for &a in algorithms {
        let evals: Vec<Vec<(f64, f64)>> = c
            .runs
            .iter()
            .filter(|r| r.algorithm == a)
            .map(|r| pass_curve(&r.eval))
            .collect();
        pass.push(Series {
            name: a.to_string(),
            points: mean_curve(&evals),
        });
        let metrics: Vec<Vec<StepMetrics>> = seeds
            .iter()
            .filter_map(|&s| read_metrics(&run_dir(out, a, s)).ok())
            .collect();
        let of = |f: fn(&StepMetrics) -> f64| {
            mean_curve(&metrics.iter().map(|m| curve(m, f)).collect::<Vec<_>>())
        };
        strategies.push(Series {
            name: a.to_string(),
            points: of(|m| m.clusters_correct),
        });
        reward.push(Series {
            name: a.to_string(),
            points: of(|m| m.reward_mean),
        });
    }
    let n_seeds = seeds.len();
    let charts = [
        (
            "pass_at_k",
            Chart {
                title: format!("Held-out pass@k (mean of {n_seeds} seeds)"),
                x_label: "k (samples)".into(),
                y_label: "pass@k".into(),
                log2_x: true,
                series: pass,
            },
        ),
        (
            "correct_strategies",
            Chart {
                title: "Distinct correct strategies per prompt, training".into(),
                x_label: "step".into(),
                y_label: "strategies per prompt".into(),
                log2_x: false,
                series: strategies,
            },
        ),
        (
            "reward",
            Chart {
                title: "Mean reward, training".into(),
                x_label: "step".into(),
                y_label: "reward".into(),
                log2_x: false,
                series: reward,
            },
        ),
    ];
    let mut md = format!(
        "# Comparison\n\n{} algorithms × {} seeds ({}), same base policy and budget per seed. Held-out prompts, {} samples each; mean ± standard deviation over seeds.\n\n",
        algorithms.len(),
        n_seeds,
        seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        c.max_k
    );
    md.push_str(&summary_table(c));
    md.push('\n');
    for (stem, chart) in charts {
        save_chart(&out.join(stem), &chart).map_err(chart_err)?;
        md.push_str(&format!("![{stem}]({stem}.svg)\n\n"));
    }
    let path = out.join("compare.md");
    polyepo_engine::atomic::write_atomic(&path, md.as_bytes()).map_err(|e| TrainError::io(&path, e))
}

/// The Markdown table of a comparison.
pub fn summary_table(c: &Comparison) -> String {
    let f = |s: Spread| format!("{:.3} ± {:.3}", s.mean, s.std);
    let mut t = format!(
        "| algorithm | pass@1 | pass@{} | correct strategies / prompt | pooled correct strategies | mean reward |\n|---|---|---|---|---|---|\n",
        c.max_k
    );
    for s in &c.summary {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} ± {:.1} | {} |\n",
            Algorithm::name(s.algorithm),
            f(s.pass_at_1),
            f(s.pass_at_max_k),
            f(s.correct_strategies_per_prompt),
            s.pooled_correct_strategies.mean,
            s.pooled_correct_strategies.std,
            f(s.mean_reward)
        ));
    }
    t
}
