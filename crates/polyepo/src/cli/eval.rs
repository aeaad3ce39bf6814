//! `polyepo eval`: held-out pass@k, diversity and a test-time-scaling chart for a model or a
//! training run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use polyepo::app::eval::{EvalSettings, evaluate};
use polyepo::app::plot::{Chart, Series, save_chart};
use polyepo::app::report::pass_curve;
use polyepo::rl::config::{TaskKind, TaskSection, TrainConfig};
use polyepo::rl::judge::StrategyJudge;
use polyepo::rl::judge::lm::{LmJudge, LmJudgeConfig};
use polyepo::rl::train::build_task;
use polyepo::rl::train::run_dir::RunDir;
use polyepo_engine::model::load_model;

use super::device::DeviceArgs;

/// Most samples per held-out prompt: pass@k is reported for every k up to it.
const MAX_EVAL_SAMPLES: usize = 4096;

/// Arguments of `polyepo eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory (its `final/` model and its task) or a model (HF directory or .gguf).
    #[arg(long)]
    pub model: PathBuf,
    /// Built-in task to evaluate on; default: the run's task, or the default config's (reach).
    #[arg(long, value_enum)]
    pub task: Option<TaskKind>,
    /// Training config whose task to use (for a model that is not a run directory).
    #[arg(long, conflicts_with = "task")]
    pub config: Option<PathBuf>,
    /// Samples per held-out prompt (M); pass@k is reported for every k ≤ M.
    #[arg(long, default_value_t = 32)]
    pub samples: usize,
    /// k values to print (those above M are skipped; all k ≤ M are in eval.json).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    pub k: Vec<usize>,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Longest response (default: the run's rollout.max_new_tokens).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 12_345)]
    pub seed: u64,
    /// Where to write eval.json (default: next to the model).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Label strategies with an LM judge at this OpenAI-compatible endpoint instead of the
    /// task's labeler (e.g. to compare the judge with exact labels on countdown).
    #[arg(long)]
    pub judge_endpoint: Option<String>,
    /// Model name for the LM judge.
    #[arg(long, default_value = "judge")]
    pub judge_model: String,
    /// Judge prompt: math, code, generic or a file.
    #[arg(long, default_value = "generic")]
    pub judge_prompt: String,
    /// Whether the judge asks the server for schema-constrained replies (default: the
    /// config's `judge.response_format`, itself `auto`).
    #[arg(long, value_enum)]
    pub judge_response_format: Option<polyepo::rl::judge::lm::ResponseFormat>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Evaluates, prints a table, writes eval.json and the pass@k chart.
pub fn run(args: &EvalArgs) -> Result<()> {
    if !(1..=MAX_EVAL_SAMPLES).contains(&args.samples) {
        anyhow::bail!(
            "--samples {}: use 1..={MAX_EVAL_SAMPLES} samples per prompt",
            args.samples
        );
    }
    if args.k.contains(&0) {
        anyhow::bail!("--k 0: pass@k needs k >= 1");
    }
    let run = RunDir::detect(&args.model);
    let (model_path, mut cfg) = match &run {
        Some(run) => (
            run.finished_model()?,
            TrainConfig::load(Some(&run.config_path()), &[])?,
        ),
        None => (
            args.model.clone(),
            TrainConfig::load(args.config.as_deref(), &[])?,
        ),
    };
    if let Some(kind) = args.task.filter(|&k| k != cfg.task.kind()) {
        cfg.task = TaskSection::defaults_for(kind).ok_or_else(|| {
            anyhow::anyhow!(
                "--task jsonl needs the paths of its data: give --config with a [task.jsonl] section"
            )
        })?;
        // The run's own settings were validated for its task, not this one.
        cfg.validate(&format!("--task {kind}"))?;
    }
    let task = build_task(&cfg)?;
    let loaded = load_model(&model_path, args.device.dtype(), &args.device.device()?)
        .with_context(|| format!("loading {}", model_path.display()))?;
    let settings = EvalSettings {
        samples: args.samples,
        temperature: args.temperature,
        max_new_tokens: args.max_new_tokens.unwrap_or(cfg.rollout.max_new_tokens),
        seed: args.seed,
        ..EvalSettings::default()
    };
    eprintln!(
        "evaluating {} on {} held-out {} prompts × {} samples",
        model_path.display(),
        task.eval_prompts().len(),
        task.name(),
        settings.samples
    );
    let judge = match &args.judge_endpoint {
        Some(endpoint) => Some(LmJudge::new(LmJudgeConfig {
            endpoint: endpoint.clone(),
            model: args.judge_model.clone(),
            prompt: args.judge_prompt.clone(),
            response_format: args
                .judge_response_format
                .unwrap_or(cfg.judge.response_format),
            ..cfg.judge.clone()
        })?),
        None => None,
    };
    let report = evaluate(
        &loaded.model,
        &loaded.tokenizer,
        task.as_ref(),
        &settings,
        judge.as_ref().map(|j| j as &dyn StrategyJudge),
    )?;
    if let Some(j) = &judge {
        eprintln!("judge stats: {}", serde_json::to_string(&j.stats())?);
    }
    if let Some(a) = &report.judge_agreement {
        eprintln!(
            "judge against the task's labeler: {} of {} groups labelled ({:.0}%), mean adjusted Rand index {:.3}",
            a.labelled,
            a.groups,
            100.0 * a.labelled as f64 / a.groups.max(1) as f64,
            a.mean_ari
        );
    }

    println!("| k | pass@k |\n|---|---|");
    for k in args.k.iter().filter(|k| **k <= report.samples) {
        println!("| {k} | {:.3} |", report.pass_at_k[k]);
    }
    println!();
    println!(
        "mean reward                          {:.3}",
        report.mean_reward
    );
    println!(
        "distinct strategies per prompt       {:.2}",
        report.strategies_per_prompt
    );
    println!(
        "distinct correct strategies/prompt   {:.2}",
        report.correct_strategies_per_prompt
    );
    println!(
        "pooled distinct correct strategies   {}",
        report.pooled_correct_strategies
    );
    println!(
        "degenerate fraction                  {:.3}",
        report.degenerate_fraction
    );

    let out = args.out.clone().unwrap_or_else(|| match &run {
        Some(run) => run.eval_path(),
        None => PathBuf::from("eval.json"),
    });
    polyepo_engine::atomic::write_atomic(&out, &serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", out.display()))?;
    let chart = Chart {
        title: format!("Test-time scaling on held-out {} prompts", task.name()),
        x_label: "k (samples)".into(),
        y_label: "pass@k".into(),
        log2_x: true,
        series: vec![Series::line(
            model_path.display().to_string(),
            pass_curve(&report),
        )],
    };
    let files =
        save_chart(&out.with_file_name("eval_pass_at_k"), &chart).map_err(anyhow::Error::msg)?;
    eprintln!(
        "wrote {} and {}",
        out.display(),
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
