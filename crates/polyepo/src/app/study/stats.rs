//! Intervals and paired tests for a study.
//!
//! A figure of a study is a ratio of sums over a seeds × prompts table (a mean when every
//! denominator is 1; a subset mean when the denominator is the subset's indicator; "correct
//! strategies per solved prompt" when it counts solved prompts). Both sources of noise are
//! resampled: the seeds (training randomness) and the held-out prompts (which prompts were
//! drawn), crossed, with the same prompts for every seed, since every policy of a study is
//! evaluated on the same prompts. Paired comparisons resample the same indices for both rows
//! and test with an exact sign-flip test over the seeds, the unit of replication.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::rl::train::metrics::null_as_nan;

/// A point estimate with a 95% percentile-bootstrap interval. An estimate over an empty
/// subset is NaN, written `null` in JSON and read back as NaN.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Estimate on the full table.
    #[serde(deserialize_with = "null_as_nan")]
    pub mean: f64,
    /// 2.5th percentile of the bootstrap distribution.
    #[serde(deserialize_with = "null_as_nan")]
    pub lo: f64,
    /// 97.5th percentile.
    #[serde(deserialize_with = "null_as_nan")]
    pub hi: f64,
}

impl Interval {
    /// `0.318 [0.25, 0.39]`.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} [{:.d$}, {:.d$}]",
            self.mean,
            self.lo,
            self.hi,
            d = digits
        )
    }
}

/// A seeds × prompts table of numerators and denominators.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// `num[s][p]`.
    pub num: Vec<Vec<f64>>,
    /// `den[s][p]`, same shape.
    pub den: Vec<Vec<f64>>,
}

impl Table {
    /// A table of means: every denominator 1.
    pub fn mean_of(values: Vec<Vec<f64>>) -> Self {
        let den = values.iter().map(|row| vec![1.0; row.len()]).collect();
        Self { num: values, den }
    }

    fn seeds(&self) -> usize {
        self.num.len()
    }

    fn prompts(&self) -> usize {
        self.num.first().map_or(0, Vec::len)
    }

    fn ratio(&self, seed_w: &[f64], prompt_w: &[f64]) -> f64 {
        let (mut n, mut d) = (0.0, 0.0);
        for (s, &ws) in seed_w.iter().enumerate() {
            if ws == 0.0 {
                continue;
            }
            for (p, &wp) in prompt_w.iter().enumerate() {
                if wp != 0.0 {
                    n += ws * wp * self.num[s][p];
                    d += ws * wp * self.den[s][p];
                }
            }
        }
        if d > 0.0 { n / d } else { f64::NAN }
    }

    /// The ratio of sums over one seed's row.
    pub fn seed_value(&self, seed: usize) -> f64 {
        let n: f64 = self.num[seed].iter().sum();
        let d: f64 = self.den[seed].iter().sum();
        if d > 0.0 { n / d } else { f64::NAN }
    }
}

/// Multinomial resampling weights: how often each of `n` indices was drawn.
fn draw_weights(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut w = vec![0.0; n];
    for _ in 0..n {
        w[rng.random_range(0..n)] += 1.0;
    }
    w
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    let next = sorted[(i + 1).min(sorted.len() - 1)];
    sorted[i] + frac * (next - sorted[i])
}

fn interval(mean: f64, mut draws: Vec<f64>) -> Interval {
    draws.retain(|v| v.is_finite());
    draws.sort_by(f64::total_cmp);
    Interval {
        mean,
        lo: percentile(&draws, 0.025),
        hi: percentile(&draws, 0.975),
    }
}

/// The ratio of sums of `table` with its crossed seeds × prompts bootstrap interval.
pub fn estimate(table: &Table, resamples: usize, seed: u64) -> Interval {
    let (s, p) = (table.seeds(), table.prompts());
    let full = table.ratio(&vec![1.0; s], &vec![1.0; p]);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let draws = (0..resamples)
        .map(|_| {
            let (ws, wp) = (draw_weights(s, &mut rng), draw_weights(p, &mut rng));
            table.ratio(&ws, &wp)
        })
        .collect();
    interval(full, draws)
}

/// A paired comparison of two rows evaluated on the same seeds and prompts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// a − b, with the crossed bootstrap interval (same indices for both rows).
    pub diff: Interval,
    /// Two-sided p-value of the exact sign-flip test on the per-seed differences.
    #[serde(deserialize_with = "null_as_nan")]
    pub p: f64,
    /// Seeds on which a > b.
    pub wins: usize,
    /// Seeds compared.
    pub seeds: usize,
}

