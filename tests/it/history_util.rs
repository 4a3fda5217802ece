//! Helpers shared by the history and refs tests: backends, node builders, a counting store.

use std::sync::atomic::{AtomicUsize, Ordering};

use stategraph::{
    Applied, Durability, GraphCursor, IdPrefix, InMemoryStateStore, Ref, RefLogEntry, Result,
    SnapshotId, SnapshotInfo, SnapshotPackage, SqliteStateStore, StateData, StateDataRef,
    StateInfo, StateMetadata, StateNode, StateNodeId, StateSnapshot, StateStore, Writes,
};
use tempfile::TempDir;
use time::OffsetDateTime;

/// A SQLite store in its own temporary directory (the store is dropped before the directory).
pub struct SqliteFixture {
    pub store: SqliteStateStore,
    pub dir: TempDir,
}

impl SqliteFixture {
    /// The database file.
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("state.db")
    }
}

/// A fresh SQLite store with `Durability::Normal` (fast; crash safety is not under test here).
pub fn sqlite() -> SqliteFixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_sqlite(&dir.path().join("state.db"));
    SqliteFixture { store, dir }
}

/// Opens (or creates) a SQLite store at `path` with `Durability::Normal`.
pub fn open_sqlite(path: &std::path::Path) -> SqliteStateStore {
    SqliteStateStore::builder()
        .durability(Durability::Normal)
        .open(path)
        .expect("open sqlite store")
}

/// A fresh in-memory store.
pub fn memory() -> InMemoryStateStore {
    InMemoryStateStore::new()
}

/// `secs` seconds after the Unix epoch: deterministic timestamps make deterministic ids.
pub fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(secs)
}

/// Commits a node holding `label` as its bytes and label, at a fixed time.
pub fn commit(store: &dyn StateStore, parents: &[StateNodeId], label: &str) -> StateNodeId {
    commit_at(store, parents, label, 0)
}

/// Commits a node holding `label` as its bytes and label, `secs` after the epoch.
pub fn commit_at(
    store: &dyn StateStore,
    parents: &[StateNodeId],
    label: &str,
    secs: i64,
) -> StateNodeId {
    let data = store
        .put_state(StateData::new(label.as_bytes().to_vec()))
        .expect("put_state");
    store
        .commit_node(
            parents.to_vec(),
            data,
            StateMetadata::new(at(secs), Some(label.to_owned())),
        )
        .expect("commit_node")
}

/// Commits a linear chain of `n` nodes (all sharing one state, distinct labels); returns the
/// ids root first.
pub fn chain(store: &dyn StateStore, n: usize, tag: &str) -> Vec<StateNodeId> {
    let data = store
        .put_state(StateData::new(tag.as_bytes().to_vec()))
        .expect("put_state");
    let mut ids: Vec<StateNodeId> = Vec::with_capacity(n);
    for i in 0..n {
        let parents = ids.last().copied().into_iter().collect();
        let meta = StateMetadata::new(at(i as i64), Some(format!("{tag} {i}")));
        ids.push(store.commit_node(parents, data, meta).expect("commit_node"));
    }
    ids
}

/// Like [`chain`], but committed through atomic batches of 10k nodes: the bulk-ingest path,
/// fast enough to build long histories in a debug build.
pub fn chain_batched(store: &dyn StateStore, n: usize, tag: &str) -> Vec<StateNodeId> {
    let data = store
        .put_state(StateData::new(tag.as_bytes().to_vec()))
        .expect("put_state");
    let mut ids: Vec<StateNodeId> = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let mut batch = stategraph::Batch::new(store);
        for &i in chunk {
            let parents = ids.last().copied().into_iter().collect();
            let meta = StateMetadata::new(at(i as i64), Some(format!("{tag} {i}")));
            ids.push(
                batch
                    .commit_node(parents, data, meta)
                    .expect("batch commit_node"),
            );
        }
        batch.commit().expect("batch commit");
    }
    ids
}

