//! Batched generation with a KV cache: left-padded prompts of different lengths, temperature,
//! top-k, top-p, stop tokens and strings, a seed; returns tokens, text and per-token log-probs.
//!
//! The sampler runs on a detached copy of the model (fused kernels, no autograd graph), so the
//! cache never retains a graph (docs/design.md §3).

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::batch::attention_mask;
use crate::model::{Batch, KvCache, Llama, ModelError, ModelResult, TextTokenizer};

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingParams {
    /// Tokens to generate at most per sequence.
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose mass reaches top_p (1 = off).
    pub top_p: f64,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Strings that end a generation; the text is cut before them.
    pub stop_strings: Vec<String>,
    /// Seed of the sampler; row i always uses the stream derived from (seed, i).
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            stop_strings: Vec::new(),
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "`temperature` must be >= 0 (got {}); 0 is greedy",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("`top_p` must be in (0, 1] (got {})", self.top_p));
        }
        if self.max_new_tokens == 0 {
            return Err("`max_new_tokens` must be at least 1".into());
        }
        Ok(())
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    /// Generated token ids (the stop token included, when one ended it).
    pub tokens: Vec<u32>,
    /// Decoded text, cut before a stop string.
    pub text: String,
    /// log π(token) of each generated token under the sampling distribution's temperature
    /// (untruncated by top-k/top-p; plain log-softmax when greedy).
    pub log_probs: Vec<f32>,
    /// Why it ended.
    pub finish: FinishReason,
}

/// Generates one continuation per prompt (token ids), all in one batch.
pub fn generate(
    model: &Llama,
    tokenizer: &TextTokenizer,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
) -> ModelResult<Vec<Generation>> {
    params
        .validate()
        .map_err(|m| ModelError::format("sampling", m))?;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(ModelError::format(
            "sampling",
            "a prompt is empty: every prompt needs at least one token",
        ));
    }
    // Checked before anything is allocated: the padded batch's attention mask alone is
    // (B, 1, L, L), so a huge prompt must be refused from its length.
    let prompt_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let capacity = prompt_len.saturating_add(params.max_new_tokens);
    if capacity > model.cfg.max_position_embeddings {
        return Err(ModelError::format(
            "sampling",
            format!(
                "prompt ({prompt_len}) + max_new_tokens ({}) exceeds the model's context of {}",
                params.max_new_tokens, model.cfg.max_position_embeddings
            ),
        ));
    }
    let model = model.detached();
    let device = model.device().clone();
    let batch = Batch::left_padded(prompts, tokenizer.pad_id, &device)?;
    let b = prompts.len();
    let mut cache = KvCache::new(&model.cfg, b, capacity, model.dtype(), &device)?;
    let mut rngs: Vec<ChaCha8Rng> = (0..b)
        .map(|i| {
            ChaCha8Rng::seed_from_u64(params.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64)
        })
        .collect();
    let mut out: Vec<Generation> = (0..b)
        .map(|_| Generation {
            tokens: Vec::new(),
            text: String::new(),
            log_probs: Vec::new(),
            finish: FinishReason::Length,
        })
        .collect();
    let mut done = vec![false; b];
    let mut next_pos: Vec<u32> = prompts.iter().map(|p| p.len() as u32).collect();

    // Prefill: the whole prompt batch; logits only at the last slot.
    let hidden = model.forward_hidden(
        &batch.tokens,
        &batch.positions,
        &batch.mask,
        Some(&mut cache),
    )?;
    let mut logits = model.logits(&hidden.narrow(1, prompt_len - 1, 1)?)?;
    for step in 0..params.max_new_tokens {
        let rows: Vec<Vec<f32>> = logits.squeeze(1)?.to_dtype(DType::F32)?.to_vec2()?;
        let mut step_tokens = Vec::with_capacity(b);
        for (i, row) in rows.iter().enumerate() {
            if done[i] {
                step_tokens.push(tokenizer.pad_id);
                continue;
            }
            let (token, log_prob) = pick(row, params, &mut rngs[i]);
            let g = &mut out[i];
            g.tokens.push(token);
            g.log_probs.push(log_prob);
            if tokenizer.stop_ids.contains(&token) {
                done[i] = true;
                g.finish = FinishReason::Stop;
            } else if !params.stop_strings.is_empty() {
                let text = tokenizer.decode(&g.tokens)?;
                if params
                    .stop_strings
                    .iter()
                    .any(|s| text.contains(s.as_str()))
                {
                    done[i] = true;
                    g.finish = FinishReason::Stop;
                }
            }
            step_tokens.push(token);
        }
        if done.iter().all(|d| *d) || step + 1 == params.max_new_tokens {
            break;
        }
        // Decode: one new slot for every row (finished rows are fed padding and ignored).
        let tokens = Tensor::from_vec(step_tokens, (b, 1), &device)?;
        let positions = Tensor::from_vec(next_pos.clone(), (b, 1), &device)?;
        let mask = attention_mask(&batch.pads, cache.len(), 1, &device)?;
        let hidden = model.forward_hidden(&tokens, &positions, &mask, Some(&mut cache))?;
        logits = model.logits(&hidden)?;
        for p in next_pos.iter_mut() {
            *p += 1;
        }
    }
    for g in &mut out {
        let text = tokenizer.decode(&g.tokens)?;
        g.text = match params
            .stop_strings
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            Some(cut) => text[..cut].to_owned(),
            None => text,
        };
    }
    Ok(out)
}

/// Chooses the next token from one row of logits; returns it with its log-probability.
fn pick(logits: &[f32], params: &SamplingParams, rng: &mut ChaCha8Rng) -> (u32, f32) {
    let greedy = params.temperature == 0.0;
    let inv_t = if greedy {
        1.0
    } else {
        1.0 / params.temperature as f32
    };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_z = max * inv_t
        + logits
            .iter()
            .map(|&l| ((l - max) * inv_t).exp())
            .sum::<f32>()
            .ln();
    let log_prob = |t: usize| logits[t] * inv_t - log_z;
    if greedy {
        let best = logits
            .iter()
            .enumerate()
            .fold(0, |best, (i, &l)| if l > logits[best] { i } else { best });
        return (best as u32, log_prob(best));
    }
    // Candidates in descending probability, cut by top-k and top-p.
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let k = if params.top_k == 0 {
        logits.len()
    } else {
        params.top_k.min(logits.len())
    };
    if k < logits.len() {
        order.select_nth_unstable_by(k - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
        order.truncate(k);
    }
    let mut probs: Vec<(usize, f32)> = order.iter().map(|&t| (t, log_prob(t).exp())).collect();
    if params.top_p < 1.0 {
        probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        let mut mass = 0.0;
        let mut keep = probs.len();
        for (i, (_, p)) in probs.iter().enumerate() {
            mass += p;
            if mass >= params.top_p as f32 {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let total: f32 = probs.iter().map(|(_, p)| p).sum();
    let mut u = rng.random::<f32>() * total;
    for &(t, p) in &probs {
        if u < p {
            return (t as u32, log_prob(t));
        }
        u -= p;
    }
    // Rounding left u just above the last bucket.
    let (t, _) = probs[probs.len() - 1];
    (t as u32, log_prob(t))
}
