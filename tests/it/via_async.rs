//! A `StateStore` whose calls go through `AsyncStateStore`, so the behavioural suites written
//! against `StateStore` also drive the async facade of each backend.

use stategraph::{
    Applied, AsyncStateStore, GcOptions, GcReport, GraphCursor, IdPrefix, Ref, RefLogEntry, Result,
    SnapshotId, SnapshotInfo, SnapshotPackage, StateData, StateDataRef, StateInfo, StateMetadata,
    StateNode, StateNodeId, StateSnapshot, StateStore, Writes,
};

/// Runs every `StateStore` operation the async facade offers through it, on a multi-threaded
/// runtime; the few reads it does not offer (cursor, prefix search, state info, snapshots of
/// a node, import) go to the sync store underneath. The history queries (`log`,
/// `is_ancestor`, `merge_bases`, `resolve`, `latest_snapshot`, ...) are `History` methods
/// over the cursor, so they run on the sync store here; `history::async_answers_as_sync`
/// checks the facade's against them.
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
    use std::task::Poll;
    use std::time::Duration;

    use stategraph::{
        AsyncStateStore, GcOptions, History, LogOptions, StateData, StateMetadata, StateStore,
        StateStoreError,
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
        let options = GcOptions::new().grace(Duration::ZERO);
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

    /// A current-thread runtime whose one blocking thread runs the calls in the order they
    /// were made: a call awaited after another starts only once that one has ended.
    fn one_blocking_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_time()
            .build()
            .expect("runtime")
    }

    fn tick(text: &str) -> (StateData, StateMetadata) {
        let data = StateData::new(text.as_bytes().to_vec());
        (data, StateMetadata::now(Some(text.to_owned())))
    }

    /// The facade's promise for a future dropped by a timeout or a `select!`: dropped before
    /// its first poll, the call does nothing; dropped after it, the call runs to its end, as
    /// if awaited (a retried compare-and-swap then conflicts), and the store stays writable.
    fn dropped_writes<S: AsyncStateStore + Clone + 'static>(store: S) {
        one_blocking_thread().block_on(async {
            let (data, meta) = tick("never");
            drop(AsyncStateStore::commit_on(&store, "never", None, data, meta));
            let (data, meta) = tick("tick 1");
            let mut write = AsyncStateStore::commit_on(&store, "main", None, data, meta);
            // Polls the write once, then drops it (unless that poll finished it).
            let polled = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
            drop(write);
            let head = AsyncStateStore::get_ref(&store, "main").await.unwrap();
            let head = match polled {
                Poll::Ready(done) => {
                    let (_, node) = done.unwrap();
                    assert_eq!(head, Some(node));
                    node
                }
                Poll::Pending => head.expect("a write dropped after its first poll still lands"),
            };
            let (data, meta) = tick("tick 1, again");
            let retry = AsyncStateStore::commit_on(&store, "main", None, data, meta).await;
            assert!(
                matches!(retry, Err(StateStoreError::RefConflict { actual: Some(a), .. }) if a == head),
                "{retry:?}"
            );
            assert_eq!(
                AsyncStateStore::get_ref(&store, "never").await.unwrap(),
                None,
                "a write dropped before its first poll ran"
            );
            let (data, meta) = tick("tick 2");
            let (_, next) = AsyncStateStore::commit_on(&store, "main", Some(&head), data, meta)
                .await
                .unwrap();
            let node = AsyncStateStore::get_node(&store, &next).await.unwrap();
            assert_eq!(node.parent_ids, vec![head]);
        });
    }

    #[test]
    fn a_dropped_write_runs_to_its_end_once_polled_and_not_at_all_before() {
        dropped_writes(memory());
        let fixture = sqlite();
        dropped_writes(fixture.store.clone());
    }

    /// A write that a timeout drops while it waits for another connection's write lock
    /// keeps waiting off the executor and lands once the lock is free; it leaves nothing
    /// held, and the calls after it work.
    #[test]
    fn a_write_dropped_while_it_waits_for_the_lock_lands_once_the_lock_is_free() {
        let fixture = sqlite();
        let store = fixture.store.clone();
        let conn = rusqlite::Connection::open(fixture.path()).expect("second connection");
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("the write lock");
        one_blocking_thread().block_on(async {
            let (data, meta) = tick("waited");
            let write = AsyncStateStore::commit_on(&store, "main", None, data, meta);
            let timed_out = tokio::time::timeout(Duration::from_millis(20), write).await;
            assert!(
                timed_out.is_err(),
                "the write finished while the lock was held"
            );
            conn.execute_batch("COMMIT").expect("releasing the lock");
            // Runs once the dropped write has ended (one blocking thread).
            let head = AsyncStateStore::get_ref(&store, "main").await.unwrap();
            let head = head.expect("the dropped write landed");
            let (data, meta) = tick("next");
            AsyncStateStore::commit_on(&store, "main", Some(&head), data, meta)
                .await
                .unwrap();
        });
        assert_eq!(StateStore::ref_log(&store, "main").unwrap().len(), 2);
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
