//! The LM judge: clusters one prompt's N responses by reasoning strategy with one call to an
//! OpenAI-compatible chat-completions API (vLLM, llama.cpp server, `polyepo serve`, hosted).
//!
//! Robust by design: bounded concurrency, timeouts, retries with exponential backoff, strict
//! validation of the reply (every response labelled once, integer ids; code fences and extra
//! keys tolerated), an explicit failure policy, a cache keyed by the request, and counters
//! for every call, retry and failure reason. The API key is read from the environment and is
//! never written to a log or an error.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use setrl::Strategy;

use crate::JudgeError;
use crate::outcome::{FailureReason, JudgeFailure, Outcome};
use crate::prompts;

/// What to do when the judge cannot label a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Every response its own cluster (the paper's silent default; inflates diversity).
    Distinct,
    /// Every response in one cluster (deflates diversity).
    Single,
    /// No labels: the prompt's advantages become zero.
    Skip,
}

impl FailurePolicy {
    /// The policy's name as configs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Distinct => "distinct",
            Self::Single => "single",
            Self::Skip => "skip",
        }
    }
}

/// Whether the judge asks the server to constrain its reply to the reply's JSON schema
/// (OpenAI's `response_format`; vLLM, llama.cpp's server and `polyepo serve` honour it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "clap", value(rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Ask for the schema; when the server refuses the field (HTTP 400 or 422 whose body
    /// names `response_format`), ask again without it and stop asking.
    Auto,
    /// Always send `{"type": "json_schema", ...}` with the reply's schema.
    JsonSchema,
    /// Always send `{"type": "json_object"}` (any JSON object).
    JsonObject,
    /// Never send `response_format`.
    None,
}

impl std::str::FromStr for ResponseFormat {
    type Err = String;
    /// The names configs use (serde's), so a setting is spelt one way everywhere.
    fn from_str(s: &str) -> Result<Self, String> {
        use serde::de::value::{Error, StrDeserializer};
        Self::deserialize(StrDeserializer::<Error>::new(s)).map_err(|_| {
            format!(
                "unknown response format {s:?}; use \"auto\", \"json_schema\", \"json_object\" or \"none\""
            )
        })
    }
}

/// Settings of the LM judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmJudgeConfig {
    /// Base URL of the API, e.g. `http://127.0.0.1:8000/v1`.
    pub endpoint: String,
    /// Model name sent in requests.
    pub model: String,
    /// Environment variable holding the API key (none sent when unset or empty).
    pub api_key_env: String,
    /// `math`, `code`, `generic`, or a path to a prompt file with `{problem}`,
    /// `{responses}`, `{n}` and `{degenerate}` placeholders.
    pub prompt: String,
    /// Cluster id that means degenerate (the paper: 100).
    pub degenerate_id: i64,
    /// Most requests in flight at once.
    pub max_concurrency: usize,
    /// Seconds before a request is abandoned.
    pub timeout_s: f64,
    /// Retries after the first attempt.
    pub retries: usize,
    /// First backoff in seconds (doubles each retry).
    pub backoff_s: f64,
    /// What a failed group gets.
    pub failure_policy: FailurePolicy,
    /// Tokens the judge may write.
    pub max_tokens: usize,
    /// JSON Lines cache file (none: in-memory only).
    pub cache: Option<PathBuf>,
    /// Whether to ask the server for a reply constrained to the reply's JSON schema.
    pub response_format: ResponseFormat,
    /// A training step on which more than this fraction of the groups failed counts as a
    /// failed step (see `max_failed_steps`).
    pub max_failure_rate: f64,
    /// Consecutive failed steps after which training stops with an error naming the judge
    /// and its last failure (0: never stop).
    pub max_failed_steps: usize,
}

impl LmJudgeConfig {
    /// The first setting that cannot work, as (key, what is wrong and the fix).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !(self.timeout_s > 0.0 && self.timeout_s.is_finite()) {
            return Some((
                "timeout_s",
                format!("is {}; use a finite number of seconds > 0", self.timeout_s),
            ));
        }
        if !(self.backoff_s >= 0.0 && self.backoff_s <= 3600.0) {
            return Some((
                "backoff_s",
                format!("is {}; use 0..=3600 seconds", self.backoff_s),
            ));
        }
        if !(1..=1024).contains(&self.max_concurrency) {
            return Some((
                "max_concurrency",
                format!("is {}; use 1..=1024", self.max_concurrency),
            ));
        }
        if self.retries > 100 {
            return Some(("retries", format!("is {}; use 0..=100", self.retries)));
        }
        if self.max_tokens == 0 {
            return Some(("max_tokens", "must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.max_failure_rate) {
            return Some((
                "max_failure_rate",
                format!("is {}; use a fraction in 0..=1", self.max_failure_rate),
            ));
        }
        if let Some(problem) = endpoint_problem(&self.endpoint) {
            return Some(("endpoint", problem));
        }
        None
    }
}

