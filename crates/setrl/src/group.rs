//! A prompt's group of N generations: their rewards and strategy labels.

use crate::error::{Result, SetRlError};

/// The reasoning strategy a judge assigned to one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// A strategy cluster; ids are arbitrary and only compared for equality.
    Cluster(i64),
    /// Gibberish, reward hacking, off-topic or repetition: counts in the mean reward and in
    /// the set size, never as a cluster.
    Degenerate,
}

/// N generations of one prompt: finite rewards and one strategy label each.
///
/// Construction validates the input once and maps cluster ids to dense indices
/// `0..num_clusters()`, so every estimator can index arrays instead of hashing.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    rewards: Vec<f64>,
    strategies: Vec<Strategy>,
    /// Dense cluster index per generation; `None` for degenerate generations.
    cluster_index: Vec<Option<u32>>,
    num_clusters: usize,
}

impl Group {
    /// A group with a strategy label per generation.
    ///
    /// # Errors
    /// [`SetRlError::EmptyGroup`], [`SetRlError::LengthMismatch`] or
    /// [`SetRlError::NonFiniteReward`].
    pub fn new(rewards: Vec<f64>, strategies: Vec<Strategy>) -> Result<Self> {
        if rewards.is_empty() {
            return Err(SetRlError::EmptyGroup);
        }
        if rewards.len() != strategies.len() {
            return Err(SetRlError::LengthMismatch {
                rewards: rewards.len(),
                clusters: strategies.len(),
            });
        }
        if let Some((index, &value)) = rewards.iter().enumerate().find(|(_, r)| !r.is_finite()) {
            return Err(SetRlError::NonFiniteReward { index, value });
        }
        let mut ids: Vec<i64> = strategies
            .iter()
            .filter_map(|s| match s {
                Strategy::Cluster(id) => Some(*id),
                Strategy::Degenerate => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let cluster_index = strategies
            .iter()
            .map(|s| match s {
                // The id is in `ids` by construction, so the search always succeeds.
                Strategy::Cluster(id) => ids.binary_search(id).ok().map(|c| c as u32),
                Strategy::Degenerate => None,
            })
            .collect();
        Ok(Self {
            rewards,
            strategies,
            cluster_index,
            num_clusters: ids.len(),
        })
    }

    /// A group whose generations all share one cluster: for objectives that ignore strategy
    /// (mean, max, GRPO), where labels carry no information.
    ///
    /// # Errors
    /// [`SetRlError::EmptyGroup`] or [`SetRlError::NonFiniteReward`].
    pub fn unlabelled(rewards: Vec<f64>) -> Result<Self> {
        let strategies = vec![Strategy::Cluster(0); rewards.len()];
        Self::new(rewards, strategies)
    }

    /// Number of generations N.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }

    /// Always false: construction refuses empty groups. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }

    /// The rewards, in generation order.
    pub fn rewards(&self) -> &[f64] {
        &self.rewards
    }

    /// The strategy labels, in generation order.
    pub fn strategies(&self) -> &[Strategy] {
        &self.strategies
    }

    /// Dense cluster index (in `0..num_clusters()`) of every generation; `None` = degenerate.
    pub fn cluster_indices(&self) -> &[Option<u32>] {
        &self.cluster_index
    }

    /// Number of distinct non-degenerate clusters C.
    pub fn num_clusters(&self) -> usize {
        self.num_clusters
    }

    /// Mean reward of the whole group.
    pub fn mean_reward(&self) -> f64 {
        self.rewards.iter().sum::<f64>() / self.len() as f64
    }

    /// Checks 1 <= n <= N.
    ///
    /// # Errors
    /// [`SetRlError::InvalidSetSize`].
    pub fn check_set_size(&self, set_size: usize) -> Result<()> {
        if set_size == 0 || set_size > self.len() {
            return Err(SetRlError::InvalidSetSize {
                set_size,
                group_size: self.len(),
            });
        }
        Ok(())
    }
}
