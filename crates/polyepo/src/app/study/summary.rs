//! A study's figures with their intervals: held-out pass@k and strategies per row, the
//! discovery split, paired differences against the reference row, training figures, the
//! temperature sweep and where samples branch. Pure computation over [`StudyRuns`].

use serde::{Deserialize, Serialize};

use super::run::{RowRuns, StudyRuns};
use super::stats::{Interval, Paired, Table, estimate, over_seeds, paired};
use crate::app::eval::{EvalReport, PromptResult};
use crate::rl::train::StepMetrics;

/// Training steps at the end of a run averaged for its training figures.
pub const LAST_STEPS: usize = 25;

/// Held-out figures of one row at one temperature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldOut {
    /// Sampling temperature.
    pub temperature: f64,
    /// (k, pass@k) for every power of two up to M, the table's k and M.
    pub pass_at: Vec<(usize, Interval)>,
    /// Distinct correct strategies per held-out prompt.
    pub correct_strategies: Interval,
    /// Distinct correct strategies per solved prompt (prompts with a correct sample).
    pub strategies_per_solved: Interval,
}

impl HeldOut {
    /// pass@k, if it was computed for this k.
    pub fn at(&self, k: usize) -> Option<Interval> {
        self.pass_at
            .iter()
            .find(|(kk, _)| *kk == k)
            .map(|(_, i)| *i)
    }
}

/// The held-out prompts split by whether solving them needs an element never allowed in
/// training (the task must support the split).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discovery {
    /// Prompts that need an unseen element.
    pub unseen_prompts: usize,
    /// Prompts solvable with elements seen in training.
    pub seen_prompts: usize,
    /// pass@1 and pass@M on the prompts that need an unseen element.
    pub unseen: (Interval, Interval),
    /// pass@1 and pass@M on the seen-solvable prompts.
    pub seen: (Interval, Interval),
    /// Correct answers that use an unseen element, per prompt (M samples each).
    pub unseen_correct_per_prompt: Interval,
    /// Of all correct answers, the share that uses an unseen element.
    pub unseen_share_of_correct: Interval,
}

/// Training figures (mean of the last [`LAST_STEPS`] steps, interval over seeds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Training {
    /// Mean reward.
    pub reward: Interval,
    /// Distinct correct strategies per prompt.
    pub correct_strategies: Interval,
    /// Token entropy (over the last steps that computed any sequence).
    pub entropy: Interval,
    /// Fraction of incorrect generations with a positive advantage.
    pub positive_incorrect: Interval,
    /// Mean advantage of correct generations.
    pub correct_advantage: Interval,
    /// `losses/grad_norm`, mean over every step of the run that computed a gradient (not
    /// only the last ones): the size of the gradient before AdamW normalises it.
    pub grad_norm: Interval,
    /// `losses/approx_kl`, mean over the same steps: how far each update moved the policy.
    pub approx_kl: Interval,
}

/// Where the samples of a prompt branch apart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Branching {
    /// Mean common-prefix length of two samples (characters).
    pub position: Interval,
    /// Mean per-position entropy (nats) at positions 0, 1, 2, ...
    pub entropy: Vec<f64>,
}

/// Correct strategies the warm-up never demonstrated, on the held-out prompts at the main
/// temperature (per prompt, interval over seeds and prompts).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discovered {
    /// Never demonstrated.
    pub undemonstrated: Interval,
    /// Never demonstrated and not among the base's correct strategies on the same prompt
    /// (same seed, same number of samples): strategies the training found.
    pub beyond_base: Interval,
}

/// A seeds × prompts table of a figure of each prompt of `a` against the same prompt of
/// `base` (seed by seed): `None` where a report lacks what `f` needs.
fn table_against(
    a: &[&EvalReport],
    base: &[&EvalReport],
    f: &dyn Fn(&PromptResult, &PromptResult) -> Option<f64>,
) -> Option<Table> {
    let (mut num, mut den) = (Vec::new(), Vec::new());
    for (ra, rb) in a.iter().zip(base) {
        if ra.per_prompt.len() != rb.per_prompt.len() {
            return None;
        }
        let n: Vec<f64> = ra
            .per_prompt
            .iter()
            .zip(&rb.per_prompt)
            .map(|(pa, pb)| f(pa, pb))
            .collect::<Option<_>>()?;
        den.push(vec![1.0; n.len()]);
        num.push(n);
    }
    (!num.is_empty()).then_some(Table { num, den })
}