/// Compares `a` with `b` (tables of equal shape, seed s of one paired with seed s of the
/// other).
pub fn paired(a: &Table, b: &Table, resamples: usize, seed: u64) -> Paired {
    let (s, p) = (a.seeds(), a.prompts());
    let (ones_s, ones_p) = (vec![1.0; s], vec![1.0; p]);
    let full = a.ratio(&ones_s, &ones_p) - b.ratio(&ones_s, &ones_p);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let draws = (0..resamples)
        .map(|_| {
            let (ws, wp) = (draw_weights(s, &mut rng), draw_weights(p, &mut rng));
            a.ratio(&ws, &wp) - b.ratio(&ws, &wp)
        })
        .collect();
    let diffs: Vec<f64> = (0..s).map(|i| a.seed_value(i) - b.seed_value(i)).collect();
    Paired {
        diff: interval(full, draws),
        p: sign_flip_p(&diffs),
        wins: diffs.iter().filter(|d| **d > 0.0).count(),
        seeds: s,
    }
}

/// Two-sided p-value of the sign-flip (paired permutation) test of mean(`diffs`) = 0:
/// exact over all 2^S sign patterns up to 20 seeds, 2^20 random patterns beyond.
pub fn sign_flip_p(diffs: &[f64]) -> f64 {
    let diffs: Vec<f64> = diffs.iter().copied().filter(|d| d.is_finite()).collect();
    if diffs.is_empty() {
        return f64::NAN;
    }
    let observed = diffs.iter().sum::<f64>().abs();
    // Ties within float noise count as "at least as extreme".
    let tolerance = 1e-12 * diffs.iter().map(|d| d.abs()).sum::<f64>().max(1e-300);
    let count_extreme = |signs: u64| {
        let total: f64 = diffs
            .iter()
            .enumerate()
            .map(|(i, d)| if signs >> i & 1 == 1 { -d } else { *d })
            .sum();
        total.abs() >= observed - tolerance
    };
    if diffs.len() <= 20 {
        let patterns = 1u64 << diffs.len();
        let extreme = (0..patterns).filter(|&m| count_extreme(m)).count();
        extreme as f64 / patterns as f64
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let draws = 1u64 << 20;
        let extreme = (0..draws)
            .filter(|_| {
                let signs: u64 = rng.random();
                count_extreme(signs)
            })
            .count();
        (extreme + 1) as f64 / (draws + 1) as f64
    }
}

/// Mean over seeds with a bootstrap interval over seeds alone (training figures, one value
/// per seed).
pub fn over_seeds(values: &[f64], resamples: usize, seed: u64) -> Interval {
    estimate(
        &Table::mean_of(values.iter().map(|v| vec![*v]).collect()),
        resamples,
        seed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_of_means_gives_its_mean_and_an_interval_around_it() {
        let table = Table::mean_of(vec![vec![0.0, 1.0, 1.0, 0.0], vec![1.0, 1.0, 0.0, 1.0]]);
        let i = estimate(&table, 2000, 1);
        assert!((i.mean - 0.625).abs() < 1e-12);
        assert!(
            i.lo < i.mean && i.mean < i.hi && i.lo >= 0.0 && i.hi <= 1.0,
            "{i:?}"
        );
        // A constant table has a zero-width interval.
        let flat = Table::mean_of(vec![vec![0.5; 5]; 3]);
        let i = estimate(&flat, 500, 1);
        assert_eq!((i.lo, i.mean, i.hi), (0.5, 0.5, 0.5));
    }

    #[test]
    fn ratios_weight_by_their_denominators() {
        // 3 correct strategies over 2 solved prompts in seed 0, 1 over 1 in seed 1.
        let table = Table {
            num: vec![vec![2.0, 1.0, 0.0], vec![0.0, 1.0, 0.0]],
            den: vec![vec![1.0, 1.0, 0.0], vec![0.0, 1.0, 0.0]],
        };
        assert!((estimate(&table, 100, 0).mean - 4.0 / 3.0).abs() < 1e-12);
        assert_eq!(table.seed_value(0), 1.5);
        assert_eq!(table.seed_value(1), 1.0);
    }

    #[test]
    fn the_sign_flip_test_is_exact() {
        // All 4 seeds favour a: only the all-plus and all-minus patterns are as extreme.
        assert!((sign_flip_p(&[1.0, 2.0, 3.0, 4.0]) - 2.0 / 16.0).abs() < 1e-12);
        // Symmetric differences: every pattern is at least as extreme as a zero sum.
        assert_eq!(sign_flip_p(&[1.0, -1.0]), 1.0);
        // 8 seeds all positive: 2 / 256.
        assert!((sign_flip_p(&[0.1; 8]) - 2.0 / 256.0).abs() < 1e-12);
    }

    #[test]
    fn paired_tables_compare_seed_by_seed() {
        let a = Table::mean_of(vec![vec![1.0, 1.0, 0.0]; 5]);
        let b = Table::mean_of(vec![vec![1.0, 0.0, 0.0]; 5]);
        let c = paired(&a, &b, 1000, 3);
        assert!((c.diff.mean - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((c.wins, c.seeds), (5, 5));
        assert!((c.p - 2.0 / 32.0).abs() < 1e-12);
        assert!(c.diff.lo >= 0.0, "{c:?}");
    }
}
