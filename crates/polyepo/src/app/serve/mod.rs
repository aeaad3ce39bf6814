//! An OpenAI-compatible HTTP server on the engine: `GET /v1/models`,
//! `POST /v1/chat/completions`, `POST /v1/completions`, with `"stream": true` as server-sent
//! events. One worker owns the model (`worker.rs`): requests that arrive together with the
//! same sampling settings form a batch, and running batches take turns token by token, so a
//! short request is not held behind a long one; a streaming client that leaves stops its
//! rows. It serves trained policies, and it is the real server the LM judge's tests talk to.

mod worker;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use worker::{Choice, Job, JobEvent};

use serde::Deserialize;
use serde_json::{Value, json};

use polyepo_engine::model::chat::{Message, chat_prompt};
use polyepo_engine::model::{Llama, TextTokenizer};
use polyepo_engine::sample::{FinishReason, SamplingParams};

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
    busy_rows: Arc<AtomicUsize>,
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
        let busy_rows = Arc::new(AtomicUsize::new(0));
        let busy = busy_rows.clone();
        let mut handles = vec![std::thread::spawn(move || {
            worker::run(model, tok, rx, worker_limits, busy)
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
            busy_rows,
        })
    }

    /// Rows the model is generating right now (0 when idle): requests whose clients left
    /// stop counting once the server notices.
    pub fn busy_rows(&self) -> usize {
        self.busy_rows.load(Ordering::Relaxed)
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

/// A validated generation request.
struct Prepared {
    prompt: Vec<u32>,
    n: usize,
    params: SamplingParams,
    chat: bool,
    model_name: String,
    stream: bool,
}

/// What a request asks for, once validated.
enum Route {
    /// A reply that needs no model.
    Reply(Value),
    /// A generation.
    Generate(Prepared),
}

fn handle(
    mut request: tiny_http::Request,
    jobs: &Sender<Job>,
    tokenizer: &TextTokenizer,
    name: &str,
    limits: &ServeLimits,
    context: usize,
) {
    match route(&mut request, tokenizer, name, limits, context) {
        Ok(Route::Reply(body)) => respond(request, 200, body),
        Ok(Route::Generate(g)) if g.stream => stream(request, jobs, g),
        Ok(Route::Generate(g)) => complete(request, jobs, g),
        Err(HttpError(status, message)) => respond(request, status, error_body(&message)),
    }
}

/// Reads and validates a request.
fn route(
    request: &mut tiny_http::Request,
    tokenizer: &TextTokenizer,
    name: &str,
    limits: &ServeLimits,
    context: usize,
) -> Result<Route, HttpError> {
    let method = request.method().as_str().to_owned();
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    match (method.as_str(), path.as_str()) {
        ("GET", "/v1/models") => Ok(Route::Reply(
            json!({ "object": "list", "data": [{ "id": name, "object": "model", "created": 0, "owned_by": "polyepo" }] }),
        )),
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
            Ok(Route::Generate(Prepared {
                prompt,
                n,
                params,
                chat,
                model_name: model_name.unwrap_or_else(|| name.to_owned()),
                stream: fields.stream.unwrap_or(false),
            }))
        }
        (_, "/v1/models" | "/v1/chat/completions" | "/v1/completions") => {
            Err(HttpError(405, format!("{method} is not allowed on {path}")))
        }
        _ => Err(HttpError(
            404,
            format!("no route {path}: use /v1/models, /v1/chat/completions or /v1/completions"),
        )),
    }
}

/// Hands `g` to the worker; the returned flag stops its rows when set.
fn submit(
    jobs: &Sender<Job>,
    g: &Prepared,
) -> Result<(Receiver<JobEvent>, Arc<AtomicBool>), HttpError> {
    let (events, rx) = channel();
    let cancelled = Arc::new(AtomicBool::new(false));
    jobs.send(Job {
        prompt: g.prompt.clone(),
        n: g.n,
        params: g.params.clone(),
        stream: g.stream,
        events,
        cancelled: cancelled.clone(),
    })
    .map_err(|_| HttpError(503, "the model worker stopped".into()))?;
    Ok((rx, cancelled))
}

