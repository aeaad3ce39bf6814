//! Exact marginal set advantages in closed form.
//!
//! With all n-subsets of the N generations, A_i = E[f(S) | i ∈ S] − E[f(S)] for a uniform
//! n-subset S (docs/design.md §1). For the built-in objectives both expectations have closed forms,
//! so the cost is O(N·C + C·n) (mean: O(N), max: O(N log N)) instead of C(N, n)·n.

use crate::advantages::Advantages;
use crate::binomial::avoid_ratios;
use crate::error::Result;
use crate::group::Group;
use crate::objective::Objective;

impl Objective {
    /// Exact marginal advantages of every generation over all n-subsets (`set_size` = n).
    ///
    /// # Errors
    /// [`crate::SetRlError::InvalidSetSize`] unless 1 <= n <= N.
    pub fn exact(&self, group: &Group, set_size: usize) -> Result<Advantages> {
        group.check_set_size(set_size)?;
        Ok(match self {
            Objective::Mean => mean(group, set_size),
            Objective::Max => max(group, set_size),
            Objective::Polychromatic => polychromatic(group, set_size),
        })
    }
}

/// A_i = (N − n) / (n (N − 1)) · (r_i − r̄): a scaled Dr.GRPO advantage.
fn mean(group: &Group, n: usize) -> Advantages {
    let big_n = group.len();
    let r_bar = group.mean_reward();
    let scale = if big_n > 1 {
        (big_n - n) as f64 / (n * (big_n - 1)) as f64
    } else {
        0.0
    };
    Advantages {
        advantages: group
            .rewards()
            .iter()
            .map(|r| scale * (r - r_bar))
            .collect(),
        baseline: r_bar,
    }
}

/// Max objective, by rank: in descending reward order, the k-th generation (1-based) is the
/// set's maximum exactly when it is in S and none of the k − 1 before it are.
fn max(group: &Group, n: usize) -> Advantages {
    let rewards = group.rewards();
    let big_n = rewards.len();
    let mut order: Vec<usize> = (0..big_n).collect();
    order.sort_by(|&a, &b| rewards[b].total_cmp(&rewards[a]));
    let sorted: Vec<f64> = order.iter().map(|&i| rewards[i]).collect();

    // E[max S] = Σ_k s_k · C(N − k, n − 1) / C(N, n), built by the ratio of consecutive terms.
    let mut baseline = 0.0;
    let mut p = n as f64 / big_n as f64;
    for (k, s) in (1..=big_n).zip(&sorted) {
        baseline += s * p;
        if k < big_n {
            p *= (big_n + 1 - k).saturating_sub(n) as f64 / (big_n - k) as f64;
        }
    }

    // Given i ∈ S, the other n − 1 members are a uniform subset of the N − 1 others; the k-th
    // best other is their maximum with weight w_k = C(N − 1 − k, n − 2) / C(N − 1, n − 1).
    // Those ranked above i contribute their own reward, all the rest contribute r_i.
    let others = big_n - 1;
    let mut weights = vec![0.0; others];
    if n >= 2 {
        let mut w = (n - 1) as f64 / others as f64;
        for (k, slot) in (1..=others).zip(weights.iter_mut()) {
            *slot = w;
            if k < others {
                w *= (big_n + 1 - k).saturating_sub(n) as f64 / (others - k) as f64;
            }
        }
    }
    // tail[k] = Σ_{k' >= k} w_{k'}, summed from the small end for accuracy.
    let mut tail = vec![0.0; others + 1];
    for k in (0..others).rev() {
        tail[k] = tail[k + 1] + weights[k];
    }
    let mut advantages = vec![0.0; big_n];
    let mut above = 0.0; // Σ_{k < rank} s_k w_k
    for (rank, &i) in order.iter().enumerate() {
        let r_i = rewards[i];
        let conditional = if n == 1 {
            r_i
        } else {
            above + r_i * tail[rank]
        };
        advantages[i] = conditional - baseline;
        if rank < others {
            above += sorted[rank] * weights[rank];
        }
    }
    Advantages {
        advantages,
        baseline,
    }
}

