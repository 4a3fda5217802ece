//! Integration tests for stategraph: one binary, one module per scenario
//! (`cargo test --test it`).
//!
//! - `backup`: consistent copies while a writer commits; never over a file; a full disk.
//! - `cli`: the `stategraph` binary end to end (needs the `cli` feature).
//! - `concurrency`: shared handles, several handles per file, readers racing writers.
//! - `conformance`: the `StateStore` contract, run against every backend, directly and through
//!   `AsyncStateStore` (`via_async`).
//! - `crash`: a child process killed with SIGKILL at random moments loses nothing it
//!   acknowledged; a full disk fails writes cleanly.
//! - `failed_sync`: a commit whose WAL fsync fails (injected by a wrapping VFS in a child
//!   process) does not come back when the store is reopened after a crash.
//! - `golden`: node and snapshot ids pinned to an independent Python implementation.
//! - `multiprocess`: several OS processes writing one file (children are this binary
//!   re-invoked on an ignored test; see `durability_util`).
//! - `history`: log, ancestry, merge bases, resolve and export checked against an oracle on
//!   random DAGs, plus edge cases (octopus, criss-cross, deep chains), on every backend.
//! - `properties`: random inputs vs an independent CBOR writer, and backend vs backend.
//! - `refs`: compare-and-swap, the ref log, races, snapshots management, migrations.
//! - `reopen`: a 250-commit history survives close and reopen, writable and read-only.
//! - `runtime`: an agent runtime's life: branches, merges, snapshots, pruning, backups and
//!   restarts that resume every branch from its latest snapshot.
//! - `sqlite_corruption`: rows damaged behind the store's back surface as `Corrupt`.
//! - `sqlite_files`: which files opening refuses and leaves untouched; read-only stores.
//! - `stress`: threads and tokio tasks on one store with readers; WAL growth stays bounded.
//! - `vacuum`: the file shrinks after gc and keeps everything else, also with concurrent
//!   writers, readers in the WAL and a full disk.
//! - `walk_races`: history walks while a gc or a prune removes what they walk, and walks
//!   of a store whose id index is damaged, report what happened.

mod backup;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_util;
mod concurrency;
mod conformance;
mod crash;
mod durability_util;
mod failed_sync;
mod golden;
mod history;
mod history_util;
mod multiprocess;
mod properties;
mod refs;
mod reopen;
mod runtime;
mod sqlite_corruption;
mod sqlite_files;
mod stress;
mod util;
mod vacuum;
mod via_async;
mod walk_races;