/// The OpenAI reply for a finished job.
fn completion_body(g: &Prepared, outputs: Vec<Choice>) -> Value {
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
fn outcome(g: &Prepared, result: Result<Vec<Choice>, String>) -> (u16, Value) {
    match result {
        Ok(outputs) => (200, completion_body(g, outputs)),
        Err(e) => (400, error_body(&e)),
    }
}

/// A whole reply at once. A job that takes longer than one heartbeat switches to a chunked
/// 200 reply that sends a space (JSON allows leading whitespace) every heartbeat until the
/// body is ready: a failed write means the client left, and the job's rows stop. A job
/// failing after that point reports its error in the body.
fn complete(request: tiny_http::Request, jobs: &Sender<Job>, g: Prepared) {
    let (rx, cancelled) = match submit(jobs, &g) {
        Ok(x) => x,
        Err(HttpError(status, message)) => return respond(request, status, error_body(&message)),
    };
    let stopped = || (503, error_body("the model worker stopped"));
    let first = loop {
        match rx.recv_timeout(HEARTBEAT) {
            Ok(JobEvent::Done(result)) => break Some(outcome(&g, result)),
            Ok(JobEvent::Delta { .. }) => {}
            Err(RecvTimeoutError::Timeout) => break None,
            Err(RecvTimeoutError::Disconnected) => break Some(stopped()),
        }
    };
    if let Some((status, body)) = first {
        return respond(request, status, body);
    }
    let mut out = request.into_writer();
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut sent = out.write_all(head.as_bytes()).and_then(|_| out.flush());
    while sent.is_ok() {
        sent = match rx.recv_timeout(HEARTBEAT) {
            Ok(JobEvent::Done(result)) => {
                let (_, body) = outcome(&g, result);
                let _ =
                    send_chunk(&mut out, &body.to_string()).and_then(|_| send_chunk(&mut out, ""));
                return;
            }
            Ok(JobEvent::Delta { .. }) => Ok(()),
            Err(RecvTimeoutError::Timeout) => send_chunk(&mut out, " "),
            Err(RecvTimeoutError::Disconnected) => {
                let _ = send_chunk(&mut out, &stopped().1.to_string())
                    .and_then(|_| send_chunk(&mut out, ""));
                return;
            }
        };
    }
    cancelled.store(true, Ordering::Relaxed);
}

/// Writes `text` as one HTTP chunk and flushes it (the empty text ends the body and leaves
/// the connection open for the client's next request).
fn send_chunk(out: &mut Box<dyn Write + Send>, text: &str) -> std::io::Result<()> {
    write!(out, "{:x}\r\n{text}\r\n", text.len())?;
    out.flush()
}

/// How often a reply with nothing new writes something (a space, or an SSE comment line):
/// the write tells whether the client is still there.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// Server-sent events as OpenAI clients read them: one `data:` chunk per piece of text,
/// a last chunk per choice with its finish reason, then `data: [DONE]`. A failed write
/// means the client left: the job's rows stop.
fn stream(request: tiny_http::Request, jobs: &Sender<Job>, g: Prepared) {
    let (rx, cancelled) = match submit(jobs, &g) {
        Ok(x) => x,
        Err(HttpError(status, message)) => return respond(request, status, error_body(&message)),
    };
    let mut out = request.into_writer();
    let id = format!("polyepo-{}", now());
    let chunk = |index: usize, text: Option<&str>, finish: Option<&str>| {
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
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut sent = out.write_all(head.as_bytes()).and_then(|_| out.flush());
    while sent.is_ok() {
        sent = match rx.recv_timeout(HEARTBEAT) {
            Ok(JobEvent::Delta { index, text }) => {
                send_chunk(&mut out, &chunk(index, Some(&text), None))
            }
            Ok(JobEvent::Done(Ok(outputs))) => {
                let mut last = Ok(());
                for (index, (_, finish, _)) in outputs.iter().enumerate() {
                    let c = chunk(index, None, Some(finish_name(*finish)));
                    last = last.and_then(|_| send_chunk(&mut out, &c));
                }
                let _ = last
                    .and_then(|_| send_chunk(&mut out, "data: [DONE]\n\n"))
                    .and_then(|_| send_chunk(&mut out, ""));
                return;
            }
            Ok(JobEvent::Done(Err(e))) => {
                let _ = send_chunk(&mut out, &format!("data: {}\n\n", error_body(&e)))
                    .and_then(|_| send_chunk(&mut out, ""));
                return;
            }
            Err(RecvTimeoutError::Timeout) => send_chunk(&mut out, ": keep-alive\n\n"),
            Err(RecvTimeoutError::Disconnected) => return,
        };
    }
    cancelled.store(true, Ordering::Relaxed);
}
