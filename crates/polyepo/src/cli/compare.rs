//! `polyepo compare`: algorithms × seeds from the same base, evaluated on held-out prompts.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use polyepo::app::compare::{CompareEvent, compare, summary_table};
use polyepo::app::eval::EvalSettings;
use polyepo::rl::config::{Algorithm, TrainConfig};
use polyepo::rl::train::Event;

/// Arguments of `polyepo compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Training config shared by every run (default: the built-in synthetic run).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a key for every run (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Algorithms to compare.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "polyepo,grpo"
    )]
    pub algos: Vec<Algorithm>,
    /// Seeds per algorithm (0, 1, ..., S−1).
    #[arg(long, default_value_t = 2)]
    pub seeds: u64,
    /// Samples per held-out prompt in the evaluation.
    #[arg(long, default_value_t = 32)]
    pub samples: usize,
    /// Output directory (runs, compare.json, compare.md, charts); re-running resumes it.
    #[arg(long, default_value = "runs/compare")]
    pub out: PathBuf,
    /// Log lines instead of a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the plan with one progress bar over every step of every run.
pub fn run(args: &CompareArgs) -> Result<()> {
    let cfg = TrainConfig::load(args.config.as_deref(), &args.set)?;
    let algos = &args.algos;
    let seeds: Vec<u64> = (0..args.seeds.max(1)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\nCtrl-C or SIGTERM: finishing this step and saving; re-run the same command to resume"
        );
    })?;
    let runs = (algos.len() * seeds.len()) as u64;
    let steps = cfg.run.steps;
    eprintln!(
        "polyepo compare: {} × {} seeds × {steps} steps → {}",
        algos.iter().map(|a| a.name()).collect::<Vec<_>>().join(","),
        seeds.len(),
        args.out.display()
    );
    let bar = (!args.quiet).then(|| {
        let b = ProgressBar::new(runs * steps);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps [{elapsed_precise} < {eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let mut run_index = 0u64;
    let mut on_event = |e: CompareEvent<'_>| match e {
        CompareEvent::Run { index, total, dir } => {
            run_index = index as u64;
            let line = format!("run {}/{}: {}", index + 1, total, dir.display());
            match &bar {
                Some(b) => {
                    b.set_position(run_index * steps);
                    b.set_message(line);
                }
                None => eprintln!("{line}"),
            }
        }
        CompareEvent::Train(Event::Step(m)) => match &bar {
            Some(b) => b.set_position(run_index * steps + m.step),
            None if m.step % 50 == 0 => eprintln!(
                "  step {}: reward {:.3}, correct strategies {:.2}",
                m.step, m.reward_mean, m.clusters_correct
            ),
            None => {}
        },
        CompareEvent::Train(Event::Log(line)) => match &bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        },
        CompareEvent::Train(Event::Start { .. }) => {}
    };
    let eval = EvalSettings {
        samples: args.samples,
        temperature: cfg.rollout.temperature,
        max_new_tokens: cfg.rollout.max_new_tokens,
        ..EvalSettings::default()
    };
    let result = compare(&cfg, algos, &seeds, &args.out, &eval, stop, &mut on_event)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match result {
        Some(c) => {
            println!("{}", summary_table(&c));
            eprintln!(
                "wrote {}/compare.json, compare.md and charts",
                args.out.display()
            );
        }
        None => eprintln!("stopped; re-run the same command to resume"),
    }
    Ok(())
}
