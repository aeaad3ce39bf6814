//! The advantage functions: set advantages (POLY-EPO and the mean/max objectives) and the
//! per-generation baselines, over a whole flat batch at once.

use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use setrl::{EstimatorKind, Method, MethodParams, Objective};

use crate::groups::batch_advantages;
use crate::inputs::{check_len, clusters, floats, group_keys};

// The signature shows the default as a literal; it must stay `setrl::DEFAULT_MAX_SETS`.
const _: () = assert!(setrl::DEFAULT_MAX_SETS == 4194304);

/// A name argument parsed by setrl's name table (the spellings the CLI and config take).
fn parse_name<T: std::str::FromStr<Err = setrl::UnknownName>>(
    arg: &str,
    name: &str,
) -> PyResult<T> {
    name.parse()
        .map_err(|e: setrl::UnknownName| PyValueError::new_err(format!("{arg}: {e}")))
}

/// Runs `method` over the batch with the GIL released, and returns a float64 array.
fn run<'py>(
    py: Python<'py>,
    method: Method,
    seed: u64,
    rewards: &Bound<'py, PyAny>,
    labels: Option<(&Bound<'py, PyAny>, i64)>,
    group_ids: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let rewards = floats(rewards, "rewards")?;
    let keys = group_keys(group_ids, "group_ids")?;
    check_len("group_ids", keys.len(), rewards.len())?;
    let clusters = match labels {
        Some((obj, degenerate_id)) => {
            let c = clusters(obj, "clusters", degenerate_id)?;
            check_len("clusters", c.len(), rewards.len())?;
            Some(c)
        }
        None => None,
    };
    let advantages = py
        .detach(|| batch_advantages(method, seed, &rewards, clusters.as_deref(), &keys))
        .map_err(PyValueError::new_err)?;
    Ok(advantages.into_pyarray(py))
}

/// Marginal set advantages for a whole batch: each sample's average contribution to the
/// size-``set_size`` sets of its group that contain it (POLY-EPO with the default
/// ``objective="polychromatic"``: set score = mean reward x distinct strategies / n).
///
/// Parameters
/// ----------
/// rewards : sequence of float, one per sample
///     Lists, tuples, numpy arrays of any numeric dtype, or CPU tensors. Must be finite.
/// clusters : sequence of int or None, one per sample
///     Strategy cluster of each sample. ``None`` or ``degenerate_id`` marks a degenerate
///     sample (it adds no diversity). Ignored (may be ``None``) for ``mean`` and ``max``.
/// group_ids : sequence of int or str, one per sample
///     Samples with the same id are one prompt's group (verl's ``uid``). Groups may be
///     interleaved and of different sizes.
/// set_size : int
///     n, the set size; 1 <= n <= the size of every group.
/// objective : {"polychromatic", "mean", "max"}
///     ``polyepo`` and ``poly-epo`` are aliases of ``polychromatic`` (setrl's name table, shared
///     with the CLI and the config).
/// estimator : {"exact", "enumerate", "sampled"}
///     ``exact`` is the closed form over all C(N, n) sets (what the paper uses);
///     ``enumerate`` visits them one by one (at most ``max_sets``); ``sampled`` draws
///     ``sets`` sets per sample, reproducibly from ``seed`` (group g uses ``seed + g``).
/// degenerate_id : int
///     The cluster id that means degenerate (the paper's judge: 100).
///
/// Returns
/// -------
/// numpy.ndarray of float64, one advantage per sample, in the input order.
///
/// Raises
/// ------
/// ValueError, TypeError
///     Naming the argument and position (or the group) at fault.
#[pyfunction]
#[pyo3(signature = (rewards, clusters, group_ids, set_size, objective="polychromatic", estimator="exact", degenerate_id=100, sets=16, seed=0, max_sets=4194304))]
#[allow(clippy::too_many_arguments)]
pub fn set_advantages<'py>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    clusters: &Bound<'py, PyAny>,
    group_ids: &Bound<'py, PyAny>,
    set_size: i64,
    objective: &str,
    estimator: &str,
    degenerate_id: i64,
    sets: i64,
    seed: i128,
    max_sets: i64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let set_size = count("set_size", set_size)?;
    let sets = count("sets", sets)?;
    let max_sets = count("max_sets", max_sets)? as u64;
    let seed = u64::try_from(seed).map_err(|_| {
        PyValueError::new_err(format!("seed is {seed}: use an integer in 0..=2**64 - 1"))
    })?;
    let objective: Objective = parse_name("objective", objective)?;
    let estimator: EstimatorKind = parse_name("estimator", estimator)?;
    let method = Method::Set {
        objective,
        set_size,
        estimator: estimator.estimator(&MethodParams {
            set_size,
            estimator,
            sets,
            seed,
            lambda: 0.0,
            max_sets,
        }),
    };
    let labels = if method.needs_labels() || !clusters.is_none() {
        if clusters.is_none() {
            return Err(PyValueError::new_err(
                "clusters: the polychromatic objective needs a strategy cluster per sample",
            ));
        }
        Some((clusters, degenerate_id))
    } else {
        None
    };
    run(py, method, seed, rewards, labels, group_ids)
}

/// GRPO's advantages: (reward - group mean) / (group sample std + 1e-6), per group, in input
/// order (verl's and polyepo train's form).
#[pyfunction]
pub fn grpo_advantages<'py>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    group_ids: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    run(py, Method::Grpo, 0, rewards, None, group_ids)
}

/// Dr.GRPO's advantages: reward - group mean (no std division), per group, in input order.
#[pyfunction]
pub fn drgrpo_advantages<'py>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    group_ids: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    run(py, Method::DrGrpo, 0, rewards, None, group_ids)
}

/// The diversity-bonus baseline: score = reward + weight x div, where div is the fraction
/// of the group's other samples in a different non-degenerate cluster (0 for a degenerate
/// sample); advantage = score - group mean score, in input order.
#[pyfunction]
#[pyo3(signature = (rewards, clusters, group_ids, weight, degenerate_id=100))]
pub fn diversity_bonus_advantages<'py>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    clusters: &Bound<'py, PyAny>,
    group_ids: &Bound<'py, PyAny>,
    weight: f64,
    degenerate_id: i64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    if !weight.is_finite() {
        return Err(PyValueError::new_err(format!(
            "weight is {weight}: use a finite number"
        )));
    }
    let method = Method::DiversityBonus { lambda: weight };
    run(
        py,
        method,
        0,
        rewards,
        Some((clusters, degenerate_id)),
        group_ids,
    )
}

/// The unbiased pass@k estimate from ``correct`` right answers among ``samples`` draws:
/// 1 - C(samples - correct, k) / C(samples, k). Needs correct <= samples and
/// 1 <= k <= samples.
#[pyfunction]
pub fn pass_at_k(samples: i64, correct: i64, k: i64) -> PyResult<f64> {
    let (samples, correct, k) = (
        count("samples", samples)?,
        count("correct", correct)?,
        count("k", k)?,
    );
    setrl::pass_at_k(samples, correct, k).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// A count argument: a non-negative integer, or an error naming the argument.
fn count(name: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| {
        PyValueError::new_err(format!("{name} is {value}: use a non-negative integer"))
    })
}
