//! Integration tests for stategraph: one binary, one module per scenario.
//!
//! - `conformance`: the `StateStore` contract, run against every backend.
//! - `golden`: node and snapshot ids pinned to an independent Python implementation.

mod conformance;
mod golden;
mod util;
