//! Set reinforcement learning: score *sets* of generations and credit each generation with
//! its average contribution to the sets that contain it.
//!
//! For one prompt the policy samples N generations. A set objective f scores n-subsets S;
//! with b the mean set score, generation i's *marginal set advantage* is the mean of
//! f(S) − b over the sets that contain it. POLY-EPO uses the polychromatic objective
//! (mean reward × distinct strategy clusters / n), which rewards a generation for making
//! successful sets more diverse.
//!
//! This crate has no tensor dependency: it is the paper's core, reusable on its own.
//!
//! ```
//! use setrl::{Group, Objective, Strategy, enumerate, DEFAULT_MAX_SETS};
//!
//! // Two correct generations of the same strategy, one correct of another, one wrong.
//! let group = Group::new(
//!     vec![1.0, 1.0, 1.0, 0.0],
//!     vec![Strategy::Cluster(0), Strategy::Cluster(0), Strategy::Cluster(1), Strategy::Degenerate],
//! )?;
//! let exact = Objective::Polychromatic.exact(&group, 2)?;
//! // The lone strategy earns more credit than either copy of the common one.
//! assert!(exact.advantages[2] > exact.advantages[0]);
//! // The closed form agrees with the definition.
//! let brute = enumerate(&Objective::Polychromatic, &group, 2, DEFAULT_MAX_SETS)?;
//! for (a, b) in exact.advantages.iter().zip(&brute.advantages) {
//!     assert!((a - b).abs() < 1e-12);
//! }
//! # Ok::<(), setrl::SetRlError>(())
//! ```
#![deny(missing_docs)]

mod advantages;
mod baselines;
mod binomial;
mod enumerate;
mod error;
mod exact;
mod group;
mod method;
mod names;
mod objective;
mod pass_at_k;
mod sampled;

pub use advantages::Advantages;
pub use baselines::{GRPO_STD_EPSILON, diversity_bonus, drgrpo, grpo};
pub use enumerate::{DEFAULT_MAX_SETS, enumerate};
pub use error::{Result, SetRlError};
pub use group::{Group, Strategy};
pub use method::{Estimator, Method};
pub use names::{EstimatorKind, MethodKind, MethodParams, UnknownName};
pub use objective::{Objective, SetObjective, distinct_clusters};
pub use pass_at_k::pass_at_k;
pub use sampled::sampled;
