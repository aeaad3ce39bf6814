//! Log-probabilities of response tokens given their prompts, for a batch of sequences of
//! different lengths: the one forward pass both the warm-up and the RL update use.

use candle_core::{Result, Tensor};

use polyepo_engine::model::Llama;
use polyepo_engine::model::logprobs::token_log_probs;
use polyepo_engine::model::shared::continuation_hidden;

/// Per-token log-probabilities of the responses, aligned at the left.
#[derive(Debug)]
pub struct ResponseLogProbs {
    /// (B, R): log π(response token), R = longest response; entries past the end of a
    /// shorter response are padding.
    pub log_probs: Tensor,
    /// (B, R): 1 on response tokens, 0 on padding.
    pub mask: Tensor,
    /// (B, R, V) logits at the response positions (temperature applied).
    pub logits: Tensor,
}

/// Scores `responses[i]` after `prompts[i]`. Each distinct prompt is run once and shared by
/// its responses ([`continuation_hidden`]), and the logits — the vocabulary projection is the
/// largest tensor of the step — are computed only at the response positions.
pub fn response_log_probs(
    model: &Llama,
    prompts: &[Vec<u32>],
    responses: &[Vec<u32>],
    pad_id: u32,
    temperature: f64,
) -> Result<ResponseLogProbs> {
    let scored = continuation_hidden(model, prompts, responses, pad_id)?;
    let mut logits = model.logits(&scored.hidden)?; // (B, R, V)
    if temperature != 1.0 {
        logits = (logits / temperature)?;
    }
    let log_probs = token_log_probs(&logits, &scored.targets)?;
    Ok(ResponseLogProbs {
        log_probs,
        mask: scored.mask,
        logits,
    })
}
