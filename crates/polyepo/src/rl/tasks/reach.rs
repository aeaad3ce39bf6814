//! The built-in synthetic domain "reach": reach target T using only steps from the allowed
//! set A, in at most `task.reach.max_steps` steps (4 by default). Prompt `T=7 A=+3,-1,+5 >`, answer `+3+5-1`.
//!
//! Every prompt admits many valid answers in many strategies; the strategy is the multiset
//! of steps used, labelled exactly by a program. Held-out prompts use allowed sets that never
//! appear in training, so a model that only knows its favourite steps fails on them.

use std::collections::BTreeMap;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use setrl::Strategy;

use super::{Prompt, PromptStyle, Spec, Task, draw_prompts, strategy_id};
use crate::rl::config::ConfigError;

/// Longest answer that earns a reward, by default: short enough that the tiny model's
/// 10-token responses hold every answer.
pub const DEFAULT_MAX_STEPS: usize = 4;

/// Most answers (multisets of steps, the empty one included) a prompt's enumeration may
/// visit: `solutions` lists every multiset, so `max_steps` and `set_size` are bounded together.
pub const MAX_ENUMERATED: u64 = 200_000;

/// How many multisets of at most `max_steps` steps from `set_size` steps there are (the
/// empty one included): C(max_steps + set_size, set_size), saturating.
pub fn multisets(set_size: usize, max_steps: usize) -> u64 {
    let (n, k) = (
        (max_steps + set_size) as u64,
        set_size.min(max_steps) as u64,
    );
    (0..k).fold(1u64, |acc, i| acc.saturating_mul(n - i) / (i + 1))
}

/// Characters the task's texts use: the synthetic model's alphabet.
pub const ALPHABET: &str = "0123456789+-=,>TA ";

/// Settings of the reach task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReachConfig {
    /// Training prompts.
    pub train_prompts: usize,
    /// Held-out prompts.
    pub eval_prompts: usize,
    /// Steps of the training allowed sets (held-out sets mix in the others of ±1..±9).
    pub train_steps: Vec<i64>,
    /// Size of each allowed set.
    pub set_size: usize,
    /// Seed of the prompt generator.
    pub seed: u64,
    /// `compact` (`T=7 A=+3,-1,+5>`, for the tiny model), `instruct` (an English request
    /// sent through the chat template, for instruction-tuned models; the answer is the last
    /// run of steps in the reply) or `few-shot` (plain text after three worked examples, for
    /// small real models; the answer is the last run of steps on the reply's first line).
    pub style: PromptStyle,
    /// Smallest and largest target, inclusive.
    pub targets: [i64; 2],
    /// Fewest distinct correct strategies (step multisets) a prompt must admit: prompts with
    /// fewer are not drawn, so exploration can matter on every prompt. 3 by default; 2 makes
    /// many more distinct prompts from the same steps and targets.
    pub min_solutions: usize,
    /// Which held-out prompts to draw: `shifted` (each allowed set holds a step never allowed
    /// in training: does the policy transfer?), `training` (allowed sets and targets from the
    /// training distribution, prompts that are not training prompts: did it learn the task?)
    /// or `train-prompts` (the first `eval_prompts` distinct training prompts themselves: what
    /// did training find on the prompts it trained on, e.g. strategies never demonstrated).
    pub held_out: HeldOut,
    /// How many habitual strategies per prompt the warm-up demonstrates: the first `habits`
    /// solutions in habit order (most uses of the largest step, then fewest steps). 0: any
    /// solution (the skew alone makes habits). With `habits` below `min_solutions` every
    /// prompt has correct strategies the base was never shown, all written with steps it was
    /// shown: strategies RL can discover rather than ones it cannot emit.
    pub habits: usize,
    /// Longest answer, in steps, that earns a reward (1..=12; 4 by default). Larger bounds
    /// make the number of correct strategies per prompt grow without a practical limit (a
    /// step and its opposite cancel), the domain where a policy can find strategies it was
    /// never shown. Compact answers take two tokens a step: set `rollout.max_new_tokens` to
    /// at least 2 × max_steps + 1.
    pub max_steps: usize,
}