/// Drains a walk into ids, failing on the first error.
pub fn ids(walk: impl Iterator<Item = Result<StateNode>>) -> Vec<StateNodeId> {
    walk.map(|n| n.expect("walk step").id).collect()
}

/// The node id that no store holds.
pub fn ghost() -> StateNodeId {
    StateNodeId::from_bytes([0x5a; 32])
}

/// Generates `#[test]` functions in `memory` and `sqlite` submodules that call the parent
/// module's function of the same name with a fresh store of each backend.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $name() {
                    let store = $crate::history_util::memory();
                    super::$name(&store);
                }
            )*
        }
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let fixture = $crate::history_util::sqlite();
                    super::$name(&fixture.store);
                }
            )*
        }
    };
}
pub(crate) use both_backends;

/// [`both_backends`] plus both backends driven through `AsyncStateStore` (see `via_async`).
macro_rules! all_facades {
    ($($name:ident),* $(,)?) => {
        $crate::history_util::both_backends!($($name),*);
        mod async_memory {
            $(
                #[test]
                fn $name() {
                    let store = $crate::via_async::ViaAsync::new($crate::history_util::memory());
                    super::$name(&store);
                }
            )*
        }
        mod async_sqlite {
            $(
                #[test]
                fn $name() {
                    let fixture = $crate::history_util::sqlite();
                    let store = $crate::via_async::ViaAsync::new(fixture.store.clone());
                    super::$name(&store);
                }
            )*
        }
    };
}
pub(crate) use all_facades;

/// What runs before a cursor's read number `.0` (counted from the last `take_reads`).
type Interruption<'a> = (usize, Box<dyn FnOnce() + Send + 'a>);

/// A store that delegates everything to `inner` and counts the nodes its cursors read, to
/// check that walks stop early; it can also answer stale ref reads, and run something (a gc)
/// in the middle of a walk.
pub struct Counting<'a> {
    pub inner: &'a dyn StateStore,
    node_reads: AtomicUsize,
    /// Answers for the next `get_ref` calls, before `inner`'s: what a reader sees when the
    /// ref moves (and a gc removes the node it named) between its reads.
    stale_refs: std::sync::Mutex<Vec<StateNodeId>>,
    interruption: std::sync::Mutex<Option<Interruption<'a>>>,
    /// Runs before the next `get_node`.
    before_get_node: std::sync::Mutex<Option<Box<dyn FnOnce() + Send + 'a>>>,
}

impl<'a> Counting<'a> {
    pub fn new(inner: &'a dyn StateStore) -> Self {
        Self {
            inner,
            node_reads: AtomicUsize::new(0),
            stale_refs: std::sync::Mutex::new(Vec::new()),
            interruption: std::sync::Mutex::new(None),
            before_get_node: std::sync::Mutex::new(None),
        }
    }

    /// Runs `what` once, just before the next `get_node`: another writer acting between two
    /// reads of a call made of several.
    pub fn before_get_node(&self, what: impl FnOnce() + Send + 'a) {
        *self.before_get_node.lock().expect("before_get_node") = Some(Box::new(what));
    }

    /// Runs `what` once, just before a cursor's `reads`-th node read (counted from the last
    /// [`take_reads`](Self::take_reads)): another writer acting while a walk is under way.
    pub fn before_read(&self, reads: usize, what: impl FnOnce() + Send + 'a) {
        *self.interruption.lock().expect("interruption") = Some((reads, Box::new(what)));
    }

    /// The next `get_ref` calls (of any name) answer these ids, in order.
    pub fn answer_refs_with(&self, ids: &[StateNodeId]) {
        let mut stale = self.stale_refs.lock().expect("stale refs");
        stale.extend(ids.iter().rev());
    }

    /// Cursor `node()` calls since the last call to this method.
    pub fn take_reads(&self) -> usize {
        self.node_reads.swap(0, Ordering::SeqCst)
    }
}

