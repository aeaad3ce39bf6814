//! The `polyepo` command line: one module per subcommand.

pub mod advantages;
pub mod bench;
pub mod compare;
pub mod device;
pub mod eval;
pub mod experiment;
pub mod judge;
pub mod logprobs;
pub mod report;
pub mod sample;
pub mod serve;
pub mod train;
