//! The Llama-family decoder: one forward pass for training (every position, causal and
//! padding masks, differentiable ops only) and for cached decoding (fused kernels).

use candle_core::{DType, Device, Result, Tensor};

use super::cache::KvCache;
use super::config::LlamaConfig;
use super::linear::Linear;
use super::norm::RmsNorm;
use super::rope::Rotary;

/// Grouped-query self-attention with RoPE (and Qwen3's per-head q/k norms).
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
}

/// SwiGLU feed-forward: down(silu(gate(x)) · up(x)).
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

/// Pre-norm residual block.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

/// A decoder-only transformer of the Llama family.
#[derive(Debug, Clone)]
pub struct Llama {
    /// Shape and architecture.
    pub cfg: LlamaConfig,
    pub(crate) embed_tokens: Tensor, // (V, d)
    pub(crate) layers: Vec<Block>,
    pub(crate) norm: RmsNorm,
    /// Separate output projection; `None` when tied to the embeddings.
    pub(crate) lm_head: Option<Linear>,
    pub(crate) rotary: Rotary,
    /// Use candle's fused (non-differentiable) kernels: set on detached copies for sampling.
    pub(crate) fused: bool,
    /// The model file's blocks of the tied embeddings, for the LM head's few-rows products
    /// (see [`super::file_blocks`]).
    pub(crate) embed_blocks: Option<super::file_blocks::WeightBlocks>,
}

/// Where attention takes keys and values from besides the new tokens' own.
pub(crate) enum Keys<'a> {
    /// Only the new tokens (training and scoring whole rows).
    Own,
    /// A decoding cache: the new keys are appended, attention reads every cached position.
    Cache(&'a mut KvCache),
    /// Only the new tokens, and each layer's keys and values are kept (in the autograd
    /// graph) so that continuations can attend to them: see [`super::shared`].
    Record(&'a mut Vec<(Tensor, Tensor)>),
    /// Shared prefixes first: every layer's prefix keys and values (U rows each), and for
    /// each of the B batch rows the prefix row it continues.
    Prefix(&'a [(Tensor, Tensor)], &'a Tensor),
}

/// [`Keys`] for one layer.
enum LayerKeys<'a> {
    Own,
    Cache(&'a mut KvCache, usize),
    Record(&'a mut Vec<(Tensor, Tensor)>),
    Prefix(&'a (Tensor, Tensor), &'a Tensor),
}

impl Keys<'_> {
    fn layer(&mut self, layer: usize) -> LayerKeys<'_> {
        match self {
            Keys::Own => LayerKeys::Own,
            Keys::Cache(cache) => LayerKeys::Cache(cache, layer),
            Keys::Record(kept) => LayerKeys::Record(kept),
            Keys::Prefix(prefix, owners) => LayerKeys::Prefix(&prefix[layer], owners),
        }
    }
}

/// Additive attention bias: 0 where a query may attend, a large negative number elsewhere.
/// Finite (not −∞) so that a padding query with nothing to attend to yields a uniform row,
/// not NaN; real queries never see it because exp(−1e9) is exactly 0 in f32.
pub const MASKED: f32 = -1e9;

impl Attention {
    /// # Shapes
    /// x: (B, T, d); cos/sin: (B, 1, T, D/2); mask: (B, 1, T, S) with S = earlier keys + T.
    fn forward(
        &self,
        cfg: &LlamaConfig,
        x: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        mask: &Tensor,
        keys: LayerKeys<'_>,
        fused: bool,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kv, dh) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let q = self
            .q_proj
            .forward(x)?
            .reshape((b, t, h, dh))?
            .transpose(1, 2)?; // (B, H, T, D)
        let k = self
            .k_proj
            .forward(x)?
            .reshape((b, t, kv, dh))?
            .transpose(1, 2)?; // (B, KV, T, D)
        let v = self
            .v_proj
            .forward(x)?
            .reshape((b, t, kv, dh))?
            .transpose(1, 2)?; // (B, KV, T, D)
        let q = match &self.q_norm {
            Some(n) => n.forward(&q, fused)?,
            None => q,
        };
        let k = match &self.k_norm {
            Some(n) => n.forward(&k, fused)?,
            None => k,
        };
        let q = super::ops::rope(&q, cos, sin)?;
        let k = super::ops::rope(&k, cos, sin)?;
        let (k, v) = match keys {
            LayerKeys::Own => (k, v),
            LayerKeys::Cache(cache, layer) => cache.append(layer, &k, &v)?, // (B, KV, S, D)
            LayerKeys::Record(kept) => {
                kept.push((k.contiguous()?, v.contiguous()?));
                (k, v)
            }
            LayerKeys::Prefix((pk, pv), owners) => {
                // Each row reads its prefix's keys: index_select's backward adds the rows'
                // gradients into the one shared prefix.
                (
                    Tensor::cat(&[&pk.index_select(owners, 0)?, &k], 2)?,
                    Tensor::cat(&[&pv.index_select(owners, 0)?, &v], 2)?,
                ) // (B, KV, P + T, D)
            }
        };
        let s = k.dim(2)?;
        // Grouped-query attention without repeating K/V: the G query heads that share a KV
        // head become G·T rows of one matrix product.
        // Scaling q (T·D values) is cheaper than scaling the scores (T·S values).
        let q = (q * (1.0 / (dh as f64).sqrt()))?.reshape((b, kv, cfg.group_size() * t, dh))?; // (B, KV, G·T, D)
        let scores = q.matmul(&k.t()?)?.reshape((b, h, t, s))?; // (B, H, T, S)
        let probs = if fused {
            candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?
        } else {
            super::ops::masked_softmax(&scores, mask)?
        };
        let out = probs
            .reshape((b, kv, cfg.group_size() * t, s))?
            .matmul(&v.contiguous()?)?; // (B, KV, G·T, D)
        let out = out
            .reshape((b, h, t, dh))?
            .transpose(1, 2)?
            .reshape((b, t, h * dh))?; // (B, T, H·D)
        self.o_proj.forward(&out)
    }
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?.silu()?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}

