//! Integration tests for stategraph: one binary, one module per scenario.
//!
//! - `conformance`: the `StateStore` contract, run against every backend.
//! - `golden`: node and snapshot ids pinned to an independent Python implementation.
//! - `sqlite_corruption`: rows damaged behind the store's back surface as `Corrupt`.
//! - `sqlite_files`: which files opening refuses and leaves untouched; read-only stores.

mod conformance;
mod golden;
mod sqlite_corruption;
mod sqlite_files;
mod util;
