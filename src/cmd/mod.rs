//! One module per subcommand: argument parsing and output, nothing else.

pub mod check;
pub mod compare;
pub mod eval;
pub mod gate;
pub mod memory;
pub mod report;
pub mod repro;
pub mod score;
pub mod step;

use ovbench_harness::Provenance;

/// Cargo features this binary was built with, for the build fingerprint.
pub fn features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(feature = "cuda") {
        f.push("cuda");
    }
    f
}

/// Provenance of this invocation (git state of the checkout the binary was built from, host, build).
pub fn provenance() -> Provenance {
    Provenance::collect(
        env!("CARGO_PKG_VERSION"),
        &features(),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
    )
}
