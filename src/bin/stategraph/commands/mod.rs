//! One module per group of subcommands.

pub mod ancestry;
pub mod data;
pub mod diff;
pub mod history;
pub mod import;
pub mod maintenance;
pub mod refs;
pub mod snapshots;
