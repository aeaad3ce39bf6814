//! One JSON Lines request of `polyepo advantages`: a group, an objective and an estimator,
//! validated into something [`setrl`] can compute.

use serde::{Deserialize, Serialize};
use setrl::{Advantages, Group, Strategy};

use crate::rl::config::{Algorithm, EstimatorKind};
use thiserror::Error;

/// Sets per generation for the sampled estimator when a request does not say.
pub const DEFAULT_SAMPLED_SETS: usize = 16;

/// One input line, exactly as users write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvantageRequest {
    /// Objective or baseline, by any of setrl's method names (`polyepo` = `polychromatic`,
    /// `setrl-mean` = `mean`, `setrl-max` = `max`, `grpo`, `drgrpo`, `diversity-bonus`).
    pub objective: Algorithm,
    /// One finite reward per generation.
    pub rewards: Vec<f64>,
    /// One cluster id per generation, `null` = degenerate; optional where ignored.
    #[serde(default)]
    pub clusters: Option<Vec<Option<i64>>>,
    /// Set size n (set objectives).
    #[serde(default)]
    pub set_size: Option<usize>,
    /// Estimator (set objectives); exact by default.
    #[serde(default)]
    pub estimator: Option<EstimatorKind>,
    /// Sets per generation for the sampled estimator.
    #[serde(default)]
    pub sets: Option<usize>,
    /// Seed of the sampled estimator.
    #[serde(default)]
    pub seed: Option<u64>,
    /// λ of the diversity bonus.
    #[serde(default)]
    pub lambda: Option<f64>,
}

/// One output line.
#[derive(Debug, Clone, Serialize)]
pub struct AdvantageReply {
    /// A_i per generation, in input order.
    pub advantages: Vec<f64>,
    /// The baseline subtracted.
    pub baseline: f64,
}

impl From<Advantages> for AdvantageReply {
    fn from(a: Advantages) -> Self {
        Self {
            advantages: a.advantages,
            baseline: a.baseline,
        }
    }
}

/// A request that cannot be computed, with the field to blame.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("field `{field}`: {message}")]
pub struct RequestError {
    /// JSON path of the offending field (`rewards[2]`, `set_size`, ...).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl RequestError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Options that apply to every request of one invocation.
#[derive(Debug, Clone, Copy)]
pub struct RequestOptions {
    /// A cluster id that means "degenerate" (the paper's judge uses 100).
    pub degenerate_id: Option<i64>,
    /// Refuse enumeration beyond this many sets.
    pub max_sets: u64,
}

/// Parses one JSON line; serde's error is mapped to the path of the field it failed in.
pub fn parse_request(line: &str) -> Result<AdvantageRequest, RequestError> {
    let mut de = serde_json::Deserializer::from_str(line);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path == "?" {
            "(line)".to_owned()
        } else {
            path
        };
        let inner = e.into_inner();
        // serde_json counts lines inside this one string; the caller names the file line.
        let message = inner
            .to_string()
            .replace(" at line 1 column ", " at column ");
        RequestError { field, message }
    })
}

impl AdvantageRequest {
    /// Validates the request and computes its advantages.
    pub fn compute(&self, options: RequestOptions) -> Result<AdvantageReply, RequestError> {
        let group = self.group(options)?;
        let algorithm = self.objective;
        let lambda = match (algorithm, self.lambda) {
            (Algorithm::DiversityBonus, None) => {
                return Err(RequestError::new(
                    "lambda",
                    "diversity-bonus needs λ, e.g. \"lambda\": 0.5",
                ));
            }
            (_, Some(l)) if !l.is_finite() => {
                return Err(RequestError::new("lambda", "λ must be a finite number"));
            }
            (_, l) => l.unwrap_or(0.0),
        };
        let set_size = match (algorithm.is_set_rl(), self.set_size) {
            (true, None) => {
                return Err(RequestError::new(
                    "set_size",
                    "set objectives need the set size n, e.g. \"set_size\": 4",
                ));
            }
            (_, n) => n.unwrap_or(0),
        };
        let sets = self.sets.unwrap_or(DEFAULT_SAMPLED_SETS);
        let estimator = self.estimator.unwrap_or(EstimatorKind::Exact);
        if estimator == EstimatorKind::Sampled && sets == 0 {
            return Err(RequestError::new(
                "sets",
                "the sampled estimator needs at least 1 set per generation",
            ));
        }
        let method = algorithm.method(&setrl::MethodParams {
            set_size,
            estimator,
            sets,
            seed: self.seed.unwrap_or(0),
            lambda,
            max_sets: options.max_sets,
        });
        let advantages = method.compute(&group).map_err(|e| {
            let field = match e {
                setrl::SetRlError::TooManySampledSets { .. } => "sets",
                setrl::SetRlError::NonFiniteAdvantage { .. } => "rewards",
                _ => "set_size",
            };
            RequestError::new(field, e.to_string())
        })?;
        Ok(advantages.into())
    }

    fn group(&self, options: RequestOptions) -> Result<Group, RequestError> {
        if self.rewards.is_empty() {
            return Err(RequestError::new(
                "rewards",
                "the group is empty: give at least one reward",
            ));
        }
        let needs_clusters = self.objective.needs_labels();
        let strategies = match &self.clusters {
            Some(clusters) => {
                if clusters.len() != self.rewards.len() {
                    return Err(RequestError::new(
                        "clusters",
                        format!(
                            "{} clusters for {} rewards: give one cluster (or null) per reward",
                            clusters.len(),
                            self.rewards.len()
                        ),
                    ));
                }
                clusters
                    .iter()
                    .map(|c| match c {
                        Some(id) if Some(*id) != options.degenerate_id => Strategy::Cluster(*id),
                        _ => Strategy::Degenerate,
                    })
                    .collect()
            }
            None if needs_clusters => {
                return Err(RequestError::new(
                    "clusters",
                    "this objective needs a cluster id (or null) per reward",
                ));
            }
            None => vec![Strategy::Cluster(0); self.rewards.len()],
        };
        Group::new(self.rewards.clone(), strategies).map_err(|e| match e {
            setrl::SetRlError::NonFiniteReward { index, .. } => {
                RequestError::new(&format!("rewards[{index}]"), e.to_string())
            }
            other => RequestError::new("rewards", other.to_string()),
        })
    }
}
