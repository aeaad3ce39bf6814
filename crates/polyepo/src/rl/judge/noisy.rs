//! A weak strategy judge simulated on top of an exact one, for the ablation of what label
//! noise does to POLY-EPO: clusters merged into the one before them in their group, split into one
//! cluster per response, or whole groups left unlabelled (then `judge.failure_policy`
//! decides, as it does for an LM judge that fails).
//!
//! The randomness is a hash of (seed, prompt, responses, cluster), not a generator's state,
//! so a resumed run draws the same noise as an uninterrupted one.

use polyepo_judge::lm::FailurePolicy;
use polyepo_judge::outcome::{FailureReason, JudgeFailure};
use setrl::Strategy;

use super::{JudgeError, StrategyJudge, lm::JudgeStats};
use crate::rl::config::{LabelNoise, LabelNoiseKind};
use crate::rl::tasks::{Prompt, strategy_id};

/// Adds [`LabelNoise`] to the labels of `inner`.
pub struct NoisyJudge<'a> {
    inner: Box<dyn StrategyJudge + 'a>,
    noise: LabelNoise,
    failure_policy: FailurePolicy,
    seed: u64,
}

impl<'a> NoisyJudge<'a> {
    /// Wraps `inner`; `failure_policy` applies to groups the `fail` kind drops.
    pub fn new(
        inner: Box<dyn StrategyJudge + 'a>,
        noise: LabelNoise,
        failure_policy: FailurePolicy,
        seed: u64,
    ) -> Self {
        Self {
            inner,
            noise,
            failure_policy,
            seed,
        }
    }