/// The distribution of the held-out prompts of reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeldOut {
    /// Each allowed set holds at least one step outside `train_steps`.
    Shifted,
    /// The training distribution, without the training prompts themselves.
    Training,
    /// The training prompts themselves (not held out: an evaluation of what training found).
    TrainPrompts,
}

impl Default for ReachConfig {
    fn default() -> Self {
        Self {
            train_prompts: 256,
            eval_prompts: 64,
            train_steps: vec![1, 2, 3, 5, -1, -2],
            set_size: 3,
            seed: 1234,
            style: PromptStyle::Compact,
            targets: [-6, 12],
            min_solutions: 3,
            held_out: HeldOut::Shifted,
            habits: 0,
            max_steps: DEFAULT_MAX_STEPS,
        }
    }
}

/// What grading a reach prompt needs: its target and allowed steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachSpec {
    /// The number to reach.
    pub target: i64,
    /// The steps an answer may use, in descending order.
    pub allowed: Vec<i64>,
}

/// The reach task.
#[derive(Debug, Clone)]
pub struct Reach {
    train: Vec<Prompt>,
    eval: Vec<Prompt>,
    style: PromptStyle,
    train_steps: Vec<i64>,
    habits: usize,
    max_steps: usize,
}

/// The answer inside a free-form reply: the last run of signed one-digit steps (`+3+5-1`),
/// spaces ignored. A compact reply is its own answer.
pub fn extract_answer(response: &str) -> Option<String> {
    let compact: Vec<u8> = response
        .bytes()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let is_step = |j: usize| {
        j + 1 < compact.len()
            && matches!(compact[j], b'+' | b'-')
            && (b'1'..=b'9').contains(&compact[j + 1])
            && !compact.get(j + 2).is_some_and(u8::is_ascii_digit)
    };
    let mut best: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < compact.len() {
        let mut j = i;
        while is_step(j) {
            j += 2;
        }
        if j > i {
            best = Some((i, j));
            i = j;
        } else {
            i += 1;
        }
    }
    best.map(|(a, b)| String::from_utf8_lossy(&compact[a..b]).into_owned())
}

/// Text of an instruction-style prompt.
pub fn instruct_text(target: i64, allowed: &[i64], max_steps: usize) -> String {
    let steps: Vec<String> = allowed.iter().map(|s| format!("{s:+}")).collect();
    format!(
        "Reach the number {target} starting from 0, using only these steps: {}. Each step may be used any number of times, at most {max_steps} steps in all. Reply with the steps only, for example +3+3-1.",
        steps.join(", ")
    )
}

/// Worked examples that open every few-shot prompt: one per kind of answer (one step of
/// each, a repeated step, a negative step).
const FEW_SHOT_EXAMPLES: &str = "Reach 4 with steps +3, +1: +3+1\nReach 6 with steps +5, +2: +2+2+2\nReach 3 with steps +2, -1: +2+2-1\n";

/// Text of a few-shot prompt: the worked examples, then the question, ending where the
/// answer starts.
pub fn few_shot_text(target: i64, allowed: &[i64]) -> String {
    let steps: Vec<String> = allowed.iter().map(|s| format!("{s:+}")).collect();
    format!(
        "{FEW_SHOT_EXAMPLES}Reach {target} with steps {}:",
        steps.join(", ")
    )
}

/// Parses `+3-1+5` into steps; `None` if it is not a sequence of signed digits.
pub fn parse_steps(answer: &str) -> Option<Vec<i64>> {
    let answer = answer.trim();
    let bytes = answer.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|c| {
            let digit = (c[1] as char).to_digit(10)? as i64;
            match c[0] {
                b'+' if digit > 0 => Some(digit),
                b'-' if digit > 0 => Some(-digit),
                _ => None,
            }
        })
        .collect()
}

