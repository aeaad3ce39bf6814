//! The OpenAI request shapes: parsing and validating a chat or completions request into a
//! job (prompts, sampling settings, log-probs, a `response_format` grammar), and the errors
//! in OpenAI's shape (`message`, `type`, `param`, `code`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use llguidance::Matcher;
use serde::Deserialize;
use serde_json::{Value, json};

use polyepo_engine::model::TextTokenizer;
use polyepo_engine::model::chat::{Message, chat_prompt};
use polyepo_engine::sample::SamplingParams;

use super::ServeLimits;
use super::grammar::Grammars;

/// `max_tokens` when a request sets neither it nor `max_completion_tokens` (capped by
/// `--max-tokens-limit`).
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// The most alternatives `top_logprobs` (chat) or `logprobs` (completions) may ask for,
/// as OpenAI allows.
pub const MAX_TOP_LOGPROBS: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<usize>,
    #[serde(default, flatten)]
    common: CommonFields,
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: Value,
    #[serde(default)]
    logprobs: Option<usize>,
    #[serde(default, flatten)]
    common: CommonFields,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Default, Deserialize)]
struct CommonFields {
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<usize>,
    stop: Option<Value>,
    seed: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    response_format: Option<Value>,
}

/// An HTTP error reply in OpenAI's shape.
#[derive(Debug)]
pub(super) struct HttpError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl HttpError {
    /// An error with no `param` or `code`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// A 400 about the request field `param`.
    pub fn field(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            ..Self::new(400, message)
        }
    }

    /// The error's JSON body.
    pub fn body(&self) -> Value {
        let kind = match self.status {
            401 => "authentication_error",
            404 if self.code == Some("model_not_found") => "invalid_request_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            500.. => "server_error",
            _ => "invalid_request_error",
        };
        json!({ "error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": self.code,
        } })
    }
}

/// The body of an error that has no field to name (a failure while generating).
pub(super) fn error_body(message: &str) -> Value {
    HttpError::new(500, message).body()
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A response id no other reply of this server shares (OpenAI's `chatcmpl-…`/`cmpl-…`).
fn response_id(chat: bool) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let prefix = if chat { "chatcmpl" } else { "cmpl" };
    format!("{prefix}-{nanos:x}{n:06x}")
}

/// What a request asked for in log-probs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Logprobs {
    /// None.
    Off,
    /// Chat's `logprobs: true` with `top_logprobs` alternatives.
    Chat(usize),
    /// Completions' `logprobs: k`.
    Completion(usize),
}

/// A validated generation request.
pub(super) struct Prepared {
    /// One or more prompts (completions may send a list); `n` choices each.
    pub prompts: Vec<Vec<u32>>,
    pub n: usize,
    pub params: SamplingParams,
    pub chat: bool,
    pub model_name: String,
    pub stream: bool,
    pub include_usage: bool,
    pub logprobs: Logprobs,
    /// The `response_format` grammar, cloned for every row.
    pub grammar: Option<Matcher>,
    pub id: String,
}

impl Prepared {
    /// Rows this request generates.
    pub fn rows(&self) -> usize {
        self.prompts.len() * self.n
    }

    /// Prompt tokens over all prompts (as OpenAI counts `usage.prompt_tokens`).
    pub fn prompt_tokens(&self) -> usize {
        self.prompts.iter().map(Vec::len).sum()
    }
}

fn sampling(
    fields: &CommonFields,
    limits: &ServeLimits,
    top_logprobs: usize,
) -> Result<(SamplingParams, usize), HttpError> {
    let (key, asked) = match (fields.max_completion_tokens, fields.max_tokens) {
        (Some(m), _) => ("max_completion_tokens", Some(m)),
        (None, m) => ("max_tokens", m),
    };
    let max_new_tokens = asked.unwrap_or(DEFAULT_MAX_TOKENS.min(limits.max_new_tokens));
    if max_new_tokens == 0 || max_new_tokens > limits.max_new_tokens {
        return Err(HttpError::field(
            key,
            format!("`{key}` must be in 1..={}", limits.max_new_tokens),
        ));
    }
    let n = fields.n.unwrap_or(1);
    if n == 0 || n > limits.max_n {
        return Err(HttpError::field(
            "n",
            format!("`n` must be in 1..={}", limits.max_n),
        ));
    }
    let bad_stop = || HttpError::field("stop", "`stop` must be a string or a list of strings");
    // An empty stop string would end every reply before it starts: it means no stop.
    let stop_strings: Vec<String> = match &fields.stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(String::from).ok_or_else(bad_stop))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad_stop()),
    };
    let params = SamplingParams {
        max_new_tokens,
        temperature: fields.temperature.unwrap_or(1.0),
        top_p: fields.top_p.unwrap_or(1.0),
        top_k: 0,
        stop_strings: stop_strings.into_iter().filter(|s| !s.is_empty()).collect(),
        seed: fields.seed.unwrap_or(0),
        top_logprobs,
    };
    params.validate().map_err(|m| {
        let param = ["temperature", "top_p"]
            .into_iter()
            .find(|p| m.contains(p))
            .unwrap_or("max_tokens");
        HttpError::field(param, m)
    })?;
    Ok((params, n))
}