    /// A uniform number in [0, 1) fixed by the group and `salt`.
    fn uniform(&self, prompt: &Prompt, responses: &[String], salt: &str) -> f64 {
        let key = format!(
            "{}\u{1}{}\u{1}{}\u{1}{salt}",
            self.seed,
            prompt.text,
            responses.join("\u{2}")
        );
        // FNV alone mixes similar keys poorly; a splitmix64 finalizer spreads them.
        let mut z = (strategy_id(&key) as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn distort(
        &self,
        prompt: &Prompt,
        responses: &[String],
        labels: Vec<Strategy>,
    ) -> Result<Vec<Strategy>, JudgeError> {
        let p = self.noise.p;
        let clusters: Vec<i64> = {
            let mut seen = Vec::new();
            for l in &labels {
                if let Strategy::Cluster(c) = l
                    && !seen.contains(c)
                {
                    seen.push(*c);
                }
            }
            seen
        };
        let fresh = |salt: String| Strategy::Cluster(strategy_id(&format!("noise\u{1}{salt}")));
        Ok(match self.noise.kind {
            LabelNoiseKind::Fail => {
                if self.uniform(prompt, responses, "fail") >= p {
                    return Ok(labels);
                }
                match self.failure_policy {
                    FailurePolicy::Skip => {
                        return Err(JudgeError::Skipped(JudgeFailure {
                            reason: FailureReason::Simulated,
                            detail: format!("label_noise.kind = fail at p = {p}"),
                        }));
                    }
                    FailurePolicy::Distinct => (0..labels.len())
                        .map(|i| fresh(format!("{}\u{1}{i}", prompt.text)))
                        .collect(),
                    FailurePolicy::Single => vec![fresh(prompt.text.clone()); labels.len()],
                }
            }
            LabelNoiseKind::Merge => {
                // In order of first appearance, a chosen cluster joins the one before it
                // (which may itself have joined an earlier one).
                let mut merged: Vec<(i64, i64)> = Vec::with_capacity(clusters.len());
                for (i, &c) in clusters.iter().enumerate() {
                    let chosen = i > 0 && self.uniform(prompt, responses, &format!("merge{c}")) < p;
                    let into = if chosen { merged[i - 1].1 } else { c };
                    merged.push((c, into));
                }
                let target = |c: i64| {
                    merged
                        .iter()
                        .find(|(from, _)| *from == c)
                        .map_or(c, |(_, into)| *into)
                };
                labels
                    .into_iter()
                    .map(|l| match l {
                        Strategy::Cluster(c) => Strategy::Cluster(target(c)),
                        other => other,
                    })
                    .collect()
            }
            LabelNoiseKind::Split => labels
                .into_iter()
                .enumerate()
                .map(|(i, l)| match l {
                    Strategy::Cluster(c)
                        if self.uniform(prompt, responses, &format!("split{c}")) < p =>
                    {
                        fresh(format!("{c}\u{1}{i}"))
                    }
                    other => other,
                })
                .collect(),
        })
    }
}

impl StrategyJudge for NoisyJudge<'_> {
    fn label(&self, prompt: &Prompt, responses: &[String]) -> Result<Vec<Strategy>, JudgeError> {
        let labels = self.inner.label(prompt, responses)?;
        self.distort(prompt, responses, labels)
    }

    fn label_batch(
        &self,
        groups: &[(Prompt, Vec<String>)],
    ) -> Vec<Result<Vec<Strategy>, JudgeError>> {
        self.inner
            .label_batch(groups)
            .into_iter()
            .zip(groups)
            .map(|(labels, (prompt, responses))| self.distort(prompt, responses, labels?))
            .collect()
    }

    fn stats(&self) -> Option<JudgeStats> {
        self.inner.stats()
    }

    /// The inner judge's guard: its own failures count, the simulated ones do not (they
    /// are the ablation's treatment).
    fn guard(&self) -> Option<super::guard::FailureGuard> {
        self.inner.guard()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rl::tasks::Spec;

    struct Fixed(Vec<Strategy>);
    impl StrategyJudge for Fixed {
        fn label(&self, _: &Prompt, _: &[String]) -> Result<Vec<Strategy>, JudgeError> {
            Ok(self.0.clone())
        }
    }

    fn judge(kind: LabelNoiseKind, p: f64, policy: FailurePolicy) -> NoisyJudge<'static> {
        let labels = vec![
            Strategy::Cluster(1),
            Strategy::Cluster(1),
            Strategy::Cluster(2),
            Strategy::Degenerate,
        ];
        NoisyJudge::new(Box::new(Fixed(labels)), LabelNoise { kind, p }, policy, 0)
    }

    fn distinct(labels: &[Strategy]) -> usize {
        let mut c: Vec<i64> = labels
            .iter()
            .filter_map(|l| match l {
                Strategy::Cluster(c) => Some(*c),
                Strategy::Degenerate => None,
            })
            .collect();
        c.sort_unstable();
        c.dedup();
        c.len()
    }

    #[test]
    fn noise_merges_splits_and_fails_as_configured() {
        let prompt = Prompt {
            text: "T=3 A=+1,+2>".into(),
            spec: Spec::Unverified,
        };
        let responses: Vec<String> = ["+1+2", "+2+1", "+1+1+1", "x"].map(String::from).to_vec();
        let label = |kind, p, policy| judge(kind, p, policy).label(&prompt, &responses);
        let exact = label(LabelNoiseKind::Merge, 0.0, FailurePolicy::Skip).unwrap();
        assert_eq!(distinct(&exact), 2);
        let merged = label(LabelNoiseKind::Merge, 1.0, FailurePolicy::Skip).unwrap();
        assert_eq!(distinct(&merged), 1, "{merged:?}");
        assert_eq!(merged[3], Strategy::Degenerate);
        let split = label(LabelNoiseKind::Split, 1.0, FailurePolicy::Skip).unwrap();
        assert_eq!(distinct(&split), 3, "{split:?}");
        assert!(matches!(
            label(LabelNoiseKind::Fail, 1.0, FailurePolicy::Skip),
            Err(JudgeError::Skipped(_))
        ));
        let d = label(LabelNoiseKind::Fail, 1.0, FailurePolicy::Distinct).unwrap();
        assert_eq!(distinct(&d), 4);
        let s = label(LabelNoiseKind::Fail, 1.0, FailurePolicy::Single).unwrap();
        assert_eq!(distinct(&s), 1);
        // The same group draws the same noise every time (resume-safe).
        let half = |_| label(LabelNoiseKind::Split, 0.5, FailurePolicy::Skip).unwrap();
        assert_eq!(half(0), half(1));
    }

    #[test]
    fn the_rate_of_noise_follows_p() {
        let j = judge(LabelNoiseKind::Fail, 0.3, FailurePolicy::Skip);
        let failed = (0..2000)
            .filter(|i| {
                let prompt = Prompt {
                    text: format!("prompt {i}"),
                    spec: Spec::Unverified,
                };
                j.label(&prompt, &["a".to_owned()]).is_err()
            })
            .count();
        assert!((500..700).contains(&failed), "{failed} of 2000 at p = 0.3");
    }
}
