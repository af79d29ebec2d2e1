//! Model-agnostic measurement for ovbench.
//!
//! Nothing here knows about vision encoders: the suites hand in closures to time,
//! allocator counts to read, and typed bodies to wrap in a record ([`envelope`]).

pub mod alloc;
pub mod clock;
pub mod engine;
pub mod envelope;
pub mod gpu;
pub mod guard;
pub mod io;
pub mod limits;
pub mod nvml_sampler;
pub mod probe;
pub mod progress;
pub mod provenance;
pub mod record;
pub mod stats;
pub mod table;

pub use alloc::CountingAlloc;
pub use envelope::{Direction, Envelope, Measurement, Metric, Record, RecordBody, Workload};
pub use io::{write_atomic, IoError};
pub use provenance::Provenance;
pub use stats::Summary;
