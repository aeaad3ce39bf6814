//! `polyepo advantages [FILE]`: marginal set advantages for JSON Lines groups.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use polyepo::rl::advantage_request::{RequestOptions, parse_request};

/// Longest input line (one group); far above any real group.
const MAX_LINE_BYTES: u64 = 64 << 20;

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
    let mut reader = reader;
    let mut buf = Vec::new();
    for number in 1.. {
        let bad = |reason: String| BadInput {
            source_name: source_name.clone(),
            line: number,
            reason,
        };
        buf.clear();
        // Bounded: a line without an end (e.g. /dev/zero) cannot take all memory.
        let read = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("{source_name}:{number}: cannot read"))?;
        if read == 0 {
            break;
        }
        if buf.len() as u64 > MAX_LINE_BYTES && !buf.ends_with(b"\n") {
            return Err(bad(format!(
                "longer than {} MiB: one group per line",
                MAX_LINE_BYTES >> 20
            ))
            .into());
        }
        let line = std::str::from_utf8(&buf).map_err(|e| bad(format!("not UTF-8 text ({e})")))?;
        if line.trim().is_empty() {
            continue;
        }
        let request = parse_request(line).map_err(|e| bad(e.to_string()))?;
        let reply = request.compute(options).map_err(|e| bad(e.to_string()))?;
        serde_json::to_writer(&mut out, &reply)?;
        // Flushed per line so a consumer sees every answer before a later line fails.
        writeln!(out)?;
        out.flush()?;
    }
    Ok(())
}
