//! Batched generation with a KV cache: left-padded prompts of different lengths, temperature,
//! top-k, top-p, stop tokens and strings, a seed, per-row token constraints (a grammar that
//! masks the next token); returns tokens, text, per-token log-probs and, when asked, the
//! most likely alternatives at every position.
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
    /// How many of the most likely tokens to report at every position, with their
    /// log-probs (0: none).
    pub top_logprobs: usize,
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
            top_logprobs: 0,
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
    /// The `top_logprobs` most likely tokens at every position, most likely first, as
    /// (token, log-prob) under the same distribution as `log_probs` (empty when not asked).
    pub top_log_probs: Vec<Vec<(u32, f32)>>,
}

/// A per-row rule on which token may come next (a grammar, a JSON schema): the sampler
/// asks it before every token and tells it the token chosen.
pub trait TokenConstraint: Send {
    /// Marks the tokens that may come next (`allowed` starts all false and has one entry
    /// per logit). Marking none ends the row. The sampler allows the stop tokens only
    /// where the constraint marks them.
    fn allowed(&mut self, allowed: &mut [bool]) -> Result<(), String>;
    /// Records the token chosen.
    fn consume(&mut self, token: u32) -> Result<(), String>;
}

/// Generates one continuation per prompt (token ids), all in one batch.
pub fn generate(
    model: &Llama,
    tokenizer: &TextTokenizer,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
) -> ModelResult<Vec<Generation>> {
    if prompts.is_empty() {
        params
            .validate()
            .map_err(|m| ModelError::format("sampling", m))?;
        return Ok(Vec::new());
    }
    let mut sampler = BatchSampler::new(model, tokenizer, prompts, params)?;
    while !sampler.is_finished() {
        sampler.step()?;
    }
    sampler.finish()
}

/// A batch being generated one token per [`BatchSampler::step`]: the state [`generate`]
/// keeps between steps, exposed so that a server can interleave several batches (a short
/// request does not wait for a long one) and stop rows whose client has gone.
pub struct BatchSampler<'a> {
    /// Detached copy of the model (shares weight storage).
    model: Llama,
    tokenizer: &'a TextTokenizer,
    params: SamplingParams,
    /// Left-padding slots in front of each row's prompt (hidden by every decode mask).
    pads: Vec<usize>,
    cache: KvCache,
    rngs: Vec<ChaCha8Rng>,
    out: Vec<Generation>,
    done: Vec<bool>,
    next_pos: Vec<u32>,
    /// Logits of every row's next token. # Shapes: (B, 1, V).
    logits: Tensor,
    /// Token constraints by row (none: free).
    constraints: Vec<Option<Box<dyn TokenConstraint>>>,
    steps: usize,
    finished: bool,
}

impl<'a> BatchSampler<'a> {
    /// Validates the request and runs the prefill over the whole prompt batch.
    ///
    /// # Errors
    /// Invalid sampling settings, no or an empty prompt, a prompt plus `max_new_tokens`
    /// beyond the model's context (checked before anything is allocated), or a failed
    /// forward pass.
    pub fn new(
        model: &Llama,
        tokenizer: &'a TextTokenizer,
        prompts: &[Vec<u32>],
        params: &SamplingParams,
    ) -> ModelResult<Self> {
        params
            .validate()
            .map_err(|m| ModelError::format("sampling", m))?;
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
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
        let b = prompts.len();
        let rngs = (0..b)
            .map(|i| {
                ChaCha8Rng::seed_from_u64(
                    params.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64,
                )
            })
            .collect();
        let out = (0..b)
            .map(|_| Generation {
                tokens: Vec::new(),
                text: String::new(),
                log_probs: Vec::new(),
                finish: FinishReason::Length,
                top_log_probs: Vec::new(),
            })
            .collect();
        // Prefill each distinct prompt once (an RL step samples every prompt N times), then
        // copy its keys and values to the rows that continue it; logits only at the last slot.
        let (distinct, owners) = crate::model::shared::distinct_rows(prompts);
        let prefill = Batch::left_padded(&distinct, tokenizer.pad_id, &device)?;
        let mut shared = KvCache::new(
            &model.cfg,
            distinct.len(),
            prompt_len,
            model.dtype(),
            &device,
        )?;
        let hidden = model.forward_hidden(
            &prefill.tokens,
            &prefill.positions,
            &prefill.mask,
            Some(&mut shared),
        )?;
        // Every row is padded to the longest prompt, as its distinct prompt was.
        let pads = owners.iter().map(|&o| prefill.pads[o as usize]).collect();
        let owners = Tensor::from_vec(owners, b, &device)?;
        let cache = shared.gather(&owners, capacity)?;
        drop(shared);
        let logits = model
            .logits(&hidden.narrow(1, prompt_len - 1, 1)?)?
            .index_select(&owners, 0)?;
        Ok(Self {
            model,
            tokenizer,
            params: params.clone(),
            pads,
            cache,
            rngs,
            out,
            done: vec![false; b],
            next_pos: prompts.iter().map(|p| p.len() as u32).collect(),
            logits,
            constraints: (0..b).map(|_| None).collect(),
            steps: 0,
            finished: false,
        })
    }

    /// Constrains row `row`'s tokens from now on.
    pub fn constrain(&mut self, row: usize, constraint: Box<dyn TokenConstraint>) {
        if let Some(slot) = self.constraints.get_mut(row) {
            *slot = Some(constraint);
        }
    }

