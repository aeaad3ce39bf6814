//! An OpenAI-compatible HTTP server on the engine: `GET /v1/models`,
//! `POST /v1/chat/completions`, `POST /v1/completions`, with `"stream": true` as server-sent
//! events. One worker thread owns the model (`worker.rs`): requests that arrive together
//! with the same sampling settings form a batch, and running batches take turns token by
//! token, so a short request is not held behind a long one. The HTTP side (`http.rs`, hyper
//! on tokio) bounds connections, closes idle and slow ones, and stops the rows of a client
//! that left. It serves trained policies, and it is the real server the LM judge's tests
//! talk to.

mod grammar;
mod http;
mod protocol;
mod reply;
mod worker;

pub use protocol::{DEFAULT_MAX_TOKENS, MAX_TOP_LOGPROBS};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use polyepo_engine::model::{Llama, TextTokenizer};

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
    /// Most connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// A connection whose next request head (or a request body) does not arrive within
    /// this time is closed: idle keep-alive connections and slow clients alike. Also how
    /// long a reply waits on a client that stopped reading.
    pub idle_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_new_tokens: 1024,
            max_n: 16,
            max_batch: 64,
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// A running server.
pub struct Server {
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: Option<std::thread::JoinHandle<()>>,
    busy_rows: Arc<AtomicUsize>,
}

impl Server {
    /// Starts serving `model` as `name` on `addr` (e.g. `127.0.0.1:8000`; port 0 picks a
    /// free port) with `threads` threads for HTTP.
    pub fn start(
        model: Llama,
        tokenizer: TextTokenizer,
        name: String,
        addr: &str,
        limits: ServeLimits,
        threads: usize,
    ) -> Result<Self, String> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
        let (jobs, rx) = std::sync::mpsc::channel();
        let busy_rows = Arc::new(AtomicUsize::new(0));
        let grammars = grammar::Grammars::new(&tokenizer)
            .map_err(|e| format!("cannot set up constrained decoding: {e}"))?;
        let shared = Arc::new(http::Shared {
            jobs,
            grammars,
            tokenizer: tokenizer.clone(),
            name,
            limits: limits.clone(),
            context: model.cfg.max_position_embeddings,
        });
        let busy = busy_rows.clone();
        // The worker ends when the last job sender (inside `shared`) is dropped.
        // On a rayon thread, as the CLI's commands run (main.rs).
        std::thread::spawn(move || {
            rayon::scope(|_| worker::run(model, tokenizer, rx, limits, busy))
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let http = std::thread::spawn(move || {
            runtime.block_on(http::serve(listener, shared, stopped));
        });
        Ok(Self {
            addr: local,
            stop: Some(stop),
            http: Some(http),
            busy_rows,
        })
    }

    /// Rows the model is generating right now (0 when idle): requests whose clients left
    /// stop counting once the server notices.
    pub fn busy_rows(&self) -> usize {
        self.busy_rows.load(Ordering::Relaxed)
    }

    /// Stops accepting connections.
    pub fn shutdown(mut self) {
        self.stop_accepting();
    }

    fn stop_accepting(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Blocks until the process is killed.
    pub fn wait(mut self) {
        if let Some(http) = self.http.take() {
            let _ = http.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}
