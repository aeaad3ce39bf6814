//! The `polyepo` command line: one module per subcommand.

pub mod advantages;
pub mod bench;
pub mod device;
pub mod sample;
pub mod train;