impl Default for LmJudgeConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:8000/v1".into(),
            model: "judge".into(),
            api_key_env: "POLYEPO_JUDGE_API_KEY".into(),
            prompt: "generic".into(),
            degenerate_id: 100,
            max_concurrency: 8,
            timeout_s: 60.0,
            retries: 3,
            backoff_s: 1.0,
            failure_policy: FailurePolicy::Skip,
            max_tokens: 1024,
            cache: None,
            response_format: ResponseFormat::Auto,
            max_failure_rate: 0.5,
            max_failed_steps: 3,
        }
    }
}

/// What is wrong with an endpoint URL, if anything: it must be `http://` or `https://`
/// followed by a host (the judge appends `/chat/completions`).
fn endpoint_problem(endpoint: &str) -> Option<String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        None => Some(format!(
            "{endpoint:?} is not an http:// or https:// URL; use e.g. \"http://127.0.0.1:8000/v1\""
        )),
        Some(h) if h.is_empty() || h.starts_with(':') || h.contains(char::is_whitespace) => Some(
            format!("{endpoint:?} names no host; use e.g. \"http://127.0.0.1:8000/v1\""),
        ),
        Some(h) => match h.rsplit_once(':') {
            Some((_, port)) if !h.ends_with(']') && port.parse::<u16>().is_err() => Some(format!(
                "{endpoint:?}: port {port:?} is not a number in 0..=65535"
            )),
            _ => None,
        },
    }
}

/// The first `max` characters of a reply, for error messages.
fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    format!("{out:?}")
}

/// Counters of the judge's work.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JudgeStats {
    /// HTTP requests sent (retries included).
    pub calls: u64,
    /// Retries.
    pub retries: u64,
    /// Groups answered from the cache.
    pub cache_hits: u64,
    /// Groups labelled by a valid reply.
    pub labelled: u64,
    /// Groups that failed, by reason (`http-503`, `timeout`, `connection`, `invalid-reply`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Seconds spent waiting for replies, each to the last byte of its body.
    pub latency_s: f64,
    /// The last failure: its reason, what went wrong and, for a reply that could not be
    /// used, how it began.
    pub last_failure: Option<String>,
}

impl JudgeStats {
    /// Groups that failed since the snapshot `before` (all reasons).
    pub fn failures_since(&self, before: &JudgeStats) -> u64 {
        let total = |s: &JudgeStats| s.failures.values().sum::<u64>();
        total(self).saturating_sub(total(before))
    }
}

/// The judge.
pub struct LmJudge {
    cfg: LmJudgeConfig,
    template: String,
    api_key: Option<String>,
    agent: ureq::Agent,
    cache: Mutex<HashMap<String, Vec<Option<i64>>>>,
    stats: Mutex<JudgeStats>,
    /// Whether to send `response_format` (cleared when an `auto` judge's server refuses it).
    ask_schema: std::sync::atomic::AtomicBool,
}

/// Why one attempt failed; `retry` says whether another attempt may help.
struct Failure {
    reason: FailureReason,
    detail: String,
    retry: bool,
}

/// Parses and validates a reply: a JSON object with keys "1".."N", each holding an integer
/// `cluster_id` (or being the integer itself). Code fences and text around the object are
/// tolerated, as are extra keys; a missing or non-integer label is not.
pub fn parse_reply(
    content: &str,
    n: usize,
    degenerate_id: i64,
) -> Result<Vec<Option<i64>>, String> {
    // The first JSON value from the first `{`; text before it (prose, a code fence) and after
    // it (a closing fence, commentary, code with braces of its own) is ignored.
    let start = content.find('{').ok_or("the reply holds no JSON object")?;
    let mut de = serde_json::Deserializer::from_str(&content[start..]);
    let value = <Value as Deserialize>::deserialize(&mut de)
        .map_err(|e| format!("the reply is not valid JSON: {e}"))?;
    let object = value.as_object().ok_or("the reply is not a JSON object")?;
    (1..=n)
        .map(|i| {
            let entry = object
                .get(&i.to_string())
                .ok_or_else(|| format!("response {i} has no label"))?;
            let id = entry.get("cluster_id").unwrap_or(entry);
            let id = id
                .as_i64()
                .or_else(|| id.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| format!("response {i}: cluster_id {id} is not an integer"))?;
            Ok((id != degenerate_id).then_some(id))
        })
        .collect()
}