impl Llama {
    /// Hidden states after the final norm.
    ///
    /// # Shapes
    /// tokens, positions: (B, T) u32; mask: (B, 1, T, S) additive, S = cached + T → (B, T, d).
    pub fn forward_hidden(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let mut keys = match cache {
            Some(cache) => Keys::Cache(cache),
            None => Keys::Own,
        };
        self.forward_with_keys(tokens, positions, mask, &mut keys)
    }

    /// [`Llama::forward_hidden`] with any source of earlier keys and values.
    pub(crate) fn forward_with_keys(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        keys: &mut Keys<'_>,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let d = self.cfg.hidden_size;
        let mut x = self
            .embed_tokens
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let (cos, sin) = self.rotary.tables(positions)?;
        let mask = mask.to_dtype(x.dtype())?;
        for (index, block) in self.layers.iter().enumerate() {
            let h = block.input_layernorm.forward(&x, self.fused)?;
            let h = block.self_attn.forward(
                &self.cfg,
                &h,
                (&cos, &sin),
                &mask,
                keys.layer(index),
                self.fused,
            )?;
            x = (x + h)?;
            let h = block.post_attention_layernorm.forward(&x, self.fused)?;
            x = (x + block.mlp.forward(&h)?)?;
        }
        if let Keys::Cache(cache) = keys {
            cache.advance(t);
        }
        self.norm.forward(&x, self.fused)
    }

    /// Output logits for the given hidden states.
    ///
    /// # Shapes
    /// hidden: (B, T, d) → (B, T, V).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let (b, t, d) = hidden.dims3()?;
                let rows = hidden.reshape((b * t, d))?;
                // Tied embeddings: under LoRA the largest frozen matrix of all.
                let logits = super::file_blocks::weight_product(
                    &rows,
                    &self.embed_tokens,
                    self.embed_blocks.as_ref(),
                )?;
                logits.reshape((b, t, self.cfg.vocab_size))
            }
        }
    }

    /// Logits at every position (training and scoring).
    ///
    /// # Shapes
    /// tokens, positions: (B, T); mask: (B, 1, T, T) → (B, T, V).
    pub fn forward(&self, tokens: &Tensor, positions: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.logits(&self.forward_hidden(tokens, positions, mask, None)?)
    }

    /// A copy cut from the autograd graph that uses fused kernels: for sampling, so the KV
    /// cache never holds on to a graph (docs/design.md §3). Shares weight storage with `self`,
    /// so optimizer updates are visible without copying.
    pub fn detached(&self) -> Self {
        let mut copy = Self {
            fused: true,
            ..self.clone()
        };
        let Ok(()) = copy.visit_mut::<std::convert::Infallible>(&mut |_, t| {
            *t = t.detach();
            Ok(())
        });
        copy
    }

    /// Like [`Llama::detached`] but computing exactly what training computes (no fused
    /// kernels): for scoring with the current weights without building a graph, e.g. PPO's
    /// π_old, so that the first mini-batch's ratio is exactly 1.
    pub fn frozen(&self) -> Self {
        Self {
            fused: false,
            ..self.detached().without_file_blocks()
        }
    }

    /// The same model multiplying by its f32 weights only, never by the model file's
    /// quantized blocks (which decoding otherwise reads: [`super::file_blocks`]).
    pub fn without_file_blocks(&self) -> Self {
        let mut copy = self.clone();
        copy.embed_blocks = None;
        for l in copy.linears_mut() {
            l.blocks = None;
        }
        copy
    }

    /// One weight of each distinct shape, by HF-style name (the first layer's linears, then
    /// the LM head), with the file's blocks where they are bound: for kernel benchmarks.
    pub fn weight_samples(
        &self,
    ) -> Vec<(String, Tensor, Option<super::file_blocks::WeightBlocks>)> {
        let mut copy = self.clone();
        let mut out: Vec<(String, Tensor, Option<super::file_blocks::WeightBlocks>)> = Vec::new();
        let mut push = |name: &str, w: &Tensor, b: Option<&super::file_blocks::WeightBlocks>| {
            if !out.iter().any(|(_, t, _)| t.dims() == w.dims()) {
                out.push((name.to_owned(), w.detach(), b.cloned()));
            }
        };
        if let Some(block) = copy.layers.first_mut() {
            for (n, l) in block
                .self_attn
                .linears_mut()
                .into_iter()
                .chain(block.mlp.linears_mut())
            {
                push(n, &l.weight, l.blocks.as_ref());
            }
        }
        match &self.lm_head {
            Some(h) => push("lm_head", &h.weight, h.blocks.as_ref()),
            None => push(
                "lm_head (tied)",
                &self.embed_tokens,
                self.embed_blocks.as_ref(),
            ),
        }
        out
    }

    /// How many weights decoding multiplies by straight from the model file's blocks.
    pub fn file_block_weights(&self) -> usize {
        let mut copy = self.clone();
        let head = match &self.embed_blocks {
            Some(b) if b.binds(&self.embed_tokens) => self.embed_tokens.elem_count(),
            _ => 0,
        };
        let linears: usize = copy
            .linears_mut()
            .iter()
            .filter(|l| l.blocks.as_ref().is_some_and(|b| b.binds(&l.weight)))
            .map(|l| l.weight.elem_count())
            .sum();
        head + linears
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.embed_tokens.dtype()
    }
}
