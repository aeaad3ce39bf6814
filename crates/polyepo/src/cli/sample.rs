//! `polyepo sample`: generate from a model and report throughput.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use polyepo_engine::model::chat::encode_user_turn;
use polyepo_engine::model::load_model;
use polyepo_engine::sample::{SamplingParams, generate};

use super::device::DeviceArgs;

/// Arguments of `polyepo sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Model: an HF directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt text.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Number of generations (one batch).
    #[arg(long, default_value_t = 1)]
    pub n: usize,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Temperature; 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Nucleus mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Stop string (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object per generation instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Loads the model, generates, prints generations and throughput.
pub fn run(args: &SampleArgs) -> Result<()> {
    let device = args.device.device()?;
    let loaded = load_model(&args.model, args.device.dtype(), &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let prompt = encode_user_turn(&loaded.tokenizer, &args.prompt, args.chat)?;
    let params = SamplingParams {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        stop_strings: args.stop.clone(),
        seed: args.seed,
        top_logprobs: 0,
    };
    let prompts = vec![prompt; args.n.max(1)];
    let start = Instant::now();
    let generations = generate(&loaded.model, &loaded.tokenizer, &prompts, &params)?;
    let seconds = start.elapsed().as_secs_f64();
    let tokens: usize = generations.iter().map(|g| g.tokens.len()).sum();
    for (i, g) in generations.iter().enumerate() {
        if args.json {
            println!("{}", serde_json::to_string(g)?);
        } else {
            println!(
                "--- generation {} ({} tokens, {:?})\n{}",
                i + 1,
                g.tokens.len(),
                g.finish,
                g.text
            );
        }
    }
    eprintln!(
        "{tokens} tokens in {seconds:.2} s: {:.1} tokens/s (batch {})",
        tokens as f64 / seconds,
        prompts.len()
    );
    Ok(())
}
