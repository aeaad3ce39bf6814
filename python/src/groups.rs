//! A flat batch (one reward, label and group id per sample, groups interleaved or not, of
//! any sizes) split into groups, each group's advantages computed by one [`Method`], and the
//! results put back in the input order.

use std::collections::HashMap;

use rayon::prelude::*;
use setrl::{Group, Method, Strategy};

use crate::inputs::GroupKey;

/// Sample positions grouped by id: group g (numbered in order of first appearance) holds
/// `order[starts[g]..starts[g + 1]]`, in input order.
struct Layout {
    order: Vec<usize>,
    starts: Vec<usize>,
}

impl Layout {
    fn new(keys: &[GroupKey]) -> Self {
        let mut index: HashMap<&GroupKey, u32> = HashMap::new();
        let mut group_of = Vec::with_capacity(keys.len());
        let mut sizes: Vec<usize> = Vec::new();
        // Trainers lay a group's samples out contiguously (verl and TRL repeat each prompt
        // N times in a row): only the start of a run needs the hash lookup.
        let mut current: Option<(&GroupKey, u32)> = None;
        for key in keys {
            let g = match current {
                Some((previous, g)) if previous == key => g,
                _ => *index.entry(key).or_insert_with(|| {
                    sizes.push(0);
                    (sizes.len() - 1) as u32
                }),
            };
            current = Some((key, g));
            sizes[g as usize] += 1;
            group_of.push(g);
        }
        // A counting sort: two allocations whatever the number of groups.
        let mut starts = Vec::with_capacity(sizes.len() + 1);
        starts.push(0);
        for size in &sizes {
            starts.push(starts[starts.len() - 1] + size);
        }
        let mut next = starts.clone();
        let mut order = vec![0; keys.len()];
        for (i, &g) in group_of.iter().enumerate() {
            order[next[g as usize]] = i;
            next[g as usize] += 1;
        }
        Self { order, starts }
    }

    fn group(&self, g: usize) -> &[usize] {
        &self.order[self.starts[g]..self.starts[g + 1]]
    }

    fn len(&self) -> usize {
        self.starts.len() - 1
    }
}

/// Per-sample advantages of a flat batch, in input order. Group g (numbered in order of
/// first appearance) uses `method.reseeded(seed + g)`, as the Rust trainer does. Groups
/// are computed in parallel.
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
    let layout = Layout::new(keys);
    let per_group: Vec<Vec<f64>> = (0..layout.len())
        .into_par_iter()
        .with_min_len(64)
        .map(|g| {
            let positions = layout.group(g);
            let group_rewards = positions.iter().map(|&i| rewards[i]).collect();
            let strategies = match clusters {
                Some(c) => positions
                    .iter()
                    .map(|&i| c[i].map_or(Strategy::Degenerate, Strategy::Cluster))
                    .collect(),
                None => vec![Strategy::Cluster(0); positions.len()],
            };
            Group::new(group_rewards, strategies)
                .and_then(|group| method.reseeded(seed.wrapping_add(g as u64)).compute(&group))
                .map(|a| a.advantages)
                .map_err(|e| {
                    format!(
                        "group {} (first at position {}, {} samples): {e}",
                        keys[positions[0]],
                        positions[0],
                        positions.len()
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let mut out = vec![0.0; rewards.len()];
    for (g, advantages) in per_group.into_iter().enumerate() {
        for (&i, a) in layout.group(g).iter().zip(advantages) {
            out[i] = a;
        }
    }
    Ok(out)
}
