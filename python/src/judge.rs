//! The LM judge for Python: labels many prompt groups at once, with the requests in
//! flight concurrently inside Rust and the GIL released meanwhile.

use std::path::PathBuf;
use std::sync::Mutex;

use polyepo_judge::guard::FailureGuard;
use polyepo_judge::lm::{FailurePolicy, LmJudge, LmJudgeConfig, ResponseFormat};
use polyepo_judge::outcome::OutcomeKind;
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use setrl::Strategy;

create_exception!(
    _core,
    JudgeUnusableError,
    PyRuntimeError,
    "The judge failed on most groups for ``max_failed_steps`` calls in a row: training on \
     would learn nothing. The message names the judge and its last failure."
);

/// What labelling one group came to (the Rust judge's ``Outcome``): ``LABELLED`` (the
/// judge's reply), ``CACHED`` (an identical earlier request), ``SKIPPED`` (the judge failed
/// and the failure policy is ``skip``: no labels, zero advantages) or ``FAILED`` (the judge
/// failed and the ``distinct`` or ``single`` policy gave the labels).
#[pyclass(frozen, eq, hash, module = "polyepo._core")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The judge's reply labelled every response.
    #[pyo3(name = "LABELLED")]
    Labelled,
    /// The labels came from the cache.
    #[pyo3(name = "CACHED")]
    Cached,
    /// The judge failed; no labels (policy ``skip``).
    #[pyo3(name = "SKIPPED")]
    Skipped,
    /// The judge failed; the failure policy's labels.
    #[pyo3(name = "FAILED")]
    Failed,
}

#[pymethods]
impl Outcome {
    /// The outcome's name: ``"labelled"``, ``"cached"``, ``"skipped"`` or ``"failed"``.
    #[getter]
    fn name(&self) -> &'static str {
        OutcomeKind::from(*self).name()
    }

    fn __repr__(&self) -> String {
        format!("Outcome.{}", self.name().to_uppercase())
    }
}

impl From<Outcome> for OutcomeKind {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Labelled => OutcomeKind::Labelled,
            Outcome::Cached => OutcomeKind::Cached,
            Outcome::Skipped => OutcomeKind::Skipped,
            Outcome::Failed => OutcomeKind::Failed,
        }
    }
}

impl From<OutcomeKind> for Outcome {
    fn from(o: OutcomeKind) -> Self {
        match o {
            OutcomeKind::Labelled => Outcome::Labelled,
            OutcomeKind::Cached => Outcome::Cached,
            OutcomeKind::Skipped => Outcome::Skipped,
            OutcomeKind::Failed => Outcome::Failed,
        }
    }
}

/// The labels of one group.
#[pyclass(frozen, get_all, module = "polyepo._core")]
pub struct GroupLabels {
    /// One cluster id per response; ``None`` is degenerate. When the judge failed, what
    /// the failure policy gave: ``distinct`` (every response its own cluster), ``single``
    /// (one cluster) or ``skip`` (every response ``None``, which gives the group zero
    /// polychromatic advantage).
    clusters: Vec<Option<i64>>,
    /// What labelling came to (:class:`Outcome`).
    outcome: Outcome,
    /// Why the judge failed (``"timeout"``, ``"connection"``, ``"http-503"``,
    /// ``"invalid-reply"``, ...), ``None`` if it did not.
    reason: Option<String>,
    /// For a failed group, what went wrong (with the start of a reply that could not be
    /// used); ``""`` otherwise.
    detail: String,
    /// Whether the labels came from the judge (a reply or the cache).
    ok: bool,
}