/// On one prompt, the correct strategies of `p` that its warm-up never demonstrated and the
/// base `b` did not produce (`None` where either report did not record them).
fn beyond_base(p: &PromptResult, b: &PromptResult) -> Option<f64> {
    let new = p.correct_undemonstrated.as_ref()?;
    b.correct_undemonstrated.as_ref()?;
    Some(
        new.iter()
            .filter(|c| !b.correct_strategy_ids.contains(c))
            .count() as f64,
    )
}

/// Every figure of one row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowSummary {
    /// Row label.
    pub name: String,
    /// Seeds.
    pub seeds: usize,
    /// One entry per temperature, the main one first.
    pub held_out: Vec<HeldOut>,
    /// The discovery split at the main temperature.
    pub discovery: Option<Discovery>,
    /// Training figures (none for the base row).
    pub training: Option<Training>,
    /// Discovery against the base (none for the base row, or where the task does not say
    /// what its warm-up demonstrates).
    #[serde(default)]
    pub discovered: Option<Discovered>,
    /// Branching at the main temperature.
    pub branching: Branching,
    /// Held-out figures along training at the main temperature.
    pub along: Vec<AlongPoint>,
}

/// One evaluation along training (every seed of the row evaluated at that step).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlongPoint {
    /// Training step.
    pub step: u64,
    /// pass@1.
    pub pass_at_1: Interval,
    /// pass@M.
    pub pass_at_max: Interval,
    /// Correct strategies per prompt never demonstrated and not produced by the same seed's
    /// base (final evaluation, same M): what training had found by this step (none where
    /// the task does not say what its warm-up demonstrated).
    pub beyond_base: Option<Interval>,
}

/// A row compared with the reference row, seed by seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairedRow {
    /// The row.
    pub name: String,
    /// The reference row.
    pub reference: String,
    /// Δ pass@1.
    pub pass_at_1: Paired,
    /// Δ pass@M.
    pub pass_at_max: Paired,
    /// Δ distinct correct strategies per prompt.
    pub correct_strategies: Paired,
    /// Δ pass@M on the prompts that need an unseen element.
    pub unseen_pass_at_max: Option<Paired>,
}

/// All figures of a study.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudySummary {
    /// Samples per prompt (M).
    pub samples: usize,
    /// Held-out prompts.
    pub prompts: usize,
    /// The k columns.
    pub ks: Vec<usize>,
    /// Rows, base first.
    pub rows: Vec<RowSummary>,
    /// Paired comparisons with the reference row.
    pub paired: Vec<PairedRow>,
    /// The further held-out splits, in plan order.
    #[serde(default)]
    pub splits: Vec<SplitSummary>,
}

/// One further held-out split's figures (the final policies at the main temperature).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitSummary {
    /// The split's name.
    pub name: String,
    /// Its overrides.
    pub set: Vec<String>,
    /// Held-out prompts.
    pub prompts: usize,
    /// Per row, base first.
    pub rows: Vec<SplitRow>,
    /// Paired comparisons with the reference row.
    pub paired: Vec<PairedRow>,
}

/// One row's figures on a further split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitRow {
    /// Row label.
    pub name: String,
    /// pass@k and strategies.
    pub held_out: HeldOut,
    /// The unseen-step split, where the task has one.
    pub discovery: Option<Discovery>,
    /// Strategies never demonstrated and beyond the base, where the task says what its
    /// warm-up demonstrated.
    pub discovered: Option<Discovered>,
}

type PerPrompt<'a> = &'a dyn Fn(&PromptResult) -> (f64, f64);

/// A seeds × prompts table of one figure of `reports` (one per seed).
fn table(reports: &[&EvalReport], per_prompt: PerPrompt<'_>) -> Table {
    let (mut num, mut den) = (Vec::new(), Vec::new());
    for r in reports {
        let (n, d): (Vec<f64>, Vec<f64>) = r.per_prompt.iter().map(per_prompt).unzip();
        num.push(n);
        den.push(d);
    }
    Table { num, den }
}

fn pass_at(m: usize, k: usize) -> impl Fn(&PromptResult) -> (f64, f64) {
    move |p: &PromptResult| (setrl::pass_at_k(m, p.correct, k).unwrap_or(0.0), 1.0)
}

