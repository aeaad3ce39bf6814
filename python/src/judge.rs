//! The LM judge for Python: labels many prompt groups at once, with the requests in
//! flight concurrently inside Rust and the GIL released meanwhile.

use std::path::PathBuf;

use polyepo_judge::lm::{FailurePolicy, LmJudge, LmJudgeConfig};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use setrl::Strategy;

/// The labels of one group.
#[pyclass(frozen, get_all, module = "polyepo._core")]
pub struct GroupLabels {
    /// One cluster id per response; ``None`` is degenerate. When the judge failed, what
    /// the failure policy gave: ``distinct`` (every response its own cluster), ``single``
    /// (one cluster) or ``skip`` (every response ``None``, which gives the group zero
    /// polychromatic advantage).
    clusters: Vec<Option<i64>>,
    /// ``"ok"``, ``"cached"``, or ``"failed: <reason>"``.
    status: String,
    /// Whether the labels came from the judge (a reply or the cache).
    ok: bool,
}

#[pymethods]
impl GroupLabels {
    fn __repr__(&self) -> String {
        format!(
            "GroupLabels(clusters={:?}, status={:?})",
            self.clusters, self.status
        )
    }
}

/// An LM judge over an OpenAI-compatible chat-completions API (vLLM, llama.cpp server,
/// ``polyepo serve``, a hosted API) that clusters each prompt's responses by reasoning
/// strategy. The same code as ``polyepo train``'s judge: bounded concurrency, timeouts,
/// retries with exponential backoff, strict validation of replies, a cache, counters.
///
/// Parameters
/// ----------
/// endpoint : str
///     Base URL, e.g. ``"http://127.0.0.1:8000/v1"``.
/// model : str
///     Model name sent in requests.
/// prompt : str
///     ``"math"``, ``"code"``, ``"generic"``, or a path to a prompt file with ``{problem}``,
///     ``{responses}``, ``{n}`` and ``{degenerate}`` placeholders.
/// failure_policy : {"skip", "distinct", "single"}
///     What a group gets when the judge cannot label it (after retries). ``skip`` marks
///     every response degenerate (zero polychromatic advantage for that prompt).
/// max_concurrency : int
///     Requests in flight at once.
/// cache : str or os.PathLike or None
///     JSON Lines file of past labels; a repeated request is not paid twice.
/// api_key_env : str
///     Environment variable holding the API key; the key is never logged.
#[pyclass(frozen, module = "polyepo._core")]
pub struct Judge {
    inner: LmJudge,
    degenerate_id: i64,
}

fn failure_policy(name: &str) -> PyResult<FailurePolicy> {
    match name {
        "skip" => Ok(FailurePolicy::Skip),
        "distinct" => Ok(FailurePolicy::Distinct),
        "single" => Ok(FailurePolicy::Single),
        other => Err(PyValueError::new_err(format!(
            "failure_policy: unknown {other:?}; use \"skip\", \"distinct\" or \"single\""
        ))),
    }
}

#[pymethods]
impl Judge {
    #[new]
    #[pyo3(signature = (endpoint, model, prompt="math", failure_policy="skip", max_concurrency=8, cache=None, timeout_s=60.0, retries=3, backoff_s=1.0, api_key_env="POLYEPO_JUDGE_API_KEY", degenerate_id=100, max_tokens=1024))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        endpoint: String,
        model: String,
        prompt: &str,
        failure_policy: &str,
        max_concurrency: usize,
        cache: Option<PathBuf>,
        timeout_s: f64,
        retries: usize,
        backoff_s: f64,
        api_key_env: &str,
        degenerate_id: i64,
        max_tokens: usize,
    ) -> PyResult<Self> {
        let cfg = LmJudgeConfig {
            endpoint,
            model,
            api_key_env: api_key_env.to_owned(),
            prompt: prompt.to_owned(),
            degenerate_id,
            max_concurrency,
            timeout_s,
            retries,
            backoff_s,
            failure_policy: self::failure_policy(failure_policy)?,
            max_tokens,
            cache,
        };
        let inner = LmJudge::new(cfg).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self {
            inner,
            degenerate_id,
        })
    }

    /// Labels many groups at once: ``problems[g]`` is prompt g's text and ``responses[g]``
    /// its responses. Returns one ``GroupLabels`` per group, in order. Never raises for a
    /// judge failure: the failure policy applies and ``status`` says why.
    fn label(
        &self,
        py: Python<'_>,
        problems: Vec<String>,
        responses: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<GroupLabels>> {
        if responses.is_instance_of::<pyo3::types::PyString>() {
            return Err(PyTypeError::new_err(
                "responses: expected one list of response strings per problem, got a string",
            ));
        }
        let responses: Vec<Vec<String>> = responses.extract().map_err(|e| {
            PyTypeError::new_err(format!(
                "responses: expected one list of response strings per problem ({e})"
            ))
        })?;
        if problems.len() != responses.len() {
            return Err(PyValueError::new_err(format!(
                "problems has {} entries but responses has {}: one list of responses per problem",
                problems.len(),
                responses.len()
            )));
        }
        if let Some(g) = responses.iter().position(Vec::is_empty) {
            return Err(PyValueError::new_err(format!(
                "responses[{g}] is empty: a group needs at least one response"
            )));
        }
        let groups: Vec<(&str, &[String])> = problems
            .iter()
            .map(String::as_str)
            .zip(responses.iter().map(Vec::as_slice))
            .collect();
        let labelled = py.detach(|| self.inner.label_groups(&groups));
        Ok(labelled
            .into_iter()
            .zip(&responses)
            .map(|(l, r)| {
                let ok = !l.status.starts_with("failed");
                let clusters = if l.clusters.is_empty() {
                    vec![None; r.len()]
                } else {
                    l.clusters
                        .iter()
                        .map(|s| match s {
                            Strategy::Cluster(c) => Some(*c),
                            Strategy::Degenerate => None,
                        })
                        .collect()
                };
                GroupLabels {
                    clusters,
                    status: l.status,
                    ok,
                }
            })
            .collect())
    }

    /// The judge's counters: ``calls`` (HTTP requests, retries included), ``retries``,
    /// ``cache_hits``, ``labelled``, ``failures`` (count by reason) and ``latency_s``.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let dict = PyDict::new(py);
        dict.set_item("calls", s.calls)?;
        dict.set_item("retries", s.retries)?;
        dict.set_item("cache_hits", s.cache_hits)?;
        dict.set_item("labelled", s.labelled)?;
        dict.set_item("failures", s.failures)?;
        dict.set_item("latency_s", s.latency_s)?;
        Ok(dict)
    }

    /// The cluster id that means degenerate.
    #[getter]
    fn degenerate_id(&self) -> i64 {
        self.degenerate_id
    }
}
