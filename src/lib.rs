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
//! # Example
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
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "async")]
mod asynchronous;
mod batch;
pub mod codec;
mod error;
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
pub use graph::{Descendants, History, HistoryGraph, Log, LogOptions, LogOrder, dot};
pub use id::{
    ContentHash, HASH_LEN, IdPrefix, ParseIdError, SnapshotId, StateDataRef, StateNodeId,
};
pub use memory::InMemoryStateStore;
pub use model::{
    Ref, RefLogEntry, SnapshotInfo, StateData, StateInfo, StateMetadata, StateNode, StateSnapshot,
};
pub use package::SnapshotPackage;
pub use refs::{MAX_REF_NAME_LEN, validate_ref_name};
pub use sqlite::{
    Durability, SCHEMA_VERSION, SqliteStateStore, SqliteStateStoreBuilder, StoreStats, VerifyPhase,
    VerifyProgress, VerifyReport, WriteCounts,
};
pub use store::{Applied, GraphCursor, StateStore, Writes};

/// The README's code blocks, run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
