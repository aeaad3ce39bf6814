//! Writes a study's report: `README.md` (tables with intervals, the charts), `summary.json`
//! and the charts (SVG + PNG), each file written atomically.

use std::path::{Path, PathBuf};

use super::plan::StudyPlan;
use super::run::{RowRuns, StudyRuns};
use super::stats::{Interval, Paired, over_seeds};
use super::summary::{LAST_STEPS, StudySummary};
use crate::app::plot::{Chart, Series, save_chart};
use crate::app::report::curve;
use crate::rl::train::{StepMetrics, TrainError, TrainResult};
use polyepo_engine::atomic::write_atomic;

fn show(i: &Interval) -> String {
    i.show(3)
}

fn show_paired(p: &Paired) -> String {
    format!("{:+.3} [{:+.3}, {:+.3}]", p.diff.mean, p.diff.lo, p.diff.hi)
}

fn write(path: &Path, bytes: &[u8]) -> TrainResult<()> {
    write_atomic(path, bytes).map_err(|e| TrainError::io(path, e))
}

/// Per-step mean over seeds of a smoothed training metric, with a bootstrap band over seeds.
fn training_series(
    row: &RowRuns,
    color: usize,
    pick: fn(&StepMetrics) -> f64,
    resamples: usize,
) -> Series {
    let curves: Vec<Vec<(f64, f64)>> = row.runs.iter().map(|r| curve(&r.metrics, pick)).collect();
    let len = curves.iter().map(Vec::len).min().unwrap_or(0);
    let mut points = Vec::with_capacity(len);
    let mut band = Vec::with_capacity(len);
    for i in 0..len {
        let values: Vec<f64> = curves.iter().map(|c| c[i].1).collect();
        let x = curves[0][i].0;
        let interval = over_seeds(&values, resamples, i as u64);
        points.push((x, interval.mean));
        band.push((x, interval.lo, interval.hi));
    }
    Series {
        name: row.name.clone(),
        points,
        band,
        color: Some(color),
    }
}

