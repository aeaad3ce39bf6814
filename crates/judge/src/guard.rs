//! The failure guard: a run whose LM judge fails on most groups step after step trains on
//! nothing (`skip` zeroes every advantage) or on made-up labels (`distinct`, `single`), so it
//! stops with an error that names the judge and its last failure instead of finishing
//! "successfully". The Rust trainer and the Python package's judge share it.

use crate::JudgeError;

/// Counts consecutive steps on which the judge failed on too many groups.
#[derive(Debug, Clone)]
pub struct FailureGuard {
    max_rate: f64,
    max_steps: usize,
    streak: usize,
    judge: String,
}

impl FailureGuard {
    /// A guard that trips after `max_steps` consecutive steps on which more than `max_rate`
    /// of the groups failed (`max_steps = 0`: never). `judge` names the judge in the error
    /// (its model and endpoint).
    pub fn new(max_rate: f64, max_steps: usize, judge: String) -> Self {
        Self {
            max_rate,
            max_steps,
            streak: 0,
            judge,
        }
    }

    /// Records one step: `failed` of `groups` groups could not be labelled, `last` is the
    /// last failure's reason and detail. Errs when the guard trips.
    pub fn observe(
        &mut self,
        groups: usize,
        failed: usize,
        last: Option<&str>,
    ) -> Result<(), JudgeError> {
        if groups == 0 {
            return Ok(());
        }
        let rate = failed as f64 / groups as f64;
        // "All fail" trips the guard even at max_rate = 1.
        if rate > self.max_rate || (failed == groups && self.max_rate >= 1.0) {
            self.streak += 1;
        } else {
            self.streak = 0;
        }
        if self.max_steps == 0 || self.streak < self.max_steps {
            return Ok(());
        }
        Err(JudgeError::Unusable(format!(
            "the LM judge ({}) failed on {failed} of {groups} groups, and on more than {:.0}% of \
             the groups for {} consecutive steps, so training would learn nothing from it; last \
             failure: {}. Check that the judge server is up and answers the judge prompt with \
             the JSON object it asks for (a server with constrained decoding: \
             judge.response_format = \"json_schema\"), or raise judge.max_failed_steps \
             (0 turns this guard off)",
            self.judge,
            self.max_rate * 100.0,
            self.streak,
            last.unwrap_or("(none recorded)"),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_consecutive_failed_steps_only() {
        let mut g = FailureGuard::new(0.5, 3, "model `m` at http://x/v1".into());
        assert!(g.observe(8, 8, Some("timeout")).is_ok());
        assert!(g.observe(8, 8, Some("timeout")).is_ok());
        // A good step resets the streak.
        assert!(g.observe(8, 4, None).is_ok());
        assert!(g.observe(8, 5, None).is_ok());
        assert!(g.observe(8, 7, None).is_ok());
        let e = g.observe(8, 8, Some("invalid-reply: no JSON")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("model `m` at http://x/v1"), "{text}");
        assert!(text.contains("invalid-reply: no JSON"), "{text}");
        assert!(text.contains("3 consecutive steps"), "{text}");
        assert!(matches!(e, JudgeError::Unusable(_)));
    }

    #[test]
    fn zero_steps_turns_it_off_and_rate_one_means_every_group() {
        let mut off = FailureGuard::new(0.5, 0, "j".into());
        for _ in 0..10 {
            assert!(off.observe(4, 4, None).is_ok());
        }
        let mut all = FailureGuard::new(1.0, 1, "j".into());
        assert!(all.observe(4, 3, None).is_ok());
        assert!(all.observe(4, 4, None).is_err());
        assert!(
            FailureGuard::new(0.5, 1, "j".into())
                .observe(0, 0, None)
                .is_ok()
        );
    }
}
