//! The `polyepo` command line: one module per subcommand.

pub mod advantages;
pub mod device;
pub mod sample;
