//! `polyepo advantages [FILE]`: marginal set advantages for JSON Lines groups.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use polyepo::rl::advantage_request::{RequestOptions, parse_request};

/// Arguments of `polyepo advantages`.
#[derive(Debug, Args)]
pub struct AdvantagesArgs {
    /// JSON Lines input, one group per line; standard input when absent or `-`.
    pub file: Option<PathBuf>,
    /// Treat this cluster id as degenerate (the paper's judge uses 100).
    #[arg(long)]
    pub degenerate_id: Option<i64>,
    /// Refuse the `enumerate` estimator beyond this many sets per group.
    #[arg(long, default_value_t = setrl::DEFAULT_MAX_SETS)]
    pub max_sets: u64,
}

/// A malformed input line: reported with exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {reason}")]
pub struct BadInput {
    source_name: String,
    line: usize,
    reason: String,
}

/// Reads groups, writes one reply per group in order; stops at the first bad line.
pub fn run(args: &AdvantagesArgs) -> Result<()> {
    let (reader, source_name): (Box<dyn BufRead>, String) = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            (Box::new(BufReader::new(file)), path.display().to_string())
        }
        _ => (Box::new(std::io::stdin().lock()), "<stdin>".to_owned()),
    };
    let options = RequestOptions {
        degenerate_id: args.degenerate_id,
        max_sets: args.max_sets,
    };
    let mut out = std::io::stdout().lock();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("{source_name}:{number}: cannot read"))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| BadInput {
            source_name: source_name.clone(),
            line: number,
            reason,
        };
        let request = parse_request(&line).map_err(|e| bad(e.to_string()))?;
        let reply = request.compute(options).map_err(|e| bad(e.to_string()))?;
        serde_json::to_writer(&mut out, &reply)?;
        // Flushed per line so a consumer sees every answer before a later line fails.
        writeln!(out)?;
        out.flush()?;
    }
    Ok(())
}
