//! Writes a study's report: `README.md` (tables with intervals, the charts), `summary.json`
//! and the charts (SVG + PNG), each file written atomically.

use std::path::{Path, PathBuf};

use super::plan::StudyPlan;
use super::run::{RowRuns, StudyRuns};
use super::stats::{Interval, Paired, over_seeds};
use super::summary::{AlongPoint, HeldOut, LAST_STEPS, PairedRow, StudySummary};
use crate::app::plot::{Chart, Cross, Series, save_chart};
use crate::app::report::curve;
use crate::rl::train::{StepMetrics, TrainError, TrainResult};
use polyepo_engine::atomic::write_atomic;

fn show(i: &Interval) -> String {
    i.show(3)
}

/// An interval of small figures (gradient norms, KL), in scientific notation.
fn show_small(i: &Interval) -> String {
    format!("{:.2e} [{:.2e}, {:.2e}]", i.mean, i.lo, i.hi)
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
        crosses: Vec::new(),
    }
}

/// A Markdown table, built row by row.
struct Table {
    text: String,
}

impl Table {
    /// A table with these column headers.
    fn new<S: AsRef<str>>(header: impl IntoIterator<Item = S>) -> Self {
        let mut table = Self {
            text: String::new(),
        };
        let columns = table.row(header);
        table.text.push('|');
        table.text.push_str(&"---|".repeat(columns));
        table.text.push('\n');
        table
    }

    /// Appends a row; returns its number of cells.
    fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) -> usize {
        let mut count = 0;
        self.text.push('|');
        for cell in cells {
            self.text.push(' ');
            self.text.push_str(cell.as_ref());
            self.text.push_str(" |");
            count += 1;
        }
        self.text.push('\n');
        count
    }

    /// The table's Markdown.
    fn render(self) -> String {
        self.text
    }
}

/// `pass@k` for every k of the study, then `rest`: a header.
fn pass_header(ks: &[usize], rest: &[&str]) -> Vec<String> {
    std::iter::once("row".to_owned())
        .chain(ks.iter().map(|k| format!("pass@{k}")))
        .chain(rest.iter().map(|r| (*r).to_owned()))
        .collect()
}

/// The cells of `h`'s pass@k for every k of the study (`—` where k exceeds M).
fn pass_cells(ks: &[usize], h: &super::summary::HeldOut) -> Vec<String> {
    ks.iter()
        .map(|k| h.at(*k).map_or("—".into(), |i| show(&i)))
        .collect()
}

