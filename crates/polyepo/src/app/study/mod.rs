//! Studies: several training recipes ("arms") × seeds from the same starting policy,
//! evaluated on held-out prompts, reported with bootstrap intervals and paired tests.
//! `polyepo experiment FILE` runs one from a checked-in plan; `polyepo compare` builds a
//! plan from its flags.

pub mod archive;
pub mod plan;
pub mod report;
pub mod run;
pub mod stats;
pub mod summary;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use plan::{Arm, EvalPlan, EvalSplit, Seeds, StudyPlan};
pub use run::{StudyEvent, StudyRuns};
pub use summary::StudySummary;

use crate::rl::train::TrainResult;

/// Runs `plan` (runs under `runs_root`) and writes its report into `out`. Returns `None`
/// when stopped before the end (re-running resumes).
pub fn run_and_report(
    plan: &StudyPlan,
    runs_root: &Path,
    out: &Path,
    stop: Arc<AtomicBool>,
    on_event: &mut dyn FnMut(StudyEvent<'_>),
) -> TrainResult<Option<(StudySummary, Vec<PathBuf>)>> {
    // Plans built in code (not loaded from a file) get the same checks.
    plan.check(&format!("study `{}`", plan.name))?;
    let Some(runs) = run::run_study(
        plan,
        runs_root,
        &archive::Archive::in_report(out),
        stop,
        on_event,
    )?
    else {
        return Ok(None);
    };
    let summary = summary::summarize(
        &runs,
        &plan.eval.ks,
        &plan.reference_row(),
        plan.eval.resamples,
    );
    let files = report::write_report(plan, &runs, &summary, out)?;
    Ok(Some((summary, files)))
}
