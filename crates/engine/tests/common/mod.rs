//! Helpers shared by the engine's tests and, through `#[path]`, by polyepo's.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{Tensor, Var};
use polyepo_engine::model::{Llama, LoraConfig};

/// The SmolLM2-135M-Instruct GGUF that `scripts/fetch-model.sh` puts into `models/`.
pub fn smollm2_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model.sh",
        path.display()
    );
    path
}

/// Adds rank-`rank` LoRA adapters (α = 4, default targets) to `model`, seeded by
/// `seed`, and returns their variables.
pub fn add_lora(model: &mut Llama, rank: usize, seed: u64) -> Vec<(String, Var)> {
    model
        .add_lora(
            &LoraConfig {
                rank,
                alpha: 4.0,
                ..LoraConfig::default()
            },
            seed,
        )
        .unwrap()
}

/// The bit patterns of an f32 tensor, for exact comparisons.
pub fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}
