//! `polyepo serve`: an OpenAI-compatible server for a model or a trained run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use polyepo::app::serve::{ServeLimits, Server};
use polyepo::rl::train::run_dir::RunDir;
use polyepo_engine::model::load_model;

use super::device::DeviceArgs;

/// Arguments of `polyepo serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model: an HF directory, a .gguf file, or a run directory (its `final/`).
    #[arg(long)]
    pub model: PathBuf,
    /// Address to bind; loopback by default (use 0.0.0.0 to expose it deliberately).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Model name reported by /v1/models (default: the file or directory name).
    #[arg(long)]
    pub name: Option<String>,
    /// Threads for HTTP (the model has its own; requests waiting together are batched).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Most connections open at once; more are answered 503 and closed.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// Seconds a connection may stay idle (or take to send a request) before it is closed.
    #[arg(long, default_value_t = 30.0)]
    pub idle_timeout: f64,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens_limit: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Loads the model and serves until killed.
pub fn run(args: &ServeArgs) -> Result<()> {
    let path = match RunDir::detect(&args.model) {
        Some(run) => run.finished_model()?,
        None => args.model.clone(),
    };
    let loaded = load_model(&path, args.device.dtype(), &args.device.device()?)
        .with_context(|| format!("loading {}", path.display()))?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "polyepo".into())
    });
    if !(args.idle_timeout > 0.0 && args.idle_timeout.is_finite()) {
        anyhow::bail!(
            "--idle-timeout {}: use a number of seconds > 0",
            args.idle_timeout
        );
    }
    if args.max_connections == 0 {
        anyhow::bail!("--max-connections 0: allow at least 1 connection");
    }
    let limits = ServeLimits {
        max_new_tokens: args.max_tokens_limit,
        max_connections: args.max_connections,
        idle_timeout: std::time::Duration::from_secs_f64(args.idle_timeout),
        ..ServeLimits::default()
    };
    let server = Server::start(
        loaded.model,
        loaded.tokenizer,
        name.clone(),
        &format!("{}:{}", args.host, args.port),
        limits,
        args.threads,
    )
    .map_err(anyhow::Error::msg)?;
    // The address line is what scripts wait for (the port may have been chosen by the OS).
    println!("serving {name} on http://{}/v1", server.addr);
    server.wait();
    Ok(())
}
