//! Countdown: reach the target with an arithmetic expression over the given numbers, each used
//! at most once (`+ - * /`, parentheses). Any valid expression counts; the strategy is the
//! expression's shape (its operator tree with the numbers abstracted, commutative operands
//! sorted), labelled exactly by a program, so an LM judge can be compared with exact labels.
//! Held-out prompts draw from larger numbers than training.

use rand::seq::IndexedRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use setrl::Strategy;

use super::{Prompt, PromptStyle, Spec, Task, draw_prompts, strategy_id};
use crate::rl::config::ConfigError;

/// Characters of the compact texts (the tiny model's alphabet).
pub const ALPHABET: &str = "0123456789+-*/()=,>NT ";

/// Settings of the countdown task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CountdownConfig {
    /// Training prompts.
    pub train_prompts: usize,
    /// Held-out prompts.
    pub eval_prompts: usize,
    /// Numbers per prompt.
    pub numbers: usize,
    /// Largest training number.
    pub max_number: i64,
    /// Largest held-out number. Unset: 4 × `max_number`, so the held-out prompts ask for
    /// larger numbers than training saw. Set to `max_number` for an in-range split: fresh
    /// prompts from the training distribution (a held-out prompt never repeats a training
    /// one either way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_max_number: Option<i64>,
    /// `compact` (`N=3,7,25 T=46>`, tiny model) or `instruct` (chat models).
    pub style: PromptStyle,
    /// Seed of the prompt generator.
    pub seed: u64,
    /// Demonstrations per prompt for the warm-up, each of a different shape (1: only the
    /// expression that made the prompt, so the base policy knows one strategy per prompt;
    /// more: the warm-up draws among them with the rank weights skew^r, so the base holds
    /// several). Prompts with fewer shapes keep what they have.
    #[serde(skip_serializing_if = "is_one")]
    pub demos: usize,
}

// Left out of the serialised config at its default, so the warm-up cache of earlier runs
// (keyed by the task's settings) stays valid.
fn is_one(n: &usize) -> bool {
    *n == 1
}

impl Default for CountdownConfig {
    fn default() -> Self {
        Self {
            train_prompts: 256,
            eval_prompts: 64,
            numbers: 4,
            max_number: 12,
            eval_max_number: None,
            style: PromptStyle::Compact,
            seed: 77,
            demos: 1,
        }
    }
}

/// An expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number literal.
    Num(i64),
    /// `lhs op rhs`.
    Op(char, Box<Expr>, Box<Expr>),
}

/// A parser for `+ - * /` and parentheses over non-negative integers.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn expr(&mut self) -> Option<Expr> {
        let mut lhs = self.term()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            lhs = Expr::Op(op as char, Box::new(lhs), Box::new(self.term()?));
        }
        Some(lhs)
    }
    fn term(&mut self) -> Option<Expr> {
        let mut lhs = self.atom()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            lhs = Expr::Op(op as char, Box::new(lhs), Box::new(self.atom()?));
        }
        Some(lhs)
    }
    fn atom(&mut self) -> Option<Expr> {
        match self.peek()? {
            b'(' => {
                self.i += 1;
                let e = self.expr()?;
                (self.peek()? == b')').then(|| self.i += 1)?;
                Some(e)
            }
            c if c.is_ascii_digit() => {
                let start = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()?
                    .parse()
                    .ok()
                    .map(Expr::Num)
            }
            _ => None,
        }
    }
}

/// Parses a whole expression (spaces ignored).
pub fn parse(text: &str) -> Option<Expr> {
    let compact: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut p = Parser { s: &compact, i: 0 };
    let e = p.expr()?;
    (p.i == compact.len()).then_some(e)
}

/// The expression in a reply: the left side of `=` on the last line holding one.
pub fn extract(response: &str) -> Option<String> {
    let line = response
        .lines()
        .rev()
        .find(|l| l.chars().any(|c| c.is_ascii_digit()))?;
    let lhs = line.split('=').next()?;
    let expr: String = lhs
        .chars()
        .filter(|c| c.is_ascii_digit() || "+-*/() ".contains(*c))
        .collect();
    let expr = expr.trim();
    (!expr.is_empty()).then(|| expr.to_owned())
}

/// Exact value as a reduced fraction; `None` on division by zero or overflow.
fn eval(e: &Expr) -> Option<(i64, i64)> {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 {
            a.abs().max(1)
        } else {
            gcd(b, a % b)
        }
    }
    let (n, d) = match e {
        Expr::Num(v) => (*v, 1),
        Expr::Op(op, a, b) => {
            let ((an, ad), (bn, bd)) = (eval(a)?, eval(b)?);
            match op {
                '+' => (
                    an.checked_mul(bd)?.checked_add(bn.checked_mul(ad)?)?,
                    ad.checked_mul(bd)?,
                ),
                '-' => (
                    an.checked_mul(bd)?.checked_sub(bn.checked_mul(ad)?)?,
                    ad.checked_mul(bd)?,
                ),
                '*' => (an.checked_mul(bn)?, ad.checked_mul(bd)?),
                _ if bn == 0 => return None,
                _ => (an.checked_mul(bd)?, ad.checked_mul(bn)?),
            }
        }
    };
    let g = gcd(n, d);
    let (n, d) = (n / g, d / g);
    Some(if d < 0 { (-n, -d) } else { (n, d) })
}

