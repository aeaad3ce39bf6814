//! A flat batch (one reward, label and group id per sample, groups interleaved or not, of
//! any sizes) split into groups, each group's advantages computed by one [`Method`], and the
//! results put back in the input order.

use std::collections::HashMap;

use setrl::{Group, Method, Strategy};

use crate::inputs::GroupKey;

/// Per-sample advantages of a flat batch, in input order. Group g (numbered in order of
/// first appearance) uses `method.reseeded(seed + g)`, as the Rust trainer does.
///
/// # Errors
/// A message naming the group (its id, first position and size) and what is wrong.
pub fn batch_advantages(
    method: Method,
    seed: u64,
    rewards: &[f64],
    clusters: Option<&[Option<i64>]>,
    keys: &[GroupKey],
) -> Result<Vec<f64>, String> {
    let mut index: HashMap<&GroupKey, usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let g = *index.entry(key).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        members[g].push(i);
    }
    let mut out = vec![0.0; rewards.len()];
    for (g, positions) in members.iter().enumerate() {
        let group_rewards = positions.iter().map(|&i| rewards[i]).collect();
        let strategies = match clusters {
            Some(c) => positions
                .iter()
                .map(|&i| c[i].map_or(Strategy::Degenerate, Strategy::Cluster))
                .collect(),
            None => vec![Strategy::Cluster(0); positions.len()],
        };
        let advantages = Group::new(group_rewards, strategies)
            .and_then(|group| method.reseeded(seed.wrapping_add(g as u64)).compute(&group))
            .map_err(|e| {
                format!(
                    "group {} (first at position {}, {} samples): {e}",
                    keys[positions[0]],
                    positions[0],
                    positions.len()
                )
            })?;
        for (&i, a) in positions.iter().zip(advantages.advantages) {
            out[i] = a;
        }
    }
    Ok(out)
}
