//! The second built-in synthetic domain, "digits": write a D-digit number using only digits
//! from the allowed set A whose digits sum to S. Prompt `S=14 A=5,3,2 D=4>`, answer `5522`
//! (or `5333`, `3353`, ...). The strategy is the multiset of digits; order is surface form.
//! Held-out prompts use digit sets with a digit never allowed in training.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use setrl::Strategy;

use super::{Prompt, Spec, Task, draw_prompts, habit_order, skewed_pick, strategy_id};
use crate::rl::config::ConfigError;

/// Characters of the task's texts.
pub const ALPHABET: &str = "0123456789=,>SAD ";

/// Settings of the digits task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigitsConfig {
    /// Training prompts.
    pub train_prompts: usize,
    /// Held-out prompts.
    pub eval_prompts: usize,
    /// Digits the training sets draw from (held-out sets add one of the others of 1..9).
    pub train_digits: Vec<i64>,
    /// Digits per allowed set.
    pub set_size: usize,
    /// Lengths D the prompts ask for.
    pub lengths: Vec<usize>,
    /// Seed of the prompt generator.
    pub seed: u64,
}

impl Default for DigitsConfig {
    fn default() -> Self {
        Self {
            train_prompts: 256,
            eval_prompts: 64,
            train_digits: vec![1, 2, 3, 5, 7],
            set_size: 3,
            lengths: vec![3, 4],
            seed: 4321,
        }
    }
}

