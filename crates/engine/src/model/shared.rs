//! Scoring continuations that share prompts: each distinct prompt is run once and its
//! keys and values are read by every continuation of it.
//!
//! An RL step scores N generations of each prompt (π_old, π_ref, the training passes). As
//! whole rows, the prompt — usually most of a row — is computed N times. Here the prompts run
//! as one batch whose per-layer keys and values stay in the autograd graph, then the
//! continuations run as a second batch that attends to its prompt's keys first. The
//! gradient of a prompt's keys sums over its continuations (the backward of the row
//! gather), so the result is the whole-row computation, up to float summation order.

use std::collections::HashMap;

use candle_core::{Result, Tensor};

use super::batch::Batch;
use super::llama::{Keys, Llama, MASKED};

/// Final hidden states that predict the continuations' tokens.
#[derive(Debug)]
pub struct ContinuationHidden {
    /// (B, R, d): position j of row b predicts `continuations[b][j]`; R is the longest
    /// continuation, positions past a shorter one are padding (left-aligned).
    pub hidden: Tensor,
    /// The continuations right-padded to R. # Shapes: (B, R) u32.
    pub targets: Tensor,
    /// 1 on continuation tokens, 0 on padding. # Shapes: (B, R) f32.
    pub mask: Tensor,
    /// Distinct prompts that were run (U ≤ B): how much was shared.
    pub distinct_prompts: usize,
}

/// Hidden states that predict `continuations[b]` after `prompts[b]`, running each distinct
/// prompt once. Every prompt must be non-empty; an empty continuation is all padding.
///
/// # Shapes
/// → hidden (B, R, d), targets and mask (B, R), R = longest continuation.
pub fn continuation_hidden(
    model: &Llama,
    prompts: &[Vec<u32>],
    continuations: &[Vec<u32>],
    pad_id: u32,
) -> Result<ContinuationHidden> {
    if prompts.len() != continuations.len() {
        candle_core::bail!(
            "continuation_hidden needs one continuation per prompt ({} prompts, {} continuations)",
            prompts.len(),
            continuations.len()
        );
    }
    let device = model.device();
    let (distinct, owners) = distinct_rows(prompts);

    // Pass 1: the prompts, left-padded to P, keeping every layer's keys and values.
    let prefix = Batch::left_padded(&distinct, pad_id, device)?;
    let (u, p) = prefix.dims()?;
    let mut kept = Vec::with_capacity(model.cfg.num_hidden_layers);
    let prompt_hidden = model.forward_with_keys(
        &prefix.tokens,
        &prefix.positions,
        &prefix.mask,
        &mut Keys::Record(&mut kept),
    )?;
    let owner_ids = Tensor::from_vec(owners.clone(), owners.len(), device)?;
    // The prompt's last slot predicts the first continuation token.
    let d = model.cfg.hidden_size;
    let first = prompt_hidden
        .narrow(1, p - 1, 1)?
        .reshape((u, d))?
        .index_select(&owner_ids, 0)?
        .unsqueeze(1)?; // (B, 1, d)

    // Pass 2: every continuation but its last token (which predicts nothing), right-padded,
    // at the positions after its prompt, attending to the prompt's keys and then causally.
    let b = continuations.len();
    let r = continuations.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut targets = Vec::with_capacity(b * r);
    let mut mask = Vec::with_capacity(b * r);
    for c in continuations {
        targets.extend_from_slice(c);
        targets.extend(std::iter::repeat_n(pad_id, r - c.len()));
        mask.extend((0..r).map(|j| if j < c.len() { 1f32 } else { 0.0 }));
    }
    let targets = Tensor::from_vec(targets, (b, r), device)?;
    let mask = Tensor::from_vec(mask, (b, r), device)?;
    let hidden = if r == 1 {
        first
    } else {
        let t = r - 1;
        let positions: Vec<u32> = owners
            .iter()
            .flat_map(|&o| {
                let start = (p - prefix.pads[o as usize]) as u32;
                start..start + t as u32
            })
            .collect();
        let pads: Vec<usize> = owners.iter().map(|&o| prefix.pads[o as usize]).collect();
        let rest = model.forward_with_keys(
            &targets.narrow(1, 0, t)?.contiguous()?,
            &Tensor::from_vec(positions, (b, t), device)?,
            &continuation_mask(&pads, p, t, device)?,
            &mut Keys::Prefix(&kept, &owner_ids),
        )?; // (B, R − 1, d)
        Tensor::cat(&[&first, &rest], 1)?
    };
    Ok(ContinuationHidden {
        hidden,
        targets,
        mask,
        distinct_prompts: u,
    })
}

/// The additive mask for `t` continuation queries after a left-padded prompt batch of
/// length `p`: query i sees its prompt's real slots (from `pads[b]` on) and continuation
/// slots up to itself. Right padding needs no mask of its own: a padded slot comes after
/// every real token of its row.
///
/// # Shapes
/// → (B, 1, t, p + t) f32.
fn continuation_mask(
    pads: &[usize],
    p: usize,
    t: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let s = p + t;
    let mut data = Vec::with_capacity(pads.len() * t * s);
    for &pad in pads {
        for i in 0..t {
            data.extend((0..s).map(|j| {
                let visible = if j < p { j >= pad } else { j - p <= i };
                if visible { 0.0 } else { MASKED }
            }));
        }
    }
    Tensor::from_vec(data, (pads.len(), 1, t, s), device)
}

/// The distinct rows in order of first appearance, and for each row its index among them.
pub(crate) fn distinct_rows(rows: &[Vec<u32>]) -> (Vec<Vec<u32>>, Vec<u32>) {
    let mut index: HashMap<&[u32], u32> = HashMap::new();
    let mut distinct = Vec::new();
    let owners = rows
        .iter()
        .map(|r| {
            *index.entry(r.as_slice()).or_insert_with(|| {
                distinct.push(r.clone());
                distinct.len() as u32 - 1
            })
        })
        .collect();
    (distinct, owners)
}
