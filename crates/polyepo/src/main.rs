//! The `polyepo` binary: a thin clap front over the library.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// polyepo: post-train language models to explore (set RL / POLY-EPO).
#[derive(Debug, Parser)]
#[command(name = "polyepo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Marginal set advantages (or GRPO-style baselines) for JSON Lines groups.
    Advantages(cli::advantages::AdvantagesArgs),
    /// Generate from a model (HF directory or GGUF) and report tokens/s.
    Sample(cli::sample::SampleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Advantages(args) => cli::advantages::run(args),
        Command::Sample(args) => cli::sample::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // Bad input is the user's to fix (status 2); anything else is a failure (1).
            if err.downcast_ref::<cli::advantages::BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
