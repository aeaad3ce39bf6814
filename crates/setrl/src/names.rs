//! The names users write for methods, objectives and estimators: one canonical spelling each,
//! with a few documented aliases, parsed ([`FromStr`]) and printed ([`fmt::Display`]) here and
//! nowhere else. The config, the command line, the JSON Lines requests and the Python package
//! all parse through these, so a name accepted by one is accepted by all.

use std::fmt;
use std::str::FromStr;

use crate::method::{Estimator, Method};
use crate::objective::Objective;

/// A name that is none of the accepted spellings; its message lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}`; use {expected}")]
pub struct UnknownName {
    /// What was being named (`method`, `objective`, `estimator`).
    pub what: &'static str,
    /// The name given.
    pub given: String,
    /// The canonical names, quoted and joined for a message.
    pub expected: String,
}

/// A closed set of named values: canonical names and aliases in one table.
trait Named: Copy + PartialEq + 'static {
    /// What a value of this type is called in messages.
    const WHAT: &'static str;
    /// Every value with its canonical name first, then its aliases.
    const TABLE: &'static [(Self, &'static [&'static str])];

    fn canonical(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("", |(_, names)| names[0])
    }

    fn parse(given: &str) -> Result<Self, UnknownName> {
        let wanted = given.trim();
        Self::TABLE
            .iter()
            .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(wanted)))
            .map(|(v, _)| *v)
            .ok_or_else(|| UnknownName {
                what: Self::WHAT,
                given: given.to_owned(),
                expected: Self::TABLE
                    .iter()
                    .map(|(_, names)| format!("`{}`", names[0]))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// `FromStr`, `Display` and (with the `serde` feature) serde through the name table.
macro_rules! named {
    ($ty:ty) => {
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                <$ty as Named>::parse(s)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl $ty {
            /// The canonical name (what `Display` and serde write).
            pub fn name(self) -> &'static str {
                self.canonical()
            }
            /// Every accepted spelling of this value, canonical first.
            pub fn spellings(self) -> &'static [&'static str] {
                <$ty as Named>::TABLE
                    .iter()
                    .find(|(v, _)| *v == self)
                    .map_or(&[], |(_, names)| *names)
            }
        }
        #[cfg(feature = "serde")]
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Which advantage method drives the update: a set objective or a per-generation baseline.
/// Names: `polyepo` (aliases `poly-epo`, `polychromatic`), `setrl-mean` (`mean`),
/// `setrl-max` (`max`), `grpo`, `drgrpo` (`dr-grpo`, `dr.grpo`), `diversity-bonus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// POLY-EPO: set RL with the polychromatic objective.
    Polyepo,
    /// Set RL with the mean objective.
    SetrlMean,
    /// Set RL with the max objective (pass@n).
    SetrlMax,
    /// GRPO (std-normalised group advantage).
    Grpo,
    /// Dr.GRPO (mean-centred group advantage).
    Drgrpo,
    /// Additive diversity bonus on the reward.
    DiversityBonus,
}

impl Named for MethodKind {
    const WHAT: &'static str = "method";
    const TABLE: &'static [(Self, &'static [&'static str])] = &[
        (
            MethodKind::Polyepo,
            &["polyepo", "poly-epo", "polychromatic"],
        ),
        (MethodKind::SetrlMean, &["setrl-mean", "mean"]),
        (MethodKind::SetrlMax, &["setrl-max", "max"]),
        (MethodKind::Grpo, &["grpo"]),
        (MethodKind::Drgrpo, &["drgrpo", "dr-grpo", "dr.grpo"]),
        (MethodKind::DiversityBonus, &["diversity-bonus"]),
    ];
}
named!(MethodKind);

/// The settings a [`MethodKind`] may read to become a [`Method`]; each kind ignores those it
/// has no use for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MethodParams {
    /// Set size n (set objectives).
    pub set_size: usize,
    /// Estimator (set objectives).
    pub estimator: EstimatorKind,
    /// Sets per generation (sampled estimator).
    pub sets: usize,
    /// Seed of the sampled estimator.
    pub seed: u64,
    /// λ (diversity bonus).
    pub lambda: f64,
    /// The most sets one group may cost (enumerated and sampled estimators).
    pub max_sets: u64,
}

impl MethodKind {
    /// Every method, in the order of the name table.
    pub const ALL: [MethodKind; 6] = [
        MethodKind::Polyepo,
        MethodKind::SetrlMean,
        MethodKind::SetrlMax,
        MethodKind::Grpo,
        MethodKind::Drgrpo,
        MethodKind::DiversityBonus,
    ];

    /// The set objective this method optimises, `None` for the per-generation baselines.
    pub fn objective(self) -> Option<Objective> {
        match self {
            MethodKind::Polyepo => Some(Objective::Polychromatic),
            MethodKind::SetrlMean => Some(Objective::Mean),
            MethodKind::SetrlMax => Some(Objective::Max),
            _ => None,
        }
    }