/// The strategy of an answer: its multiset of steps (`+3+5-1` and `-1+3+5` are one).
pub fn strategy_of(steps: &[i64]) -> Strategy {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for &s in steps {
        *counts.entry(s).or_default() += 1;
    }
    let canonical: Vec<String> = counts.iter().map(|(s, c)| format!("{s:+}x{c}")).collect();
    Strategy::Cluster(strategy_id(&canonical.join(",")))
}

/// Every multiset of at most `max_steps` steps from `allowed` that sums to `target`.
pub fn solutions(allowed: &[i64], target: i64, max_steps: usize) -> Vec<Vec<i64>> {
    fn extend(
        allowed: &[i64],
        start: usize,
        left: usize,
        sum: i64,
        target: i64,
        cur: &mut Vec<i64>,
        out: &mut Vec<Vec<i64>>,
    ) {
        if !cur.is_empty() && sum == target {
            out.push(cur.clone());
        }
        if left == 0 {
            return;
        }
        for i in start..allowed.len() {
            cur.push(allowed[i]);
            extend(allowed, i, left - 1, sum + allowed[i], target, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    extend(allowed, 0, max_steps, 0, target, &mut Vec::new(), &mut out);
    out
}

/// Prompt text for a target and allowed set.
pub fn prompt_text(target: i64, allowed: &[i64]) -> String {
    let steps: Vec<String> = allowed.iter().map(|s| format!("{s:+}")).collect();
    format!("T={target} A={}>", steps.join(","))
}

/// Text of an answer.
pub fn answer_text(steps: &[i64]) -> String {
    steps.iter().map(|s| format!("{s:+}")).collect()
}

impl Reach {
    /// Generates the train and held-out prompts.
    pub fn new(cfg: &ReachConfig) -> Result<Self, ConfigError> {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let all: Vec<i64> = (1..=9).chain((1..=9).map(|s| -s)).collect();
        let novel: Vec<i64> = all
            .iter()
            .copied()
            .filter(|s| !cfg.train_steps.contains(s))
            .collect();
        let mut draw = |shifted: bool| {
            let mut allowed: Vec<i64> = if shifted {
                // At least one step never seen in training.
                let mut a = vec![*novel.choose(&mut rng).unwrap_or(&9)];
                while a.len() < cfg.set_size {
                    let s = *all.choose(&mut rng).unwrap_or(&1);
                    if !a.contains(&s) {
                        a.push(s);
                    }
                }
                a
            } else {
                let mut pool = cfg.train_steps.clone();
                pool.shuffle(&mut rng);
                pool.truncate(cfg.set_size);
                pool
            };
            allowed.sort_unstable_by(|a, b| b.cmp(a));
            let target = rng.random_range(cfg.targets[0]..=cfg.targets[1]);
            // Prompts with several strategies only: exploration must matter.
            (solutions(&allowed, target, cfg.max_steps).len() >= cfg.min_solutions).then(|| {
                Prompt {
                    text: match cfg.style {
                        PromptStyle::Instruct => instruct_text(target, &allowed, cfg.max_steps),
                        PromptStyle::FewShot => few_shot_text(target, &allowed),
                        PromptStyle::Compact => prompt_text(target, &allowed),
                    },
                    spec: Spec::Reach(ReachSpec { target, allowed }),
                }
            })
        };
        let train = draw_prompts(cfg.train_prompts, "task.reach", || draw(false))?;
        let eval = match cfg.held_out {
            HeldOut::Shifted => draw_prompts(cfg.eval_prompts, "task.reach", || draw(true))?,
            HeldOut::Training => {
                // Distinct prompts that are not training prompts: a held-out set that repeats
                // a handful of prompts would give intervals far too narrow.
                let mut seen: std::collections::HashSet<String> =
                    train.iter().map(|p| p.text.clone()).collect();
                draw_prompts(cfg.eval_prompts, "task.reach.held_out", || {
                    draw(false).filter(|p| seen.insert(p.text.clone()))
                })
                .map_err(|e| ConfigError {
                    message: format!(
                        "{}: the {} training prompts leave too few unseen prompts of the training distribution; lower task.reach.train_prompts or eval_prompts, or widen task.reach.targets",
                        e.message.split(':').next().unwrap_or(&e.message),
                        cfg.train_prompts
                    ),
                    ..e
                })?
            }
            HeldOut::TrainPrompts => {
                let mut seen = std::collections::HashSet::new();
                let distinct: Vec<Prompt> = train
                    .iter()
                    .filter(|p| seen.insert(p.text.clone()))
                    .take(cfg.eval_prompts)
                    .cloned()
                    .collect();
                if distinct.len() < cfg.eval_prompts {
                    return Err(ConfigError {
                        origin: "config".into(),
                        key: "task.reach.eval_prompts".into(),
                        message: format!(
                            "is {} but the training prompts hold only {} distinct prompts; lower task.reach.eval_prompts to {} or raise task.reach.train_prompts",
                            cfg.eval_prompts,
                            distinct.len(),
                            distinct.len()
                        ),
                    });
                }
                distinct
            }
        };
        Ok(Self {
            train,
            eval,
            style: cfg.style,
            train_steps: cfg.train_steps.clone(),
            habits: cfg.habits,
            max_steps: cfg.max_steps,
        })
    }

    /// The solutions of `spec` the warm-up may demonstrate, in habit order: all of them, or
    /// the first `habits`.
    pub fn demonstrable(&self, spec: &ReachSpec) -> Vec<Vec<i64>> {
        let mut order = super::habit_order(
            solutions(&spec.allowed, spec.target, self.max_steps),
            &spec.allowed,
        );
        if self.habits > 0 {
            order.truncate(self.habits);
        }
        order
    }

    /// The answer part of a response: all of it in compact style, the last run of steps in
    /// instruct style, the last run of steps on the first line in few-shot style (a model
    /// continuing the pattern goes on to invent the next example).
    fn answer(&self, response: &str) -> Option<String> {
        match self.style {
            PromptStyle::Compact => Some(response.to_owned()),
            PromptStyle::Instruct => extract_answer(response),
            PromptStyle::FewShot => extract_answer(response.lines().next().unwrap_or("")),
        }
    }

    /// The prompt's reach spec; `None` for a prompt of another task (which earns nothing).
    fn spec(prompt: &Prompt) -> Option<&ReachSpec> {
        match &prompt.spec {
            Spec::Reach(spec) => Some(spec),
            _ => None,
        }
    }
}

impl Task for Reach {
    fn name(&self) -> &str {
        "reach"
    }
    fn train_prompts(&self) -> &[Prompt] {
        &self.train
    }
    fn eval_prompts(&self) -> &[Prompt] {
        &self.eval
    }
    fn reward(&self, prompt: &Prompt, response: &str) -> f64 {
        let Some(ReachSpec { target, allowed }) = Self::spec(prompt) else {
            return 0.0;
        };
        match self.answer(response).and_then(|a| parse_steps(&a)) {
            Some(steps)
                if steps.len() <= self.max_steps
                    && steps.iter().all(|s| allowed.contains(s))
                    && steps.iter().sum::<i64>() == *target =>
            {
                1.0
            }
            _ => 0.0,
        }
    }
    fn strategy(&self, prompt: &Prompt, response: &str) -> Option<Strategy> {
        let allowed = Self::spec(prompt).map_or(&[][..], |s| &s.allowed);
        Some(match self.answer(response).and_then(|a| parse_steps(&a)) {
            // Off-task answers (steps outside A, or too long) are degenerate, not a strategy.
            Some(steps)
                if steps.len() <= self.max_steps && steps.iter().all(|s| allowed.contains(s)) =>
            {
                strategy_of(&steps)
            }
            _ => Strategy::Degenerate,
        })
    }
    fn has_labeler(&self) -> bool {
        true
    }
    /// A solution drawn by [`super::skewed_pick`] (habits lean on the largest step), steps
    /// in descending order.
    fn demonstration(
        &self,
        prompt: &Prompt,
        skew: f64,
        rng: &mut dyn rand::RngCore,
    ) -> Option<String> {
        let spec = Self::spec(prompt)?;
        let mut steps = super::skewed_pick(self.demonstrable(spec), skew, rng)?;
        steps.sort_unstable_by(|a, b| b.cmp(a));
        Some(answer_text(&steps))
    }
    fn demonstrated(&self, prompt: &Prompt) -> Option<Vec<Strategy>> {
        Some(
            self.demonstrable(Self::spec(prompt)?)
                .iter()
                .map(|steps| strategy_of(steps))
                .collect(),
        )
    }
    fn alphabet(&self) -> &str {
        ALPHABET
    }
    fn wants_chat_template(&self) -> bool {
        self.style == PromptStyle::Instruct
    }
    fn needs_unseen(&self, prompt: &Prompt) -> Option<bool> {
        let ReachSpec { target, allowed } = Self::spec(prompt)?;
        let unseen = |s: &i64| !self.train_steps.contains(s);
        Some(
            solutions(allowed, *target, self.max_steps)
                .iter()
                .all(|solution| solution.iter().any(unseen)),
        )
    }
    fn uses_unseen(&self, _prompt: &Prompt, response: &str) -> Option<bool> {
        let steps = self.answer(response).and_then(|a| parse_steps(&a))?;
        Some(steps.iter().any(|s| !self.train_steps.contains(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grades_and_labels() {
        let task = Reach::new(&ReachConfig::default()).unwrap();
        let p = Prompt {
            text: prompt_text(7, &[5, 3, -1]),
            spec: Spec::Reach(ReachSpec {
                target: 7,
                allowed: vec![5, 3, -1],
            }),
        };
        assert_eq!(parse_steps("+3+5-1"), Some(vec![3, 5, -1]));
        assert_eq!(parse_steps("+3+"), None);
        assert_eq!(parse_steps("+0"), None);
        assert_eq!(task.reward(&p, "+3+5-1"), 1.0);
        assert_eq!(task.reward(&p, "+5+3-1"), 1.0);
        assert_eq!(task.reward(&p, "+5+3"), 0.0);
        assert_eq!(task.reward(&p, "+7"), 0.0, "7 is not allowed");
        assert_eq!(task.reward(&p, "+3+3+3-1-1"), 0.0, "too long");
        // Order does not change the strategy; a different multiset does.
        assert_eq!(task.strategy(&p, "+3+5-1"), task.strategy(&p, "-1+5+3"));
        assert_ne!(task.strategy(&p, "+3+5-1"), task.strategy(&p, "+5+5-3"));
        assert_eq!(task.strategy(&p, "hello"), Some(Strategy::Degenerate));
        assert_eq!(task.strategy(&p, "+7"), Some(Strategy::Degenerate));
    }

    #[test]
    fn the_held_out_split_tells_discovery_from_reuse() {
        let task = Reach::new(&ReachConfig::default()).unwrap();
        let prompt = |target: i64, allowed: &[i64]| Prompt {
            text: prompt_text(target, allowed),
            spec: Spec::Reach(ReachSpec {
                target,
                allowed: allowed.to_vec(),
            }),
        };
        // Training steps are 1, 2, 3, 5, -1, -2: 4 = +2+2 needs nothing new; 8 with
        // {+8, +9, -4} cannot be reached without an unseen step.
        assert_eq!(task.needs_unseen(&prompt(4, &[9, 2, -4])), Some(false));
        assert_eq!(task.needs_unseen(&prompt(8, &[9, 8, -4])), Some(true));
        let p = prompt(4, &[9, 2, -4]);
        assert_eq!(task.uses_unseen(&p, "+2+2"), Some(false));
        assert_eq!(task.uses_unseen(&p, "+9-4+2-4+2"), Some(true));
        assert_eq!(task.uses_unseen(&p, "hello"), None);
        // Every held-out prompt allows at least one unseen step; some need one.
        let split: Vec<bool> = task
            .eval_prompts()
            .iter()
            .map(|p| task.needs_unseen(p).unwrap())
            .collect();
        assert!(split.iter().any(|&b| b) && split.iter().any(|&b| !b));
        assert!(
            task.train_prompts()
                .iter()
                .all(|p| task.needs_unseen(p) == Some(false))
        );
    }

    #[test]
    fn the_training_held_out_split_draws_new_prompts_from_the_training_distribution() {
        let cfg = ReachConfig {
            train_prompts: 64,
            eval_prompts: 12,
            targets: [1, 12],
            held_out: HeldOut::Training,
            ..ReachConfig::default()
        };
        let task = Reach::new(&cfg).unwrap();
        let train: Vec<&str> = task
            .train_prompts()
            .iter()
            .map(|p| p.text.as_str())
            .collect();
        for p in task.eval_prompts() {
            let ReachSpec { target, allowed } = Reach::spec(p).unwrap();
            assert!((1..=12).contains(target), "{}", p.text);
            assert!(
                allowed.iter().all(|s| cfg.train_steps.contains(s)),
                "{}",
                p.text
            );
            assert!(
                !train.contains(&p.text.as_str()),
                "{} is a training prompt",
                p.text
            );
            assert_eq!(task.needs_unseen(p), Some(false));
        }
        // Every held-out prompt once.
        let distinct: std::collections::HashSet<&str> = task
            .eval_prompts()
            .iter()
            .map(|p| p.text.as_str())
            .collect();
        assert_eq!(distinct.len(), task.eval_prompts().len());
        // The shifted split (the default) of the same settings allows unseen steps.
        let shifted = Reach::new(&ReachConfig {
            held_out: HeldOut::Shifted,
            ..cfg
        })
        .unwrap();
        assert!(shifted.eval_prompts().iter().all(|p| {
            let allowed = &Reach::spec(p).unwrap().allowed;
            allowed.iter().any(|s| !shifted.train_steps.contains(s))
        }));
    }

    #[test]
    fn every_prompt_admits_at_least_min_solutions_strategies() {
        let count = |min_solutions: usize| {
            let task = Reach::new(&ReachConfig {
                min_solutions,
                ..ReachConfig::default()
            })
            .unwrap();
            let counts: Vec<usize> = task
                .train_prompts()
                .iter()
                .chain(task.eval_prompts())
                .map(|p| {
                    let ReachSpec { target, allowed } = Reach::spec(p).unwrap();
                    solutions(allowed, *target, DEFAULT_MAX_STEPS).len()
                })
                .collect();
            assert!(counts.iter().all(|&c| c >= min_solutions), "{counts:?}");
            counts
        };
        count(3);
        // Lowering the bound admits prompts with exactly two strategies.
        assert!(count(2).contains(&2));
    }

    #[test]
    fn a_training_split_with_no_unseen_prompts_left_says_how_to_make_room() {
        let cfg = ReachConfig {
            train_prompts: 256,
            eval_prompts: 8,
            targets: [4, 4],
            held_out: HeldOut::Training,
            ..ReachConfig::default()
        };
        let err = Reach::new(&cfg).expect_err("no unseen prompt is left");
        assert_eq!(err.key, "task.reach.held_out");
        assert!(
            err.message.contains("256 training prompts")
                && err.message.contains("task.reach.train_prompts"),
            "{}",
            err.message
        );
    }

    #[test]
    fn instruct_replies_are_graded_on_their_last_run_of_steps() {
        let cfg = ReachConfig {
            style: PromptStyle::Instruct,
            ..ReachConfig::default()
        };
        let task = Reach::new(&cfg).unwrap();
        assert!(task.wants_chat_template());
        let p = Prompt {
            text: instruct_text(7, &[5, 3, -1], DEFAULT_MAX_STEPS),
            spec: Spec::Reach(ReachSpec {
                target: 7,
                allowed: vec![5, 3, -1],
            }),
        };
        assert_eq!(
            extract_answer("Sure! The steps are: +3 +5 -1."),
            Some("+3+5-1".into())
        );
        assert_eq!(extract_answer("no steps here"), None);
        assert_eq!(
            extract_answer("+12"),
            None,
            "multi-digit numbers are not steps"
        );
        assert_eq!(task.reward(&p, "Sure! The steps are: +3 +5 -1."), 1.0);
        assert_eq!(task.reward(&p, "I think +5+3"), 0.0);
        assert_eq!(task.strategy(&p, "nothing"), Some(Strategy::Degenerate));
    }

    #[test]
    fn few_shot_replies_are_graded_on_their_first_line() {
        let task = Reach::new(&ReachConfig {
            style: PromptStyle::FewShot,
            ..ReachConfig::default()
        })
        .unwrap();
        assert!(!task.wants_chat_template());
        let text = &task.train_prompts()[0].text;
        assert!(
            text.starts_with(FEW_SHOT_EXAMPLES) && text.ends_with(':'),
            "{text}"
        );
        let p = Prompt {
            text: few_shot_text(7, &[5, 3, -1]),
            spec: Spec::Reach(ReachSpec {
                target: 7,
                allowed: vec![5, 3, -1],
            }),
        };
        assert_eq!(task.reward(&p, " +5+3-1\nReach 2 with steps +1: +1+1"), 1.0);
        // The invented next example on line 2 is not the answer.
        assert_eq!(
            task.reward(&p, " +5+5\nReach 7 with steps +5, +3, -1: +5+3-1"),
            0.0
        );
        assert_eq!(task.strategy(&p, "\n+5+3-1"), Some(Strategy::Degenerate));
        let countdown =
            super::super::countdown::Countdown::new(&super::super::countdown::CountdownConfig {
                style: PromptStyle::FewShot,
                ..Default::default()
            });
        assert!(countdown.is_err_and(|e| e.key == "task.countdown.style"));
    }

    #[test]
    fn prompts_have_several_solutions_and_held_out_sets_are_new() {
        let cfg = ReachConfig::default();
        let task = Reach::new(&cfg).unwrap();
        assert_eq!(task.train_prompts().len(), cfg.train_prompts);
        assert_eq!(task.eval_prompts().len(), cfg.eval_prompts);
        for p in task.train_prompts() {
            let ReachSpec { target, allowed: a } = Reach::spec(p).unwrap();
            assert!(solutions(a, *target, DEFAULT_MAX_STEPS).len() >= 3);
            assert!(a.iter().all(|s| cfg.train_steps.contains(s)));
        }
        for p in task.eval_prompts() {
            let a = &Reach::spec(p).unwrap().allowed;
            assert!(a.iter().any(|s| !cfg.train_steps.contains(s)), "{a:?}");
        }
    }

    #[test]
    fn demonstrations_are_correct_and_skewed() {
        let task = Reach::new(&ReachConfig::default()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let p = &task.train_prompts()[0];
        let mut seen = std::collections::HashMap::new();
        for _ in 0..400 {
            let d = task.demonstration(p, 0.3, &mut rng).unwrap();
            assert_eq!(task.reward(p, &d), 1.0, "{d}");
            *seen
                .entry(format!("{:?}", task.strategy(p, &d)))
                .or_insert(0) += 1;
        }
        let top = seen.values().copied().max().unwrap();
        assert!(top > 200, "the favourite strategy dominates: {seen:?}");
    }

    #[test]
    fn with_habits_the_warm_up_shows_only_those_and_every_prompt_keeps_others() {
        let cfg = ReachConfig {
            habits: 2,
            ..ReachConfig::default()
        };
        let task = Reach::new(&cfg).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut tokens_shown = std::collections::HashSet::new();
        for p in task.train_prompts() {
            let shown = task.demonstrated(p).unwrap();
            assert_eq!(shown.len(), 2);
            let spec = Reach::spec(p).unwrap();
            let all: Vec<Strategy> = solutions(&spec.allowed, spec.target, DEFAULT_MAX_STEPS)
                .iter()
                .map(|s| strategy_of(s))
                .collect();
            assert!(
                all.iter().any(|s| !shown.contains(s)),
                "every prompt keeps a strategy never demonstrated"
            );
            for _ in 0..20 {
                let d = task.demonstration(p, 0.5, &mut rng).unwrap();
                assert_eq!(task.reward(p, &d), 1.0, "{d}");
                let strategy = task.strategy(p, &d).unwrap();
                assert!(shown.contains(&strategy), "{d} is not one of the habits");
                tokens_shown.extend(parse_steps(&d).unwrap());
            }
        }
        // Every training step is written in some demonstration: what is left to discover
        // is a combination, never a token the base cannot emit.
        for s in &cfg.train_steps {
            assert!(tokens_shown.contains(s), "step {s} never demonstrated");
        }
        // Off (the default): every solution may be demonstrated.
        let all = Reach::new(&ReachConfig::default()).unwrap();
        let p = &all.train_prompts()[0];
        let spec = Reach::spec(p).unwrap();
        assert_eq!(
            all.demonstrated(p).unwrap().len(),
            solutions(&spec.allowed, spec.target, DEFAULT_MAX_STEPS).len()
        );
    }

    #[test]
    fn the_step_bound_is_a_setting_and_longer_bounds_admit_more_strategies() {
        let long = ReachConfig {
            max_steps: 8,
            ..ReachConfig::default()
        };
        let task = Reach::new(&long).unwrap();
        let short = Reach::new(&ReachConfig::default()).unwrap();
        let p = Prompt {
            text: prompt_text(4, &[3, 2, -1]),
            spec: Spec::Reach(ReachSpec {
                target: 4,
                allowed: vec![3, 2, -1],
            }),
        };
        let eight = "+3+3+3+2-1-1-1-1-1-1"; // 10 steps: too long even at 8
        assert_eq!(task.reward(&p, eight), 0.0);
        let seven = "+3+3-1-1+2-1-1"; // 7 steps sum 4
        assert_eq!(task.reward(&p, seven), 1.0);
        assert_ne!(task.strategy(&p, seven), Some(Strategy::Degenerate));
        assert_eq!(short.reward(&p, seven), 0.0);
        assert_eq!(short.strategy(&p, seven), Some(Strategy::Degenerate));
        // More steps, more correct strategies, each one unique and correct.
        let (few, many) = (
            solutions(&[3, 2, -1], 4, DEFAULT_MAX_STEPS),
            solutions(&[3, 2, -1], 4, 8),
        );
        assert!(
            many.len() > 2 * few.len(),
            "{} vs {}",
            many.len(),
            few.len()
        );
        let strategies: std::collections::HashSet<_> =
            many.iter().map(|s| strategy_of(s)).collect();
        assert_eq!(strategies.len(), many.len());
        assert!(
            many.iter()
                .all(|s| s.len() <= 8 && s.iter().sum::<i64>() == 4)
        );
    }

    #[test]
    fn the_enumeration_bound_counts_every_multiset() {
        // Brute force: each non-empty multiset of positive steps has one sum between the
        // smallest step and k times the largest, so listing the solutions of every such
        // target lists each multiset once.
        for (size, k) in [(2, 3), (3, 4), (3, 8), (5, 6)] {
            let allowed: Vec<i64> = (1..=size as i64).collect();
            let listed: usize = (1..=(size * k) as i64)
                .map(|t| solutions(&allowed, t, k).len())
                .sum();
            assert_eq!(multisets(size, k), listed as u64 + 1, "size {size}, k {k}");
        }
    }

    #[test]
    fn the_train_prompts_split_is_the_training_prompts_themselves() {
        let cfg = ReachConfig {
            held_out: HeldOut::TrainPrompts,
            eval_prompts: 32,
            ..ReachConfig::default()
        };
        let task = Reach::new(&cfg).unwrap();
        let texts: std::collections::HashSet<&str> = task
            .eval_prompts()
            .iter()
            .map(|p| p.text.as_str())
            .collect();
        assert_eq!(texts.len(), 32, "distinct prompts");
        assert!(
            task.eval_prompts()
                .iter()
                .all(|p| task.train_prompts().contains(p))
        );
        let too_many = ReachConfig {
            eval_prompts: 300,
            ..cfg
        };
        let e = Reach::new(&too_many).unwrap_err();
        assert_eq!(e.key, "task.reach.eval_prompts");
        assert!(e.message.contains("distinct"), "{}", e.message);
    }
}
