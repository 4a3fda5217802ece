//! Integration tests, one binary: `cargo test --test it`.

#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_util;
