//! The unbiased pass@k estimator (Chen et al., 2021).

use crate::error::{Result, SetRlError};

/// pass@k from `correct` correct answers among `samples` draws:
/// 1 − C(samples − correct, k) / C(samples, k), in product form
/// 1 − Π_{i = samples − correct + 1}^{samples} (1 − k / i), which never overflows.
///
/// # Errors
/// [`SetRlError::InvalidPassAtK`] unless correct <= samples and 1 <= k <= samples.
pub fn pass_at_k(samples: usize, correct: usize, k: usize) -> Result<f64> {
    if correct > samples || k == 0 || k > samples {
        return Err(SetRlError::InvalidPassAtK {
            samples,
            correct,
            k,
        });
    }
    if samples - correct < k {
        return Ok(1.0);
    }
    let miss: f64 = (samples - correct + 1..=samples)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product();
    Ok(1.0 - miss)
}
