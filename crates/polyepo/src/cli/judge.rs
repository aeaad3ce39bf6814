//! `polyepo judge`: label JSON Lines groups with an LM judge, to inspect it before training.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use polyepo::rl::judge::lm::{FailurePolicy, LmJudge, LmJudgeConfig};
use serde::Deserialize;
use setrl::Strategy;

/// Arguments of `polyepo judge`.
#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// JSON Lines: `{"prompt": "...", "responses": ["...", ...]}` per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1.
    #[arg(long)]
    pub endpoint: String,
    /// Model name to request.
    #[arg(long)]
    pub model: String,
    /// Judge prompt: math, code, generic, or a file with {problem}, {responses}, {n}, {degenerate}.
    #[arg(long, default_value = "generic")]
    pub prompt: String,
    /// Environment variable holding the API key.
    #[arg(long, default_value = "POLYEPO_JUDGE_API_KEY")]
    pub api_key_env: String,
    /// What a group the judge cannot label gets.
    #[arg(long, value_enum, default_value = "skip")]
    pub failure_policy: FailurePolicy,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub max_concurrency: usize,
    /// Seconds per request.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Retries after the first attempt.
    #[arg(long, default_value_t = 3)]
    pub retries: usize,
    /// First backoff in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub backoff: f64,
    /// JSON Lines cache file: re-running does not pay twice.
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    prompt: String,
    responses: Vec<String>,
}

/// Labels every group and prints one `{"clusters": [...], "status": ...}` line per group.
pub fn run(args: &JudgeArgs) -> Result<()> {
    let failure_policy = args.failure_policy;
    let cfg = LmJudgeConfig {
        endpoint: args.endpoint.clone(),
        model: args.model.clone(),
        api_key_env: args.api_key_env.clone(),
        prompt: args.prompt.clone(),
        max_concurrency: args.max_concurrency,
        timeout_s: args.timeout,
        retries: args.retries,
        backoff_s: args.backoff,
        failure_policy,
        cache: args.cache.clone(),
        ..LmJudgeConfig::default()
    };
    let judge = LmJudge::new(cfg)?;
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("cannot open {}", args.input.display()))?;
    let mut groups = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let g: Group = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}:{}: expected {{\"prompt\": \"...\", \"responses\": [\"...\"]}}",
                args.input.display(),
                i + 1
            )
        })?;
        if g.responses.is_empty() {
            bail!("{}:{}: `responses` is empty", args.input.display(), i + 1);
        }
        groups.push((g.prompt, g.responses));
    }
    let borrowed: Vec<(&str, &[String])> = groups
        .iter()
        .map(|(p, r)| (p.as_str(), r.as_slice()))
        .collect();
    let labelled = judge.label_groups(&borrowed);
    let mut out = std::io::stdout().lock();
    for outcome in labelled {
        let clusters: Option<Vec<Option<i64>>> = outcome.labels().map(|labels| {
            labels
                .iter()
                .map(|s| match s {
                    Strategy::Cluster(c) => Some(*c),
                    Strategy::Degenerate => None,
                })
                .collect()
        });
        let mut line =
            serde_json::json!({ "clusters": clusters, "outcome": outcome.kind().name() });
        if let Some(f) = outcome.failure() {
            line["reason"] = f.reason.to_string().into();
            line["detail"] = f.detail.clone().into();
        }
        writeln!(out, "{line}")?;
    }
    eprintln!("judge stats: {}", serde_json::to_string(&judge.stats())?);
    Ok(())
}
