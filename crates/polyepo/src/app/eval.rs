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
    /// The settings the evaluation was made with, so that a stored report is reused only
    /// for the same settings (absent in reports written before it was recorded).
    #[serde(default)]
    pub settings: Option<EvalSettings>,
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
    let mut pass = vec![0.0; m];
    let (mut reward_sum, mut degenerate, mut all_sum, mut correct_sum) = (0.0, 0usize, 0.0, 0.0);
    let mut pooled = HashSet::new();
    let mut histogram: HashMap<i64, (usize, usize)> = HashMap::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let answers = &texts[i * m..(i + 1) * m];
        let mut correct = 0;
        let (mut all, mut good) = (HashSet::new(), HashSet::new());
        for (j, a) in answers.iter().enumerate() {
            let r = task.reward(prompt, a);
            reward_sum += r;
            let ok = r > 0.0;
            correct += usize::from(ok);
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
        settings: Some(settings.clone()),
    })
}
