//! Three small applications written from the user documentation alone (README.md,
//! docs/guide.md, docs/singletons.md, docs/consistency.md and the rustdoc of the public
//! crates), run as integration tests of the facade:
//!
//! - `service_directory`: typed request/reply services found by name over loopback QUIC,
//!   the documented errors when a worker exits or its node leaves or crashes, monitors,
//!   and a new worker taking the name over;
//! - `worker_pool`: jobs fanned out to the members of a scoped group over loopback TCP,
//!   members leaving and joining mid-run, a run's scope emptied when the run ends;
//! - `singleton_job`: a quorum singleton across a partition of the in-memory transport,
//!   never two runners at once, and a handover when the holder's node stops.
//!
//! Every step is asserted; waits are bounded and their limits generous (the figures the
//! docs give times ten or more), so a loaded machine slows the tests but does not fail them.

// Tests: a failed step is a panic with the value that failed it.
#![allow(clippy::unwrap_used)]

mod service_directory;
mod singleton_job;
mod support;
mod worker_pool;