/// Polychromatic objective f(S) = (1/n²) Σ_{j∈S} Σ_c r_j · 1[S ∩ G_c ≠ ∅].
///
/// Every probability in docs/design.md §1 depends on a cluster only through its size g_c, so the
/// sums over clusters collapse into a few per-cluster totals and each A_i costs O(1):
/// - u_c = C(N−1−g_c, n−1) / C(N−1, n−1): given i ∈ S (i ∉ G_c), S misses G_c;
/// - h_c = (n/N)·u_c = C(N−1−g_c, n−1) / C(N, n): j ∈ S and S misses G_c (j ∉ G_c);
/// - v_c = C(N−2−g_c, n−2) / C(N−1, n−1): given i ∈ S, j ∈ S and S misses G_c (i, j ∉ G_c).
fn polychromatic(group: &Group, n: usize) -> Advantages {
    let rewards = group.rewards();
    let clusters = group.cluster_indices();
    let big_n = rewards.len();
    let num_clusters = group.num_clusters();

    let mut size = vec![0usize; num_clusters];
    let mut reward_sum = vec![0.0; num_clusters];
    for (r, c) in rewards.iter().zip(clusters) {
        if let Some(c) = c {
            size[*c as usize] += 1;
            reward_sum[*c as usize] += r;
        }
    }
    let nf = n as f64;
    let big_nf = big_n as f64;
    let cf = num_clusters as f64;
    // q = P(j ∈ S | i ∈ S) for j ≠ i; irrelevant (no j ≠ i) when N = 1.
    let q = if big_n > 1 {
        (n - 1) as f64 / (big_n - 1) as f64
    } else {
        0.0
    };

    let largest = size.iter().copied().max().unwrap_or(0);
    let avoid_one = avoid_ratios(big_n - 1, n - 1, largest);
    let u: Vec<f64> = size.iter().map(|&g| avoid_one[g]).collect();
    let h: Vec<f64> = u.iter().map(|u| nf / big_nf * u).collect();
    let v: Vec<f64> = if n >= 2 {
        let avoid_two = avoid_ratios(big_n - 2, n - 2, largest);
        size.iter().map(|&g| avoid_two[g] * q).collect()
    } else {
        vec![0.0; num_clusters]
    };
    let sum_h: f64 = h.iter().sum();
    let sum_u: f64 = u.iter().sum();
    let sum_v: f64 = v.iter().sum();
    let sum_vr: f64 = v.iter().zip(&reward_sum).map(|(v, r)| v * r).sum();
    let total_reward: f64 = rewards.iter().sum();
    let norm = 1.0 / (nf * nf);

    // E[f] = (1/n²) Σ_j r_j Σ_c P(j ∈ S, S ∩ G_c ≠ ∅).
    let baseline = norm
        * rewards
            .iter()
            .zip(clusters)
            .map(|(r, c)| {
                let own = c.map_or(0.0, |c| h[c as usize]);
                r * (cf * nf / big_nf - sum_h + own)
            })
            .sum::<f64>();

    let advantages = rewards
        .iter()
        .zip(clusters)
        .map(|(&r_i, c_i)| {
            let (u_own, v_own, r_own) = match c_i {
                Some(c) => (u[*c as usize], v[*c as usize], reward_sum[*c as usize]),
                None => (0.0, 0.0, 0.0),
            };
            // j = i: S meets every cluster but those it misses; i's own cluster always.
            let own_term = r_i * (cf - sum_u + u_own);
            // j ≠ i: clusters holding i or j are always met; the others are missed with v_c.
            let others_term =
                (total_reward - r_i) * (cf * q - sum_v + v_own) + sum_vr - v_own * r_own;
            norm * (own_term + others_term) - baseline
        })
        .collect();
    Advantages {
        advantages,
        baseline,
    }
}
