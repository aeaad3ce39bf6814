//! The `polyepo` binary: a thin clap front over the library.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse; the system allocator returns every large tensor
/// buffer to the OS and faults it back in zeroed, which cost ~20% of a training step.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Train a policy with POLY-EPO or a baseline (default: the built-in synthetic run).
    Train(cli::train::TrainArgs),
    /// Print the default training configuration (TOML, every key with its default).
    Config,
    /// Evaluate a model or run on held-out prompts: pass@k, diversity, test-time scaling.
    Eval(cli::eval::EvalArgs),
    /// Train and evaluate several algorithms × seeds from the same base; report the comparison.
    Compare(cli::compare::CompareArgs),
    /// Run a study from a plan file (`experiments/*.toml`): arms × seeds, intervals, paired tests.
    Experiment(cli::experiment::ExperimentArgs),
    /// Draw a run's training curves (SVG, PNG, Markdown).
    Report(cli::report::ReportArgs),
    /// Serve a model over an OpenAI-compatible HTTP API (chat completions, completions, models).
    Serve(cli::serve::ServeArgs),
    /// Label JSON Lines groups with an LM judge over an OpenAI-compatible API.
    Judge(cli::judge::JudgeArgs),
    /// Print the log-probability a model gives each token of a text (JSON).
    Logprobs(cli::logprobs::LogprobsArgs),
    /// Measure sampling, training and optimizer speed and memory on a real model.
    Bench(cli::bench::BenchArgs),
    /// Check a device (a GPU) against the CPU on tiny models: logits, gradients, KV cache.
    DeviceCheck(cli::device_check::DeviceCheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Advantages(args) => cli::advantages::run(args),
        Command::Sample(args) => cli::sample::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::DeviceCheck(args) => cli::device_check::run(args),
        Command::Train(args) => cli::train::run(args),
        Command::Config => cli::train::print_config(),
        Command::Eval(args) => cli::eval::run(args),
        Command::Compare(args) => cli::compare::run(args),
        Command::Experiment(args) => cli::experiment::run(args),
        Command::Report(args) => cli::report::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Judge(args) => cli::judge::run(args),
        Command::Logprobs(args) => cli::logprobs::run(args),
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