    /// Whether the method scores sets (and so reads a set size and an estimator).
    pub fn is_set_rl(self) -> bool {
        self.objective().is_some()
    }

    /// Whether the advantage depends on strategy labels.
    pub fn needs_labels(self) -> bool {
        matches!(self, MethodKind::Polyepo | MethodKind::DiversityBonus)
    }

    /// The method these settings name.
    pub fn method(self, p: &MethodParams) -> Method {
        match (self.objective(), self) {
            (Some(objective), _) => Method::Set {
                objective,
                set_size: p.set_size,
                estimator: p.estimator.estimator(p),
            },
            (None, MethodKind::Grpo) => Method::Grpo,
            (None, MethodKind::DiversityBonus) => Method::DiversityBonus { lambda: p.lambda },
            (None, _) => Method::DrGrpo,
        }
    }
}

impl Named for Objective {
    const WHAT: &'static str = "objective";
    const TABLE: &'static [(Self, &'static [&'static str])] = &[
        (
            Objective::Polychromatic,
            &["polychromatic", "polyepo", "poly-epo"],
        ),
        (Objective::Mean, &["mean"]),
        (Objective::Max, &["max"]),
    ];
}
named!(Objective);

/// How a set objective averages over n-subsets, by name: `exact`, `enumerate`, `sampled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EstimatorKind {
    /// All C(N, n) sets, in closed form.
    Exact,
    /// All C(N, n) sets, visited one by one (any objective; bounded by a set limit).
    Enumerate,
    /// K sampled sets per generation.
    Sampled,
}

impl Named for EstimatorKind {
    const WHAT: &'static str = "estimator";
    const TABLE: &'static [(Self, &'static [&'static str])] = &[
        (EstimatorKind::Exact, &["exact"]),
        (EstimatorKind::Enumerate, &["enumerate"]),
        (EstimatorKind::Sampled, &["sampled"]),
    ];
}
named!(EstimatorKind);

impl EstimatorKind {
    /// The estimator with the parameters it reads from `p`.
    pub fn estimator(self, p: &MethodParams) -> Estimator {
        match self {
            EstimatorKind::Exact => Estimator::Exact,
            EstimatorKind::Enumerate => Estimator::Enumerate {
                max_sets: p.max_sets,
            },
            EstimatorKind::Sampled => Estimator::Sampled {
                sets: p.sets,
                seed: p.seed,
                max_sets: p.max_sets,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_to_its_value_and_prints_canonically() {
        for kind in MethodKind::ALL {
            for s in kind.spellings() {
                assert_eq!(s.parse::<MethodKind>(), Ok(kind), "{s}");
                assert_eq!(s.to_uppercase().parse::<MethodKind>(), Ok(kind), "{s}");
            }
            assert_eq!(kind.to_string(), kind.spellings()[0]);
        }
        assert_eq!("poly-epo".parse(), Ok(Objective::Polychromatic));
        assert_eq!("polyepo".parse(), Ok(Objective::Polychromatic));
        assert_eq!(Objective::Polychromatic.to_string(), "polychromatic");
        assert_eq!(" sampled ".parse(), Ok(EstimatorKind::Sampled));
    }

    #[test]
    fn an_unknown_name_lists_the_canonical_ones() {
        let err = "polychromatc".parse::<Objective>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown objective `polychromatc`; use `polychromatic`, `mean`, `max`"
        );
        let err = "ppo".parse::<MethodKind>().unwrap_err();
        assert!(err.to_string().contains("`drgrpo`"), "{err}");
    }

    #[test]
    fn kinds_become_the_methods_they_name() {
        let p = MethodParams {
            set_size: 3,
            estimator: EstimatorKind::Sampled,
            sets: 5,
            seed: 9,
            lambda: 0.5,
            max_sets: 100,
        };
        assert_eq!(
            MethodKind::SetrlMax.method(&p),
            Method::Set {
                objective: Objective::Max,
                set_size: 3,
                estimator: Estimator::Sampled {
                    sets: 5,
                    seed: 9,
                    max_sets: 100
                }
            }
        );
        assert_eq!(MethodKind::Grpo.method(&p), Method::Grpo);
        assert_eq!(MethodKind::Drgrpo.method(&p), Method::DrGrpo);
        assert_eq!(
            MethodKind::DiversityBonus.method(&p),
            Method::DiversityBonus { lambda: 0.5 }
        );
        assert_eq!(
            MethodKind::Polyepo.method(&MethodParams {
                estimator: EstimatorKind::Exact,
                ..p
            }),
            Method::polyepo(3)
        );
        for kind in MethodKind::ALL {
            assert_eq!(
                kind.needs_labels(),
                kind.method(&p).needs_labels(),
                "{kind}"
            );
        }
    }
}
