//! One value that says how a group's advantages are computed, and the one dispatch that
//! computes them. The trainer, `polyepo advantages` and the Python package all go through
//! [`Method::compute`], so a method means the same thing everywhere.

use crate::advantages::Advantages;
use crate::baselines::{diversity_bonus, drgrpo, grpo};
use crate::enumerate::enumerate;
use crate::error::{Result, SetRlError};
use crate::group::Group;
use crate::objective::Objective;
use crate::sampled::sampled;

/// How the marginal advantage of a set objective averages over n-subsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(tag = "estimator", rename_all = "kebab-case", deny_unknown_fields)
)]
pub enum Estimator {
    /// All C(N, n) sets, in closed form ([`Objective::exact`]).
    Exact,
    /// All C(N, n) sets, visited one by one; refused above `max_sets` sets.
    Enumerate {
        /// The most sets a group may cost.
        max_sets: u64,
    },
    /// `sets` sampled sets per generation, reproducible from `seed`; refused when
    /// N · `sets` exceeds `max_sets` (the same bound on work as enumeration).
    Sampled {
        /// Sets per generation K.
        sets: usize,
        /// Seed of the set draws.
        seed: u64,
        /// The most sets a group may cost.
        max_sets: u64,
    },
}

/// A way to turn a group's rewards (and strategy labels) into per-generation advantages:
/// set RL with an objective, or one of the per-generation baselines.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)
)]
pub enum Method {
    /// Marginal set advantages of `objective` over sets of `set_size`.
    Set {
        /// The set objective (POLY-EPO: polychromatic).
        objective: Objective,
        /// Set size n, 1 <= n <= N.
        set_size: usize,
        /// How to average over the sets.
        estimator: Estimator,
    },
    /// GRPO: std-normalised group advantage.
    Grpo,
    /// Dr.GRPO: mean-centred group advantage.
    DrGrpo,
    /// Reward plus λ × diversity, mean-centred.
    DiversityBonus {
        /// Weight λ of the diversity term.
        lambda: f64,
    },
}

impl Method {
    /// POLY-EPO with the paper's exact estimator.
    pub fn polyepo(set_size: usize) -> Self {
        Method::Set {
            objective: Objective::Polychromatic,
            set_size,
            estimator: Estimator::Exact,
        }
    }

    /// Whether the advantage depends on strategy labels (otherwise any labels will do).
    pub fn needs_labels(&self) -> bool {
        matches!(
            self,
            Method::Set {
                objective: Objective::Polychromatic,
                ..
            } | Method::DiversityBonus { .. }
        )
    }

    /// The same method with a sampled estimator drawing from `seed` (other methods are
    /// unchanged): lets a caller give every group its own draws.
    pub fn reseeded(self, seed: u64) -> Self {
        match self {
            Method::Set {
                objective,
                set_size,
                estimator: Estimator::Sampled { sets, max_sets, .. },
            } => Method::Set {
                objective,
                set_size,
                estimator: Estimator::Sampled {
                    sets,
                    seed,
                    max_sets,
                },
            },
            other => other,
        }
    }

    /// The advantages of `group`.
    ///
    /// # Errors
    /// A set size outside 1..=N, an enumeration or sampling beyond its `max_sets`, a
    /// sampled estimator with no sets, or finite rewards so large that an advantage
    /// overflows.
    pub fn compute(&self, group: &Group) -> Result<Advantages> {
        let advantages = self.compute_unchecked(group)?;
        match advantages
            .advantages
            .iter()
            .enumerate()
            .find(|(_, a)| !a.is_finite())
        {
            Some((index, &value)) => Err(SetRlError::NonFiniteAdvantage { index, value }),
            None => Ok(advantages),
        }
    }

