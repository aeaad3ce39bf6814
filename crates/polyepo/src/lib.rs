//! polyepo: post-train language models to explore with set reinforcement learning
//! (POLY-EPO). Three layers, each depending only on the ones before it:
//!
//! - [`setrl`] (its own crate): set objectives and marginal set advantages, no tensors;
//! - [`polyepo_engine`] (its own crate): the language model, sampler and optimizer;
//! - [`rl`]: the trainer built from both (configuration, tasks, judges, loss, loop);
//! - [`app`]: what users run on top (evaluation, comparisons, reports, the server).
#![deny(missing_docs)]

pub mod app;
pub mod rl;
