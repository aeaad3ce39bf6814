//! polyepo: post-train language models to explore with set reinforcement learning
//! (POLY-EPO). The set-RL core lives in the [`setrl`] crate; this crate holds everything
//! around it, and the `polyepo` binary.
#![deny(missing_docs)]

pub mod advantage_request;
pub mod atomic;
pub mod compare;
pub mod config;
pub mod eval;
pub mod judge;
pub mod loss;
pub mod model;
pub mod optim;
pub mod plot;
pub mod report;
pub mod sample;
pub mod serve;
pub mod tasks;
pub mod train;
