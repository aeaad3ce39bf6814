//! `polyepo logprobs`: the log-probability a model gives each token of a text, as JSON. It
//! lets another tool check that it computes what polyepo computes (the transformers
//! round-trip test does exactly that) and scores texts without writing code.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use clap::Args;
use polyepo::rl::train::run_dir::RunDir;
use polyepo_engine::model::batch::Batch;
use polyepo_engine::model::load_model;
use polyepo_engine::model::logprobs::token_log_probs;

use super::device::DeviceArgs;

/// Arguments of `polyepo logprobs`.
#[derive(Debug, Args)]
pub struct LogprobsArgs {
    /// A run directory (its final model), an HF-format directory or a GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// The text to score (tokenized as `polyepo` does: BOS first when the model has one).
    #[arg(long)]
    pub text: String,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Prints `{"tokens": [...], "logprobs": [...]}`: token ids and, for every token after the
/// first, log p(token | the tokens before it).
pub fn run(args: &LogprobsArgs) -> Result<()> {
    let path = match RunDir::detect(&args.model) {
        Some(run) => run.finished_model()?,
        None => args.model.clone(),
    };
    let device = args.device.device()?;
    let loaded = load_model(&path, args.device.dtype(), &device)
        .with_context(|| format!("loading {}", path.display()))?;
    let tokens = loaded.tokenizer.encode(&args.text)?;
    if tokens.len() < 2 {
        bail!(
            "--text gives {} token(s); a log-probability needs at least two",
            tokens.len()
        );
    }
    let batch = Batch::left_padded(std::slice::from_ref(&tokens), 0, &device)?;
    let logits = loaded
        .model
        .forward(&batch.tokens, &batch.positions, &batch.mask)?;
    let t = tokens.len();
    let predicting = logits.narrow(1, 0, t - 1)?;
    let targets = Tensor::new(&tokens[1..], &device)?.unsqueeze(0)?;
    let logprobs: Vec<f32> = token_log_probs(&predicting, &targets)?
        .squeeze(0)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1()?;
    println!(
        "{}",
        serde_json::json!({ "tokens": tokens, "logprobs": logprobs })
    );
    Ok(())
}
