//! Integration tests for stategraph: one binary, one module per scenario.
//!
//! - `concurrency`: shared handles, several handles per file, readers racing writers.
//! - `conformance`: the `StateStore` contract, run against every backend.
//! - `golden`: node and snapshot ids pinned to an independent Python implementation.
//! - `properties`: random inputs vs an independent CBOR writer, and backend vs backend.
//! - `reopen`: a 250-commit history survives close and reopen, writable and read-only.
//! - `sqlite_corruption`: rows damaged behind the store's back surface as `Corrupt`.
//! - `sqlite_files`: which files opening refuses and leaves untouched; read-only stores.

mod concurrency;
mod conformance;
mod golden;
mod properties;
mod reopen;
mod sqlite_corruption;
mod sqlite_files;
mod util;
