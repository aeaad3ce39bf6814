//! Evaluation on held-out prompts: M samples per prompt; pass@k for every k ≤ M (unbiased
//! estimator), mean reward, distinct strategies per prompt (all / correct), distinct correct
//! strategies pooled over the whole held-out set, degenerate fraction, strategy histogram.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use setrl::Strategy;

use crate::rl::judge::StrategyJudge;
use crate::rl::tasks::Task;
use polyepo_engine::model::chat::encode_user_turn;
use polyepo_engine::model::{Llama, ModelResult, TextTokenizer};
use polyepo_engine::sample::{SamplingParams, generate};

/// How to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Samples per held-out prompt (M).
    pub samples: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Longest response.
    pub max_new_tokens: usize,
    /// Seed of the sampler.
    pub seed: u64,
    /// Generations per sampling batch (memory bound).
    pub batch: usize,
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            samples: 32,
            temperature: 1.0,
            max_new_tokens: 10,
            seed: 12_345,
            batch: 512,
        }
    }
}

/// One strategy's share of the held-out generations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyCount {
    /// Cluster id (stable hash of the canonical strategy).
    pub cluster: i64,
    /// Generations in this cluster.
    pub count: usize,
    /// Of which correct.
    pub correct: usize,
}

/// What the evaluation found on one held-out prompt: enough to recompute every figure of
/// the report over any subset or resample of prompts (bootstrap intervals, discovery split).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptResult {
    /// Correct samples (of M).
    pub correct: usize,
    /// Distinct strategies among the correct samples.
    pub correct_strategies: usize,
    /// Whether every correct answer needs an element never allowed in training (`None`:
    /// the task has no such split).
    pub needs_unseen: Option<bool>,
    /// Correct samples that use an element never allowed in training.
    pub correct_unseen: usize,
    /// Mean length of the common prefix of two samples (consecutive pairs), in characters:
    /// where the samples branch.
    pub branch_position: f64,
    /// The distinct correct strategies (cluster ids, ascending), so another policy's
    /// evaluation on the same prompts can be compared with this one's (which strategies are
    /// new?). Comparable across evaluations only with the task's labeler, whose ids are
    /// stable hashes; empty in reports written before it was recorded.
    #[serde(default)]
    pub correct_strategy_ids: Vec<i64>,
    /// Those the warm-up never demonstrated (`None`: the task does not say, or an LM judge
    /// labelled the samples).
    #[serde(default)]
    pub correct_undemonstrated: Option<Vec<i64>>,
}

/// The result of one evaluation (`eval.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Task name.
    pub task: String,
    /// Held-out prompts.
    pub prompts: usize,
    /// Samples per prompt.
    pub samples: usize,
    /// pass@k for k = 1..=M (unbiased estimator, averaged over prompts).
    pub pass_at_k: BTreeMap<usize, f64>,
    /// Mean reward over all generations.
    pub mean_reward: f64,
    /// Distinct non-degenerate strategies per prompt.
    pub strategies_per_prompt: f64,
    /// Distinct correct strategies per prompt.
    pub correct_strategies_per_prompt: f64,
    /// Distinct correct strategies pooled over every held-out prompt: (prompt, strategy)
    /// pairs, since the same multiset answers different prompts differently.
    pub pooled_correct_strategies: usize,
    /// Fraction of degenerate generations.
    pub degenerate_fraction: f64,
    /// The 50 most frequent strategies.
    pub histogram: Vec<StrategyCount>,
    /// Per held-out prompt, in prompt order (absent in reports written before it was
    /// recorded).
    #[serde(default)]
    pub per_prompt: Vec<PromptResult>,
    /// Empirical entropy (nats) of the response's character at position t over the M
    /// samples of a prompt, averaged over prompts, for t = 0, 1, ... (end of text counts as
    /// a character).
    #[serde(default)]
    pub position_entropy: Vec<f64>,
    /// The settings the evaluation was made with, so that a stored report is reused only
    /// for the same settings (absent in reports written before it was recorded).
    #[serde(default)]
    pub settings: Option<EvalSettings>,
    /// With an LM judge on a task that has a program labeler: how often the judge labelled
    /// a group and how well its clusters match the labeler's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_agreement: Option<JudgeAgreement>,
}