/// The text of a message's content: a string, or the `text` parts of a list of parts.
/// Only an assistant message may come without content (OpenAI: one that made tool calls).
fn content_text(i: usize, role: &str, content: Option<Content>) -> Result<String, HttpError> {
    let param = format!("messages[{i}].content");
    match content {
        None if role == "assistant" => Ok(String::new()),
        None => Err(HttpError::field(
            &param,
            format!("`{param}` is missing: a {role} message needs its text"),
        )),
        Some(Content::Text(t)) => Ok(t),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (Some(kind), _) => {
                        return Err(HttpError::field(
                            &format!("{param}[{j}].type"),
                            format!(
                                "content part type {kind:?} is not supported: this server reads text parts only"
                            ),
                        ));
                    }
                    (None, _) => {
                        return Err(HttpError::field(
                            &format!("{param}[{j}]"),
                            "a content part needs a `type` (\"text\") and its `text`",
                        ));
                    }
                }
            }
            Ok(text)
        }
    }
}

/// The chat roles the template knows; `developer` is OpenAI's newer name for `system`.
fn chat_role(i: usize, role: &str) -> Result<String, HttpError> {
    match role {
        "system" | "user" | "assistant" => Ok(role.to_owned()),
        "developer" => Ok("system".to_owned()),
        "tool" | "function" => Err(HttpError::field(
            &format!("messages[{i}].role"),
            format!("role {role:?} is not supported: this server has no tools"),
        )),
        other => Err(HttpError::field(
            &format!("messages[{i}].role"),
            format!(
                "unknown role {other:?}; use \"system\", \"developer\", \"user\" or \"assistant\""
            ),
        )),
    }
}

/// A completions `prompt`: a string, a list of strings, a list of token ids, or a list of
/// lists of token ids.
fn completion_prompts(
    prompt: &Value,
    tokenizer: &TextTokenizer,
) -> Result<Vec<Vec<u32>>, HttpError> {
    let bad = || {
        HttpError::field(
            "prompt",
            "`prompt` must be a string, a list of strings, a list of token ids or a list of lists of token ids",
        )
    };
    let encode = |text: &str| {
        tokenizer
            .encode(text)
            .map_err(|e| HttpError::field("prompt", e.to_string()))
    };
    let ids = |list: &[Value]| -> Result<Vec<u32>, HttpError> {
        list.iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .filter(|&t| (t as usize) < tokenizer.vocab_size())
                    .ok_or_else(|| {
                        HttpError::field(
                            "prompt",
                            format!(
                                "{v} is not a token id of this model (0..{})",
                                tokenizer.vocab_size()
                            ),
                        )
                    })
            })
            .collect()
    };
    match prompt {
        Value::String(s) => Ok(vec![encode(s)?]),
        Value::Array(items) if items.is_empty() => Err(bad()),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|v| encode(v.as_str().unwrap_or_default()))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_number) => Ok(vec![ids(items)?]),
        Value::Array(items) if items.iter().all(Value::is_array) => items
            .iter()
            .map(|v| ids(v.as_array().map_or(&[][..], Vec::as_slice)))
            .collect(),
        _ => Err(bad()),
    }
}

/// The server's view of one endpoint.
pub(super) struct Endpoint<'a> {
    pub tokenizer: &'a TextTokenizer,
    pub grammars: &'a Grammars,
    pub name: &'a str,
    pub limits: &'a ServeLimits,
    pub context: usize,
}