#[pymethods]
impl GroupLabels {
    fn __repr__(&self) -> String {
        let clusters: Vec<String> = self
            .clusters
            .iter()
            .map(|c| c.map_or("None".to_owned(), |c| c.to_string()))
            .collect();
        let reason = self
            .reason
            .as_ref()
            .map_or(String::new(), |r| format!(", reason={r:?}"));
        format!(
            "GroupLabels(clusters=[{}], outcome={}{reason})",
            clusters.join(", "),
            self.outcome.__repr__()
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
///     JSON Lines file of past labels; a repeated request is not paid twice. Opened now:
///     an unwritable path raises ``ValueError`` here.
/// timeout_s : float
///     Seconds before one request is abandoned (reported with ``reason="timeout"``).
/// retries : int
///     Further attempts after a failed one (timeouts, connection errors, HTTP 429/5xx,
///     replies that are not the asked-for JSON).
/// backoff_s : float
///     Seconds before the first retry; doubles with each retry.
/// api_key_env : str
///     Environment variable holding the API key; the key is never logged.
/// degenerate_id : int
///     The cluster id the judge gives degenerate responses (the paper: 100); they come back
///     as ``None``.
/// max_tokens : int
///     Tokens the judge may write per reply.
/// response_format : {"auto", "json_schema", "json_object", "none"}
///     Whether requests ask the server to constrain the reply to its JSON schema (vLLM,
///     llama.cpp's server and ``polyepo serve`` do). ``auto`` asks and stops asking when
///     the server refuses the field.
/// max_failure_rate : float
///     A call to :meth:`label` on which more than this fraction of the groups failed
///     counts as failed.
/// max_failed_steps : int
///     Consecutive failed calls after which :meth:`label` raises
///     :class:`JudgeUnusableError` naming the judge and its last failure (0: never).
///     Trainers label once per step, so this is "steps".
#[pyclass(frozen, module = "polyepo._core")]
pub struct Judge {
    inner: LmJudge,
    degenerate_id: i64,
    guard: Mutex<FailureGuard>,
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
    #[pyo3(signature = (endpoint, model, prompt="math", failure_policy="skip", max_concurrency=8, cache=None, timeout_s=60.0, retries=3, backoff_s=1.0, api_key_env="POLYEPO_JUDGE_API_KEY", degenerate_id=100, max_tokens=1024, response_format="auto", max_failure_rate=0.5, max_failed_steps=3))]
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
        response_format: &str,
        max_failure_rate: f64,
        max_failed_steps: usize,
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
            response_format: response_format
                .parse::<ResponseFormat>()
                .map_err(|e| PyValueError::new_err(format!("response_format: {e}")))?,
            max_failure_rate,
            max_failed_steps,
        };
        // `LmJudge::new` checks every setting before it opens anything; its errors name the
        // setting, which is the argument's name.
        let inner = LmJudge::new(cfg).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let guard = Mutex::new(inner.guard());
        Ok(Self {
            inner,
            degenerate_id,
            guard,
        })
    }

    /// Labels many groups at once: ``problems[g]`` is prompt g's text and ``responses[g]``
    /// its responses. Returns one ``GroupLabels`` per group, in order. A failed group gets
    /// what the failure policy gives and ``status``/``detail`` say why; only when most
    /// groups failed on ``max_failed_steps`` calls in a row does it raise
    /// :class:`JudgeUnusableError`.
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
        let failed = labelled.iter().filter(|l| !l.is_ok()).count();
        let last = labelled
            .iter()
            .rev()
            .find_map(|l| l.failure())
            .map(ToString::to_string);
        if let Ok(mut guard) = self.guard.lock() {
            guard
                .observe(labelled.len(), failed, last.as_deref())
                .map_err(|e| JudgeUnusableError::new_err(e.to_string()))?;
        }
        Ok(labelled
            .into_iter()
            .zip(&responses)
            .map(|(l, r)| {
                let clusters = match l.labels() {
                    None => vec![None; r.len()],
                    Some(labels) => labels
                        .iter()
                        .map(|s| match s {
                            Strategy::Cluster(c) => Some(*c),
                            Strategy::Degenerate => None,
                        })
                        .collect(),
                };
                GroupLabels {
                    clusters,
                    outcome: l.kind().into(),
                    reason: l.failure().map(|f| f.reason.to_string()),
                    detail: l.failure().map(|f| f.detail.clone()).unwrap_or_default(),
                    ok: l.is_ok(),
                }
            })
            .collect())
    }

    /// The judge's counters: ``calls`` (HTTP requests, retries included), ``retries``,
    /// ``cache_hits``, ``labelled``, ``failures`` (count by reason), ``latency_s`` (to the
    /// end of each reply) and ``last_failure`` (reason and detail, or ``None``).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let dict = PyDict::new(py);
        dict.set_item("calls", s.calls)?;
        dict.set_item("retries", s.retries)?;
        dict.set_item("cache_hits", s.cache_hits)?;
        dict.set_item("labelled", s.labelled)?;
        dict.set_item("failures", s.failures)?;
        dict.set_item("latency_s", s.latency_s)?;
        dict.set_item("last_failure", s.last_failure)?;
        Ok(dict)
    }

    /// The cluster id that means degenerate.
    #[getter]
    fn degenerate_id(&self) -> i64 {
        self.degenerate_id
    }
}
