//! `polyepo experiment FILE`: runs a study plan and writes its report; also the progress
//! display that `polyepo compare` shares.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use polyepo::app::study::{StudyEvent, StudyPlan, run_and_report};
use polyepo::rl::train::Event;

/// Arguments of `polyepo experiment`.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// The study plan (TOML; see experiments/ for examples).
    pub plan: PathBuf,
    /// Where the report goes (default: docs/experiments/<name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the training runs go (default: the plan's `runs`, else runs/experiments/<name>);
    /// re-running resumes.
    #[arg(long)]
    pub runs: Option<PathBuf>,
    /// Log lines instead of a progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Check the plan and print what it would run, without running it.
    #[arg(long)]
    pub dry_run: bool,
}

/// Loads the plan and runs it.
pub fn run(args: &ExperimentArgs) -> Result<()> {
    let mut plan = StudyPlan::load(&args.plan)?;
    plan.command = format!("polyepo experiment {}", args.plan.display());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("docs/experiments").join(&plan.name));
    let runs = args
        .runs
        .clone()
        .or_else(|| plan.runs.clone())
        .unwrap_or_else(|| Path::new("runs/experiments").join(&plan.name));
    if args.dry_run {
        let mut text = format!(
            "{}: base + {} arms × seeds {:?} = {} training runs into {}, report into {}\n",
            plan.name,
            plan.arms.len(),
            plan.seeds.0,
            plan.arms.len() * plan.seeds.0.len(),
            runs.display(),
            out.display()
        );
        for arm in &plan.arms {
            text.push_str(&format!(
                "  {} ({}): {}\n",
                arm.name,
                arm.slug(),
                arm.set.join(" ")
            ));
        }
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
        return Ok(());
    }
    run_study_cli(&plan, &runs, &out, args.quiet)
}

/// Runs `plan` with a progress bar (one tick per training step; evaluations in the
/// message), Ctrl-C to stop and resume later; prints the report's held-out table.
pub fn run_study_cli(plan: &StudyPlan, runs: &Path, out: &Path, quiet: bool) -> Result<()> {
    let stop =
        super::stop_on_ctrl_c("finishing this step and saving; re-run the same command to resume")?;
    let steps = plan.base_config(plan.seeds.0[0])?.run.steps;
    let units = (plan.seeds.0.len() * (plan.arms.len() + 1)) as u64;
    eprintln!(
        "polyepo experiment {}: base + {} arms × {} seeds × {steps} steps; runs in {}, report in {}",
        plan.name,
        plan.arms.len(),
        plan.seeds.0.len(),
        runs.display(),
        out.display()
    );
    let bar = (!quiet).then(|| {
        let b = ProgressBar::new(units * steps);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps [{elapsed_precise} < {eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let mut unit = 0u64;
    let say = |line: String| match &bar {
        Some(b) => b.set_message(line),
        None => eprintln!("{line}"),
    };
    let mut on_event = |e: StudyEvent<'_>| match e {
        StudyEvent::Run { index, total, dir } => {
            unit = index as u64;
            if let Some(b) = &bar {
                b.set_position(unit * steps);
            }
            say(format!("{}/{}: {}", index + 1, total, dir.display()));
        }
        StudyEvent::Evaluating { dir, what } => {
            say(format!("evaluating {} ({what})", dir.display()));
        }
        StudyEvent::Train(Event::Step(m)) => match &bar {
            Some(b) => b.set_position(unit * steps + m.step),
            None if m.step % 50 == 0 => eprintln!(
                "  step {}: reward {:.3}, correct strategies {:.2}",
                m.step, m.reward_mean, m.clusters_correct
            ),
            None => {}
        },
        StudyEvent::Train(Event::Log(line)) => match &bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        },
        StudyEvent::Train(Event::Start { .. } | Event::Checkpoint { .. }) => {}
    };
    let result = run_and_report(plan, runs, out, stop, &mut on_event)
        .with_context(|| format!("study `{}`", plan.name))?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match result {
        Some((_, files)) => {
            let readme = out.join("README.md");
            if let Ok(text) = std::fs::read_to_string(&readme)
                && let Some(table) = text.split("## ").find(|s| s.starts_with("Held-out pass@k"))
            {
                println!("{}", table.trim());
            }
            eprintln!("wrote {} files into {}", files.len(), out.display());
        }
        None => eprintln!("stopped; re-run the same command to resume"),
    }
    Ok(())
}
