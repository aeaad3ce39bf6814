//! The result every estimator returns.

/// Marginal set advantages of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    /// A_i for every generation i, in group order; broadcast to every token of generation i.
    pub advantages: Vec<f64>,
    /// The baseline b subtracted from every score: the mean set score for set objectives,
    /// the mean (bonus-adjusted) reward for the per-generation baselines.
    pub baseline: f64,
}
