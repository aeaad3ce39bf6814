//! `polyepo device-check`: the engine on `--device` against the CPU (logits, log-probs,
//! gradients of a training step, every trainable tensor's gradient, KV cache against full
//! recompute) on tiny random models. Run it first on a new GPU; `scripts/gpu-check.sh` does.

use anyhow::{Result, bail};
use clap::Args;
use polyepo::rl::config::DeviceSpec;
use polyepo_engine::parity::check_device;

/// Arguments of `polyepo device-check`.
#[derive(Debug, Args)]
pub struct DeviceCheckArgs {
    /// The device to check: `cuda`, `cuda:N` (a build with `--features cuda`), or `cpu`
    /// (the CPU against itself: the KV-cache and gradient checks still run).
    #[arg(long, default_value = "cuda", value_name = "cpu|cuda|cuda:N")]
    device: DeviceSpec,
}

/// Prints one line per check and fails if any is out of its tolerance.
pub fn run(args: &DeviceCheckArgs) -> Result<()> {
    let device = args.device.open().map_err(anyhow::Error::msg)?;
    let checks = check_device(&device)?;
    println!("device check on {} (f32, against the CPU):", args.device);
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &checks {
        let verdict = if c.passed() { "ok" } else { "FAIL" };
        println!(
            "  {:<width$}  {:>10.3e}  (≤ {:.0e})  {verdict}",
            c.name, c.difference, c.tolerance
        );
    }
    let failed = checks.iter().filter(|c| !c.passed()).count();
    if failed > 0 {
        bail!(
            "{failed} of {} checks failed on {}",
            checks.len(),
            args.device
        );
    }
    println!("all {} checks passed", checks.len());
    Ok(())
}
