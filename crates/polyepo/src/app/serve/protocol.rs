//! The OpenAI request and reply shapes: parsing and validating a request into a job,
//! and the JSON of replies, streamed chunks and errors.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};

use polyepo_engine::model::TextTokenizer;
use polyepo_engine::model::chat::{Message, chat_prompt};
use polyepo_engine::sample::{FinishReason, SamplingParams};

use super::ServeLimits;
use super::worker::Choice;

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    content: String,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default, flatten)]
    sampling: SamplingFields,
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: String,
    #[serde(default, flatten)]
    sampling: SamplingFields,
}

#[derive(Debug, Default, Deserialize)]
struct SamplingFields {
    max_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<usize>,
    stop: Option<Value>,
    seed: Option<u64>,
    stream: Option<bool>,
}

/// An HTTP error reply.
pub(super) struct HttpError(pub u16, pub String);

fn sampling(
    fields: &SamplingFields,
    limits: &ServeLimits,
) -> Result<(SamplingParams, usize), HttpError> {
    let bad = |m: String| HttpError(400, m);
    // Without `max_tokens`, as much as the server allows, up to 256.
    let max_new_tokens = fields.max_tokens.unwrap_or(256.min(limits.max_new_tokens));
    if max_new_tokens == 0 || max_new_tokens > limits.max_new_tokens {
        return Err(bad(format!(
            "`max_tokens` must be in 1..={}",
            limits.max_new_tokens
        )));
    }
    let n = fields.n.unwrap_or(1);
    if n == 0 || n > limits.max_n {
        return Err(bad(format!("`n` must be in 1..={}", limits.max_n)));
    }
    let stop_strings = match &fields.stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad("`stop` must be a string or a list of strings".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("`stop` must be a string or a list of strings".into())),
    };
    let params = SamplingParams {
        max_new_tokens,
        temperature: fields.temperature.unwrap_or(1.0),
        top_p: fields.top_p.unwrap_or(1.0),
        top_k: 0,
        stop_strings,
        seed: fields.seed.unwrap_or(0),
    };
    params.validate().map_err(bad)?;
    Ok((params, n))
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

pub(super) fn error_body(message: &str) -> Value {
    json!({ "error": { "message": message, "type": "invalid_request_error" } })
}

/// A validated generation request.
pub(super) struct Prepared {
    pub prompt: Vec<u32>,
    pub n: usize,
    pub params: SamplingParams,
    pub chat: bool,
    pub model_name: String,
    pub stream: bool,
}

/// Validates a generation request's body: prompt, sampling settings and their limits.
pub(super) fn prepare(
    chat: bool,
    body: &[u8],
    tokenizer: &TextTokenizer,
    name: &str,
    limits: &ServeLimits,
    context: usize,
) -> Result<Prepared, HttpError> {
    let (prompt_text, fields, model_name) = if chat {
        let req: ChatRequest = serde_json::from_slice(body)
            .map_err(|e| HttpError(400, format!("invalid chat request: {e}")))?;
        if req.messages.is_empty() {
            return Err(HttpError(400, "`messages` is empty".into()));
        }
        let messages: Vec<Message> = req
            .messages
            .into_iter()
            .map(|m| Message {
                role: m.role,
                content: m.content,
            })
            .collect();
        let text = chat_prompt(tokenizer.chat_template.as_deref(), &messages)
            .map_err(|e| HttpError(400, e.to_string()))?;
        (text, req.sampling, req.model)
    } else {
        let req: CompletionRequest = serde_json::from_slice(body)
            .map_err(|e| HttpError(400, format!("invalid completion request: {e}")))?;
        (req.prompt, req.sampling, req.model)
    };
    let (params, n) = sampling(&fields, limits)?;
    let prompt = tokenizer
        .encode(&prompt_text)
        .map_err(|e| HttpError(400, e.to_string()))?;
    if prompt.is_empty() {
        return Err(HttpError(400, "the prompt is empty".into()));
    }
    let prompt_tokens = prompt.len();
    // Refused here, before the worker allocates anything for it.
    if prompt_tokens.saturating_add(params.max_new_tokens) > context {
        return Err(HttpError(
            400,
            format!(
                "the prompt has {prompt_tokens} tokens and max_tokens is {}: together they exceed the model's context of {context} tokens",
                params.max_new_tokens
            ),
        ));
    }
    Ok(Prepared {
        prompt,
        n,
        params,
        chat,
        model_name: model_name.unwrap_or_else(|| name.to_owned()),
        stream: fields.stream.unwrap_or(false),
    })
}

/// The OpenAI reply for a finished job.
pub(super) fn completion_body(g: &Prepared, outputs: Vec<Choice>) -> Value {
    let prompt_tokens = g.prompt.len();
    let completion_tokens: usize = outputs.iter().map(|o| o.2).sum();
    let choices: Vec<Value> = outputs
        .into_iter()
        .enumerate()
        .map(|(i, (text, finish, _))| {
            if g.chat {
                json!({ "index": i, "message": { "role": "assistant", "content": text }, "finish_reason": finish_name(finish) })
            } else {
                json!({ "index": i, "text": text, "finish_reason": finish_name(finish) })
            }
        })
        .collect();
    json!({
        "id": format!("polyepo-{}", now()),
        "object": if g.chat { "chat.completion" } else { "text_completion" },
        "created": now(),
        "model": g.model_name,
        "choices": choices,
        "usage": { "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens },
    })
}

/// The job's outcome as (status, body).
pub(super) fn outcome(g: &Prepared, result: Result<Vec<Choice>, String>) -> (u16, Value) {
    match result {
        Ok(outputs) => (200, completion_body(g, outputs)),
        Err(e) => (400, error_body(&e)),
    }
}

/// One server-sent event of a streamed reply: more text of choice `index`, or (with no
/// text) its finish reason.
pub(super) fn sse_chunk(
    g: &Prepared,
    id: &str,
    index: usize,
    text: Option<&str>,
    finish: Option<&str>,
) -> String {
    let choice = if g.chat {
        let delta = match text {
            Some(t) => json!({ "content": t }),
            None => json!({}),
        };
        json!({ "index": index, "delta": delta, "finish_reason": finish })
    } else {
        json!({ "index": index, "text": text.unwrap_or(""), "finish_reason": finish })
    };
    let object = if g.chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    format!(
        "data: {}\n\n",
        json!({ "id": id, "object": object, "created": now(), "model": g.model_name, "choices": [choice] })
    )
}
