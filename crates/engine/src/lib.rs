//! The language-model engine under polyepo: a Llama-family decoder that trains through
//! differentiable kernels, samples in batches with a KV cache, loads real weights (HF
//! safetensors directories, GGUF), and updates them with an in-place AdamW. It knows nothing
//! of reinforcement learning: the `polyepo` crate builds the trainer on top of it.
#![deny(missing_docs)]

pub mod atomic;
pub mod kernels;
pub mod model;
pub mod optim;
pub mod parity;
pub mod sample;
