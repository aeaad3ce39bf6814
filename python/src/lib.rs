//! The `polyepo._core` extension module: the set-RL core (`setrl`), the LM judge and the
//! math verifier (`polyepo-judge`) for Python trainers. The Python package `polyepo`
//! re-exports everything here; `polyepo.trl` and `polyepo.verl` build on it.
//!
//! Nothing here panics on user input: every argument is checked and a bad one raises
//! `ValueError` or `TypeError` naming the argument and the position.

mod advantages;
mod groups;
mod inputs;
mod judge;
mod verifier;

use pyo3::prelude::*;

// The batch's vectors are large (16k samples: hundreds of KiB); glibc hands such blocks back
// to the OS after every call, and the page faults of getting them again were most of the
// time. mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The module `polyepo._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(advantages::set_advantages, m)?)?;
    m.add_function(wrap_pyfunction!(advantages::grpo_advantages, m)?)?;
    m.add_function(wrap_pyfunction!(advantages::drgrpo_advantages, m)?)?;
    m.add_function(wrap_pyfunction!(advantages::diversity_bonus_advantages, m)?)?;
    m.add_function(wrap_pyfunction!(advantages::pass_at_k, m)?)?;
    m.add_function(wrap_pyfunction!(verifier::verify, m)?)?;
    m.add_function(wrap_pyfunction!(verifier::extract_answer, m)?)?;
    m.add_class::<judge::Judge>()?;
    m.add_class::<judge::GroupLabels>()?;
    m.add_class::<judge::Outcome>()?;
    m.add(
        "JudgeUnusableError",
        m.py().get_type::<judge::JudgeUnusableError>(),
    )?;
    m.add("DEFAULT_MAX_SETS", setrl::DEFAULT_MAX_SETS)?;
    Ok(())
}