/// Labels as strategies: `None` (degenerate) becomes [`Strategy::Degenerate`].
pub fn to_strategies(ids: &[Option<i64>]) -> Vec<Strategy> {
    ids.iter()
        .map(|c| c.map_or(Strategy::Degenerate, Strategy::Cluster))
        .collect()
}

impl LmJudge {
    /// A judge for `cfg`; reads the prompt file and the API key now.
    pub fn new(cfg: LmJudgeConfig) -> Result<Self, JudgeError> {
        if let Some((key, message)) = cfg.problem() {
            return Err(JudgeError::Failed(format!(
                "judge setting `{key}`: {message}"
            )));
        }
        let template = match prompts::builtin(&cfg.prompt) {
            Some(t) => t,
            None => std::fs::read_to_string(&cfg.prompt).map_err(|e| {
                JudgeError::Failed(format!(
                    "judge prompt `{}`: {e} (use math, code, generic or a file path)",
                    cfg.prompt
                ))
            })?,
        };
        let api_key = std::env::var(&cfg.api_key_env)
            .ok()
            .filter(|k| !k.is_empty());
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs_f64(cfg.timeout_s.max(0.001)))
            .build();
        let mut cache = HashMap::new();
        if let Some(path) = &cfg.cache {
            // Opened for appending now, so an unwritable path fails here, not after the
            // first paid request.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    JudgeError::Failed(format!(
                        "judge setting `cache`: cannot write {}: {e}; use a path in a writable directory, or no cache",
                        path.display()
                    ))
                })?;
            let text = std::fs::read_to_string(path).unwrap_or_default();
            for line in text.lines() {
                if let Ok((key, ids)) = serde_json::from_str::<(String, Vec<Option<i64>>)>(line) {
                    cache.insert(key, ids);
                }
            }
        }
        let ask_schema = (cfg.response_format != ResponseFormat::None).into();
        Ok(Self {
            cfg,
            template,
            api_key,
            agent,
            cache: Mutex::new(cache),
            stats: Mutex::new(JudgeStats::default()),
            ask_schema,
        })
    }

    /// The judge in words, for errors: its model and endpoint.
    pub fn describe(&self) -> String {
        format!("model `{}` at {}", self.cfg.model, self.cfg.endpoint)
    }

    /// The failure guard this judge's settings ask for.
    pub fn guard(&self) -> crate::guard::FailureGuard {
        crate::guard::FailureGuard::new(
            self.cfg.max_failure_rate,
            self.cfg.max_failed_steps,
            self.describe(),
        )
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> JudgeStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn count_failure(&self, failure: &Failure) {
        if let Ok(mut s) = self.stats.lock() {
            *s.failures.entry(failure.reason.to_string()).or_default() += 1;
            s.last_failure = Some(format!("{}: {}", failure.reason, failure.detail));
        }
    }

    /// The request without `response_format`; the cache key, so a cached label does not
    /// depend on whether the server was asked for the schema.
    fn request_body(&self, problem: &str, responses: &[String]) -> Value {
        json!({
            "model": self.cfg.model,
            "messages": [{ "role": "user", "content": prompts::render(&self.template, problem, responses, self.cfg.degenerate_id) }],
            "temperature": 0.0,
            "max_tokens": self.cfg.max_tokens,
        })
    }

    /// The `response_format` to send with a request for `n` labels, if any.
    fn response_format(&self, n: usize) -> Option<Value> {
        if !self.ask_schema.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        Some(match self.cfg.response_format {
            ResponseFormat::None => return None,
            ResponseFormat::JsonObject => json!({ "type": "json_object" }),
            ResponseFormat::Auto | ResponseFormat::JsonSchema => json!({
                "type": "json_schema",
                "json_schema": {
                    "name": "strategy_clusters",
                    "strict": true,
                    "schema": reply_schema(n),
                },
            }),
        })
    }

    /// One HTTP attempt; an `auto` judge whose server refuses `response_format` asks again
    /// at once without it.
    fn attempt(&self, body: &Value, n: usize) -> Result<Vec<Option<i64>>, Failure> {
        let Some(format) = self.response_format(n) else {
            return self.attempt_with(body, n);
        };
        let mut constrained = body.clone();
        constrained["response_format"] = format;
        match self.attempt_with(&constrained, n) {
            Err(f)
                if self.cfg.response_format == ResponseFormat::Auto
                    && matches!(f.reason, FailureReason::Http(400 | 422))
                    && f.detail.contains("response_format") =>
            {
                self.ask_schema
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                self.attempt_with(body, n)
            }
            other => other,
        }
    }

    fn attempt_with(&self, body: &Value, n: usize) -> Result<Vec<Option<i64>>, Failure> {
        let url = format!(
            "{}/chat/completions",
            self.cfg.endpoint.trim_end_matches('/')
        );
        let mut request = self.agent.post(&url);
        if let Some(key) = &self.api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        if let Ok(mut s) = self.stats.lock() {
            s.calls += 1;
        }
        let started = Instant::now();
        // Latency runs to the end of the body: a server sends its headers long before the
        // reply is written.
        let result = request
            .send_json(body.clone())
            .map(ureq::Response::into_string);
        if let Ok(mut s) = self.stats.lock() {
            s.latency_s += started.elapsed().as_secs_f64();
        }
        let body_text = match result {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => return Err(read_failure(&url, &e)),
            Err(ureq::Error::Status(code, response)) => {
                // 429 and 5xx are transient; other 4xx mean the request itself is wrong.
                let retry = code == 429 || code >= 500;
                let said = response.into_string().unwrap_or_default();
                return Err(Failure {
                    reason: FailureReason::Http(code),
                    detail: format!(
                        "the judge API answered HTTP {code}: {}",
                        excerpt(&said, 200)
                    ),
                    retry,
                });
            }
            Err(ureq::Error::Transport(t)) => {
                let timeout = t.to_string().to_lowercase().contains("timed out");
                let reason = if timeout {
                    FailureReason::Timeout
                } else {
                    FailureReason::Connection
                };
                // The transport message names the URL, never the headers: no key can leak.
                return Err(Failure {
                    reason,
                    detail: if timeout {
                        format!(
                            "{url}: no reply within timeout_s = {} s",
                            self.cfg.timeout_s
                        )
                    } else {
                        format!("{url}: {}", t.kind())
                    },
                    retry: true,
                });
            }
        };
        let invalid = |detail: String| Failure {
            reason: FailureReason::InvalidReply,
            detail,
            retry: true,
        };
        let json: Value = serde_json::from_str(&body_text).map_err(|e| {
            invalid(format!(
                "reply body is not JSON ({e}); it began {}",
                excerpt(&body_text, 200)
            ))
        })?;
        let content = json["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| {
                invalid(format!(
                    "reply has no choices[0].message.content; it began {}",
                    excerpt(&body_text, 200)
                ))
            })?;
        parse_reply(content, n, self.cfg.degenerate_id).map_err(|detail| {
            invalid(format!(
                "{detail}; the reply began {}",
                excerpt(content, 200)
            ))
        })
    }

    /// Labels the responses to one problem, applying the failure policy: under `skip` a
    /// failed group gets no labels ([`Outcome::Skipped`]).
    pub fn label_group(&self, problem: &str, responses: &[String]) -> Outcome {
        let n = responses.len();
        let body = self.request_body(problem, responses);
        let key = format!("{:016x}", crate::strategy_id(&body.to_string()));
        if let Some(ids) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            if let Ok(mut s) = self.stats.lock() {
                s.cache_hits += 1;
            }
            return Outcome::Cached(to_strategies(&ids));
        }
        let mut last = Failure {
            reason: FailureReason::Connection,
            detail: "no attempt was made".into(),
            retry: false,
        };
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                if let Ok(mut s) = self.stats.lock() {
                    s.retries += 1;
                }
                std::thread::sleep(Duration::from_secs_f64(
                    self.cfg.backoff_s * f64::powi(2.0, attempt as i32 - 1),
                ));
            }
            match self.attempt(&body, n) {
                Ok(ids) => {
                    if let Ok(mut s) = self.stats.lock() {
                        s.labelled += 1;
                    }
                    self.remember(key, &ids);
                    return Outcome::Labelled(to_strategies(&ids));
                }
                Err(f) => {
                    let retry = f.retry;
                    last = f;
                    if !retry {
                        break;
                    }
                }
            }
        }
        // No line on stderr per group: the trainer logs a summary per step, the Python
        // package through `logging`, both from the outcome's failure.
        self.count_failure(&last);
        let failure = JudgeFailure {
            reason: last.reason,
            detail: last.detail,
        };
        let labels = match self.cfg.failure_policy {
            FailurePolicy::Distinct => (0..n as i64).map(Strategy::Cluster).collect(),
            FailurePolicy::Single => vec![Strategy::Cluster(0); n],
            FailurePolicy::Skip => return Outcome::Skipped(failure),
        };
        Outcome::Failed { failure, labels }
    }

    fn remember(&self, key: String, ids: &[Option<i64>]) {
        if let Some(path) = &self.cfg.cache
            && let Ok(line) = serde_json::to_string(&(&key, ids))
        {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{line}");
            }
        }
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, ids.to_vec());
        }
    }

    /// Labels many (problem, responses) groups with at most `max_concurrency` requests in
    /// flight; the results are in the order of `groups`.
    pub fn label_groups(&self, groups: &[(&str, &[String])]) -> Vec<Outcome> {
        let width = self.cfg.max_concurrency.max(1);
        let mut out = Vec::with_capacity(groups.len());
        for chunk in groups.chunks(width) {
            let labelled: Vec<Outcome> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|&(p, r)| scope.spawn(move || self.label_group(p, r)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Outcome::Skipped(JudgeFailure {
                                reason: FailureReason::Panic,
                                detail: "the labelling thread panicked".into(),
                            })
                        })
                    })
                    .collect()
            });
            out.extend(labelled);
        }
        out
    }
}