    /// Whether every row has ended (or `max_new_tokens` is reached).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.out.len()
    }

    /// The tokens row `row` has generated so far.
    pub fn tokens(&self, row: usize) -> &[u32] {
        &self.out[row].tokens
    }

    /// Stops row `row` where it is (its client left): it is fed padding from now on, and
    /// the batch finishes as soon as every row has stopped.
    pub fn cancel(&mut self, row: usize) {
        if let Some(d) = self.done.get_mut(row) {
            *d = true;
        }
        if self.done.iter().all(|d| *d) {
            self.finished = true;
        }
    }

    /// Samples one token for every live row, then runs the decode step that yields the
    /// next logits (unless the batch just finished).
    pub fn step(&mut self) -> ModelResult<()> {
        if self.finished {
            return Ok(());
        }
        let b = self.out.len();
        let (tokenizer, params) = (self.tokenizer, &self.params);
        let rows: Vec<Vec<f32>> = self.logits.squeeze(1)?.to_dtype(DType::F32)?.to_vec2()?;
        let mut step_tokens = Vec::with_capacity(b);
        for (i, row) in rows.iter().enumerate() {
            if self.done[i] {
                step_tokens.push(tokenizer.pad_id);
                continue;
            }
            let masked;
            let row = match &mut self.constraints[i] {
                None => row,
                Some(c) => match mask_logits(c.as_mut(), row) {
                    Ok(Some(m)) => {
                        masked = m;
                        &masked
                    }
                    // Nothing may follow: the constrained text is complete.
                    Ok(None) => {
                        self.done[i] = true;
                        self.out[i].finish = FinishReason::Stop;
                        step_tokens.push(tokenizer.pad_id);
                        continue;
                    }
                    Err(e) => return Err(ModelError::format("constraint", e)),
                },
            };
            let (token, log_prob) = pick(row, params, &mut self.rngs[i]);
            let stop = tokenizer.stop_ids.contains(&token);
            if let Some(c) = &mut self.constraints[i]
                && !stop
            {
                c.consume(token)
                    .map_err(|e| ModelError::format("constraint", e))?;
            }
            let g = &mut self.out[i];
            g.tokens.push(token);
            g.log_probs.push(log_prob);
            if params.top_logprobs > 0 {
                g.top_log_probs
                    .push(top_log_probs(row, params, params.top_logprobs));
            }
            if stop {
                self.done[i] = true;
                g.finish = FinishReason::Stop;
            } else if !params.stop_strings.is_empty() {
                let text = tokenizer.decode(&g.tokens)?;
                if params
                    .stop_strings
                    .iter()
                    .any(|s| text.contains(s.as_str()))
                {
                    self.done[i] = true;
                    g.finish = FinishReason::Stop;
                }
            }
            step_tokens.push(token);
        }
        self.steps += 1;
        if self.done.iter().all(|d| *d) || self.steps == params.max_new_tokens {
            self.finished = true;
            return Ok(());
        }
        // Decode: one new slot for every row (finished rows are fed padding and ignored).
        let device = self.model.device().clone();
        let tokens = Tensor::from_vec(step_tokens, (b, 1), &device)?;
        let positions = Tensor::from_vec(self.next_pos.clone(), (b, 1), &device)?;
        let mask = attention_mask(&self.pads, self.cache.len(), 1, &device)?;
        let hidden =
            self.model
                .forward_hidden(&tokens, &positions, &mask, Some(&mut self.cache))?;
        self.logits = self.model.logits(&hidden)?;
        for p in self.next_pos.iter_mut() {
            *p += 1;
        }
        Ok(())
    }

    /// The generations, their text decoded and cut before the first stop string.
    pub fn finish(self) -> ModelResult<Vec<Generation>> {
        let mut out = self.out;
        for g in &mut out {
            let text = self.tokenizer.decode(&g.tokens)?;
            g.text = match self
                .params
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
}

/// The logits with every token the constraint forbids at -inf; `None` when it allows none.
fn mask_logits(c: &mut dyn TokenConstraint, logits: &[f32]) -> Result<Option<Vec<f32>>, String> {
    let mut allowed = vec![false; logits.len()];
    c.allowed(&mut allowed)?;
    if !allowed.iter().any(|a| *a) {
        return Ok(None);
    }
    Ok(Some(
        logits
            .iter()
            .zip(&allowed)
            .map(|(&l, &a)| if a { l } else { f32::NEG_INFINITY })
            .collect(),
    ))
}

/// The `k` most likely tokens with their log-probs at the sampling temperature (plain
/// log-softmax when greedy), most likely first.
fn top_log_probs(logits: &[f32], params: &SamplingParams, k: usize) -> Vec<(u32, f32)> {
    let (inv_t, log_z) = softmax_scale(logits, params);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let k = k.min(logits.len());
    order.select_nth_unstable_by(k - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(k);
    order.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order
        .into_iter()
        .filter(|&t| logits[t] > f32::NEG_INFINITY)
        .map(|t| (t as u32, logits[t] * inv_t - log_z))
        .collect()
}

/// 1/T (1 when greedy) and the log-normaliser of softmax(logits / T): log π(t) is
/// `logits[t] * inv_t - log_z`.
fn softmax_scale(logits: &[f32], params: &SamplingParams) -> (f32, f32) {
    let inv_t = if params.temperature == 0.0 {
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
    (inv_t, log_z)
}

fn pick(logits: &[f32], params: &SamplingParams, rng: &mut ChaCha8Rng) -> (u32, f32) {
    let greedy = params.temperature == 0.0;
    let (inv_t, log_z) = softmax_scale(logits, params);
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
