//! The math verifier, the same code as a JSON Lines task's `match = "math"`.

use pyo3::prelude::*;

/// Whether the final answer in ``response`` (``\boxed{}``, "the answer is", ``####`` or the
/// last number) equals ``answer``: numbers, fractions, ``\frac``, ``\sqrt``, pi,
/// percentages and simple expressions are compared by value, anything else as normalised
/// text. The same code as ``task.jsonl.match = "math"`` in ``polyepo train``.
#[pyfunction]
pub fn verify(response: &str, answer: &str) -> bool {
    polyepo_judge::math::verify(response, answer)
}

/// The final answer ``verify`` would compare, or ``None`` when the response states none.
#[pyfunction]
pub fn extract_answer(response: &str) -> Option<String> {
    polyepo_judge::math::extract_answer(response)
}
