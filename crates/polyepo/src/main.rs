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

/// mimalloc's `purge_delay` option (its index in mimalloc's `mi_option_t`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Settings of the allocator and the thread pools, made before any other thread starts.
fn tune_runtime() {
    // mimalloc hands freed pages back to the OS 10 ms after they are freed. A training step
    // frees and allocates the same large tensors every few milliseconds, so each came back
    // as fresh memory that the kernel zeroes on first touch (2 MiB huge pages): 20% of an
    // RL step on SmolLM2 was `clear_page`. Freed memory is kept for reuse instead (RSS stays
    // at its peak, which `bench` reports).
    // SAFETY: sets an integer option; mimalloc reads it atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // candle recounts the CPUs (reading /proc/cpuinfo) on every call that asks for its
    // thread count unless RAYON_NUM_THREADS is set: count once and set it.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    // candle 0.11 runs elementwise ops on a second pool of its own (`candle-bp-*`) whose
    // workers spin for 25,000 rounds between ops: beside rayon's threads, which run every
    // product, they took 16% of an RL step's CPU time spinning on 2 cores. With one thread
    // that pool has no workers (elementwise ops run on the calling thread) and rayon's is
    // the only pool; the RL step is as fast (docs/design.md §3).
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

fn main() -> ExitCode {
    tune_runtime();
    let cli = Cli::parse();
    // Run the command on one of rayon's threads rather than beside them: every product then
    // splits its work with the other worker instead of handing all of it to the pool and
    // waking the main thread when done (three threads on two cores). `serve` runs its
    // sampling thread the same way (app/serve).
    let result = match &cli.command {
        Command::Serve(args) => cli::serve::run(args),
        _ => rayon::scope(|_| run(&cli)),
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

/// Runs one command (`serve` aside).
fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
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
    }
}