    fn compute_unchecked(&self, group: &Group) -> Result<Advantages> {
        match *self {
            Method::Set {
                objective,
                set_size,
                estimator,
            } => match estimator {
                Estimator::Exact => objective.exact(group, set_size),
                Estimator::Enumerate { max_sets } => {
                    enumerate(&objective, group, set_size, max_sets)
                }
                Estimator::Sampled {
                    sets,
                    seed,
                    max_sets,
                } => {
                    let work = (sets as u64).saturating_mul(group.len() as u64);
                    if work > max_sets {
                        return Err(SetRlError::TooManySampledSets {
                            group_size: group.len(),
                            sets,
                            limit: max_sets,
                        });
                    }
                    sampled(&objective, group, set_size, sets, seed)
                }
            },
            Method::Grpo => Ok(grpo(group)),
            Method::DrGrpo => Ok(drgrpo(group)),
            Method::DiversityBonus { lambda } => Ok(diversity_bonus(group, lambda)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEFAULT_MAX_SETS, Strategy};

    fn group() -> Group {
        Group::new(
            vec![1.0, 0.0, 1.0, 1.0, 0.0],
            vec![
                Strategy::Cluster(0),
                Strategy::Cluster(1),
                Strategy::Cluster(2),
                Strategy::Cluster(0),
                Strategy::Degenerate,
            ],
        )
        .unwrap()
    }

    #[test]
    fn every_method_matches_the_function_it_names() {
        let g = group();
        let poly = Objective::Polychromatic;
        assert_eq!(
            Method::polyepo(2).compute(&g).unwrap(),
            poly.exact(&g, 2).unwrap()
        );
        let enumerated = Method::Set {
            objective: poly,
            set_size: 2,
            estimator: Estimator::Enumerate {
                max_sets: DEFAULT_MAX_SETS,
            },
        };
        assert_eq!(
            enumerated.compute(&g).unwrap(),
            enumerate(&poly, &g, 2, DEFAULT_MAX_SETS).unwrap()
        );
        let sampled_method = Method::Set {
            objective: Objective::Mean,
            set_size: 3,
            estimator: Estimator::Sampled {
                sets: 4,
                seed: 7,
                max_sets: DEFAULT_MAX_SETS,
            },
        };
        assert_eq!(
            sampled_method.compute(&g).unwrap(),
            sampled(&Objective::Mean, &g, 3, 4, 7).unwrap()
        );
        assert_eq!(
            sampled_method.reseeded(8).compute(&g).unwrap(),
            sampled(&Objective::Mean, &g, 3, 4, 8).unwrap()
        );
        assert_eq!(Method::Grpo.compute(&g).unwrap(), grpo(&g));
        assert_eq!(Method::DrGrpo.compute(&g).unwrap(), drgrpo(&g));
        assert_eq!(
            Method::DiversityBonus { lambda: 0.5 }.compute(&g).unwrap(),
            diversity_bonus(&g, 0.5)
        );
    }

    #[test]
    fn sampling_beyond_the_work_limit_is_refused() {
        let method = Method::Set {
            objective: Objective::Polychromatic,
            set_size: 2,
            estimator: Estimator::Sampled {
                sets: 1_000_000_000_000,
                seed: 0,
                max_sets: DEFAULT_MAX_SETS,
            },
        };
        let err = method.compute(&group()).unwrap_err();
        assert!(err.to_string().contains("sampling"), "{err}");
    }

    #[test]
    fn only_label_dependent_methods_need_labels() {
        assert!(Method::polyepo(2).needs_labels());
        assert!(Method::DiversityBonus { lambda: 1.0 }.needs_labels());
        assert!(!Method::Grpo.needs_labels());
        assert!(
            !Method::Set {
                objective: Objective::Max,
                set_size: 2,
                estimator: Estimator::Exact
            }
            .needs_labels()
        );
    }

    #[test]
    fn overflowing_advantages_are_an_error() {
        let g = Group::unlabelled(vec![1e308, 1e308, 0.0]).unwrap();
        let err = Method::DrGrpo.compute(&g).unwrap_err();
        assert!(
            matches!(err, SetRlError::NonFiniteAdvantage { .. }),
            "{err}"
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn methods_round_trip_through_json() {
        let m = Method::Set {
            objective: Objective::Polychromatic,
            set_size: 4,
            estimator: Estimator::Sampled {
                sets: 16,
                seed: 3,
                max_sets: 100,
            },
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Method>(&text).unwrap(), m);
        let grpo: Method = serde_json::from_str(r#"{"method":"grpo"}"#).unwrap();
        assert_eq!(grpo, Method::Grpo);
    }
}