/// The LM judge against the task's program labeler on the same groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeAgreement {
    /// Groups sent to the judge.
    pub groups: usize,
    /// Groups it labelled (a valid reply or the cache).
    pub labelled: usize,
    /// Mean adjusted Rand index between its clusters and the labeler's over the labelled
    /// groups (1: the same partition; about 0: chance; degenerate counts as one cluster).
    pub mean_ari: f64,
}

/// The adjusted Rand index of two labellings of the same items (Hubert and Arabie). When
/// neither can be better than chance (every item in one cluster, or every item alone, in
/// both), it is 1 for equal partitions and 0 otherwise.
pub fn adjusted_rand_index(a: &[Strategy], b: &[Strategy]) -> f64 {
    let pairs = |n: usize| (n * n.saturating_sub(1) / 2) as f64;
    let mut joint: HashMap<(Strategy, Strategy), usize> = HashMap::new();
    let (mut rows, mut cols): (HashMap<Strategy, usize>, HashMap<Strategy, usize>) =
        (HashMap::new(), HashMap::new());
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let index: f64 = joint.values().map(|&c| pairs(c)).sum();
    let (sa, sb): (f64, f64) = (
        rows.values().map(|&c| pairs(c)).sum(),
        cols.values().map(|&c| pairs(c)).sum(),
    );
    let total = pairs(a.len().min(b.len()));
    let expected = if total > 0.0 { sa * sb / total } else { 0.0 };
    let max = (sa + sb) / 2.0;
    if (max - expected).abs() < 1e-12 {
        let same = joint.len() == rows.len() && joint.len() == cols.len();
        return if same { 1.0 } else { 0.0 };
    }
    (index - expected) / (max - expected)
}

impl EvalReport {
    /// pass@k at the largest k.
    pub fn pass_at_max_k(&self) -> f64 {
        self.pass_at_k.values().next_back().copied().unwrap_or(0.0)
    }
}

