//! Set objectives f(x, S): how good a set S of generations is as a whole.

use crate::group::Group;

/// Any score of a set of generations. Implement it (or pass a closure
/// `Fn(&Group, &[usize]) -> f64`) to optimise your own set objective with the enumerated or
/// sampled estimators.
pub trait SetObjective {
    /// Score of the set whose members are `members`: distinct indices into `group`,
    /// in ascending order.
    fn score(&self, group: &Group, members: &[usize]) -> f64;
}

impl<F> SetObjective for F
where
    F: Fn(&Group, &[usize]) -> f64,
{
    fn score(&self, group: &Group, members: &[usize]) -> f64 {
        self(group, members)
    }
}

/// The built-in set objectives; each has an exact O(N·C) marginal advantage
/// ([`Objective::exact`]).
/// Named `polychromatic` (aliases `polyepo`, `poly-epo`), `mean` and `max` (see [`crate::MethodKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Objective {
    /// Mean reward of the set (set RL with it is close to RLOO).
    Mean,
    /// Maximum reward of the set: pass@n when rewards are 0/1.
    Max,
    /// POLY-EPO's objective: mean reward × (distinct non-degenerate clusters in S) / n.
    Polychromatic,
}

impl SetObjective for Objective {
    fn score(&self, group: &Group, members: &[usize]) -> f64 {
        let rewards = group.rewards();
        let n = members.len() as f64;
        match self {
            Objective::Mean => members.iter().map(|&j| rewards[j]).sum::<f64>() / n,
            Objective::Max => members
                .iter()
                .map(|&j| rewards[j])
                .fold(f64::NEG_INFINITY, f64::max),
            Objective::Polychromatic => {
                let mean = members.iter().map(|&j| rewards[j]).sum::<f64>() / n;
                mean * distinct_clusters(group, members) as f64 / n
            }
        }
    }
}

/// Number of distinct non-degenerate clusters among `members`.
pub fn distinct_clusters(group: &Group, members: &[usize]) -> usize {
    let clusters = group.cluster_indices();
    let mut seen: Vec<u32> = members.iter().filter_map(|&j| clusters[j]).collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}
