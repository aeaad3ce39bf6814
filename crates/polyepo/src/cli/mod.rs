//! The `polyepo` command line: one module per subcommand.

pub mod advantages;
pub mod bench;
pub mod compare;
pub mod device;
pub mod device_check;
pub mod eval;
pub mod experiment;
pub mod judge;
pub mod logprobs;
pub mod report;
pub mod sample;
pub mod serve;
pub mod train;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag that Ctrl-C (or SIGTERM) sets, so a long job finishes its step, saves and stops;
/// a second Ctrl-C exits at once. `message` tells the user what happens next.
pub fn stop_on_ctrl_c(message: &'static str) -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C: the user really wants out.
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C or SIGTERM: {message}");
    })?;
    Ok(stop)
}
