//! `polyepo report RUN_DIR`: a run's training curves as SVG/PNG and a Markdown page.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use polyepo::app::report::training_report;
use polyepo::rl::train::run_dir::read_metrics;

/// Arguments of `polyepo report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run directory.
    pub run_dir: PathBuf,
}

/// Draws the curves into the run directory.
pub fn run(args: &ReportArgs) -> Result<()> {
    let metrics = read_metrics(&args.run_dir)?;
    let name = args
        .run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files = training_report(&name, &metrics, &args.run_dir).map_err(anyhow::Error::msg)?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}