/// Every multiset of exactly `len` digits from `allowed` summing to `sum`.
pub fn solutions(allowed: &[i64], sum: i64, len: usize) -> Vec<Vec<i64>> {
    fn extend(
        allowed: &[i64],
        start: usize,
        left: usize,
        sum: i64,
        cur: &mut Vec<i64>,
        out: &mut Vec<Vec<i64>>,
    ) {
        if left == 0 {
            if sum == 0 {
                out.push(cur.clone());
            }
            return;
        }
        for i in start..allowed.len() {
            cur.push(allowed[i]);
            extend(allowed, i, left - 1, sum - allowed[i], cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    extend(allowed, 0, len, sum, &mut Vec::new(), &mut out);
    out
}

/// The digits task.
#[derive(Debug, Clone)]
pub struct Digits {
    train: Vec<Prompt>,
    eval: Vec<Prompt>,
    train_digits: Vec<i64>,
}

/// What grading a digits prompt needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitsSpec {
    /// The digit sum S.
    pub sum: i64,
    /// The digits an answer may use, in descending order.
    pub allowed: Vec<i64>,
    /// The number of digits D.
    pub len: usize,
}

/// The prompt's digits spec; `None` for a prompt of another task (which earns nothing).
fn spec(prompt: &Prompt) -> Option<&DigitsSpec> {
    match &prompt.spec {
        Spec::Digits(spec) => Some(spec),
        _ => None,
    }
}

/// The digits of a reply when it is a D-digit string of allowed digits.
fn valid_digits(response: &str, allowed: &[i64], len: usize) -> Option<Vec<i64>> {
    let digits: Vec<i64> = response
        .trim()
        .chars()
        .map(|c| c.to_digit(10).map(i64::from))
        .collect::<Option<_>>()?;
    (digits.len() == len && digits.iter().all(|d| allowed.contains(d))).then_some(digits)
}

impl Digits {
    /// Generates the train and held-out prompts.
    pub fn new(cfg: &DigitsConfig) -> Result<Self, ConfigError> {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let novel: Vec<i64> = (1..=9).filter(|d| !cfg.train_digits.contains(d)).collect();
        let mut draw = |held_out: bool| {
            let mut allowed = cfg.train_digits.clone();
            allowed.shuffle(&mut rng);
            allowed.truncate(cfg.set_size);
            if held_out {
                allowed[0] = *novel.choose(&mut rng).unwrap_or(&9);
            }
            allowed.sort_unstable_by(|a, b| b.cmp(a));
            allowed.dedup();
            let len = *cfg.lengths.choose(&mut rng).unwrap_or(&3);
            let sum = rng.random_range(len as i64..=9 * len as i64);
            (solutions(&allowed, sum, len).len() >= 3).then(|| {
                let digits: Vec<String> = allowed.iter().map(i64::to_string).collect();
                Prompt {
                    text: format!("S={sum} A={} D={len}>", digits.join(",")),
                    spec: Spec::Digits(DigitsSpec { sum, allowed, len }),
                }
            })
        };
        let train = draw_prompts(cfg.train_prompts, "task.digits", || draw(false))?;
        let eval = draw_prompts(cfg.eval_prompts, "task.digits", || draw(true))?;
        Ok(Self {
            train,
            eval,
            train_digits: cfg.train_digits.clone(),
        })
    }
}

impl Task for Digits {
    fn name(&self) -> &str {
        "digits"
    }
    fn train_prompts(&self) -> &[Prompt] {
        &self.train
    }
    fn eval_prompts(&self) -> &[Prompt] {
        &self.eval
    }
    fn reward(&self, prompt: &Prompt, response: &str) -> f64 {
        let Some(DigitsSpec { sum, allowed, len }) = spec(prompt) else {
            return 0.0;
        };
        f64::from(u8::from(
            valid_digits(response, allowed, *len).is_some_and(|d| d.iter().sum::<i64>() == *sum),
        ))
    }
    fn strategy(&self, prompt: &Prompt, response: &str) -> Option<Strategy> {
        let Some(DigitsSpec { allowed, len, .. }) = spec(prompt) else {
            return Some(Strategy::Degenerate);
        };
        Some(match valid_digits(response, allowed, *len) {
            Some(mut digits) => {
                digits.sort_unstable();
                let canonical: String = digits.iter().map(i64::to_string).collect();
                Strategy::Cluster(strategy_id(&canonical))
            }
            None => Strategy::Degenerate,
        })
    }
    fn has_labeler(&self) -> bool {
        true
    }
    fn wants_chat_template(&self) -> bool {
        false
    }
    fn demonstration(
        &self,
        prompt: &Prompt,
        skew: f64,
        rng: &mut dyn rand::RngCore,
    ) -> Option<String> {
        let DigitsSpec { sum, allowed, len } = spec(prompt)?;
        let ordered = habit_order(solutions(allowed, *sum, *len), allowed);
        let mut digits = skewed_pick(ordered, skew, rng)?;
        digits.sort_unstable_by(|a, b| b.cmp(a));
        Some(digits.iter().map(i64::to_string).collect())
    }
    fn alphabet(&self) -> &str {
        ALPHABET
    }
    fn needs_unseen(&self, prompt: &Prompt) -> Option<bool> {
        let DigitsSpec { sum, allowed, len } = spec(prompt)?;
        let unseen = |d: &i64| !self.train_digits.contains(d);
        Some(
            solutions(allowed, *sum, *len)
                .iter()
                .all(|solution| solution.iter().any(unseen)),
        )
    }
    fn uses_unseen(&self, prompt: &Prompt, response: &str) -> Option<bool> {
        let DigitsSpec { allowed, len, .. } = spec(prompt)?;
        let digits = valid_digits(response, allowed, *len)?;
        Some(digits.iter().any(|d| !self.train_digits.contains(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_labels_and_demonstrates() {
        let task = Digits::new(&DigitsConfig::default()).unwrap();
        let p = Prompt {
            text: "S=14 A=5,3,2 D=4>".into(),
            spec: Spec::Digits(DigitsSpec {
                sum: 14,
                allowed: vec![5, 3, 2],
                len: 4,
            }),
        };
        assert_eq!(task.reward(&p, "5522"), 1.0);
        assert_eq!(task.reward(&p, "2552"), 1.0);
        assert_eq!(task.reward(&p, "5333"), 1.0);
        assert_eq!(task.reward(&p, "554"), 0.0);
        assert_eq!(task.reward(&p, "5531"), 0.0, "1 is not allowed");
        assert_eq!(task.strategy(&p, "5522"), task.strategy(&p, "2255"));
        assert_ne!(task.strategy(&p, "5522"), task.strategy(&p, "5333"));
        assert_eq!(task.strategy(&p, "55x2"), Some(Strategy::Degenerate));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for prompt in task.train_prompts().iter().take(20) {
            let d = task.demonstration(prompt, 0.3, &mut rng).unwrap();
            assert_eq!(task.reward(prompt, &d), 1.0, "{} -> {d}", prompt.text);
        }
        for prompt in task.eval_prompts() {
            let allowed = &spec(prompt).unwrap().allowed;
            assert!(
                allowed
                    .iter()
                    .any(|d| !DigitsConfig::default().train_digits.contains(d))
            );
        }
    }
}
