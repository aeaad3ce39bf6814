//! `polyepo train` and `polyepo config`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use polyepo::rl::config::TrainConfig;
use polyepo::rl::train::run_dir::RunDir;
use polyepo::rl::train::{Event, TrainOptions, train};

/// Arguments of `polyepo train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML configuration (default: the built-in synthetic POLY-EPO run; see `polyepo config`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a key: `--set loss.clip_high=0.28` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run directory (default: runs/<run.name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint (its config.toml is
    /// used; `--set` may still override, e.g. run.steps).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "out"])]
    pub resume: Option<PathBuf>,
    /// Plain log lines instead of a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Prints the default configuration.
pub fn print_config() -> Result<()> {
    print!("{}", TrainConfig::default().to_toml());
    Ok(())
}

/// Runs training with a progress bar (or log lines), Ctrl-C finishing the step and saving.
pub fn run(args: &TrainArgs) -> Result<()> {
    let (cfg, run_dir) = match &args.resume {
        Some(dir) => {
            let cfg = TrainConfig::load(Some(&RunDir::at(dir).config_path()), &args.set)?;
            (cfg, dir.clone())
        }
        None => {
            let cfg = TrainConfig::load(args.config.as_deref(), &args.set)?;
            let dir = cfg.run_dir(args.out.as_deref());
            (cfg, dir)
        }
    };
    let stop =
        super::stop_on_ctrl_c("finishing this step, saving a checkpoint (Ctrl-C again to abort)")
            .context("installing the Ctrl-C handler")?;

    eprintln!(
        "polyepo train: {} on {} ({} model), {} steps × {} prompts × {} samples → {}",
        serde_json::to_string(&cfg.algorithm.name)?.trim_matches('"'),
        cfg.task.kind(),
        cfg.model.source,
        cfg.run.steps,
        cfg.rollout.prompts_per_step,
        cfg.rollout.samples_per_prompt,
        run_dir.display()
    );
    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let quiet = args.quiet;
    let mut on_event = |event: Event<'_>| match event {
        Event::Log(line) => match &bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        },
        Event::Start { from, total } => {
            if !quiet {
                let b = ProgressBar::new(total).with_position(from);
                b.set_style(
                    ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} steps [{elapsed_precise} < {eta_precise}] {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar = Some(b);
            }
        }
        Event::Step(m) => {
            let summary = format!(
                "reward {:.3} | success {:.2} | correct strategies/prompt {:.2} | clusters {:.2} | clipfrac {:.3} | {:.1}s/step",
                m.reward_mean,
                m.success_rate,
                m.clusters_correct,
                m.clusters_all,
                m.update.clipfrac,
                m.time_rollout + m.time_judge + m.time_advantage + m.time_update
            );
            match &bar {
                Some(b) => {
                    b.set_position(m.step);
                    b.set_message(summary);
                }
                None => eprintln!("step {}: {summary}", m.step),
            }
        }
        Event::Checkpoint { .. } => {}
    };
    let summary = train(
        &cfg,
        &run_dir,
        TrainOptions {
            resume: args.resume.is_some(),
            stop,
            on_event: &mut on_event,
        },
    )?;
    if let Some(b) = &bar {
        b.finish();
    }
    eprintln!(
        "{} after {} steps in {:.0} s; metrics in {}, final model in {}",
        if summary.interrupted {
            "stopped"
        } else {
            "done"
        },
        summary.steps,
        started.elapsed().as_secs_f64(),
        RunDir::at(&summary.run_dir).metrics_path().display(),
        summary.final_model.display()
    );
    Ok(())
}
