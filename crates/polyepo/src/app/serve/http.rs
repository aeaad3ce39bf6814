//! The HTTP side on hyper: accepting connections (at most `max_connections` at once; more
//! get a 503), closing connections idle or slow beyond `idle_timeout`, reading bounded
//! bodies, and replying whole, with heartbeats, or as server-sent events. Every reply that
//! waits on the model writes at least every [`HEARTBEAT`], so a client that has gone is
//! noticed and its rows are stopped.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::timeout;

use polyepo_engine::model::TextTokenizer;

use super::ServeLimits;
use super::grammar::Grammars;
use super::protocol::{Endpoint, HttpError, Prepared, error_body, prepare};
use super::reply::{outcome, sse_finish, sse_role, sse_text, sse_usage};
use super::worker::{Job, JobEvent};

/// How often a reply with nothing new writes something (a space, or an SSE comment line):
/// the write tells whether the client is still there.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// What every connection's handler shares.
pub struct Shared {
    /// Where jobs go.
    pub jobs: std::sync::mpsc::Sender<Job>,
    /// Prompt encoding and chat templates.
    pub tokenizer: TextTokenizer,
    /// `response_format` grammars and the vocabulary's bytes (for log-probs).
    pub grammars: Grammars,
    /// Model name reported by /v1/models.
    pub name: String,
    /// Request limits.
    pub limits: ServeLimits,
    /// The model's context in tokens.
    pub context: usize,
}

type ReplyBody = BoxBody<Bytes, Infallible>;

/// A response body fed from a channel; dropping it (hyper does when the client has gone)
/// makes the feeder's sends fail.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Accepts connections until `stop` fires.
pub async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let permits = Arc::new(Semaphore::new(shared.limits.max_connections));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            connection(socket, shared).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tokio::spawn(refuse(socket));
                    }
                }
            }
        }
    }
}

/// Serves one connection; hyper closes it when the next request's head does not arrive
/// within the idle timeout (idle keep-alive and slow clients alike).
async fn connection(socket: TcpStream, shared: Arc<Shared>) {
    let idle = shared.limits.idle_timeout;
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(request, shared).await) }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .serve_connection(TokioIo::new(socket), service)
        .await;
}

/// Over the connection limit: one 503 and close.
async fn refuse(socket: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = HttpError::new(503, "too many connections; try again shortly")
        .body()
        .to_string();
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
        body.len()
    );
    let mut socket = socket;
    let _ = timeout(Duration::from_secs(1), socket.write_all(reply.as_bytes())).await;
}

/// A response with `status` and `content_type`.
fn reply(status: u16, content_type: &'static str, body: ReplyBody) -> Response<ReplyBody> {
    let mut reply = Response::new(body);
    *reply.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    reply
}

fn json_reply(status: u16, body: &Value) -> Response<ReplyBody> {
    reply(
        status,
        "application/json",
        Full::new(Bytes::from(body.to_string())).boxed(),
    )
}

async fn handle(request: Request<Incoming>, shared: Arc<Shared>) -> Response<ReplyBody> {
    match route(request, &shared).await {
        Ok(Route::Reply(body)) => json_reply(200, &body),
        Ok(Route::Generate(g)) => match submit(&shared, &g) {
            Ok((events, cancelled)) if g.stream => stream(*g, events, cancelled, shared),
            Ok((events, cancelled)) => complete(*g, events, cancelled, shared).await,
            Err(e) => json_reply(e.status, &e.body()),
        },
        Err(e) => json_reply(e.status, &e.body()),
    }
}

enum Route {
    Reply(Value),
    Generate(Box<Prepared>),
}

async fn route(request: Request<Incoming>, shared: &Shared) -> Result<Route, HttpError> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/v1/models") => Ok(Route::Reply(
            json!({ "object": "list", "data": [{ "id": shared.name, "object": "model", "created": 0, "owned_by": "polyepo" }] }),
        )),
        (&Method::POST, "/v1/chat/completions" | "/v1/completions") => {
            let limit = shared.limits.max_body_bytes;
            let too_big = || HttpError::new(413, format!("request body over {limit} bytes"));
            let body = Limited::new(request.into_body(), limit);
            // A body that trickles in is cut off like an idle connection.
            let body = timeout(shared.limits.idle_timeout, body.collect())
                .await
                .map_err(|_| HttpError::new(408, "the request body did not arrive in time"))?
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        too_big()
                    } else {
                        HttpError::new(400, format!("cannot read the body: {e}"))
                    }
                })?
                .to_bytes();
            let chat = path.ends_with("chat/completions");
            let endpoint = Endpoint {
                tokenizer: &shared.tokenizer,
                grammars: &shared.grammars,
                name: &shared.name,
                limits: &shared.limits,
                context: shared.context,
            };
            let g = prepare(chat, &body, &endpoint)?;
            Ok(Route::Generate(Box::new(g)))
        }
        (_, "/v1/models" | "/v1/chat/completions" | "/v1/completions") => Err(HttpError::new(
            405,
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(HttpError::new(
            404,
            format!("no route {path}: use /v1/models, /v1/chat/completions or /v1/completions"),
        )),
    }
}