/// Why reading a reply's body failed: a timeout when the clock ran out mid-body.
fn read_failure(url: &str, e: &std::io::Error) -> Failure {
    let timeout = matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || e.to_string().to_lowercase().contains("timed out");
    Failure {
        reason: if timeout {
            FailureReason::Timeout
        } else {
            FailureReason::Connection
        },
        detail: format!("{url}: reading the reply: {e}"),
        retry: true,
    }
}

/// The JSON schema of a reply labelling `n` responses: keys "1".."n", each an object with a
/// short `chain_of_thought` and an integer `cluster_id`, nothing else. Bounding the
/// explanation keeps a small judge from spending its whole token budget before the labels.
pub fn reply_schema(n: usize) -> Value {
    let entry = json!({
        "type": "object",
        "properties": {
            "chain_of_thought": { "type": "string", "maxLength": 200 },
            "cluster_id": { "type": "integer" },
        },
        "required": ["chain_of_thought", "cluster_id"],
        "additionalProperties": false,
    });
    let keys: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let properties: serde_json::Map<String, Value> =
        keys.iter().map(|k| (k.clone(), entry.clone())).collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": keys,
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_validated() {
        let ok = "```json\n{\"1\": {\"chain_of_thought\": \"a\", \"cluster_id\": 0}, \"2\": {\"cluster_id\": 100}, \"3\": 1, \"extra\": true}\n```";
        assert_eq!(
            parse_reply(ok, 3, 100).unwrap(),
            vec![Some(0), None, Some(1)]
        );
        assert_eq!(
            parse_reply("{\"1\": {\"cluster_id\": \"2\"}}", 1, 100).unwrap(),
            vec![Some(2)]
        );
        assert!(
            parse_reply("{\"1\": {\"cluster_id\": 0}}", 2, 100)
                .unwrap_err()
                .contains("response 2")
        );
        assert!(
            parse_reply("{\"1\": {\"cluster_id\": 0.5}}", 1, 100)
                .unwrap_err()
                .contains("integer")
        );
        assert!(parse_reply("no json here", 1, 100).is_err());
        assert!(parse_reply("{\"1\": ", 1, 100).is_err());
        // Trailing text with braces of its own does not spoil a valid object.
        assert_eq!(
            parse_reply("{\"1\": 3}\nand then def f(): return {}", 1, 100).unwrap(),
            vec![Some(3)]
        );
    }
}
