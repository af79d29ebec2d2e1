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

/// The record file `out` names: itself when it ends in `.json` (or is `-`, standard output),
/// else a time-stamped `<kind>-<time>.json` inside that folder.
pub fn record_path(out: &std::path::Path, kind: &str) -> std::path::PathBuf {
    if out.extension().is_some_and(|e| e == "json") || ovbench_harness::io::is_stdout(out) {
        out.to_path_buf()
    } else {
        ovbench_harness::record::default_path(out, kind)
    }
}

/// Wraps `body` in its envelope with this invocation's provenance and writes it atomically;
/// says where it went (on stderr when the record itself goes to standard output).
pub fn write_record<T: ovbench_harness::RecordBody>(
    path: &std::path::Path,
    body: T,
) -> anyhow::Result<()> {
    let rec = ovbench_harness::Record::new(provenance(), body);
    ovbench_harness::write_atomic(path, &rec.to_json())?;
    if ovbench_harness::io::is_stdout(path) {
        eprintln!("record: written to standard output");
    } else {
        println!("record: {}", path.display());
    }
    Ok(())
}
