//! The `polyepo` command line: one module per subcommand.

pub mod advantages;