fn only(
    subset: bool,
    f: impl Fn(&PromptResult) -> (f64, f64),
) -> impl Fn(&PromptResult) -> (f64, f64) {
    move |p: &PromptResult| {
        if p.needs_unseen == Some(subset) {
            f(p)
        } else {
            (0.0, 0.0)
        }
    }
}

fn evals_at(row: &RowRuns, t: usize) -> Vec<&EvalReport> {
    row.runs.iter().map(|r| &r.evals[t]).collect()
}

fn last_steps(metrics: &[StepMetrics], pick: fn(&StepMetrics) -> f64) -> f64 {
    let tail = &metrics[metrics.len().saturating_sub(LAST_STEPS)..];
    tail.iter().map(pick).sum::<f64>() / tail.len().max(1) as f64
}

/// Whether the update computed any sequence on this step. One that computed none (every
/// advantage zero, with the zero-advantage skip) has a gradient norm of exactly 0 and logs 0
/// for the token entropy and the KL, which are then no measurement and are left out of
/// their means.
fn computed(m: &StepMetrics) -> bool {
    m.update.grad_norm > 0.0
}

/// Mean of `pick` over the steps of `metrics` that computed any sequence (NaN if none).
fn mean_computed(metrics: &[StepMetrics], pick: fn(&StepMetrics) -> f64) -> f64 {
    let values: Vec<f64> = metrics.iter().filter(|m| computed(m)).map(pick).collect();
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Computes every figure of `runs` (`resamples` bootstrap draws; `reference` names the row
/// of the paired tests; `ks` the table's k columns).
pub fn summarize(
    runs: &StudyRuns,
    ks: &[usize],
    reference: &str,
    resamples: usize,
) -> StudySummary {
    let m = runs.samples;
    let mut ks: Vec<usize> = ks.iter().copied().filter(|&k| k >= 1 && k < m).collect();
    ks.push(m);
    ks.dedup();
    let mut curve_ks: Vec<usize> = (0..)
        .map(|i| 1usize << i)
        .take_while(|&k| k <= m)
        .chain(ks.iter().copied())
        .collect();
    curve_ks.sort_unstable();
    curve_ks.dedup();
    let est = |t: &Table| estimate(t, resamples, 17);
    let rows = runs
        .rows
        .iter()
        .map(|row| {
            let held_out = runs
                .temperatures
                .iter()
                .enumerate()
                .map(|(ti, &temperature)| {
                    let evals = evals_at(row, ti);
                    HeldOut {
                        temperature,
                        pass_at: curve_ks
                            .iter()
                            .map(|&k| (k, est(&table(&evals, &pass_at(m, k)))))
                            .collect(),
                        correct_strategies: est(&table(&evals, &|p| {
                            (p.correct_strategies as f64, 1.0)
                        })),
                        strategies_per_solved: est(&table(&evals, &|p| {
                            (
                                p.correct_strategies as f64,
                                f64::from(u8::from(p.correct > 0)),
                            )
                        })),
                    }
                })
                .collect();
            let main = evals_at(row, 0);
            let has_split = main
                .first()
                // A split with no prompt that needs an unseen element (the training
                // distribution) has nothing to report but empty columns.
                .is_some_and(|e| e.per_prompt.iter().any(|p| p.needs_unseen == Some(true)));
            let discovery = has_split.then(|| {
                let first = &main[0].per_prompt;
                let count = |v: bool| first.iter().filter(|p| p.needs_unseen == Some(v)).count();
                let pair = |v: bool| {
                    (
                        est(&table(&main, &only(v, pass_at(m, 1)))),
                        est(&table(&main, &only(v, pass_at(m, m)))),
                    )
                };
                Discovery {
                    unseen_prompts: count(true),
                    seen_prompts: count(false),
                    unseen: pair(true),
                    seen: pair(false),
                    unseen_correct_per_prompt: est(&table(&main, &|p| {
                        (p.correct_unseen as f64, 1.0)
                    })),
                    unseen_share_of_correct: est(&table(&main, &|p| {
                        (p.correct_unseen as f64, p.correct as f64)
                    })),
                }
            });
            let training = (!row.is_base).then(|| {
                let over = |per_run: &dyn Fn(&[StepMetrics]) -> f64| {
                    let values: Vec<f64> = row.runs.iter().map(|r| per_run(&r.metrics)).collect();
                    over_seeds(&values, resamples, 23)
                };
                let of = |pick: fn(&StepMetrics) -> f64| over(&|m| last_steps(m, pick));
                let of_computed = |pick: fn(&StepMetrics) -> f64| {
                    over(&|m| mean_computed(&m[m.len().saturating_sub(LAST_STEPS)..], pick))
                };
                let whole = |pick: fn(&StepMetrics) -> f64| over(&|m| mean_computed(m, pick));
                Training {
                    reward: of(|m| m.reward_mean),
                    correct_strategies: of(|m| m.clusters_correct),
                    entropy: of_computed(|m| m.update.entropy),
                    positive_incorrect: of(|m| m.positive_incorrect),
                    correct_advantage: of(|m| m.correct_advantage),
                    grad_norm: whole(|m| m.update.grad_norm),
                    approx_kl: whole(|m| m.update.approx_kl),
                }
            });
            let positions = main
                .iter()
                .map(|e| e.position_entropy.len())
                .min()
                .unwrap_or(0);
            let branching = Branching {
                position: est(&table(&main, &|p| (p.branch_position, 1.0))),
                entropy: (0..positions)
                    .map(|t| {
                        main.iter().map(|e| e.position_entropy[t]).sum::<f64>()
                            / main.len().max(1) as f64
                    })
                    .collect(),
            };
            let base_evals = runs
                .rows
                .first()
                .filter(|_| !row.is_base)
                .map(|base| evals_at(base, 0));
            let discovered = base_evals.as_ref().and_then(|base_evals| {
                let undemonstrated = table_against(&main, base_evals, &|p, _| {
                    Some(p.correct_undemonstrated.as_ref()?.len() as f64)
                })?;
                let beyond_base = table_against(&main, base_evals, &beyond_base)?;
                Some(Discovered {
                    undemonstrated: est(&undemonstrated),
                    beyond_base: est(&beyond_base),
                })
            });
            let along = along(row, base_evals.as_deref(), m, &est);
            RowSummary {
                name: row.name.clone(),
                seeds: row.runs.len(),
                held_out,
                discovery,
                training,
                discovered,
                branching,
                along,
            }
        })
        .collect();
    let paired = paired_rows(runs, reference, m, resamples);
    let splits = split_names(runs)
        .into_iter()
        .map(|(i, split)| {
            let view = split_view(runs, i);
            let s = summarize(&view, &ks, reference, resamples);
            SplitSummary {
                name: split.name,
                set: split.set,
                prompts: s.prompts,
                rows: s
                    .rows
                    .into_iter()
                    .map(|r| SplitRow {
                        name: r.name,
                        held_out: r.held_out[0].clone(),
                        discovery: r.discovery,
                        discovered: r.discovered,
                    })
                    .collect(),
                paired: s.paired,
            }
        })
        .collect();
    StudySummary {
        samples: m,
        prompts: runs
            .rows
            .first()
            .and_then(|r| r.runs.first())
            .map_or(0, |r| r.evals[0].prompts),
        ks,
        rows,
        paired,
        splits,
    }
}

/// The further splits every seed of every row was evaluated on (those of the first run), with
/// their positions.
fn split_names(runs: &StudyRuns) -> Vec<(usize, super::plan::EvalSplit)> {
    let Some(first) = runs.rows.first().and_then(|r| r.runs.first()) else {
        return Vec::new();
    };
    first
        .splits
        .iter()
        .enumerate()
        .filter(|(i, (split, _))| {
            runs.rows
                .iter()
                .flat_map(|r| &r.runs)
                .all(|r| r.splits.get(*i).is_some_and(|(s, _)| s == split))
        })
        .map(|(i, (split, _))| (i, split.clone()))
        .collect()
}

/// `runs` as if split `i` were the only held-out evaluation (no temperature sweep, no
/// evaluations along training), so the main figures' code computes the split's.
fn split_view(runs: &StudyRuns, i: usize) -> StudyRuns {
    let mut view = runs.clone();
    view.temperatures.truncate(1);
    for run in view.rows.iter_mut().flat_map(|r| &mut r.runs) {
        run.evals = vec![run.splits[i].1.clone()];
        run.along.clear();
        run.splits.clear();
    }
    view
}

/// The figures at every step that every seed of `row` was evaluated at; `base` holds the
/// final evaluations of the base row, seed by seed (none for the base row itself).
fn along(
    row: &RowRuns,
    base: Option<&[&EvalReport]>,
    m: usize,
    est: &dyn Fn(&Table) -> Interval,
) -> Vec<AlongPoint> {
    let Some(first) = row.runs.first() else {
        return Vec::new();
    };
    first
        .along
        .iter()
        .map(|(step, _)| *step)
        .filter_map(|step| {
            let evals: Option<Vec<&EvalReport>> = row
                .runs
                .iter()
                .map(|r| r.along.iter().find(|(s, _)| *s == step).map(|(_, e)| e))
                .collect();
            let evals = evals?;
            Some(AlongPoint {
                step,
                pass_at_1: est(&table(&evals, &pass_at(m, 1))),
                pass_at_max: est(&table(&evals, &pass_at(m, m))),
                beyond_base: base
                    .and_then(|b| table_against(&evals, b, &beyond_base))
                    .map(|t| est(&t)),
            })
        })
        .collect()
}

fn paired_rows(runs: &StudyRuns, reference: &str, m: usize, resamples: usize) -> Vec<PairedRow> {
    let Some(reference_row) = runs.rows.iter().find(|r| r.name == reference) else {
        return Vec::new();
    };
    let b = evals_at(reference_row, 0);
    runs.rows
        .iter()
        .filter(|r| r.name != reference && r.runs.len() == reference_row.runs.len())
        .map(|row| {
            let a = evals_at(row, 0);
            let compare = |f: PerPrompt<'_>| paired(&table(&a, f), &table(&b, f), resamples, 29);
            let has_split = a
                .first()
                .is_some_and(|e| e.per_prompt.iter().any(|p| p.needs_unseen == Some(true)));
            PairedRow {
                name: row.name.clone(),
                reference: reference.to_owned(),
                pass_at_1: compare(&pass_at(m, 1)),
                pass_at_max: compare(&pass_at(m, m)),
                correct_strategies: compare(&|p| (p.correct_strategies as f64, 1.0)),
                unseen_pass_at_max: has_split.then(|| compare(&only(true, pass_at(m, m)))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of one prompt per entry: (correct strategy ids, never-demonstrated ids).
    fn report(prompts: &[(&[i64], Option<&[i64]>)]) -> EvalReport {
        let per_prompt: Vec<serde_json::Value> = prompts
            .iter()
            .map(|(ids, new)| {
                serde_json::json!({
                    "correct": ids.len(), "correct_strategies": ids.len(),
                    "needs_unseen": null, "correct_unseen": 0, "branch_position": 0.0,
                    "correct_strategy_ids": ids, "correct_undemonstrated": new,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "task": "reach", "prompts": prompts.len(), "samples": 8, "pass_at_k": {},
            "mean_reward": 0.0, "strategies_per_prompt": 0.0,
            "correct_strategies_per_prompt": 0.0, "pooled_correct_strategies": 0,
            "degenerate_fraction": 0.0, "histogram": [], "per_prompt": per_prompt,
        }))
        .unwrap()
    }

    #[test]
    fn discovered_strategies_are_new_to_the_warm_up_and_to_the_base() {
        // Prompt 0: the policy finds 5 and 9 beyond the habits; the base had found 9.
        // Prompt 1: nothing new.
        let policy = report(&[(&[1, 5, 9], Some(&[5, 9])), (&[2], Some(&[]))]);
        let base = report(&[(&[1, 9], Some(&[9])), (&[], Some(&[]))]);
        let beyond = table_against(&[&policy], &[&base], &beyond_base).unwrap();
        assert_eq!(beyond.num, vec![vec![1.0, 0.0]]);
        // A report that does not say what was demonstrated gives no figure.
        let old = report(&[(&[1], None), (&[2], None)]);
        assert!(
            table_against(&[&old], &[&base], &|p, _| {
                Some(p.correct_undemonstrated.as_ref()?.len() as f64)
            })
            .is_none()
        );
    }

    #[test]
    fn steps_without_a_gradient_are_left_out_of_the_token_statistics() {
        let step = |grad_norm: f64, entropy: f64| {
            let mut m = StepMetrics::default();
            m.update.grad_norm = grad_norm;
            m.update.entropy = entropy;
            m
        };
        let metrics = [step(0.1, 0.4), step(0.0, 0.0), step(0.3, 0.2)];
        let mean = mean_computed(&metrics, |m| m.update.entropy);
        assert!((mean - 0.3).abs() < 1e-12, "{mean}");
        assert!(mean_computed(&metrics[1..2], |m| m.update.entropy).is_nan());
    }
}
