//! Reports: a run's training curves (`polyepo report RUN_DIR`) and test-time-scaling curves of
//! evaluations, as SVG + PNG charts and a Markdown page that shows them.

use std::path::{Path, PathBuf};

use crate::app::eval::EvalReport;
use crate::app::plot::{Chart, Series, save_chart};
use crate::rl::train::StepMetrics;

/// Moving average over a trailing window: training metrics are per-batch and noisy.
pub fn smooth(values: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    (0..values.len())
        .map(|i| {
            let from = i.saturating_sub(window.saturating_sub(1));
            let slice = &values[from..=i];
            (
                values[i].0,
                slice.iter().map(|p| p.1).sum::<f64>() / slice.len() as f64,
            )
        })
        .collect()
}

/// Window of the moving average in training charts.
pub const SMOOTHING: usize = 10;

/// A metric over steps, smoothed.
pub fn curve(metrics: &[StepMetrics], pick: impl Fn(&StepMetrics) -> f64) -> Vec<(f64, f64)> {
    let raw: Vec<(f64, f64)> = metrics.iter().map(|m| (m.step as f64, pick(m))).collect();
    smooth(&raw, SMOOTHING)
}

/// The pass@k curve of an evaluation.
pub fn pass_curve(report: &EvalReport) -> Vec<(f64, f64)> {
    report
        .pass_at_k
        .iter()
        .filter(|(k, _)| k.is_power_of_two())
        .map(|(&k, &p)| (k as f64, p))
        .collect()
}

/// Draws a run's training curves into `dir` and writes `dir/report.md`; returns the files.
pub fn training_report(
    name: &str,
    metrics: &[StepMetrics],
    dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let one = |label: &str, points: Vec<(f64, f64)>| Series::line(label, points);
    let charts = [
        (
            "reward",
            Chart {
                title: format!("{name}: reward ({SMOOTHING}-step average)"),
                x_label: "step".into(),
                y_label: "reward".into(),
                log2_x: false,
                series: vec![
                    one("mean reward", curve(metrics, |m| m.reward_mean)),
                    one("prompt success rate", curve(metrics, |m| m.success_rate)),
                ],
            },
        ),
        (
            "strategies",
            Chart {
                title: format!("{name}: distinct strategies per prompt ({SMOOTHING}-step average)"),
                x_label: "step".into(),
                y_label: "strategies per prompt".into(),
                log2_x: false,
                series: vec![
                    one("correct", curve(metrics, |m| m.clusters_correct)),
                    one("all", curve(metrics, |m| m.clusters_all)),
                    one("degenerate generations", curve(metrics, |m| m.degenerate)),
                ],
            },
        ),
        (
            "entropy",
            Chart {
                title: format!("{name}: policy entropy per token ({SMOOTHING}-step average)"),
                x_label: "step".into(),
                y_label: "nats".into(),
                log2_x: false,
                series: vec![one("entropy", curve(metrics, |m| m.update.entropy))],
            },
        ),
    ];
    let mut md = format!("# Training report: {name}\n\n");
    if let (Some(first), Some(last)) = (metrics.first(), metrics.last()) {
        md.push_str(&format!(
            "{} steps. Step {} → step {}: reward {:.3} → {:.3}, distinct correct strategies per prompt {:.2} → {:.2}.\n\n",
            metrics.len(),
            first.step,
            last.step,
            first.reward_mean,
            last.reward_mean,
            first.clusters_correct,
            last.clusters_correct
        ));
    }
    for (stem, chart) in charts {
        files.extend(save_chart(&dir.join(stem), &chart)?);
        md.push_str(&format!("![{stem}]({stem}.svg)\n\n"));
    }
    let path = dir.join("report.md");
    polyepo_engine::atomic::write_atomic(&path, md.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    files.push(path);
    Ok(files)
}