/// Validates a generation request's body: the model, the prompts, sampling settings and
/// their limits, log-probs and `response_format`.
pub(super) fn prepare(chat: bool, body: &[u8], at: &Endpoint<'_>) -> Result<Prepared, HttpError> {
    let (prompts, common, model, logprobs) = if chat {
        let req: ChatRequest = serde_json::from_slice(body)
            .map_err(|e| HttpError::new(400, format!("invalid chat request: {e}")))?;
        if req.messages.is_empty() {
            return Err(HttpError::field("messages", "`messages` is empty"));
        }
        let messages: Vec<Message> = req
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let role = chat_role(i, &m.role)?;
                let content = content_text(i, &role, m.content)?;
                Ok(Message { role, content })
            })
            .collect::<Result<_, HttpError>>()?;
        let text = chat_prompt(at.tokenizer.chat_template.as_deref(), &messages)
            .map_err(|e| HttpError::field("messages", e.to_string()))?;
        let prompt = at
            .tokenizer
            .encode(&text)
            .map_err(|e| HttpError::field("messages", e.to_string()))?;
        let logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
            (_, Some(k)) if k > MAX_TOP_LOGPROBS => {
                return Err(HttpError::field(
                    "top_logprobs",
                    format!("`top_logprobs` must be in 0..={MAX_TOP_LOGPROBS}"),
                ));
            }
            (false, Some(k)) if k > 0 => {
                return Err(HttpError::field(
                    "top_logprobs",
                    "`top_logprobs` needs `logprobs: true`",
                ));
            }
            (true, k) => Logprobs::Chat(k.unwrap_or(0)),
            (false, _) => Logprobs::Off,
        };
        (vec![prompt], req.common, req.model, logprobs)
    } else {
        let req: CompletionRequest = serde_json::from_slice(body)
            .map_err(|e| HttpError::new(400, format!("invalid completion request: {e}")))?;
        let logprobs = match req.logprobs {
            None => Logprobs::Off,
            Some(k) if k > MAX_TOP_LOGPROBS => {
                return Err(HttpError::field(
                    "logprobs",
                    format!("`logprobs` must be in 0..={MAX_TOP_LOGPROBS}"),
                ));
            }
            Some(k) => Logprobs::Completion(k),
        };
        let prompts = completion_prompts(&req.prompt, at.tokenizer)?;
        (prompts, req.common, req.model, logprobs)
    };
    if let Some(m) = &model
        && m != at.name
    {
        return Err(HttpError {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..HttpError::new(
                404,
                format!(
                    "the model `{m}` does not exist: this server serves `{}`",
                    at.name
                ),
            )
        });
    }
    let top = match logprobs {
        Logprobs::Off => 0,
        Logprobs::Chat(k) | Logprobs::Completion(k) => k,
    };
    let (params, n) = sampling(&common, at.limits, top)?;
    if prompts.len() * n > at.limits.max_batch {
        return Err(HttpError::field(
            "prompt",
            format!(
                "{} prompts × n = {n} is {} generations; at most {} per request",
                prompts.len(),
                prompts.len() * n,
                at.limits.max_batch
            ),
        ));
    }
    for (i, prompt) in prompts.iter().enumerate() {
        let which = if prompts.len() > 1 {
            format!("prompt {i}")
        } else {
            "the prompt".to_owned()
        };
        if prompt.is_empty() {
            return Err(HttpError::field(
                if chat { "messages" } else { "prompt" },
                format!("{which} is empty"),
            ));
        }
        // Refused here, before the worker allocates anything for it.
        if prompt.len().saturating_add(params.max_new_tokens) > at.context {
            return Err(HttpError::field(
                "max_tokens",
                format!(
                    "{which} has {} tokens and max_tokens is {}: together they exceed the model's context of {} tokens",
                    prompt.len(),
                    params.max_new_tokens,
                    at.context
                ),
            ));
        }
    }
    let grammar = at
        .grammars
        .matcher(common.response_format.as_ref())
        .map_err(|m| HttpError::field("response_format", format!("`response_format`: {m}")))?;
    let stream = common.stream.unwrap_or(false);
    Ok(Prepared {
        prompts,
        n,
        params,
        chat,
        model_name: model.unwrap_or_else(|| at.name.to_owned()),
        stream,
        include_usage: stream && common.stream_options.is_some_and(|o| o.include_usage),
        logprobs,
        grammar,
        id: response_id(chat),
    })
}