fn leaves(e: &Expr, out: &mut Vec<i64>) {
    match e {
        Expr::Num(v) => out.push(*v),
        Expr::Op(_, a, b) => {
            leaves(a, out);
            leaves(b, out);
        }
    }
}

/// The shape of an expression: numbers become `_`; operands of `+` and `*` are sorted so
/// `a+b` and `b+a` share a shape.
pub fn shape(e: &Expr) -> String {
    match e {
        Expr::Num(_) => "_".into(),
        Expr::Op(op, a, b) => {
            let (mut x, mut y) = (shape(a), shape(b));
            if matches!(op, '+' | '*') && x > y {
                std::mem::swap(&mut x, &mut y);
            }
            format!("({x}{op}{y})")
        }
    }
}

/// Whether `used` takes each number at most as often as `given` offers it.
fn uses_only(used: &[i64], given: &[i64]) -> bool {
    let mut pool = given.to_vec();
    used.iter().all(|u| {
        pool.iter()
            .position(|g| g == u)
            .map(|i| pool.swap_remove(i))
            .is_some()
    })
}

/// A random expression over a random subset (2..=all) of `numbers`.
fn random_expr(numbers: &[i64], rng: &mut dyn RngCore) -> Expr {
    let k = rng.random_range(2..=numbers.len());
    let mut pool: Vec<Expr> = numbers
        .choose_multiple(rng, k)
        .map(|&n| Expr::Num(n))
        .collect();
    while pool.len() > 1 {
        let a = pool.swap_remove(rng.random_range(0..pool.len()));
        let b = pool.swap_remove(rng.random_range(0..pool.len()));
        let op = *['+', '-', '*', '/'].choose(rng).unwrap_or(&'+');
        pool.push(Expr::Op(op, Box::new(a), Box::new(b)));
    }
    pool.pop().unwrap_or(Expr::Num(numbers[0]))
}

/// Up to `count` expressions of distinct shapes that reach `target`, `first` first. Drawn
/// from a generator seeded by the prompt's text, so asking for them leaves the prompt
/// generator's own sequence (and so every prompt) unchanged.
fn other_shapes(
    first: &Expr,
    numbers: &[i64],
    target: i64,
    count: usize,
    text: &str,
) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(strategy_id(text) as u64);
    let mut shapes = vec![shape(first)];
    let mut out = vec![render(first)];
    for _ in 0..400 * count {
        if out.len() >= count {
            break;
        }
        let e = random_expr(numbers, &mut rng);
        if eval(&e) == Some((target, 1)) && !shapes.contains(&shape(&e)) {
            shapes.push(shape(&e));
            out.push(render(&e));
        }
    }
    out
}

/// Text of an expression, fully parenthesised except at the top.
pub fn render(e: &Expr) -> String {
    fn inner(e: &Expr) -> String {
        match e {
            Expr::Num(v) => v.to_string(),
            Expr::Op(op, a, b) => format!("({}{op}{})", inner(a), inner(b)),
        }
    }
    match e {
        Expr::Op(op, a, b) => format!("{}{op}{}", inner(a), inner(b)),
        leaf => inner(leaf),
    }
}

/// The countdown task.
#[derive(Debug, Clone)]
pub struct Countdown {
    train: Vec<Prompt>,
    eval: Vec<Prompt>,
    instruct: bool,
}

/// What grading and demonstrating a countdown prompt needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountdownSpec {
    /// The value to hit.
    pub target: i64,
    /// The numbers an expression may use, each at most once.
    pub numbers: Vec<i64>,
    /// The expression that made the prompt (the warm-up's demonstration with `demos = 1`).
    pub example: String,
    /// With `demos > 1`: up to `demos` expressions of distinct shapes, `example` first, that
    /// the warm-up draws from; empty otherwise.
    pub shapes: Vec<String>,
}

/// The prompt's countdown spec; `None` for a prompt of another task (which earns nothing).
fn spec(prompt: &Prompt) -> Option<&CountdownSpec> {
    match &prompt.spec {
        Spec::Countdown(spec) => Some(spec),
        _ => None,
    }
}