/// Writes the report of `runs` into `out`; returns the files written.
pub fn write_report(
    plan: &StudyPlan,
    runs: &StudyRuns,
    summary: &StudySummary,
    out: &Path,
) -> TrainResult<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let mut files = Vec::new();
    let chart_err = |e: String| TrainError::file(out, e);
    let m = summary.samples;
    let seeds = plan
        .seeds
        .0
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut md = format!("# Study `{}`\n\n", plan.name);
    if !plan.question.is_empty() {
        md.push_str(&format!("{}\n\n", plan.question.trim()));
    }
    if !plan.command.is_empty() {
        md.push_str(&format!(
            "Reproduce: `{}` (resumable: finished runs and evaluations are kept).\n\n",
            plan.command
        ));
    }
    md.push_str(&format!(
        "Setup: {} seeds ({seeds}), {} training steps per run, every run of seed s starts from the same base policy (the `base` row). Held-out evaluation: {} prompts × M = {m} samples, temperature {}. Config: {}{}.\n\n",
        plan.seeds.0.len(),
        runs.steps,
        summary.prompts,
        runs.temperatures[0],
        plan.config
            .as_ref()
            .map_or("built-in default".to_owned(), |p| format!("`{}`", p.display())),
        if plan.set.is_empty() {
            String::new()
        } else {
            format!(" with `{}`", plan.set.join("`, `"))
        }
    ));
    md.push_str(
        "| row | overrides |\n|---|---|\n| base | the starting policy, not trained further |\n",
    );
    for arm in &plan.arms {
        md.push_str(&format!(
            "| {} | {} |\n",
            arm.name,
            if arm.set.is_empty() {
                "(none)".into()
            } else {
                format!("`{}`", arm.set.join("`, `"))
            }
        ));
    }
    md.push_str(
        "\nEvery figure is the estimate on all seeds and prompts with a 95% bootstrap interval in brackets (seeds and held-out prompts resampled, crossed). Rewards are 0 or 1, so mean reward equals pass@1.\n\n",
    );

    // Held-out table.
    md.push_str("## Held-out pass@k and correct strategies\n\n| row |");
    for k in &summary.ks {
        md.push_str(&format!(" pass@{k} |"));
    }
    md.push_str(" correct strategies / prompt | correct strategies / solved prompt |\n|---|");
    md.push_str(&"---|".repeat(summary.ks.len() + 2));
    md.push('\n');
    for row in &summary.rows {
        let h = &row.held_out[0];
        md.push_str(&format!("| {} |", row.name));
        for k in &summary.ks {
            let cell = h.at(*k).map_or("—".into(), |i| show(&i));
            md.push_str(&format!(" {cell} |"));
        }
        md.push_str(&format!(
            " {} | {} |\n",
            show(&h.correct_strategies),
            show(&h.strategies_per_solved)
        ));
    }

    // Paired tests.
    if let Some(first) = summary.paired.first() {
        md.push_str(&format!(
            "\n## Paired differences with `{}`\n\nRow minus `{}` on the same seeds and prompts (bootstrap interval), the seeds on which the row is ahead on pass@{m}, and the two-sided p-value of an exact sign-flip test on the per-seed differences of pass@{m} (with S seeds the smallest possible p is 2/2^S).\n\n| row | Δ pass@1 | Δ pass@{m} | Δ correct strategies / prompt | Δ pass@{m}, prompts needing an unseen step | ahead on pass@{m} | p (pass@1) | p (pass@{m}) |\n|---|---|---|---|---|---|---|---|\n",
            first.reference, first.reference
        ));
        for p in &summary.paired {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {}/{} | {:.3} | {:.3} |\n",
                p.name,
                show_paired(&p.pass_at_1),
                show_paired(&p.pass_at_max),
                show_paired(&p.correct_strategies),
                p.unseen_pass_at_max
                    .as_ref()
                    .map_or("—".into(), show_paired),
                p.pass_at_max.wins,
                p.pass_at_max.seeds,
                p.pass_at_1.p,
                p.pass_at_max.p
            ));
        }
    }

    // Discovery split.
    if let Some(d) = summary.rows.iter().find_map(|r| r.discovery.as_ref()) {
        md.push_str(&format!(
            "\n## Discovery split\n\nOf the {} held-out prompts, {} can only be solved with a step never allowed in training (\"needs unseen\") and {} can be solved with steps seen in training (\"seen-solvable\"). The last two columns count correct answers that use an unseen step.\n\n| row | needs unseen: pass@1 | needs unseen: pass@{m} | seen-solvable: pass@1 | seen-solvable: pass@{m} | correct answers with an unseen step / prompt | share of correct answers with an unseen step |\n|---|---|---|---|---|---|---|\n",
            d.unseen_prompts + d.seen_prompts,
            d.unseen_prompts,
            d.seen_prompts
        ));
        for row in &summary.rows {
            if let Some(d) = &row.discovery {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    row.name,
                    show(&d.unseen.0),
                    show(&d.unseen.1),
                    show(&d.seen.0),
                    show(&d.seen.1),
                    show(&d.unseen_correct_per_prompt),
                    show(&d.unseen_share_of_correct)
                ));
            }
        }
    }

    // Further held-out splits.
    for split in &summary.splits {
        md.push_str(&format!(
            "\n## Held-out split `{}`\n\nThe same final policies on {} other held-out prompts (`{}`), at the main temperature.\n\n| row |",
            split.name,
            split.prompts,
            split.set.join("`, `")
        ));
        for k in &summary.ks {
            md.push_str(&format!(" pass@{k} |"));
        }
        md.push_str(" correct strategies / prompt | needs unseen: pass@{m} |\n|---|");
        md.push_str(&"---|".repeat(summary.ks.len() + 2));
        md.push('\n');
        for (name, h, d) in &split.rows {
            md.push_str(&format!("| {name} |"));
            for k in &summary.ks {
                let cell = h.at(*k).map_or("—".into(), |i| show(&i));
                md.push_str(&format!(" {cell} |"));
            }
            md.push_str(&format!(
                " {} | {} |\n",
                show(&h.correct_strategies),
                d.as_ref().map_or("—".into(), |d| show(&d.unseen.1))
            ));
        }
        if let Some(first) = split.paired.first() {
            md.push_str(&format!(
                "\nRow minus `{}` on this split (bootstrap interval; p: exact sign-flip test over seeds).\n\n| row | Δ pass@1 | Δ pass@{m} | Δ correct strategies / prompt | ahead on pass@{m} | p (pass@1) | p (pass@{m}) |\n|---|---|---|---|---|---|---|\n",
                first.reference
            ));
            for p in &split.paired {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {}/{} | {:.3} | {:.3} |\n",
                    p.name,
                    show_paired(&p.pass_at_1),
                    show_paired(&p.pass_at_max),
                    show_paired(&p.correct_strategies),
                    p.pass_at_max.wins,
                    p.pass_at_max.seeds,
                    p.pass_at_1.p,
                    p.pass_at_max.p
                ));
            }
        }
    }

    // Training.
    md.push_str(&format!(
        "\n## Training (mean of the last {LAST_STEPS} steps; interval over seeds)\n\n| row | reward | correct strategies / prompt | token entropy | incorrect samples with a positive advantage | mean advantage of correct samples |\n|---|---|---|---|---|---|\n"
    ));
    for row in &summary.rows {
        if let Some(t) = &row.training {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                row.name,
                show(&t.reward),
                show(&t.correct_strategies),
                show(&t.entropy),
                show(&t.positive_incorrect),
                show(&t.correct_advantage)
            ));
        }
    }

    // Temperature sweep.
    if runs.temperatures.len() > 1 {
        md.push_str(&format!(
            "\n## Temperature sweep\n\n| row | temperature | pass@1 | pass@{m} |\n|---|---|---|---|\n"
        ));
        for row in &summary.rows {
            for h in &row.held_out {
                let first = h.at(1).map(|i| show(&i)).unwrap_or_default();
                let last = h.at(m).map(|i| show(&i)).unwrap_or_default();
                md.push_str(&format!(
                    "| {} | {} | {first} | {last} |\n",
                    row.name, h.temperature
                ));
            }
        }
    }

    // Branching.
    md.push_str(
        "\n## Where samples branch\n\nMean length of the common prefix of two samples of a prompt (characters), and the empirical entropy (nats) of the character at each position over a prompt's M samples (end of text counts as a character).\n\n| row | common prefix | entropy at 0 | at 1 | at 2 | at 3 | at 4 |\n|---|---|---|---|---|---|---|\n",
    );
    for row in &summary.rows {
        let e = |t: usize| {
            row.branching
                .entropy
                .get(t)
                .map_or("—".into(), |v| format!("{v:.3}"))
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            row.name,
            show(&row.branching.position),
            e(0),
            e(1),
            e(2),
            e(3),
            e(4)
        ));
    }

    // Charts.
    let mut charts: Vec<(&str, Chart)> = Vec::new();
    let resamples = plan.eval.resamples.min(500);
    let pass_series: Vec<Series> = summary
        .rows
        .iter()
        .enumerate()
        .map(|(color, row)| Series {
            name: row.name.clone(),
            color: Some(color),
            points: row.held_out[0]
                .pass_at
                .iter()
                .map(|(k, i)| (*k as f64, i.mean))
                .collect(),
            band: row.held_out[0]
                .pass_at
                .iter()
                .map(|(k, i)| (*k as f64, i.lo, i.hi))
                .collect(),
        })
        .collect();
    charts.push((
        "pass_at_k",
        Chart {
            title: format!(
                "Held-out pass@k ({} seeds, 95% intervals)",
                plan.seeds.0.len()
            ),
            x_label: "k (samples)".into(),
            y_label: "pass@k".into(),
            log2_x: true,
            series: pass_series,
        },
    ));
    // (row index = colour, row) of the trained rows.
    let trained: Vec<(usize, &RowRuns)> = runs
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_base)
        .collect();
    for (stem, title, pick) in [
        (
            "training_reward",
            "Training reward",
            (|m: &StepMetrics| m.reward_mean) as fn(&StepMetrics) -> f64,
        ),
        (
            "training_correct_strategies",
            "Distinct correct strategies per prompt, training",
            |m: &StepMetrics| m.clusters_correct,
        ),
        (
            "training_entropy",
            "Token entropy, training",
            |m: &StepMetrics| m.update.entropy,
        ),
    ] {
        charts.push((
            stem,
            Chart {
                title: format!("{title} (10-step average, 95% band over seeds)"),
                x_label: "step".into(),
                y_label: String::new(),
                log2_x: false,
                series: trained
                    .iter()
                    .map(|&(color, r)| training_series(r, color, pick, resamples))
                    .collect(),
            },
        ));
    }
    if summary.rows.iter().any(|r| r.along.len() > 2) {
        for (stem, label, pick) in [
            ("along_pass_at_1", "pass@1".to_owned(), 0usize),
            ("along_pass_at_max", format!("pass@{m}"), 1),
        ] {
            charts.push((
                stem,
                Chart {
                    title: format!("Held-out {label} along training (95% intervals)"),
                    x_label: "step".into(),
                    y_label: label.clone(),
                    log2_x: false,
                    series: summary
                        .rows
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| !r.along.is_empty())
                        .map(|(color, r)| {
                            let pick_i = |a: &(u64, Interval, Interval)| {
                                if pick == 0 { a.1 } else { a.2 }
                            };
                            Series {
                                name: r.name.clone(),
                                color: Some(color),
                                points: r
                                    .along
                                    .iter()
                                    .map(|a| (a.0 as f64, pick_i(a).mean))
                                    .collect(),
                                band: r
                                    .along
                                    .iter()
                                    .map(|a| (a.0 as f64, pick_i(a).lo, pick_i(a).hi))
                                    .collect(),
                            }
                        })
                        .collect(),
                },
            ));
        }
    }
    if runs.temperatures.len() > 1 {
        charts.push((
            "temperature_tradeoff",
            Chart {
                title: format!("pass@1 vs pass@{m} over sampling temperatures"),
                x_label: "pass@1".into(),
                y_label: format!("pass@{m}"),
                log2_x: false,
                series: summary
                    .rows
                    .iter()
                    .map(|r| {
                        let mut points: Vec<(f64, f64)> = r
                            .held_out
                            .iter()
                            .filter_map(|h| Some((h.at(1)?.mean, h.at(m)?.mean)))
                            .collect();
                        points.sort_by(|a, b| a.0.total_cmp(&b.0));
                        Series::line(r.name.clone(), points)
                    })
                    .collect(),
            },
        ));
    }
    charts.push((
        "position_entropy",
        Chart {
            title: "Per-position entropy of held-out samples".into(),
            x_label: "position (characters)".into(),
            y_label: "entropy (nats)".into(),
            log2_x: false,
            series: summary
                .rows
                .iter()
                .map(|r| {
                    Series::line(
                        r.name.clone(),
                        r.branching
                            .entropy
                            .iter()
                            .enumerate()
                            .map(|(t, e)| (t as f64, *e))
                            .collect(),
                    )
                })
                .collect(),
        },
    ));
    md.push_str("\n## Charts\n\n");
    for (stem, chart) in &charts {
        files.extend(save_chart(&out.join(stem), chart).map_err(chart_err)?);
        md.push_str(&format!("![{stem}]({stem}.svg)\n\n"));
    }
    let readme = out.join("README.md");
    write(&readme, md.as_bytes())?;
    files.push(readme);
    let json_path = out.join("summary.json");
    let json = serde_json::to_vec_pretty(summary).map_err(|e| TrainError::file(&json_path, e))?;
    write(&json_path, &json)?;
    files.push(json_path);
    Ok(files)
}
