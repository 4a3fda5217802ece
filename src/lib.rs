//! stategraph: an embedded, git-like versioned state store.
//!
//! A program records its evolving state as a graph of versions. State bytes are stored once
//! and referenced by a [`StateDataRef`]; [`StateStore::commit_node`] creates a content-hashed
//! [`StateNode`] pointing at its parents, so the history is a DAG whose ids prove its
//! contents; [`StateStore::snapshot`] marks durable restore points.
//!
//! Two backends implement the same [`StateStore`] contract and produce identical ids:
//! [`SqliteStateStore`] (one embedded SQLite file, the default) and [`InMemoryStateStore`]
//! (for tests and short runs). The hash encoding is specified in [`codec`].
//!
//! # Which call for what
//!
//! - **Record state**: [`StateStore::commit_on`] (store the state, commit a child of the
//!   branch head, move the branch by compare-and-swap: one transaction, what a program that
//!   commits every tick wants); [`StateStore::commit_state`] (state and node, no ref);
//!   [`StateStore::put_state`] + [`StateStore::commit_node`] (the two steps on their own);
//!   [`History::batch`] for any other set of writes made atomic (merges, several branches).
//! - **Branches and tags**: [`StateStore::set_ref`] (compare-and-swap), `get_ref`,
//!   `delete_ref`, `list_refs`; every move is in [`StateStore::ref_log`]
//!   ([`StateStore::ref_log_tail`] for the newest moves), and [`History::resolve`] reads
//!   `main@{1}` (where `main` was before its last move) as git does.
//! - **Restore points**: [`StateStore::snapshot`], [`StateStore::load_snapshot`],
//!   `list_snapshots`. After a restart, [`History::latest_snapshot`] of the branch head and
//!   [`History::restore`] move the branch back to it and return the state to resume from.
//! - **History**: [`History`] (implemented for every store): [`History::log`] with
//!   [`LogOptions`] (ranges, first parent, limits; streamed), `ancestors`, `descendants`,
//!   `is_ancestor`, `merge_base`, `to_dot` (streamed: `dot_lines`).
//! - **Async**: [`AsyncStateStore`] (feature `async`, on by default) offers the calls a
//!   program makes as it runs (states, nodes, snapshots, refs, `apply`, `restore`, `log` as a
//!   stream, `is_ancestor`, `merge_bases`) as futures, run on tokio's blocking pool; the
//!   README's Current limits lists the sync-only ones. Import one of
//!   `StateStore` / `AsyncStateStore` / `History` where their method names overlap, or call
//!   with the trait path (`StateStore::put_state(&store, data)`).
//! - **Files**: [`SqliteStateStore::open`] / [`SqliteStateStore::open_read_only`] /
//!   [`SqliteStateStore::builder`] (durability, cache, busy timeout);
//!   [`SqliteStateStore::verify`] checks a whole store, [`SqliteStateStore::stats`] counts it,
//!   and [`StateStore::export_snapshot`] / [`StateStore::import_snapshot`] move snapshots
//!   between stores as self-verifying [`SnapshotPackage`]s.
//! - **Cleaning up**: [`StateStore::gc`] with [`GcOptions`] removes nodes no ref, snapshot
//!   or ref log entry reaches, and states and bytes nothing holds, past a grace period;
//!   `delete_snapshot`, `delete_ref` and [`GcOptions::expire_ref_log`] decide what stops
//!   being reachable. [`SqliteStateStore::vacuum`] then gives the freed space back to the
//!   filesystem ([`StoreStats::free_bytes`] says how much there is).
//! - **Errors**: one enum, [`StateStoreError`]; nothing is written by a call that fails,
//!   except a write whose error says it is in doubt ([`StateStoreError::is_in_doubt`]: an
//!   I/O failure while committing, which SQLite may still recover at the next open).
//!
//! # Example (the reference API)
//!
//! ```
//! use stategraph::{SqliteStateStore, StateData, StateMetadata, StateStore};
//! use tempfile::NamedTempFile;
//! use time::OffsetDateTime;
//!
//! let temp = NamedTempFile::new().expect("temp");
//! let store = SqliteStateStore::open(temp.path()).expect("open");
//! let data = StateData { bytes: vec![1, 2, 3], content_type: None };
//! let data_ref = StateStore::put_state(&store, data).expect("put");
//! let metadata = StateMetadata { created_at: OffsetDateTime::now_utc(), label: Some("seed".into()) };
//! let node_id = StateStore::commit_node(&store, Vec::new(), data_ref, metadata).expect("commit");
//! let snapshot_id = StateStore::snapshot(&store, &node_id).expect("snapshot");
//! let snapshot = StateStore::load_snapshot(&store, &snapshot_id).expect("load");
//! assert_eq!(snapshot.node_id, node_id);
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "async")]
mod asynchronous;
mod batch;
pub mod codec;
mod error;
mod gc;
mod generation;
mod graph;
mod id;
mod memory;
mod model;
mod package;
mod refs;
mod sqlite;
mod store;

#[cfg(feature = "async")]
pub use asynchronous::{AsyncStateStore, BoxFuture, LogStream};
pub use batch::Batch;
pub use error::{BackendError, Result, StateStoreError};
pub use gc::{GcOptions, GcProgress, GcReport};
pub use graph::{
    Descendants, DotLines, History, HistoryGraph, Log, LogOptions, LogOrder, ShownParents, dot,
};
pub use id::{
    ContentHash, HASH_LEN, IdPrefix, ParseIdError, SnapshotId, StateDataRef, StateNodeId,
};
pub use memory::InMemoryStateStore;
pub use model::{
    IntoLabel, Ref, RefLogEntry, SnapshotInfo, StateData, StateInfo, StateMetadata, StateNode,
    StateSnapshot,
};
pub use package::SnapshotPackage;
pub use refs::{MAX_REF_NAME_LEN, is_invisible, validate_ref_name};
pub use sqlite::{
    BackupReport, Durability, MAX_STATE_LEN, SCHEMA_VERSION, SqliteStateStore,
    SqliteStateStoreBuilder, StoreStats, VacuumReport, VerifyPhase, VerifyProgress, VerifyReport,
    WriteCounts,
};
pub use store::{Applied, GraphCursor, StateStore, Writes};

/// The README's code blocks, run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
