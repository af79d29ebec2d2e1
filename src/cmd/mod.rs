//! One module per subcommand: argument parsing and output, nothing else.

pub mod score;
pub mod step;