impl Countdown {
    /// Generates prompts whose targets some expression reaches (an integer in 1..=200).
    pub fn new(cfg: &CountdownConfig) -> Result<Self, ConfigError> {
        if cfg.style == PromptStyle::FewShot {
            return Err(crate::rl::config::ConfigError {
                origin: "config".into(),
                key: "task.countdown.style".into(),
                message: "`few-shot` is a reach style; countdown takes `compact` or `instruct`"
                    .into(),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let instruct = cfg.style == PromptStyle::Instruct;
        let mut draw = |max: i64| {
            let numbers: Vec<i64> = (0..cfg.numbers.max(2))
                .map(|_| rng.random_range(1..=max))
                .collect();
            let e = random_expr(&numbers, &mut rng);
            let Some((target, 1)) = eval(&e) else {
                return None;
            };
            if !(1..=200).contains(&target) {
                return None;
            }
            let listed: Vec<String> = numbers.iter().map(i64::to_string).collect();
            let text = if instruct {
                format!(
                    "Using the numbers {} (each at most once) and + - * / with parentheses, write an expression equal to {target}. Reply with the expression only.",
                    listed.join(", ")
                )
            } else {
                format!("N={} T={target}>", listed.join(","))
            };
            let shapes = if cfg.demos > 1 {
                other_shapes(&e, &numbers, target, cfg.demos, &text)
            } else {
                Vec::new()
            };
            let spec = Spec::Countdown(CountdownSpec {
                target,
                numbers,
                example: render(&e),
                shapes,
            });
            Some(Prompt { text, spec })
        };
        let train = draw_prompts(cfg.train_prompts, "task.countdown", || draw(cfg.max_number))?;
        let seen: std::collections::HashSet<String> =
            train.iter().map(|p| p.text.clone()).collect();
        let eval_max = cfg
            .eval_max_number
            .unwrap_or(cfg.max_number.saturating_mul(4));
        let eval = draw_prompts(cfg.eval_prompts, "task.countdown", || {
            draw(eval_max).filter(|p| !seen.contains(&p.text))
        })?;
        Ok(Self {
            train,
            eval,
            instruct,
        })
    }

    fn answer(&self, response: &str) -> Option<Expr> {
        if self.instruct {
            parse(&extract(response)?)
        } else {
            parse(response)
        }
    }
}

impl Task for Countdown {
    fn name(&self) -> &str {
        "countdown"
    }
    fn train_prompts(&self) -> &[Prompt] {
        &self.train
    }
    fn eval_prompts(&self) -> &[Prompt] {
        &self.eval
    }
    fn reward(&self, prompt: &Prompt, response: &str) -> f64 {
        let (
            Some(CountdownSpec {
                target, numbers, ..
            }),
            Some(e),
        ) = (spec(prompt), self.answer(response))
        else {
            return 0.0;
        };
        let mut used = Vec::new();
        leaves(&e, &mut used);
        f64::from(u8::from(
            uses_only(&used, numbers) && eval(&e) == Some((*target, 1)),
        ))
    }
    fn strategy(&self, prompt: &Prompt, response: &str) -> Option<Strategy> {
        let numbers = spec(prompt).map_or(&[][..], |s| &s.numbers);
        Some(match self.answer(response) {
            Some(e) => {
                let mut used = Vec::new();
                leaves(&e, &mut used);
                if uses_only(&used, numbers) {
                    Strategy::Cluster(strategy_id(&shape(&e)))
                } else {
                    Strategy::Degenerate
                }
            }
            None => Strategy::Degenerate,
        })
    }
    fn has_labeler(&self) -> bool {
        true
    }
    fn wants_chat_template(&self) -> bool {
        self.instruct
    }
    fn demonstration(&self, prompt: &Prompt, skew: f64, rng: &mut dyn RngCore) -> Option<String> {
        // The generating expression (one habitual way to reach each target), or with
        // `demos > 1` one of several shapes, rank r drawn with weight skew^r.
        let spec = spec(prompt)?;
        let examples = &spec.shapes;
        if examples.is_empty() {
            return Some(spec.example.clone());
        }
        let weights: Vec<f64> = (0..examples.len()).map(|r| skew.powi(r as i32)).collect();
        let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
        let mut pick = examples.len().saturating_sub(1);
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                pick = i;
                break;
            }
            u -= w;
        }
        examples.get(pick).cloned()
    }
    fn alphabet(&self) -> &str {
        ALPHABET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(target: i64, numbers: &[i64]) -> Prompt {
        Prompt {
            text: String::new(),
            spec: Spec::Countdown(CountdownSpec {
                target,
                numbers: numbers.to_vec(),
                example: String::new(),
                shapes: Vec::new(),
            }),
        }
    }

    #[test]
    fn grades_and_labels_expressions() {
        let task = Countdown::new(&CountdownConfig::default()).unwrap();
        let p = prompt(24, &[3, 8, 2, 5]);
        assert_eq!(task.reward(&p, "3*8"), 1.0);
        assert_eq!(task.reward(&p, "(5+3)*(8/2)-8"), 0.0, "8 used twice");
        assert_eq!(task.reward(&p, "(5-2)*8"), 1.0);
        assert_eq!(task.reward(&p, "8/(2/3)*2"), 0.0, "2 used twice");
        assert_eq!(
            task.reward(&prompt(12, &[8, 2, 3]), "8/(2/3)"),
            1.0,
            "exact fractions: 8/(2/3) = 12"
        );
        assert_eq!(task.reward(&p, "3*7+3"), 0.0);
        assert_eq!(task.reward(&p, "8/0"), 0.0);
        assert_eq!(
            task.strategy(&p, "3*8"),
            task.strategy(&p, "8*3"),
            "commutative operands share a shape"
        );
        assert_ne!(task.strategy(&p, "3*8"), task.strategy(&p, "(5-2)*8"));
        assert_eq!(
            task.strategy(&p, "3*9"),
            Some(Strategy::Degenerate),
            "9 is not given"
        );
        assert_eq!(task.strategy(&p, "hello"), Some(Strategy::Degenerate));
        let instruct = Countdown::new(&CountdownConfig {
            style: PromptStyle::Instruct,
            ..CountdownConfig::default()
        })
        .unwrap();
        assert_eq!(instruct.reward(&p, "Sure!\n(5 - 2) * 8 = 24"), 1.0);
    }

    #[test]
    fn several_demonstrations_have_distinct_shapes_and_leave_prompts_unchanged() {
        let one = Countdown::new(&CountdownConfig::default()).unwrap();
        let cfg = CountdownConfig {
            demos: 4,
            ..CountdownConfig::default()
        };
        let many = Countdown::new(&cfg).unwrap();
        let texts = |t: &Countdown| -> Vec<String> {
            t.train_prompts().iter().map(|p| p.text.clone()).collect()
        };
        assert_eq!(texts(&one), texts(&many));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut with_several = 0;
        for p in many.train_prompts() {
            let examples = &spec(p).unwrap().shapes;
            assert!(!examples.is_empty() && examples.len() <= 4);
            with_several += usize::from(examples.len() > 1);
            let shapes: std::collections::HashSet<Option<Strategy>> =
                examples.iter().map(|e| many.strategy(p, e)).collect();
            assert_eq!(shapes.len(), examples.len(), "{examples:?}");
            let seen: std::collections::HashSet<Option<Strategy>> = (0..60)
                .map(|_| {
                    // skew 1: every shape equally likely, so 60 draws see all of them.
                    let demo = many.demonstration(p, 1.0, &mut rng).unwrap();
                    assert_eq!(many.reward(p, &demo), 1.0, "{demo}");
                    many.strategy(p, &demo)
                })
                .collect();
            assert_eq!(seen.len(), examples.len());
        }
        assert!(
            with_several * 2 > many.train_prompts().len(),
            "{with_several}"
        );
        // The default config serialises without the key (warm-up caches stay valid).
        assert!(
            !toml::to_string(&CountdownConfig::default())
                .unwrap()
                .contains("demos")
        );
    }

    #[test]
    fn prompts_are_solvable_and_held_out_numbers_are_larger() {
        let cfg = CountdownConfig::default();
        let task = Countdown::new(&cfg).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for p in task.train_prompts() {
            let demo = task.demonstration(p, 0.0, &mut rng).unwrap();
            assert_eq!(task.reward(p, &demo), 1.0, "{} -> {demo}", p.text);
        }
        assert!(
            task.eval_prompts().iter().any(|p| spec(p)
                .unwrap()
                .numbers
                .iter()
                .any(|&n| n > cfg.max_number))
        );
    }

    #[test]
    fn an_in_range_split_draws_fresh_prompts_from_the_training_range() {
        let cfg = CountdownConfig {
            max_number: 4,
            eval_max_number: Some(4),
            eval_prompts: 128,
            ..CountdownConfig::default()
        };
        let task = Countdown::new(&cfg).unwrap();
        let train: std::collections::HashSet<&str> = task
            .train_prompts()
            .iter()
            .map(|p| p.text.as_str())
            .collect();
        for p in task.eval_prompts() {
            assert!(
                spec(p)
                    .unwrap()
                    .numbers
                    .iter()
                    .all(|&n| (1..=4).contains(&n)),
                "{}",
                p.text
            );
            assert!(
                !train.contains(p.text.as_str()),
                "{} repeats a training prompt",
                p.text
            );
        }
        // The default config keeps its serialised form (warm-up caches are keyed by it).
        let text = toml::to_string(&CountdownConfig::default()).unwrap();
        assert!(!text.contains("eval_max_number"), "{text}");
    }
}
