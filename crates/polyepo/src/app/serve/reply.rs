//! The OpenAI reply shapes: a whole completion, the server-sent chunks of a streamed one
//! (the role first, the text, a last chunk per choice with its finish reason and
//! log-probs, the usage when asked), and log-probs in the chat and completions layouts.

use serde_json::{Value, json};

use polyepo_engine::sample::FinishReason;

use super::grammar::Grammars;
use super::protocol::{Logprobs, Prepared, error_body, now};
use super::worker::Choice;

pub(super) fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn usage(g: &Prepared, completion_tokens: usize) -> Value {
    let prompt_tokens = g.prompt_tokens();
    json!({ "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens })
}

/// The tokens a choice's log-probs list: all it generated but the token that stopped it.
fn listed(c: &Choice, vocab: &Grammars) -> usize {
    match (c.finish, c.tokens.last()) {
        (FinishReason::Stop, Some(t)) if vocab.is_stop(*t) => c.tokens.len() - 1,
        _ => c.tokens.len(),
    }
}

/// A choice's log-probs in the layout the request's endpoint uses, or null.
fn logprobs(g: &Prepared, c: &Choice, vocab: &Grammars) -> Value {
    let text = |t: u32| String::from_utf8_lossy(vocab.token_bytes(t)).into_owned();
    let n = listed(c, vocab);
    match g.logprobs {
        Logprobs::Off => Value::Null,
        Logprobs::Chat(_) => {
            let entry = |t: u32, lp: f32| json!({ "token": text(t), "logprob": lp, "bytes": vocab.token_bytes(t) });
            let content: Vec<Value> = (0..n)
                .map(|i| {
                    let mut e = entry(c.tokens[i], c.log_probs[i]);
                    let top: Vec<Value> = c
                        .top_log_probs
                        .get(i)
                        .map(|alts| alts.iter().map(|&(t, lp)| entry(t, lp)).collect())
                        .unwrap_or_default();
                    e["top_logprobs"] = Value::Array(top);
                    e
                })
                .collect();
            json!({ "content": content, "refusal": null })
        }
        Logprobs::Completion(_) => {
            let tokens: Vec<String> = c.tokens[..n].iter().map(|&t| text(t)).collect();
            let mut offset = 0;
            let offsets: Vec<usize> = tokens
                .iter()
                .map(|t| {
                    let at = offset;
                    offset += t.len();
                    at
                })
                .collect();
            let top: Vec<Value> = (0..n)
                .map(|i| {
                    let alts = c
                        .top_log_probs
                        .get(i)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    Value::Object(alts.iter().map(|&(t, lp)| (text(t), json!(lp))).collect())
                })
                .collect();
            json!({
                "tokens": tokens,
                "token_logprobs": &c.log_probs[..n],
                "top_logprobs": top,
                "text_offset": offsets,
            })
        }
    }
}

/// The OpenAI reply for a finished job.
pub(super) fn completion_body(g: &Prepared, outputs: &[Choice], vocab: &Grammars) -> Value {
    let completion_tokens: usize = outputs.iter().map(|o| o.tokens.len()).sum();
    let choices: Vec<Value> = outputs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let lp = logprobs(g, c, vocab);
            if g.chat {
                json!({ "index": i, "message": { "role": "assistant", "content": c.text, "refusal": null }, "logprobs": lp, "finish_reason": finish_name(c.finish) })
            } else {
                json!({ "index": i, "text": c.text, "logprobs": lp, "finish_reason": finish_name(c.finish) })
            }
        })
        .collect();
    json!({
        "id": g.id,
        "object": if g.chat { "chat.completion" } else { "text_completion" },
        "created": now(),
        "model": g.model_name,
        "choices": choices,
        "usage": usage(g, completion_tokens),
    })
}

/// The job's outcome as (status, body).
pub(super) fn outcome(
    g: &Prepared,
    result: Result<Vec<Choice>, String>,
    vocab: &Grammars,
) -> (u16, Value) {
    match result {
        Ok(outputs) => (200, completion_body(g, &outputs, vocab)),
        Err(e) => (500, error_body(&e)),
    }
}

fn chunk(g: &Prepared, choices: Vec<Value>, usage: Option<Value>) -> String {
    let object = if g.chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let mut body = json!({ "id": g.id, "object": object, "created": now(), "model": g.model_name, "choices": choices });
    if g.include_usage {
        body["usage"] = usage.unwrap_or(Value::Null);
    }
    format!("data: {body}\n\n")
}

/// The first chunk of a streamed chat choice: its role (completions have none).
pub(super) fn sse_role(g: &Prepared, index: usize) -> Option<String> {
    g.chat.then(|| {
        chunk(
            g,
            vec![json!({ "index": index, "delta": { "role": "assistant", "content": "" }, "logprobs": null, "finish_reason": null })],
            None,
        )
    })
}

/// More text of choice `index`.
pub(super) fn sse_text(g: &Prepared, index: usize, text: &str) -> String {
    let choice = if g.chat {
        json!({ "index": index, "delta": { "content": text }, "logprobs": null, "finish_reason": null })
    } else {
        json!({ "index": index, "text": text, "logprobs": null, "finish_reason": null })
    };
    chunk(g, vec![choice], None)
}

/// The last chunk of choice `index`: its finish reason, and its log-probs when asked (all
/// of them here: the text chunks carry none).
pub(super) fn sse_finish(g: &Prepared, index: usize, c: &Choice, vocab: &Grammars) -> String {
    let lp = logprobs(g, c, vocab);
    let finish = finish_name(c.finish);
    let choice = if g.chat {
        json!({ "index": index, "delta": {}, "logprobs": lp, "finish_reason": finish })
    } else {
        json!({ "index": index, "text": "", "logprobs": lp, "finish_reason": finish })
    };
    chunk(g, vec![choice], None)
}

/// The usage chunk `stream_options.include_usage` asks for: no choices, the usage.
pub(super) fn sse_usage(g: &Prepared, choices: &[Choice]) -> Option<String> {
    g.include_usage.then(|| {
        let tokens = choices.iter().map(|c| c.tokens.len()).sum();
        chunk(g, Vec::new(), Some(usage(g, tokens)))
    })
}
