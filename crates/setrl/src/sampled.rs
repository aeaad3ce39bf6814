//! Marginal set advantages from sampled sets, for any objective when C(N, n) is too large.
//!
//! Design: for every generation i we draw K sets that contain i (i plus a uniform
//! (n−1)-subset of the others, without replacement) and average their scores into m_i, an
//! unbiased estimate of E[f | i ∈ S]. Because E[f] = (1/N) Σ_i E[f | i ∈ S] for uniform
//! n-subsets, b = mean_i m_i is unbiased for E[f] and A_i = m_i − b is unbiased for the exact
//! marginal advantage. Drawing sets per generation (rather than K sets overall) also guarantees
//! that no generation is left without a set, which would bias its advantage towards 0.

use rand::SeedableRng;
use rand::seq::index;
use rand_chacha::ChaCha8Rng;

use crate::advantages::Advantages;
use crate::error::{Result, SetRlError};
use crate::group::Group;
use crate::objective::SetObjective;

/// Unbiased marginal advantages from `sets_per_generation` sampled sets per generation
/// (N · K set evaluations in all), reproducible for a given `seed`.
///
/// # Errors
/// [`SetRlError::InvalidSetSize`] or [`SetRlError::NoSampledSets`] when K = 0.
pub fn sampled<O: SetObjective + ?Sized>(
    objective: &O,
    group: &Group,
    set_size: usize,
    sets_per_generation: usize,
    seed: u64,
) -> Result<Advantages> {
    group.check_set_size(set_size)?;
    if sets_per_generation == 0 {
        return Err(SetRlError::NoSampledSets);
    }
    let big_n = group.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut members = Vec::with_capacity(set_size);
    let conditional: Vec<f64> = (0..big_n)
        .map(|i| {
            let mut sum = 0.0;
            for _ in 0..sets_per_generation {
                members.clear();
                members.push(i);
                // Indices into the others: skip over i itself.
                for j in index::sample(&mut rng, big_n - 1, set_size - 1) {
                    members.push(if j >= i { j + 1 } else { j });
                }
                members.sort_unstable();
                sum += objective.score(group, &members);
            }
            sum / sets_per_generation as f64
        })
        .collect();
    let baseline = conditional.iter().sum::<f64>() / big_n as f64;
    Ok(Advantages {
        advantages: conditional.iter().map(|m| m - baseline).collect(),
        baseline,
    })
}