/// Samples `settings.samples` answers to every held-out prompt of `task` and scores them.
///
/// Strategies come from `judge` when given (an LM judge: one request per prompt, run
/// concurrently; a group it cannot label counts no strategies), from the task's labeler
/// otherwise.
pub fn evaluate(
    model: &Llama,
    tokenizer: &TextTokenizer,
    task: &dyn Task,
    settings: &EvalSettings,
    judge: Option<&dyn StrategyJudge>,
) -> ModelResult<EvalReport> {
    let prompts = task.eval_prompts();
    let m = settings.samples.max(1);
    let chat = task.wants_chat_template() && tokenizer.chat_template.is_some();
    let encoded: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| encode_user_turn(tokenizer, &p.text, chat))
        .collect::<ModelResult<_>>()?;
    let rows: Vec<(usize, &Vec<u32>)> = encoded
        .iter()
        .enumerate()
        .flat_map(|(i, e)| std::iter::repeat_n((i, e), m))
        .collect();
    let mut texts: Vec<String> = Vec::with_capacity(rows.len());
    for (chunk_index, chunk) in rows.chunks(settings.batch.max(1)).enumerate() {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|(_, e)| (*e).clone()).collect();
        let params = SamplingParams {
            max_new_tokens: settings.max_new_tokens,
            temperature: settings.temperature,
            seed: settings.seed.wrapping_add(chunk_index as u64),
            ..SamplingParams::default()
        };
        texts.extend(
            generate(model, tokenizer, &batch, &params)?
                .into_iter()
                .map(|g| g.text),
        );
    }

    let judged: Option<Vec<Vec<Strategy>>> = judge.map(|j| {
        let groups: Vec<(crate::rl::tasks::Prompt, Vec<String>)> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), texts[i * m..(i + 1) * m].to_vec()))
            .collect();
        j.label_batch(&groups)
            .into_iter()
            .map(|r| r.unwrap_or_default())
            .collect()
    });
    let judge_agreement = judged
        .as_ref()
        .filter(|_| task.has_labeler())
        .map(|labels| {
            let aris: Vec<f64> = labels
                .iter()
                .enumerate()
                .filter(|(_, l)| l.len() == m)
                .filter_map(|(i, l)| {
                    let exact: Option<Vec<Strategy>> = texts[i * m..(i + 1) * m]
                        .iter()
                        .map(|a| task.strategy(&prompts[i], a))
                        .collect();
                    exact.map(|e| adjusted_rand_index(l, &e))
                })
                .collect();
            JudgeAgreement {
                groups: labels.len(),
                labelled: aris.len(),
                mean_ari: aris.iter().sum::<f64>() / aris.len().max(1) as f64,
            }
        });
    let mut pass = vec![0.0; m];
    let (mut reward_sum, mut degenerate, mut all_sum, mut correct_sum) = (0.0, 0usize, 0.0, 0.0);
    let mut pooled = HashSet::new();
    let mut histogram: HashMap<i64, (usize, usize)> = HashMap::new();
    let mut per_prompt = Vec::with_capacity(prompts.len());
    let mut entropy_sum = vec![0.0; settings.max_new_tokens.max(1) + 1];
    for (i, prompt) in prompts.iter().enumerate() {
        let answers = &texts[i * m..(i + 1) * m];
        let mut correct = 0;
        let mut correct_unseen = 0;
        let (mut all, mut good) = (HashSet::new(), HashSet::new());
        for (j, a) in answers.iter().enumerate() {
            let r = task.reward(prompt, a);
            reward_sum += r;
            let ok = r > 0.0;
            correct += usize::from(ok);
            if ok && task.uses_unseen(prompt, a) == Some(true) {
                correct_unseen += 1;
            }
            let label = match &judged {
                Some(labels) => labels[i].get(j).copied(),
                None => task.strategy(prompt, a),
            };
            match label {
                Some(Strategy::Cluster(c)) => {
                    all.insert(c);
                    let entry = histogram.entry(c).or_default();
                    entry.0 += 1;
                    if ok {
                        good.insert(c);
                        pooled.insert((i, c));
                        entry.1 += 1;
                    }
                }
                Some(Strategy::Degenerate) => degenerate += 1,
                None => {}
            }
        }
        all_sum += all.len() as f64;
        correct_sum += good.len() as f64;
        for (t, slot) in entropy_sum.iter_mut().enumerate() {
            *slot += position_entropy(answers, t);
        }
        let mut correct_strategy_ids: Vec<i64> = good.iter().copied().collect();
        correct_strategy_ids.sort_unstable();
        // An LM judge's cluster ids are its own, not the task's: nothing to compare.
        let shown = judged
            .is_none()
            .then(|| task.demonstrated(prompt))
            .flatten();
        let correct_undemonstrated = shown.map(|shown| {
            correct_strategy_ids
                .iter()
                .copied()
                .filter(|&c| !shown.contains(&Strategy::Cluster(c)))
                .collect()
        });
        per_prompt.push(PromptResult {
            correct,
            correct_strategies: good.len(),
            needs_unseen: task.needs_unseen(prompt),
            correct_unseen,
            branch_position: branch_position(answers),
            correct_strategy_ids,
            correct_undemonstrated,
        });
        for (k, slot) in pass.iter_mut().enumerate() {
            // Arguments are valid by construction: correct <= m and 1 <= k + 1 <= m.
            *slot += setrl::pass_at_k(m, correct, k + 1).unwrap_or(0.0);
        }
    }
    let n = prompts.len().max(1) as f64;
    let mut hist: Vec<StrategyCount> = histogram
        .into_iter()
        .map(|(cluster, (count, correct))| StrategyCount {
            cluster,
            count,
            correct,
        })
        .collect();
    hist.sort_by(|a, b| b.count.cmp(&a.count).then(a.cluster.cmp(&b.cluster)));
    hist.truncate(50);
    Ok(EvalReport {
        task: task.name().to_owned(),
        prompts: prompts.len(),
        samples: m,
        pass_at_k: pass
            .iter()
            .enumerate()
            .map(|(k, p)| (k + 1, p / n))
            .collect(),
        mean_reward: reward_sum / (n * m as f64),
        strategies_per_prompt: all_sum / n,
        correct_strategies_per_prompt: correct_sum / n,
        pooled_correct_strategies: pooled.len(),
        degenerate_fraction: degenerate as f64 / (n * m as f64),
        histogram: hist,
        per_prompt,
        position_entropy: entropy_sum.iter().map(|e| e / n).collect(),
        settings: Some(settings.clone()),
        judge_agreement,
    })
}

