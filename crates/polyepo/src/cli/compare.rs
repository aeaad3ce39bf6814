//! `polyepo compare`: algorithms × seeds from the same base, evaluated on held-out prompts;
//! a study whose arms are the algorithms (see `polyepo experiment` for richer plans).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use polyepo::app::study::{Arm, EvalPlan, Seeds, StudyPlan};
use polyepo::rl::config::Algorithm;

use super::experiment::run_study_cli;

/// Arguments of `polyepo compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Training config shared by every run (default: the built-in synthetic run).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a key for every run (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Algorithms to compare, by setrl's method names (`polyepo`, `setrl-mean`, `setrl-max`,
    /// `grpo`, `drgrpo`, `diversity-bonus`, or an alias such as `dr-grpo`); the base policy
    /// is always a row too.
    #[arg(long, value_delimiter = ',', default_value = "polyepo,grpo")]
    pub algos: Vec<Algorithm>,
    /// Seeds: a range, a list or both (`0-7`, `3,11,12`, `0-3,8`).
    #[arg(long, default_value = "0-1")]
    pub seeds: Seeds,
    /// Samples per held-out prompt in the evaluation (M).
    #[arg(long, default_value_t = 32)]
    pub samples: usize,
    /// Output directory (runs and the report); re-running resumes it.
    #[arg(long, default_value = "runs/compare")]
    pub out: PathBuf,
    /// Log lines instead of a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Builds the study and runs it.
pub fn run(args: &CompareArgs) -> Result<()> {
    let plan = StudyPlan {
        name: "compare".into(),
        question: String::new(),
        runs: Some(args.out.clone()),
        config: args.config.clone(),
        set: args.set.clone(),
        seeds: args.seeds.clone(),
        reference: None,
        eval: EvalPlan {
            samples: args.samples,
            ..EvalPlan::default()
        },
        arms: args
            .algos
            .iter()
            .map(|a| Arm {
                name: a.name().into(),
                set: vec![format!("algorithm.name={}", a.name())],
            })
            .collect(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    plan.check("polyepo compare")?;
    run_study_cli(&plan, &args.out, &args.out, args.quiet)
}