/// Writes the report of `runs` into `out`; returns the files written.
pub fn write_report(
    plan: &StudyPlan,
    runs: &StudyRuns,
    summary: &StudySummary,
    out: &Path,
) -> TrainResult<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let mut md = [
        setup(plan, runs, summary),
        held_out(summary),
        paired(summary),
        discovery(summary),
        splits(summary),
        training(summary),
        discovered(summary),
        temperature_sweep(runs, summary),
        branching(summary),
    ]
    .concat();
    let mut files = Vec::new();
    md.push_str("\n## Charts\n\n");
    for (stem, chart) in &charts(plan, runs, summary) {
        files.extend(save_chart(&out.join(stem), chart).map_err(|e| TrainError::file(out, e))?);
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

/// Title, question, command, setup and the rows' overrides.
fn setup(plan: &StudyPlan, runs: &StudyRuns, summary: &StudySummary) -> String {
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
    let mut table = Table::new(["row", "overrides"]);
    table.row(["base", "the starting policy, not trained further"]);
    for arm in &plan.arms {
        let overrides = if arm.set.is_empty() {
            "(none)".into()
        } else {
            format!("`{}`", arm.set.join("`, `"))
        };
        table.row([arm.name.as_str(), &overrides]);
    }
    md.push_str(&table.render());
    md.push_str(
        "\nEvery figure is the estimate on all seeds and prompts with a 95% bootstrap interval in brackets (seeds and held-out prompts resampled, crossed). Rewards are 0 or 1, so mean reward equals pass@1.\n\n",
    );
    md
}

/// The main held-out table.
fn held_out(summary: &StudySummary) -> String {
    let mut table = Table::new(pass_header(
        &summary.ks,
        &[
            "correct strategies / prompt",
            "correct strategies / solved prompt",
        ],
    ));
    for row in &summary.rows {
        let h = &row.held_out[0];
        let mut cells = vec![row.name.clone()];
        cells.extend(pass_cells(&summary.ks, h));
        cells.push(show(&h.correct_strategies));
        cells.push(show(&h.strategies_per_solved));
        table.row(cells);
    }
    format!(
        "## Held-out pass@k and correct strategies\n\n{}",
        table.render()
    )
}

/// The paired differences of `rows` with their reference at M = `m` samples; with
/// `unseen`, the column of the prompts that need an unseen step.
fn paired_table(m: usize, rows: &[PairedRow], unseen: bool) -> Table {
    let mut header = vec![
        "row".to_owned(),
        "Δ pass@1".into(),
        format!("Δ pass@{m}"),
        "Δ correct strategies / prompt".into(),
    ];
    if unseen {
        header.push(format!("Δ pass@{m}, prompts needing an unseen step"));
    }
    header.extend([
        format!("ahead on pass@{m}"),
        "p (pass@1)".into(),
        format!("p (pass@{m})"),
    ]);
    let mut table = Table::new(header);
    for p in rows {
        let mut cells = vec![
            p.name.clone(),
            show_paired(&p.pass_at_1),
            show_paired(&p.pass_at_max),
            show_paired(&p.correct_strategies),
        ];
        if unseen {
            cells.push(
                p.unseen_pass_at_max
                    .as_ref()
                    .map_or("—".into(), show_paired),
            );
        }
        cells.extend([
            format!("{}/{}", p.pass_at_max.wins, p.pass_at_max.seeds),
            format!("{:.3}", p.pass_at_1.p),
            format!("{:.3}", p.pass_at_max.p),
        ]);
        table.row(cells);
    }
    table
}

/// Paired differences with the reference row.
fn paired(summary: &StudySummary) -> String {
    let m = summary.samples;
    let Some(first) = summary.paired.first() else {
        return String::new();
    };
    let table = paired_table(m, &summary.paired, true);
    format!(
        "\n## Paired differences with `{}`\n\nRow minus `{}` on the same seeds and prompts (bootstrap interval), the seeds on which the row is ahead on pass@{m}, and the two-sided p-value of an exact sign-flip test on the per-seed differences of pass@{m} (with S seeds the smallest possible p is 2/2^S).\n\n{}",
        first.reference,
        first.reference,
        table.render()
    )
}

/// The held-out prompts that need a step never allowed in training, against the rest.
fn discovery(summary: &StudySummary) -> String {
    let m = summary.samples;
    let Some(d) = summary.rows.iter().find_map(|r| r.discovery.as_ref()) else {
        return String::new();
    };
    let mut table = Table::new([
        "row".to_owned(),
        "needs unseen: pass@1".into(),
        format!("needs unseen: pass@{m}"),
        "seen-solvable: pass@1".into(),
        format!("seen-solvable: pass@{m}"),
        "correct answers with an unseen step / prompt".into(),
        "share of correct answers with an unseen step".into(),
    ]);
    for row in &summary.rows {
        if let Some(d) = &row.discovery {
            table.row([
                row.name.clone(),
                show(&d.unseen.0),
                show(&d.unseen.1),
                show(&d.seen.0),
                show(&d.seen.1),
                show(&d.unseen_correct_per_prompt),
                show(&d.unseen_share_of_correct),
            ]);
        }
    }
    format!(
        "\n## Discovery split\n\nOf the {} held-out prompts, {} can only be solved with a step never allowed in training (\"needs unseen\") and {} can be solved with steps seen in training (\"seen-solvable\"). The last two columns count correct answers that use an unseen step.\n\n{}",
        d.unseen_prompts + d.seen_prompts,
        d.unseen_prompts,
        d.seen_prompts,
        table.render()
    )
}

/// One section per further held-out split: its table and its paired differences.
fn splits(summary: &StudySummary) -> String {
    let m = summary.samples;
    let mut md = String::new();
    for split in &summary.splits {
        let mut table = Table::new(pass_header(
            &summary.ks,
            &[
                "correct strategies / prompt",
                &format!("needs unseen: pass@{m}"),
            ],
        ));
        for row in &split.rows {
            let mut cells = vec![row.name.clone()];
            cells.extend(pass_cells(&summary.ks, &row.held_out));
            cells.push(show(&row.held_out.correct_strategies));
            cells.push(
                row.discovery
                    .as_ref()
                    .map_or("—".into(), |d| show(&d.unseen.1)),
            );
            table.row(cells);
        }
        md.push_str(&format!(
            "\n## Held-out split `{}`\n\nThe same final policies on {} other held-out prompts (`{}`), at the main temperature.\n\n{}",
            split.name,
            split.prompts,
            split.set.join("`, `"),
            table.render()
        ));
        if let Some(first) = split.paired.first() {
            let table = paired_table(m, &split.paired, false);
            md.push_str(&format!(
                "\nRow minus `{}` on this split (bootstrap interval; p: exact sign-flip test over seeds).\n\n{}",
                first.reference,
                table.render()
            ));
        }
    }
    md
}

/// The trained rows' training figures over their last steps.
fn training(summary: &StudySummary) -> String {
    let mut table = Table::new([
        "row",
        "reward",
        "correct strategies / prompt",
        "token entropy",
        "incorrect samples with a positive advantage",
        "mean advantage of correct samples",
        "gradient norm (all steps with one)",
        "approx. KL per update (same steps)",
    ]);
    for row in &summary.rows {
        if let Some(t) = &row.training {
            table.row([
                row.name.clone(),
                show(&t.reward),
                show(&t.correct_strategies),
                show(&t.entropy),
                show(&t.positive_incorrect),
                show(&t.correct_advantage),
                show_small(&t.grad_norm),
                show_small(&t.approx_kl),
            ]);
        }
    }
    format!(
        "\n## Training (mean of the last {LAST_STEPS} steps unless marked; interval over seeds)\n\nThe gradient norm is taken before AdamW normalises it, so a constant scale on the advantages changes it but not the step; the approximate KL between the policy before and after each update is the step's size. Both, like the token entropy, are measured on the sequences the update computed (those with a non-zero advantage when the loss has no KL or entropy term); steps that computed none (gradient norm exactly 0) are left out of these three means.\n\n{}",
        table.render()
    )
}

/// Correct strategies the warm-up never showed, and those the base did not produce either
/// (only where the task says what its warm-up demonstrates), on the main evaluation and on
/// every further split.
fn discovered(summary: &StudySummary) -> String {
    let m = summary.samples;
    let evaluations = std::iter::once((
        "held-out (main)".to_owned(),
        summary
            .rows
            .iter()
            .map(|r| (r.name.as_str(), r.discovered.as_ref()))
            .collect::<Vec<_>>(),
    ))
    .chain(summary.splits.iter().map(|split| {
        (
            format!("`{}`", split.name),
            split
                .rows
                .iter()
                .map(|r| (r.name.as_str(), r.discovered.as_ref()))
                .collect(),
        )
    }));
    let mut table = Table::new([
        "row",
        "prompts",
        "correct strategies never demonstrated / prompt",
        "of which the base did not produce / prompt",
    ]);
    let mut any = false;
    for (evaluation, rows) in evaluations {
        for (name, d) in rows {
            if let Some(d) = d {
                any = true;
                table.row([
                    name.to_owned(),
                    evaluation.clone(),
                    show(&d.undemonstrated),
                    show(&d.beyond_base),
                ]);
            }
        }
    }
    if !any {
        return String::new();
    }
    format!(
        "\n## Discovered strategies\n\nAt the main temperature, M = {m}: correct strategies the warm-up never demonstrated, and of those the ones the base policy (same seed, same M) did not produce on the same prompt. The last column is what training found.\n\n{}",
        table.render()
    )
}

/// pass@1 and pass@M at every temperature (only with more than one).
fn temperature_sweep(runs: &StudyRuns, summary: &StudySummary) -> String {
    let m = summary.samples;
    if runs.temperatures.len() <= 1 {
        return String::new();
    }
    let mut table = Table::new([
        "row".to_owned(),
        "temperature".into(),
        "pass@1".into(),
        format!("pass@{m}"),
    ]);
    for row in &summary.rows {
        for h in &row.held_out {
            table.row([
                row.name.clone(),
                h.temperature.to_string(),
                h.at(1).map(|i| show(&i)).unwrap_or_default(),
                h.at(m).map(|i| show(&i)).unwrap_or_default(),
            ]);
        }
    }
    format!("\n## Temperature sweep\n\n{}", table.render())
}

/// Where two samples of a prompt part, and the per-position entropy.
fn branching(summary: &StudySummary) -> String {
    let mut table = Table::new([
        "row",
        "common prefix",
        "entropy at 0",
        "at 1",
        "at 2",
        "at 3",
        "at 4",
    ]);
    for row in &summary.rows {
        let mut cells = vec![row.name.clone(), show(&row.branching.position)];
        cells.extend((0..5).map(|t| {
            row.branching
                .entropy
                .get(t)
                .map_or("—".into(), |v| format!("{v:.3}"))
        }));
        table.row(cells);
    }
    format!(
        "\n## Where samples branch\n\nMean length of the common prefix of two samples of a prompt (characters), and the empirical entropy (nats) of the character at each position over a prompt's M samples (end of text counts as a character).\n\n{}",
        table.render()
    )
}

/// The report's charts, each with its file stem.
fn charts(plan: &StudyPlan, runs: &StudyRuns, summary: &StudySummary) -> Vec<(String, Chart)> {
    let m = summary.samples;
    let mut charts: Vec<(String, Chart)> = Vec::new();
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
            crosses: Vec::new(),
        })
        .collect();
    charts.push((
        "pass_at_k".into(),
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
            stem.into(),
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
                stem.into(),
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
                            let pick_i = |a: &AlongPoint| {
                                if pick == 0 {
                                    a.pass_at_1
                                } else {
                                    a.pass_at_max
                                }
                            };
                            Series {
                                name: r.name.clone(),
                                color: Some(color),
                                points: r
                                    .along
                                    .iter()
                                    .map(|a| (a.step as f64, pick_i(a).mean))
                                    .collect(),
                                band: r
                                    .along
                                    .iter()
                                    .map(|a| (a.step as f64, pick_i(a).lo, pick_i(a).hi))
                                    .collect(),
                                crosses: Vec::new(),
                            }
                        })
                        .collect(),
                },
            ));
        }
    }
    if runs.temperatures.len() > 1 {
        charts.push((
            "temperature_tradeoff".into(),
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
    charts.extend(frontier_charts(summary));
    charts.extend(discovered_along_chart(summary));
    charts.push((
        "position_entropy".into(),
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
    charts
}

/// (estimate, low, high) of an interval, for a chart.
fn triple(i: &Interval) -> (f64, f64, f64) {
    (i.mean, i.lo, i.hi)
}

/// Each row as one point, held-out pass@1 against pass@M with both intervals: the trade-off
/// between being right once and covering many answers, where regularised baselines trace a
/// frontier and a method beyond it gives more coverage at the same pass@1. One chart for the
/// main evaluation and one per further split; with discovery figures, a chart of pass@1
/// against the strategies found beyond the base.
fn frontier_charts(summary: &StudySummary) -> Vec<(String, Chart)> {
    let m = summary.samples;
    let seeds = summary.rows.first().map_or(0, |r| r.seeds);
    let frontier = |title: String, rows: Vec<(&str, &HeldOut)>| Chart {
        title,
        x_label: "pass@1".into(),
        y_label: format!("pass@{m}"),
        log2_x: false,
        series: rows
            .into_iter()
            .enumerate()
            .filter_map(|(color, (name, h))| {
                let cross = Cross {
                    x: triple(&h.at(1)?),
                    y: triple(&h.at(m)?),
                };
                Some(Series::cross(name, color, cross))
            })
            .collect(),
    };
    let mut charts = vec![(
        "frontier".to_owned(),
        frontier(
            format!("Held-out pass@1 vs pass@{m} ({seeds} seeds, 95% intervals)"),
            summary
                .rows
                .iter()
                .map(|r| (r.name.as_str(), &r.held_out[0]))
                .collect(),
        ),
    )];
    for split in &summary.splits {
        charts.push((
            format!("frontier_{}", super::plan::slug(&split.name)),
            frontier(
                format!("{}: pass@1 vs pass@{m} ({seeds} seeds)", split.name),
                split
                    .rows
                    .iter()
                    .map(|r| (r.name.as_str(), &r.held_out))
                    .collect(),
            ),
        ));
    }
    if summary.rows.iter().any(|r| r.discovered.is_some()) {
        charts.push((
            "discovery_frontier".into(),
            Chart {
                title: format!("pass@1 vs strategies found beyond the base (M = {m})"),
                x_label: "pass@1".into(),
                y_label: "new correct strategies / prompt".into(),
                log2_x: false,
                series: summary
                    .rows
                    .iter()
                    .enumerate()
                    .filter_map(|(color, r)| {
                        let cross = Cross {
                            x: triple(&r.held_out[0].at(1)?),
                            y: triple(&r.discovered.as_ref()?.beyond_base),
                        };
                        Some(Series::cross(r.name.clone(), color, cross))
                    })
                    .collect(),
            },
        ));
    }
    charts
}

/// Strategies found beyond the base along training, per row (only with evaluations along
/// training on a task that says what its warm-up demonstrated).
fn discovered_along_chart(summary: &StudySummary) -> Option<(String, Chart)> {
    let series: Vec<Series> = summary
        .rows
        .iter()
        .enumerate()
        .filter_map(|(color, r)| {
            let along: Vec<(u64, Interval)> = r
                .along
                .iter()
                .map(|a| Some((a.step, a.beyond_base?)))
                .collect::<Option<_>>()?;
            (along.len() > 1).then(|| Series {
                name: r.name.clone(),
                points: along.iter().map(|(s, i)| (*s as f64, i.mean)).collect(),
                band: along.iter().map(|(s, i)| (*s as f64, i.lo, i.hi)).collect(),
                color: Some(color),
                crosses: Vec::new(),
            })
        })
        .collect();
    (!series.is_empty()).then(|| {
        (
            "discovered_along".into(),
            Chart {
                title: format!(
                    "Correct strategies never demonstrated, beyond the base, along training (M = {})",
                    summary.samples
                ),
                x_label: "step".into(),
                y_label: "per prompt".into(),
                log2_x: false,
                series,
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn a_table_renders_its_header_rule_and_rows() {
        let mut table = Table::new(["row", "pass@1"]);
        table.row(["base", "0.1 [0.0, 0.2]"]);
        assert_eq!(
            table.render(),
            "| row | pass@1 |\n|---|---|\n| base | 0.1 [0.0, 0.2] |\n"
        );
    }
}