/// Hands `g` to the worker; the returned flag stops its rows when set.
fn submit(
    shared: &Shared,
    g: &Prepared,
) -> Result<(mpsc::UnboundedReceiver<JobEvent>, Arc<AtomicBool>), HttpError> {
    let (events, rx) = mpsc::unbounded_channel();
    let cancelled = Arc::new(AtomicBool::new(false));
    shared
        .jobs
        .send(Job {
            prompts: g.prompts.clone(),
            n: g.n,
            constraints: g.grammar.as_ref().map(|m| {
                (0..g.rows())
                    .map(|_| shared.grammars.constraint(m))
                    .collect()
            }),
            params: g.params.clone(),
            stream: g.stream,
            events,
            cancelled: cancelled.clone(),
        })
        .map_err(|_| HttpError::new(503, "the model worker stopped"))?;
    Ok((rx, cancelled))
}

/// The next event, or `None` after a heartbeat's wait; the job's end when the worker has gone.
async fn next_event(events: &mut mpsc::UnboundedReceiver<JobEvent>) -> Option<JobEvent> {
    match timeout(HEARTBEAT, events.recv()).await {
        Ok(Some(event)) => Some(event),
        Ok(None) => Some(JobEvent::Done(Err("the model worker stopped".into()))),
        Err(_) => None,
    }
}

/// A body fed by `feed`, which stops the job when the client has gone (the body was
/// dropped) or stopped reading for an idle timeout.
fn fed_body<F>(
    status: u16,
    content_type: &'static str,
    cancelled: Arc<AtomicBool>,
    idle: Duration,
    feed: F,
) -> Response<ReplyBody>
where
    F: FnOnce(
        Sender,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ()>> + Send>>,
{
    let (tx, rx) = mpsc::channel(16);
    let sender = Sender { tx, idle };
    let job = feed(sender);
    tokio::spawn(async move {
        if job.await.is_err() {
            cancelled.store(true, Ordering::Relaxed);
        }
    });
    reply(status, content_type, ChannelBody(rx).boxed())
}

/// Sends pieces of a body; fails when the client is gone or not reading.
struct Sender {
    tx: mpsc::Sender<Bytes>,
    idle: Duration,
}

impl Sender {
    async fn send(&self, text: impl Into<Bytes>) -> Result<(), ()> {
        match timeout(self.idle, self.tx.send(text.into())).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
}

/// Sets the flag when dropped while armed: hyper drops a handler whose client has gone.
struct CancelOnDrop(Option<Arc<AtomicBool>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// A whole reply. A job that ends within one heartbeat gets a plain reply with its status;
/// a longer one gets a 200 whose body is spaces (JSON allows leading whitespace), one per
/// heartbeat, then the reply, so a client that left is noticed. An error after that point
/// comes in the body.
async fn complete(
    g: Prepared,
    mut events: mpsc::UnboundedReceiver<JobEvent>,
    cancelled: Arc<AtomicBool>,
    shared: Arc<Shared>,
) -> Response<ReplyBody> {
    let mut guard = CancelOnDrop(Some(cancelled.clone()));
    loop {
        match next_event(&mut events).await {
            Some(JobEvent::Done(result)) => {
                let (status, body) = outcome(&g, result, &shared.grammars);
                return json_reply(status, &body);
            }
            Some(JobEvent::Delta { .. }) => {}
            None => break,
        }
    }
    // From here the body's feeder watches the client.
    guard.0 = None;
    fed_body(
        200,
        "application/json",
        cancelled,
        shared.limits.idle_timeout,
        move |out| {
            Box::pin(async move {
                out.send(" ").await?;
                loop {
                    match next_event(&mut events).await {
                        Some(JobEvent::Done(result)) => {
                            let (_, body) = outcome(&g, result, &shared.grammars);
                            return out.send(body.to_string()).await;
                        }
                        Some(JobEvent::Delta { .. }) => {}
                        None => out.send(" ").await?,
                    }
                }
            })
        },
    )
}

/// Server-sent events as OpenAI clients read them: one `data:` chunk per piece of text, a
/// last chunk per choice with its finish reason, then `data: [DONE]`; a comment line per
/// heartbeat while nothing is new.
fn stream(
    g: Prepared,
    mut events: mpsc::UnboundedReceiver<JobEvent>,
    cancelled: Arc<AtomicBool>,
    shared: Arc<Shared>,
) -> Response<ReplyBody> {
    let idle = shared.limits.idle_timeout;
    fed_body(200, "text/event-stream", cancelled, idle, move |out| {
        Box::pin(async move {
            for index in 0..g.rows() {
                if let Some(first) = sse_role(&g, index) {
                    out.send(first).await?;
                }
            }
            let vocab = &shared.grammars;
            loop {
                match next_event(&mut events).await {
                    Some(JobEvent::Delta { index, text }) => {
                        out.send(sse_text(&g, index, &text)).await?
                    }
                    Some(JobEvent::Done(Ok(choices))) => {
                        for (index, c) in choices.iter().enumerate() {
                            out.send(sse_finish(&g, index, c, vocab)).await?;
                        }
                        if let Some(usage) = sse_usage(&g, &choices) {
                            out.send(usage).await?;
                        }
                        return out.send("data: [DONE]\n\n").await;
                    }
                    Some(JobEvent::Done(Err(e))) => {
                        return out.send(format!("data: {}\n\n", error_body(&e))).await;
                    }
                    None => out.send(": keep-alive\n\n").await?,
                }
            }
        })
    })
}
