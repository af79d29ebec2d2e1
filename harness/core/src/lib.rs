//! Model-agnostic measurement for ovbench.
//!
//! Nothing here knows about vision encoders: the suites hand in closures to time,
//! allocator counts to read, and serialisable bodies to wrap in a record.

pub mod alloc;
pub mod clock;
pub mod engine;
pub mod gpu;
pub mod nvml_sampler;
pub mod probe;
pub mod provenance;
pub mod record;
pub mod stats;
pub mod table;

pub use alloc::CountingAlloc;
pub use provenance::Provenance;
pub use record::{write_atomic, Record, RecordError};
pub use stats::Summary;
