//! A `StateStore` whose calls go through `AsyncStateStore`, so the behavioural suites written
//! against `StateStore` also drive the async facade of each backend.

use stategraph::{
    Applied, AsyncStateStore, GcOptions, GcReport, GraphCursor, IdPrefix, Ref, RefLogEntry, Result,
    SnapshotId, SnapshotInfo, SnapshotPackage, StateData, StateDataRef, StateInfo, StateMetadata,
    StateNode, StateNodeId, StateSnapshot, StateStore, Writes,
};

/// Runs every operation the async facade offers through it, on a multi-threaded runtime;
/// the few reads it does not offer (cursor, prefix search, state info, snapshots of a node,
/// import) go to the sync store underneath.
pub struct ViaAsync<S> {
    inner: S,
    runtime: tokio::runtime::Runtime,
}

impl<S> ViaAsync<S> {
    pub fn new(inner: S) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("tokio runtime");
        Self { inner, runtime }
    }
}

impl<S: AsyncStateStore + StateStore> StateStore for ViaAsync<S> {
    fn put_state(&self, data: StateData) -> Result<StateDataRef> {
        self.runtime
            .block_on(AsyncStateStore::put_state(&self.inner, data))
    }

    fn get_state(&self, data_ref: &StateDataRef) -> Result<StateData> {
        self.runtime
            .block_on(AsyncStateStore::get_state(&self.inner, data_ref))
    }

    fn commit_node(
        &self,
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    ) -> Result<StateNodeId> {
        self.runtime.block_on(AsyncStateStore::commit_node(
            &self.inner,
            parent_ids,
            data_ref,
            metadata,
        ))
    }

    fn commit_state(
        &self,
        parent_ids: Vec<StateNodeId>,
        data: StateData,
        metadata: StateMetadata,
    ) -> Result<(StateDataRef, StateNodeId)> {
        self.runtime.block_on(AsyncStateStore::commit_state(
            &self.inner,
            parent_ids,
            data,
            metadata,
        ))
    }

    fn commit_on(
        &self,
        name: &str,
        head: Option<&StateNodeId>,
        data: StateData,
        metadata: StateMetadata,
    ) -> Result<(StateDataRef, StateNodeId)> {
        self.runtime.block_on(AsyncStateStore::commit_on(
            &self.inner,
            name,
            head,
            data,
            metadata,
        ))
    }

    fn get_node(&self, id: &StateNodeId) -> Result<StateNode> {
        self.runtime
            .block_on(AsyncStateStore::get_node(&self.inner, id))
    }

    fn snapshot(&self, node_id: &StateNodeId) -> Result<SnapshotId> {
        self.runtime
            .block_on(AsyncStateStore::snapshot(&self.inner, node_id))
    }

    fn load_snapshot(&self, snapshot_id: &SnapshotId) -> Result<StateSnapshot> {
        self.runtime
            .block_on(AsyncStateStore::load_snapshot(&self.inner, snapshot_id))
    }

    fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        self.runtime
            .block_on(AsyncStateStore::list_snapshots(&self.inner))
    }

    fn snapshots_of(&self, node_id: &StateNodeId) -> Result<Vec<SnapshotInfo>> {
        StateStore::snapshots_of(&self.inner, node_id)
    }

    fn delete_snapshot(&self, snapshot_id: &SnapshotId) -> Result<()> {
        self.runtime
            .block_on(AsyncStateStore::delete_snapshot(&self.inner, snapshot_id))
    }

    fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        self.runtime
            .block_on(AsyncStateStore::gc(&self.inner, options))
    }

    fn set_ref_with_message(
        &self,
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
        message: Option<&str>,
    ) -> Result<()> {
        self.runtime.block_on(AsyncStateStore::set_ref_with_message(
            &self.inner,
            name,
            expected,
            new,
            message,
        ))
    }

    fn set_ref(&self, name: &str, expected: Option<&StateNodeId>, new: &StateNodeId) -> Result<()> {
        self.runtime
            .block_on(AsyncStateStore::set_ref(&self.inner, name, expected, new))
    }

    fn get_ref(&self, name: &str) -> Result<Option<StateNodeId>> {
        self.runtime
            .block_on(AsyncStateStore::get_ref(&self.inner, name))
    }

    fn delete_ref(&self, name: &str, expected: &StateNodeId) -> Result<()> {
        self.runtime
            .block_on(AsyncStateStore::delete_ref(&self.inner, name, expected))
    }

    fn list_refs(&self, prefix: &str) -> Result<Vec<Ref>> {
        self.runtime
            .block_on(AsyncStateStore::list_refs(&self.inner, prefix))
    }

    fn ref_log(&self, name: &str) -> Result<Vec<RefLogEntry>> {
        self.runtime
            .block_on(AsyncStateStore::ref_log(&self.inner, name))
    }

    fn ref_log_tail(&self, name: &str, limit: usize) -> Result<Vec<RefLogEntry>> {
        self.runtime
            .block_on(AsyncStateStore::ref_log_tail(&self.inner, name, limit))
    }

    fn nodes_with_prefix(&self, prefix: &IdPrefix, limit: usize) -> Result<Vec<StateNodeId>> {
        StateStore::nodes_with_prefix(&self.inner, prefix, limit)
    }

    fn import_snapshot(&self, package: &SnapshotPackage) -> Result<SnapshotId> {
        StateStore::import_snapshot(&self.inner, package)
    }

    fn state_prefix(&self, data_ref: &StateDataRef, max_len: usize) -> Result<Vec<u8>> {
        self.runtime.block_on(AsyncStateStore::state_prefix(
            &self.inner,
            data_ref,
            max_len,
        ))
    }

    fn state_info(&self, data_ref: &StateDataRef) -> Result<StateInfo> {
        StateStore::state_info(&self.inner, data_ref)
    }

    fn apply(&self, writes: Writes) -> Result<Applied> {
        self.runtime
            .block_on(AsyncStateStore::apply(&self.inner, writes))
    }

    fn cursor(&self) -> Result<Box<dyn GraphCursor + '_>> {
        StateStore::cursor(&self.inner)
    }
}

/// Tests of the async facade itself, beyond what the suites above drive through it.
mod facade {
    use stategraph::{
        AsyncStateStore, GcOptions, History, LogOptions, StateStore, StateStoreError,
    };

    use crate::history_util::{chain_batched, memory, open_sqlite, sqlite};

    /// Streams the history of a 3,000-node line that nothing keeps, reads one entry (the walk
    /// then reads ahead as far as the stream lets it), has `collector` gc the line away, and
    /// reads the rest. The stream must say the history went away under it, as the sync walk
    /// does, not end as if the line stopped at a shallow boundary.
    async fn stream_while_a_gc_removes_the_line<S>(walker: S, collector: S)
    where
        S: AsyncStateStore + StateStore + Clone + 'static,
    {
        let line = chain_batched(&walker, 3000, "line");
        let head = *line.last().unwrap();
        let mut stream = AsyncStateStore::log(&walker, LogOptions::new().from(head));
        let first = stream.next().await.expect("an entry").expect("a node");
        assert_eq!(first.id, head);
        let options = GcOptions::new().grace(std::time::Duration::ZERO);
        let report = AsyncStateStore::gc(&collector, &options).await.unwrap();
        assert_eq!(report.nodes_removed, 3000, "the whole line is collected");
        let mut read = 1;
        let err = loop {
            match stream.next().await {
                Some(Ok(node)) => {
                    assert_eq!(node.id, line[line.len() - 1 - read], "newest first");
                    read += 1;
                }
                Some(Err(e)) => break e,
                None => panic!("the stream ended after {read} of 3000 nodes, without an error"),
            }
        };
        assert!(
            read < 3000,
            "the walk read ahead the whole line before the gc"
        );
        match err {
            StateStoreError::RemovedDuringWalk { id } => assert!(line.contains(&id), "{id}"),
            e => panic!("expected RemovedDuringWalk, got {e:?}"),
        }
        assert!(stream.next().await.is_none(), "an error ends the stream");
        assert_eq!(stream.boundary(), None, "no boundary after an error");
        // A walk started now finds nothing to start from.
        assert!(History::log(&walker, &LogOptions::new().from(head)).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_stream_whose_history_a_gc_removes_meanwhile_fails_with_removed_during_walk() {
        let store = memory();
        stream_while_a_gc_removes_the_line(store.clone(), store).await;
        let fixture = sqlite();
        let other = open_sqlite(&fixture.path());
        stream_while_a_gc_removes_the_line(fixture.store.clone(), other).await;
    }
}
