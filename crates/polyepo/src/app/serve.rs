//! An OpenAI-compatible HTTP server on the engine: `GET /v1/models`,
//! `POST /v1/chat/completions`, `POST /v1/completions`. Concurrent requests are batched: one
//! worker owns the model and generates every waiting request with the same sampling
//! settings in one batch. It serves trained policies, and it is the real server the LM
//! judge's tests talk to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::io::Read;

use serde::Deserialize;
use serde_json::{Value, json};

use polyepo_engine::model::chat::{Message, chat_prompt};
use polyepo_engine::model::{Llama, TextTokenizer};
use polyepo_engine::sample::{FinishReason, SamplingParams, generate};

/// Limits that keep one request from taking the server down.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest `max_tokens`.
    pub max_new_tokens: usize,
    /// Largest `n`.
    pub max_n: usize,
    /// Most generations per batch.
    pub max_batch: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_new_tokens: 1024,
            max_n: 16,
            max_batch: 64,
        }
    }
}

/// A generation job: prompt tokens, settings, and where to send the answer.
struct Job {
    prompt: Vec<u32>,
    n: usize,
    params: SamplingParams,
    reply: Sender<Result<Vec<(String, FinishReason, usize)>, String>>,
}

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
}

/// An HTTP error reply.
struct HttpError(u16, String);

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

