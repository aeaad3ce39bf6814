//! Per-generation advantages of the methods POLY-EPO is compared against (docs/design.md §1).

use crate::advantages::Advantages;
use crate::group::Group;

/// Added to the standard deviation in [`grpo`] so that a group with equal rewards gets zero
/// advantages instead of 0/0 (the value verl and TRL use).
pub const GRPO_STD_EPSILON: f64 = 1e-6;

/// GRPO: (r_i − mean r) / (std r + ε), with the sample (Bessel-corrected) standard deviation
/// as in verl's `torch.std`; a group of one has std 0.
pub fn grpo(group: &Group) -> Advantages {
    let mean = group.mean_reward();
    let n = group.len();
    let std = if n > 1 {
        (group
            .rewards()
            .iter()
            .map(|r| (r - mean).powi(2))
            .sum::<f64>()
            / (n - 1) as f64)
            .sqrt()
    } else {
        0.0
    };
    let scale = 1.0 / (std + GRPO_STD_EPSILON);
    Advantages {
        advantages: group.rewards().iter().map(|r| (r - mean) * scale).collect(),
        baseline: mean,
    }
}

/// Dr.GRPO: r_i − mean r, without the standard-deviation normalisation.
pub fn drgrpo(group: &Group) -> Advantages {
    let mean = group.mean_reward();
    Advantages {
        advantages: group.rewards().iter().map(|r| r - mean).collect(),
        baseline: mean,
    }
}

/// Additive diversity bonus: score_i = r_i + λ·div_i, where div_i is the fraction of the
/// other N − 1 generations in a different non-degenerate cluster (0 for a degenerate i);
/// advantage = score_i − mean score.
pub fn diversity_bonus(group: &Group, lambda: f64) -> Advantages {
    let clusters = group.cluster_indices();
    let n = group.len();
    let mut size = vec![0usize; group.num_clusters()];
    let mut labelled = 0usize;
    for c in clusters.iter().flatten() {
        size[*c as usize] += 1;
        labelled += 1;
    }
    let scores: Vec<f64> = group
        .rewards()
        .iter()
        .zip(clusters)
        .map(|(r, c)| {
            let div = match c {
                Some(c) if n > 1 => (labelled - size[*c as usize]) as f64 / (n - 1) as f64,
                _ => 0.0,
            };
            r + lambda * div
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / n as f64;
    Advantages {
        advantages: scores.iter().map(|s| s - mean).collect(),
        baseline: mean,
    }
}
