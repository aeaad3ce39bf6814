//! Log-probabilities of response tokens given their prompts, for a batch of sequences of
//! different lengths: the one forward pass both the warm-up and the RL update use.

use candle_core::{Result, Tensor};

use polyepo_engine::model::logprobs::token_log_probs;
use polyepo_engine::model::{Batch, Llama};

/// Per-token log-probabilities of the responses, aligned at the right.
#[derive(Debug)]
pub struct ResponseLogProbs {
    /// (B, R): log π(response token), R = longest response; left entries of shorter
    /// responses are padding.
    pub log_probs: Tensor,
    /// (B, R): 1 on response tokens, 0 on padding.
    pub mask: Tensor,
    /// (B, R, V) logits at the response positions (temperature applied).
    pub logits: Tensor,
}

/// Scores `responses[i]` after `prompts[i]`. Rows are prompt ++ response, left-padded, so every
/// response ends at the last slot and the logits are computed only for the last R slots:
/// the vocabulary projection is the largest tensor of the step.
pub fn response_log_probs(
    model: &Llama,
    prompts: &[Vec<u32>],
    responses: &[Vec<u32>],
    pad_id: u32,
    temperature: f64,
) -> Result<ResponseLogProbs> {
    let rows: Vec<Vec<u32>> = prompts
        .iter()
        .zip(responses)
        .map(|(p, r)| p.iter().chain(r).copied().collect())
        .collect();
    let batch = Batch::left_padded(&rows, pad_id, model.device())?;
    let (b, l) = batch.dims()?;
    let r = responses.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let hidden = model.forward_hidden(&batch.tokens, &batch.positions, &batch.mask, None)?; // (B, L, d)
    let mut logits = model.logits(&hidden.narrow(1, l - r - 1, r)?)?; // (B, R, V): predicts slots L−R..L−1
    if temperature != 1.0 {
        logits = (logits / temperature)?;
    }
    let targets = batch.tokens.narrow(1, l - r, r)?;
    let log_probs = token_log_probs(&logits, &targets)?;
    let mask: Vec<f32> = responses
        .iter()
        .flat_map(|resp| (0..r).map(move |j| if j >= r - resp.len() { 1.0 } else { 0.0 }))
        .collect();
    let mask = Tensor::from_vec(mask, (b, r), model.device())?;
    Ok(ResponseLogProbs {
        log_probs,
        mask,
        logits,
    })
}
