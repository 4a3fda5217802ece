//! Integration tests, one binary: `cargo test --test it`.

mod history;
mod history_util;
mod refs;