struct CountingCursor<'a, 'b> {
    inner: Box<dyn GraphCursor + 'a>,
    node_reads: &'a AtomicUsize,
    interruption: &'a std::sync::Mutex<Option<Interruption<'b>>>,
}

impl GraphCursor for CountingCursor<'_, '_> {
    fn node(&mut self, id: &StateNodeId) -> Result<Option<StateNode>> {
        let reads = self.node_reads.fetch_add(1, Ordering::SeqCst) + 1;
        let mut interruption = self.interruption.lock().expect("interruption");
        if interruption.as_ref().is_some_and(|(at, _)| *at == reads) {
            let (_, what) = interruption.take().expect("checked");
            drop(interruption);
            what();
        }
        self.inner.node(id)
    }

    fn children(&mut self, id: &StateNodeId) -> Result<Vec<StateNodeId>> {
        self.inner.children(id)
    }

    fn is_stored(&mut self, id: &StateNodeId) -> Result<bool> {
        self.inner.is_stored(id)
    }
}

impl StateStore for Counting<'_> {
    fn put_state(&self, data: StateData) -> Result<StateDataRef> {
        self.inner.put_state(data)
    }

    fn get_state(&self, data_ref: &StateDataRef) -> Result<StateData> {
        self.inner.get_state(data_ref)
    }

    fn commit_node(
        &self,
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    ) -> Result<StateNodeId> {
        self.inner.commit_node(parent_ids, data_ref, metadata)
    }

    fn get_node(&self, id: &StateNodeId) -> Result<StateNode> {
        let what = self.before_get_node.lock().expect("before_get_node").take();
        if let Some(what) = what {
            what();
        }
        self.inner.get_node(id)
    }

    fn snapshot(&self, node_id: &StateNodeId) -> Result<SnapshotId> {
        self.inner.snapshot(node_id)
    }

    fn load_snapshot(&self, snapshot_id: &SnapshotId) -> Result<StateSnapshot> {
        self.inner.load_snapshot(snapshot_id)
    }

    fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        self.inner.list_snapshots()
    }

    fn snapshots_of(&self, node_id: &StateNodeId) -> Result<Vec<SnapshotInfo>> {
        self.inner.snapshots_of(node_id)
    }

    fn delete_snapshot(&self, snapshot_id: &SnapshotId) -> Result<()> {
        self.inner.delete_snapshot(snapshot_id)
    }

    fn set_ref_with_message(
        &self,
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
        message: Option<&str>,
    ) -> Result<()> {
        self.inner
            .set_ref_with_message(name, expected, new, message)
    }

    fn get_ref(&self, name: &str) -> Result<Option<StateNodeId>> {
        if let Some(id) = self.stale_refs.lock().expect("stale refs").pop() {
            return Ok(Some(id));
        }
        self.inner.get_ref(name)
    }

    fn delete_ref(&self, name: &str, expected: &StateNodeId) -> Result<()> {
        self.inner.delete_ref(name, expected)
    }

    fn list_refs(&self, prefix: &str) -> Result<Vec<Ref>> {
        self.inner.list_refs(prefix)
    }

    fn ref_log(&self, name: &str) -> Result<Vec<RefLogEntry>> {
        self.inner.ref_log(name)
    }

    fn nodes_with_prefix(&self, prefix: &IdPrefix, limit: usize) -> Result<Vec<StateNodeId>> {
        self.inner.nodes_with_prefix(prefix, limit)
    }

    fn import_snapshot(&self, package: &SnapshotPackage) -> Result<SnapshotId> {
        self.inner.import_snapshot(package)
    }

    fn state_info(&self, data_ref: &StateDataRef) -> Result<StateInfo> {
        self.inner.state_info(data_ref)
    }

    fn apply(&self, writes: Writes) -> Result<Applied> {
        self.inner.apply(writes)
    }

    fn cursor(&self) -> Result<Box<dyn GraphCursor + '_>> {
        Ok(Box::new(CountingCursor {
            inner: self.inner.cursor()?,
            node_reads: &self.node_reads,
            interruption: &self.interruption,
        }))
    }
}