/// Mean common-prefix length (characters) of consecutive pairs of samples: an unbiased
/// estimate of where two independent samples of the prompt first differ.
fn branch_position(answers: &[String]) -> f64 {
    let pairs: Vec<usize> = answers
        .chunks_exact(2)
        .map(|pair| {
            pair[0]
                .chars()
                .zip(pair[1].chars())
                .take_while(|(a, b)| a == b)
                .count()
        })
        .collect();
    pairs.iter().sum::<usize>() as f64 / pairs.len().max(1) as f64
}

/// Empirical entropy (nats) of the character at position `t` over `answers`; a sample that
/// ended before `t` contributes an end-of-text symbol.
fn position_entropy(answers: &[String], t: usize) -> f64 {
    let mut counts: HashMap<Option<char>, usize> = HashMap::new();
    for a in answers {
        *counts.entry(a.chars().nth(t)).or_default() += 1;
    }
    let total = answers.len().max(1) as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn adjusted_rand_index_matches_hand_computed_values() {
        let c = |ids: &[i64]| -> Vec<Strategy> {
            ids.iter()
                .map(|&i| {
                    if i < 0 {
                        Strategy::Degenerate
                    } else {
                        Strategy::Cluster(i)
                    }
                })
                .collect()
        };
        // Relabelled but the same partition.
        assert_eq!(
            adjusted_rand_index(&c(&[0, 0, 1, 1]), &c(&[5, 5, 7, 7])),
            1.0
        );
        // sklearn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714285715.
        let v = adjusted_rand_index(&c(&[0, 0, 1, 1]), &c(&[0, 0, 1, 2]));
        assert!((v - 4.0 / 7.0).abs() < 1e-12, "{v}");
        // Crossed partitions, below chance: index 0, expected 6·3/15 = 1.2, max 4.5, so
        // (0 − 1.2) / (4.5 − 1.2) = −4/11.
        let v = adjusted_rand_index(&c(&[0, 0, 0, 1, 1, 1]), &c(&[0, 1, 2, 0, 1, 2]));
        assert!((v + 4.0 / 11.0).abs() < 1e-12, "{v}");
        // Degenerate is one cluster of its own.
        assert_eq!(adjusted_rand_index(&c(&[-1, -1, 2]), &c(&[3, 3, 4])), 1.0);
        // Chance-free cases: everything in one cluster.
        assert_eq!(adjusted_rand_index(&c(&[1, 1, 1]), &c(&[2, 2, 2])), 1.0);
        assert_eq!(adjusted_rand_index(&c(&[1, 1, 1]), &c(&[1, 2, 3])), 0.0);
    }

    #[test]
    fn branch_position_is_the_mean_common_prefix_of_pairs() {
        // Pairs (1, 2) share 4 characters, (3, 4) share 1.
        assert_eq!(
            branch_position(&texts(&["+5+3", "+5+3", "+5-1", "+3+5"])),
            2.5
        );
        assert_eq!(branch_position(&texts(&["+5", "+3", "x"])), 1.0);
        assert_eq!(branch_position(&[]), 0.0);
    }

    #[test]
    fn position_entropy_counts_ended_samples_as_one_symbol() {
        let a = texts(&["+5", "+3", "+", "+"]);
        assert_eq!(position_entropy(&a, 0), 0.0);
        // position 1: '5', '3', end, end → probabilities 1/4, 1/4, 1/2
        let expected = -(0.25f64 * 0.25f64.ln()) * 2.0 - 0.5 * 0.5f64.ln();
        assert!((position_entropy(&a, 1) - expected).abs() < 1e-12);
    }
}
