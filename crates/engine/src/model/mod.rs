//! The language-model engine: a Llama-family decoder that trains (differentiable ops only),
//! samples with a KV cache, and loads real weights (HF safetensors directories, GGUF).

pub mod cache;
pub mod config;
pub mod error;
pub mod linear;
pub mod llama;
pub mod norm;
pub mod params;
pub mod rope;

pub use cache::KvCache;
pub use config::LlamaConfig;
pub use error::{ModelError, ModelResult};
pub use llama::Llama;
pub use params::WeightMap;
pub mod batch;
pub mod logprobs;
pub mod trainable;

pub use batch::Batch;
pub use trainable::{LoraConfig, NamedVar};
pub mod tokenizer;
pub use tokenizer::TextTokenizer;
pub mod load;
pub use load::{LoadedModel, load_model};
pub mod chat;
pub mod checkpoint;
pub mod file_blocks;
pub mod lora_product;
pub mod ops;
pub mod shared;