/// The worker: drains waiting jobs and runs those with equal settings as one batch.
fn worker(model: Llama, tokenizer: TextTokenizer, jobs: Receiver<Job>, limits: ServeLimits) {
    while let Ok(first) = jobs.recv() {
        let mut pending = vec![first];
        // Whatever arrived meanwhile joins this round.
        while let Ok(more) = jobs.recv_timeout(Duration::from_millis(2)) {
            pending.push(more);
            if pending.iter().map(|j| j.n).sum::<usize>() >= limits.max_batch {
                break;
            }
        }
        let mut groups: BTreeMap<String, Vec<Job>> = BTreeMap::new();
        for job in pending {
            let key = format!(
                "{:?}",
                SamplingParams {
                    seed: 0,
                    ..job.params.clone()
                }
            );
            groups.entry(key).or_default().push(job);
        }
        for (_, group) in groups {
            let rows: Vec<Vec<u32>> = group
                .iter()
                .flat_map(|j| std::iter::repeat_n(j.prompt.clone(), j.n))
                .collect();
            let params = SamplingParams {
                seed: group[0].params.seed,
                ..group[0].params.clone()
            };
            match generate(&model, &tokenizer, &rows, &params) {
                Ok(gens) => {
                    let mut it = gens.into_iter();
                    for job in group {
                        let mine: Vec<_> = it
                            .by_ref()
                            .take(job.n)
                            .map(|g| (g.text, g.finish, g.tokens.len()))
                            .collect();
                        let _ = job.reply.send(Ok(mine));
                    }
                }
                Err(e) => {
                    for job in group {
                        let _ = job.reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// A running server.
pub struct Server {
    http: Arc<tiny_http::Server>,
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts serving `model` as `name` on `addr` (e.g. `127.0.0.1:8000`; port 0 picks a
    /// free port) with `threads` HTTP threads.
    pub fn start(
        model: Llama,
        tokenizer: TextTokenizer,
        name: String,
        addr: &str,
        limits: ServeLimits,
        threads: usize,
    ) -> Result<Self, String> {
        let context = model.cfg.max_position_embeddings;
        let http = Arc::new(
            tiny_http::Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?,
        );
        let local = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("{addr} is not an IP address"))?;
        let (tx, rx) = channel::<Job>();
        let tok = tokenizer.clone();
        let worker_limits = limits.clone();
        let mut handles = vec![std::thread::spawn(move || {
            worker(model, tok, rx, worker_limits)
        })];
        for _ in 0..threads.max(1) {
            let http = http.clone();
            let tx = tx.clone();
            let tokenizer = tokenizer.clone();
            let name = name.clone();
            let limits = limits.clone();
            handles.push(std::thread::spawn(move || {
                while let Ok(request) = http.recv() {
                    handle(request, &tx, &tokenizer, &name, &limits, context);
                }
            }));
        }
        Ok(Self {
            http,
            addr: local,
            threads: handles,
        })
    }

    /// Stops accepting requests and waits for the HTTP threads.
    pub fn shutdown(self) {
        self.http.unblock();
        for _ in 1..self.threads.len() {
            self.http.unblock();
        }
        drop(self.threads);
    }

    /// Blocks until the process is killed.
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn respond(request: tiny_http::Request, status: u16, body: Value) {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .expect("static header is valid");
    let response = tiny_http::Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(header);
    let _ = request.respond(response);
}

fn error_body(message: &str) -> Value {
    json!({ "error": { "message": message, "type": "invalid_request_error" } })
}

fn handle(
    mut request: tiny_http::Request,
    jobs: &Sender<Job>,
    tokenizer: &TextTokenizer,
    name: &str,
    limits: &ServeLimits,
    context: usize,
) {
    let method = request.method().as_str().to_owned();
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    let result: Result<Value, HttpError> = (|| match (method.as_str(), path.as_str()) {
        ("GET", "/v1/models") => Ok(
            json!({ "object": "list", "data": [{ "id": name, "object": "model", "created": 0, "owned_by": "polyepo" }] }),
        ),
        ("POST", "/v1/chat/completions") | ("POST", "/v1/completions") => {
            if request.body_length().unwrap_or(0) > limits.max_body_bytes {
                return Err(HttpError(
                    413,
                    format!("request body over {} bytes", limits.max_body_bytes),
                ));
            }
            let mut body = Vec::new();
            let read = request
                .as_reader()
                .take(limits.max_body_bytes as u64 + 1)
                .read_to_end(&mut body);
            read.map_err(|e| HttpError(400, format!("cannot read the body: {e}")))?;
            if body.len() > limits.max_body_bytes {
                return Err(HttpError(
                    413,
                    format!("request body over {} bytes", limits.max_body_bytes),
                ));
            }
            let chat = path.ends_with("chat/completions");
            let (prompt_text, fields, model_name) = if chat {
                let req: ChatRequest = serde_json::from_slice(&body)
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
                let req: CompletionRequest = serde_json::from_slice(&body)
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
            let (reply_tx, reply_rx) = channel();
            jobs.send(Job {
                prompt,
                n,
                params,
                reply: reply_tx,
            })
            .map_err(|_| HttpError(503, "the model worker stopped".into()))?;
            let outputs = reply_rx
                .recv()
                .map_err(|_| HttpError(503, "the model worker stopped".into()))?
                .map_err(|e| HttpError(400, e))?;
            let completion_tokens: usize = outputs.iter().map(|o| o.2).sum();
            let choices: Vec<Value> = outputs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (text, finish, _))| {
                        if chat {
                            json!({ "index": i, "message": { "role": "assistant", "content": text }, "finish_reason": finish_name(finish) })
                        } else {
                            json!({ "index": i, "text": text, "finish_reason": finish_name(finish) })
                        }
                    })
                    .collect();
            Ok(json!({
                "id": format!("polyepo-{}", now()),
                "object": if chat { "chat.completion" } else { "text_completion" },
                "created": now(),
                "model": model_name.unwrap_or_else(|| name.to_owned()),
                "choices": choices,
                "usage": { "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens },
            }))
        }
        (_, "/v1/models" | "/v1/chat/completions" | "/v1/completions") => {
            Err(HttpError(405, format!("{method} is not allowed on {path}")))
        }
        _ => Err(HttpError(
            404,
            format!("no route {path}: use /v1/models, /v1/chat/completions or /v1/completions"),
        )),
    })();
    match result {
        Ok(body) => respond(request, 200, body),
        Err(HttpError(status, message)) => respond(request, status, error_body(&message)),
    }
}
