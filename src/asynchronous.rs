//! The async facade: [`AsyncStateStore`], the core operations of [`StateStore`] and
//! [`History`] with the same semantics, returning futures: states (whole, or their first bytes
//! with `state_prefix`), nodes, snapshots, refs and their logs, batches (`apply`), `restore`,
//! `latest_snapshot`, `latest_snapshot_in`, `is_ancestor`, `merge_bases`, `resolve` and
//! `log`. The rest is sync-only: import and export, `state_info`, `snapshot_info`,
//! `snapshots_of`, `snapshots_of_each`, id prefix lookups, `merge_base`, `ancestors`,
//! descendants and graphs,
//! and the SQLite store's own calls (`open`, `vacuum`, `verify`, `backup`, `stats`). Call
//! those inside `spawn_blocking` from async code: `vacuum`, `verify` and `backup` take as
//! long as reading the whole store, and would hold an
//! executor thread all that time. Dropping a store's last handle closes its connections,
//! which checkpoints the write-ahead log (milliseconds for a log of a few MB): drop it off the
//! executor too where that matters.
//!
//! The engine is synchronous (SQLite is), so every call runs on tokio's blocking thread pool
//! and the executor threads never wait on a lock, a disk or a busy database. Writes still go
//! through the store's one writer, so async callers share group commits with sync callers.
//!
//! A future does nothing until it is first polled. Once polled, a call runs to its end on the
//! blocking pool even if the future is dropped (by a timeout, or a `select!` that took another
//! branch): a write is then stored, or not, exactly as if it had been awaited, only no one
//! sees its result. After a timeout, look before retrying a write whose outcome matters (a
//! retried compare-and-swap `set_ref` fails with `RefConflict` when the first attempt landed).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::error::{BackendError, Result, StateStoreError};
use crate::gc::{GcOptions, GcReport};
use crate::graph::{History, LogOptions};
use crate::id::{SnapshotId, StateDataRef, StateNodeId};
use crate::memory::InMemoryStateStore;
use crate::model::{
    Ref, RefLogEntry, SnapshotInfo, StateData, StateMetadata, StateNode, StateSnapshot,
};
use crate::sqlite::SqliteStateStore;
use crate::store::{Applied, StateStore, Writes};

/// Sends `walk`'s entries (or the error that kept it from starting) to a [`LogStream`]'s
/// receiver, waiting while the channel is full, until the walk ends or the receiver is gone.
/// The walk stops at its next read once the receiver is dropped, not only at its next entry:
/// between two entries it may pass through any amount of excluded history.
fn feed(walk: Result<crate::graph::Log<'_>>, tx: &mpsc::Sender<LogItem>) {
    let mut walk = match walk {
        Ok(walk) => walk.stop_when(|| tx.is_closed()),
        Err(e) => {
            let _ = tx.blocking_send(LogItem::Node(Err(e)));
            return;
        }
    };
    for entry in walk.by_ref() {
        let failed = entry.is_err();
        // A closed channel means the consumer dropped the stream: stop walking.
        if tx.blocking_send(LogItem::Node(entry)).is_err() || failed {
            return;
        }
    }
    let boundary = walk.is_finished().then(|| walk.boundary().to_vec());
    let _ = tx.blocking_send(LogItem::End(boundary));
}

/// What a log walk sends its [`LogStream`].
enum LogItem {
    Node(Result<StateNode>),
    /// The walk ended without an error; its [`boundary`](crate::graph::Log::boundary), unless
    /// a limit stopped it with nodes left.
    End(Option<Vec<StateNodeId>>),
}

/// A boxed, `Send` future, as every [`AsyncStateStore`] method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How many log entries a [`LogStream`] reads ahead of its consumer.
const LOG_READ_AHEAD: usize = 256;

/// Async access to a state store. Holdable as `Arc<dyn AsyncStateStore>`.
///
/// # Panics
/// The futures run their work on tokio's blocking pool, so polling one outside a tokio
/// runtime panics, as `tokio::task::spawn_blocking` does (so does a
/// [`log`](Self::log) stream with a limit of at most 256). A panic inside a call (a bug)
/// does not reach the caller's task: the call returns a [`StateStoreError::Backend`] error
/// that quotes it, and the store stays usable.
///
/// # Example
/// ```
/// use stategraph::{AsyncStateStore, InMemoryStateStore, StateData, StateMetadata};
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let store: std::sync::Arc<dyn AsyncStateStore> = std::sync::Arc::new(InMemoryStateStore::new());
/// let data = store.put_state(StateData::new(b"tick".to_vec())).await?;
/// let node = store.commit_node(vec![], data, StateMetadata::now(None)).await?;
/// let snapshot = store.load_snapshot(&store.snapshot(&node).await?).await?;
/// assert_eq!(snapshot.state.bytes, b"tick");
/// # Ok::<(), stategraph::StateStoreError>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait AsyncStateStore: Send + Sync {
    /// See [`StateStore::put_state`].
    fn put_state(&self, data: StateData) -> BoxFuture<'static, Result<StateDataRef>>;
    /// See [`StateStore::get_state`].
    fn get_state(&self, data_ref: &StateDataRef) -> BoxFuture<'static, Result<StateData>>;
    /// See [`StateStore::state_prefix`].
    fn state_prefix(
        &self,
        data_ref: &StateDataRef,
        max_len: usize,
    ) -> BoxFuture<'static, Result<Vec<u8>>>;
    /// See [`StateStore::commit_node`].
    fn commit_node(
        &self,
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    ) -> BoxFuture<'static, Result<StateNodeId>>;
    /// See [`StateStore::commit_state`].
    fn commit_state(
        &self,
        parent_ids: Vec<StateNodeId>,
        data: StateData,
        metadata: StateMetadata,
    ) -> BoxFuture<'static, Result<(StateDataRef, StateNodeId)>>;
    /// See [`StateStore::commit_on`].
    fn commit_on(
        &self,
        name: &str,
        head: Option<&StateNodeId>,
        data: StateData,
        metadata: StateMetadata,
    ) -> BoxFuture<'static, Result<(StateDataRef, StateNodeId)>>;
    /// See [`StateStore::get_node`].
    fn get_node(&self, id: &StateNodeId) -> BoxFuture<'static, Result<StateNode>>;
    /// See [`StateStore::snapshot`].
    fn snapshot(&self, node_id: &StateNodeId) -> BoxFuture<'static, Result<SnapshotId>>;
    /// See [`StateStore::load_snapshot`].
    fn load_snapshot(&self, id: &SnapshotId) -> BoxFuture<'static, Result<StateSnapshot>>;
    /// See [`StateStore::list_snapshots`].
    fn list_snapshots(&self) -> BoxFuture<'static, Result<Vec<SnapshotInfo>>>;
    /// See [`StateStore::delete_snapshot`].
    fn delete_snapshot(&self, id: &SnapshotId) -> BoxFuture<'static, Result<()>>;
    /// See [`StateStore::gc`].
    fn gc(&self, options: &GcOptions) -> BoxFuture<'static, Result<GcReport>>;
    /// See [`StateStore::set_ref_with_message`].
    fn set_ref_with_message(
        &self,
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
        message: Option<&str>,
    ) -> BoxFuture<'static, Result<()>>;
    /// See [`StateStore::set_ref`].
    fn set_ref(
        &self,
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
    ) -> BoxFuture<'static, Result<()>> {
        self.set_ref_with_message(name, expected, new, None)
    }
    /// See [`StateStore::get_ref`].
    fn get_ref(&self, name: &str) -> BoxFuture<'static, Result<Option<StateNodeId>>>;
    /// See [`StateStore::delete_ref`].
    fn delete_ref(&self, name: &str, expected: &StateNodeId) -> BoxFuture<'static, Result<()>>;
    /// See [`StateStore::list_refs`].
    fn list_refs(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<Ref>>>;
    /// See [`StateStore::ref_log`].
    fn ref_log(&self, name: &str) -> BoxFuture<'static, Result<Vec<RefLogEntry>>>;
    /// See [`StateStore::ref_log_tail`].
    fn ref_log_tail(
        &self,
        name: &str,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<RefLogEntry>>>;
    /// See [`History::restore`].
    fn restore(
        &self,
        snapshot_id: &SnapshotId,
        name: &str,
        expected: Option<&StateNodeId>,
    ) -> BoxFuture<'static, Result<StateSnapshot>>;
    /// Applies a batch atomically; build it with [`Batch`](crate::Batch) on the sync store
    /// and pass [`Batch::into_writes`](crate::Batch::into_writes). See [`StateStore::apply`].
    /// Building reads the store for parents and states not added to the batch itself (to
    /// check them and compute ids): in async code, build a batch that names stored nodes
    /// inside `spawn_blocking`, or the reads run on the executor thread.
    fn apply(&self, writes: Writes) -> BoxFuture<'static, Result<Applied>>;
    /// See [`History::is_ancestor`].
    fn is_ancestor(
        &self,
        ancestor: &StateNodeId,
        descendant: &StateNodeId,
    ) -> BoxFuture<'static, Result<bool>>;
    /// See [`History::merge_bases`].
    fn merge_bases(&self, ids: &[StateNodeId]) -> BoxFuture<'static, Result<Vec<StateNodeId>>>;
    /// See [`History::resolve`].
    fn resolve(&self, text: &str) -> BoxFuture<'static, Result<StateNodeId>>;
    /// See [`History::latest_snapshot`].
    fn latest_snapshot(
        &self,
        from: &StateNodeId,
    ) -> BoxFuture<'static, Result<Option<SnapshotInfo>>>;
    /// See [`History::latest_snapshot_in`].
    fn latest_snapshot_in(
        &self,
        options: LogOptions,
    ) -> BoxFuture<'static, Result<Option<SnapshotInfo>>>;
    /// [`History::log`] as a stream. The walk runs on another thread a bounded distance
    /// ahead of the consumer (see [`LogStream`]), and stops at its next read of a node once
    /// the stream is dropped (not only at its next entry: between two entries a walk may pass
    /// through any amount of excluded history).
    fn log(&self, options: LogOptions) -> LogStream;
}

/// The stream of nodes [`AsyncStateStore::log`] returns; implements
/// [`futures_core::Stream`]. An error ends the stream after it is yielded.
///
/// Like the other methods' futures, it does nothing until first polled. A walk with a
/// [`limit`](LogOptions::limit) of at most 256 runs on tokio's blocking pool like any call;
/// a longer one runs on a thread of its own, reading ahead of the consumer, so it never
/// holds a pool thread while it waits to be read, and a stream that outlives its runtime
/// does not hold up the runtime's shutdown. From first poll until it ends or is dropped, a
/// walk holds that thread (and, on SQLite, a read connection), so a stream kept but no
/// longer read should be dropped. Long walks are not pooled: each starts a thread (tens of
/// microseconds), and as many run at once as streams are open; a service that serves many
/// long walks concurrently should bound them itself (a semaphore around `log`).
pub struct LogStream {
    start: Option<Box<dyn FnOnce() -> LogReceiver + Send + Sync>>,
    entries: Option<LogReceiver>,
    boundary: Option<Vec<StateNodeId>>,
    /// The walk sent an error (after which its channel closes without an `End`).
    failed: bool,
}

type LogReceiver = mpsc::Receiver<LogItem>;

impl std::fmt::Debug for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStream")
            .field("started", &self.start.is_none())
            .finish_non_exhaustive()
    }
}

impl LogStream {
    /// The next node, or `None` at the end. A walk that fails yields its error, then
    /// `None`; so does one that could not run (its runtime shut down first) or died.
    pub async fn next(&mut self) -> Option<Result<StateNode>> {
        std::future::poll_fn(|cx| self.poll_entry(cx)).await
    }

    /// Once the stream has ended after a whole walk, the parents the walk reached that are
    /// not stored here, as [`Log::boundary`](crate::graph::Log::boundary) gives them: empty
    /// for a history that goes down to its roots, the shallow boundary otherwise (history
    /// pruned by `gc`, or never imported). `None` before the end, after an error, and when
    /// a [`limit`](LogOptions::limit) stopped the walk with nodes left (what lies below them
    /// was not read).
    pub fn boundary(&self) -> Option<&[StateNodeId]> {
        self.boundary.as_deref()
    }

    fn poll_entry(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<StateNode>>> {
        if let Some(start) = self.start.take() {
            self.entries = Some(start());
        }
        let Some(entries) = &mut self.entries else {
            return Poll::Ready(None);
        };
        match entries.poll_recv(cx) {
            Poll::Ready(Some(LogItem::Node(node))) => {
                self.failed |= node.is_err();
                Poll::Ready(Some(node))
            }
            Poll::Ready(Some(LogItem::End(boundary))) => {
                self.boundary = boundary;
                self.entries = None;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.entries = None;
                if self.failed {
                    return Poll::Ready(None);
                }
                // Closed with neither an end nor an error: the walk never ran (its blocking
                // task was cancelled by a runtime shutting down) or panicked.
                self.failed = true;
                Poll::Ready(Some(Err(StateStoreError::Backend(BackendError::new(
                    "walking the history",
                    "the walk stopped before its end (its task was cancelled or panicked)",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures_core::Stream for LogStream {
    type Item = Result<StateNode>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_entry(cx)
    }
}

fn join_error(e: tokio::task::JoinError) -> StateStoreError {
    // A blocking task is cancelled only when its runtime shuts down before it starts.
    let detail = if e.is_cancelled() {
        format!("{e}: its runtime is shutting down, and the call did not run")
    } else {
        e.to_string()
    };
    StateStoreError::Backend(BackendError::new(
        "running a store call on tokio's blocking pool",
        detail,
    ))
}

/// Stores whose calls are synchronous and run on tokio's blocking pool; this is what the
/// [`AsyncStateStore`] impls below have in common.
trait Blocking: StateStore + Clone + 'static {
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self) -> Result<T> + Send + 'static,
    ) -> BoxFuture<'static, Result<T>> {
        let store = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .map_err(join_error)?
        })
    }
}

impl Blocking for InMemoryStateStore {}
impl Blocking for SqliteStateStore {}

impl<S: Blocking> AsyncStateStore for S {
    fn put_state(&self, data: StateData) -> BoxFuture<'static, Result<StateDataRef>> {
        self.call(move |s| StateStore::put_state(s, data))
    }

    fn get_state(&self, data_ref: &StateDataRef) -> BoxFuture<'static, Result<StateData>> {
        let data_ref = *data_ref;
        self.call(move |s| StateStore::get_state(s, &data_ref))
    }

    fn state_prefix(
        &self,
        data_ref: &StateDataRef,
        max_len: usize,
    ) -> BoxFuture<'static, Result<Vec<u8>>> {
        let data_ref = *data_ref;
        self.call(move |s| StateStore::state_prefix(s, &data_ref, max_len))
    }

    fn commit_node(
        &self,
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    ) -> BoxFuture<'static, Result<StateNodeId>> {
        self.call(move |s| StateStore::commit_node(s, parent_ids, data_ref, metadata))
    }

    fn commit_state(
        &self,
        parent_ids: Vec<StateNodeId>,
        data: StateData,
        metadata: StateMetadata,
    ) -> BoxFuture<'static, Result<(StateDataRef, StateNodeId)>> {
        self.call(move |s| StateStore::commit_state(s, parent_ids, data, metadata))
    }

    fn commit_on(
        &self,
        name: &str,
        head: Option<&StateNodeId>,
        data: StateData,
        metadata: StateMetadata,
    ) -> BoxFuture<'static, Result<(StateDataRef, StateNodeId)>> {
        let (name, head) = (name.to_owned(), head.copied());
        self.call(move |s| StateStore::commit_on(s, &name, head.as_ref(), data, metadata))
    }

    fn get_node(&self, id: &StateNodeId) -> BoxFuture<'static, Result<StateNode>> {
        let id = *id;
        self.call(move |s| StateStore::get_node(s, &id))
    }

    fn snapshot(&self, node_id: &StateNodeId) -> BoxFuture<'static, Result<SnapshotId>> {
        let node_id = *node_id;
        self.call(move |s| StateStore::snapshot(s, &node_id))
    }

    fn load_snapshot(&self, id: &SnapshotId) -> BoxFuture<'static, Result<StateSnapshot>> {
        let id = *id;
        self.call(move |s| StateStore::load_snapshot(s, &id))
    }

    fn list_snapshots(&self) -> BoxFuture<'static, Result<Vec<SnapshotInfo>>> {
        self.call(|s| StateStore::list_snapshots(s))
    }

    fn delete_snapshot(&self, id: &SnapshotId) -> BoxFuture<'static, Result<()>> {
        let id = *id;
        self.call(move |s| StateStore::delete_snapshot(s, &id))
    }

    fn gc(&self, options: &GcOptions) -> BoxFuture<'static, Result<GcReport>> {
        let options = options.clone();
        self.call(move |s| StateStore::gc(s, &options))
    }

    fn set_ref_with_message(
        &self,
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
        message: Option<&str>,
    ) -> BoxFuture<'static, Result<()>> {
        let (name, expected, new) = (name.to_owned(), expected.copied(), *new);
        let message = message.map(str::to_owned);
        self.call(move |s| {
            StateStore::set_ref_with_message(s, &name, expected.as_ref(), &new, message.as_deref())
        })
    }

    fn get_ref(&self, name: &str) -> BoxFuture<'static, Result<Option<StateNodeId>>> {
        let name = name.to_owned();
        self.call(move |s| StateStore::get_ref(s, &name))
    }

    fn delete_ref(&self, name: &str, expected: &StateNodeId) -> BoxFuture<'static, Result<()>> {
        let (name, expected) = (name.to_owned(), *expected);
        self.call(move |s| StateStore::delete_ref(s, &name, &expected))
    }

    fn list_refs(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<Ref>>> {
        let prefix = prefix.to_owned();
        self.call(move |s| StateStore::list_refs(s, &prefix))
    }

    fn ref_log(&self, name: &str) -> BoxFuture<'static, Result<Vec<RefLogEntry>>> {
        let name = name.to_owned();
        self.call(move |s| StateStore::ref_log(s, &name))
    }

    fn ref_log_tail(
        &self,
        name: &str,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<RefLogEntry>>> {
        let name = name.to_owned();
        self.call(move |s| StateStore::ref_log_tail(s, &name, limit))
    }

    fn restore(
        &self,
        snapshot_id: &SnapshotId,
        name: &str,
        expected: Option<&StateNodeId>,
    ) -> BoxFuture<'static, Result<StateSnapshot>> {
        let (snapshot_id, name, expected) = (*snapshot_id, name.to_owned(), expected.copied());
        self.call(move |s| History::restore(s, &snapshot_id, &name, expected.as_ref()))
    }

    fn apply(&self, writes: Writes) -> BoxFuture<'static, Result<Applied>> {
        self.call(move |s| StateStore::apply(s, writes))
    }

    fn is_ancestor(
        &self,
        ancestor: &StateNodeId,
        descendant: &StateNodeId,
    ) -> BoxFuture<'static, Result<bool>> {
        let (a, d) = (*ancestor, *descendant);
        self.call(move |s| History::is_ancestor(s, &a, &d))
    }

    fn merge_bases(&self, ids: &[StateNodeId]) -> BoxFuture<'static, Result<Vec<StateNodeId>>> {
        let ids = ids.to_vec();
        self.call(move |s| History::merge_bases(s, &ids))
    }

    fn resolve(&self, text: &str) -> BoxFuture<'static, Result<StateNodeId>> {
        let text = text.to_owned();
        self.call(move |s| History::resolve(s, &text))
    }

    fn latest_snapshot(
        &self,
        from: &StateNodeId,
    ) -> BoxFuture<'static, Result<Option<SnapshotInfo>>> {
        let from = *from;
        self.call(move |s| History::latest_snapshot(s, &from))
    }

    fn latest_snapshot_in(
        &self,
        options: LogOptions,
    ) -> BoxFuture<'static, Result<Option<SnapshotInfo>>> {
        self.call(move |s| History::latest_snapshot_in(s, &options))
    }

    fn log(&self, options: LogOptions) -> LogStream {
        let store = self.clone();
        let fits = options.limit.is_some_and(|n| n <= LOG_READ_AHEAD);
        let start = move || {
            // One more than read ahead: the walk's end too fits.
            let (tx, entries) = mpsc::channel(LOG_READ_AHEAD + 1);
            let walk = move || feed(History::log(&store, &options), &tx);
            if fits {
                // The whole walk fits the channel, so it never waits for the consumer: run it
                // on the blocking pool like any other call.
                tokio::task::spawn_blocking(walk);
            } else {
                // A longer walk waits whenever the consumer falls behind, and may wait for
                // good if the stream is kept unread. On the blocking pool that would hold a
                // pool thread (with a one-thread pool, the consumer's own calls could never
                // run) and make dropping the runtime wait for the stream; on a thread of its
                // own it holds only itself, until the stream is dropped.
                let spawned = std::thread::Builder::new()
                    .name("stategraph-log".into())
                    .spawn(walk);
                if let Err(e) = spawned {
                    let (tx, failed) = mpsc::channel(1);
                    let _ = tx.try_send(LogItem::Node(Err(StateStoreError::Backend(
                        BackendError::new(
                            "starting a log walk",
                            format!("cannot start its thread: {e}"),
                        ),
                    ))));
                    return failed;
                }
            }
            entries
        };
        LogStream {
            start: Some(Box::new(start)),
            entries: None,
            boundary: None,
            failed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A stream dropped while its walk passes through excluded history (which yields nothing)
    /// stops the walk at its next read, not after the whole stretch.
    #[test]
    fn a_dropped_stream_stops_its_walk_between_entries() {
        const STRETCH: usize = 20_000;
        let store = InMemoryStateStore::new();
        let mut batch = store.batch();
        let mut chain: Vec<StateNodeId> = Vec::new();
        for i in 0..STRETCH {
            let data = batch.put_state(StateData::new(i.to_be_bytes().to_vec()));
            let parents = chain.last().copied().into_iter().collect();
            chain.push(
                batch
                    .commit_node(parents, data, StateMetadata::now(None))
                    .unwrap(),
            );
        }
        let data = batch.put_state(StateData::new(b"side".to_vec()));
        let side = batch
            .commit_node(vec![chain[0]], data, StateMetadata::now(None))
            .unwrap();
        batch.commit().unwrap();
        let head = chain[STRETCH - 1];
        // Yields `head`, then walks the whole excluded chain below it before it can yield
        // `side` (a child of the chain's root).
        let options = LogOptions::new()
            .from(head)
            .from(side)
            .exclude(chain[STRETCH - 2]);
        let reads = AtomicUsize::new(0);
        let (tx, mut rx) = mpsc::channel(1);
        let at_drop = std::thread::scope(|s| {
            s.spawn(|| {
                let counted = History::log(&store, &options).map(|walk| {
                    // Counts the walk's reads; never stops it.
                    walk.stop_when(|| {
                        reads.fetch_add(1, Ordering::SeqCst);
                        false
                    })
                });
                feed(counted, &tx);
            });
            let Some(LogItem::Node(first)) = rx.blocking_recv() else {
                panic!("no entry");
            };
            let first = first.expect("a node");
            assert_eq!(first.id, head);
            let at_drop = reads.load(Ordering::SeqCst);
            drop(rx);
            at_drop
        });
        let after = reads.load(Ordering::SeqCst) - at_drop;
        assert!(
            after < STRETCH / 2,
            "the walk went on for {after} reads after its stream was dropped"
        );
    }

    async fn chains(store: Arc<dyn AsyncStateStore>) {
        let mut tasks = Vec::new();
        for task in 0..8u32 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut head: Option<StateNodeId> = None;
                for tick in 0..25u32 {
                    let data = store
                        .put_state(StateData::new(format!("{task}/{tick}").into_bytes()))
                        .await?;
                    let meta = StateMetadata::now(Some(format!("{task}/{tick}")));
                    head = Some(
                        store
                            .commit_node(head.into_iter().collect(), data, meta)
                            .await?,
                    );
                }
                let head = head.expect("25 ticks");
                store
                    .set_ref(&format!("agents/{task}"), None, &head)
                    .await?;
                Ok::<_, StateStoreError>(head)
            }));
        }
        for (task, handle) in tasks.into_iter().enumerate() {
            let head = handle.await.expect("task panicked").expect("task failed");
            let mut stream = store.log(LogOptions::new().from_ref(format!("agents/{task}")));
            let mut count = 0;
            let mut expected = Some(head);
            while let Some(node) = stream.next().await {
                let node = node.expect("log entry");
                assert_eq!(Some(node.id), expected, "a chain streams newest first");
                expected = node.parent_ids.first().copied();
                count += 1;
            }
            assert_eq!(count, 25);
            assert!(
                store
                    .is_ancestor(&expected.unwrap_or(head), &head)
                    .await
                    .unwrap()
            );
        }
        assert_eq!(store.list_refs("agents/").await.unwrap().len(), 8);
        // A restart's lookup: the newest snapshot in an agent's history.
        let head = store.get_ref("agents/0").await.unwrap().unwrap();
        assert_eq!(store.latest_snapshot(&head).await.unwrap(), None);
        let parent = store.get_node(&head).await.unwrap().parent_ids[0];
        let snapshot = store.snapshot(&parent).await.unwrap();
        let latest = store.latest_snapshot(&head).await.unwrap().unwrap();
        assert_eq!((latest.id, latest.node_id), (snapshot, parent));
        let missing = StateNodeId::from_bytes([1; 32]);
        assert!(matches!(
            store.get_node(&missing).await,
            Err(StateStoreError::MissingNode { .. })
        ));
        let mut stream = store.log(LogOptions::new().from(missing));
        assert!(matches!(
            stream.next().await,
            Some(Err(StateStoreError::MissingNode { .. }))
        ));
        assert!(stream.next().await.is_none());
    }

    /// A call that panics on the blocking pool (a bug in the engine) is an error for its
    /// caller, not a panic in the caller's task, and the handle keeps working, also for
    /// the store's other calls on a one-thread pool.
    #[test]
    fn a_call_that_panics_is_an_error_and_the_store_stays_usable() {
        let store = InMemoryStateStore::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            let panicked = store
                .call(|_| -> Result<()> { panic!("a bug in the engine") })
                .await;
            let err = panicked.expect_err("a panic is an error");
            assert!(matches!(err, StateStoreError::Backend(_)), "{err:?}");
            assert!(err.to_string().contains("a bug in the engine"), "{err}");
            let data = AsyncStateStore::put_state(&store, StateData::new(b"after".to_vec()))
                .await
                .unwrap();
            let node = AsyncStateStore::commit_node(&store, vec![], data, StateMetadata::now(None))
                .await
                .unwrap();
            assert_eq!(
                AsyncStateStore::get_node(&store, &node)
                    .await
                    .unwrap()
                    .data_ref,
                data
            );
        });
    }

    #[test]
    fn a_log_stream_can_be_shared_and_sent() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LogStream>();
    }

    #[test]
    fn a_log_stream_made_outside_a_runtime_starts_inside_one() {
        let store = InMemoryStateStore::new();
        let data = StateStore::put_state(&store, StateData::new(b"x".to_vec())).unwrap();
        let node = StateStore::commit_node(&store, vec![], data, StateMetadata::now(None)).unwrap();
        // No runtime here: making the stream (like making any other call's future) must not
        // need one.
        let mut stream = AsyncStateStore::log(&store, LogOptions::new().from(node));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let first = runtime.block_on(stream.next()).unwrap().unwrap();
        assert_eq!(first.id, node);
        assert!(runtime.block_on(stream.next()).is_none());
    }

    /// A chain of `n` nodes in a memory store; its head.
    fn chain(store: &InMemoryStateStore, n: u32) -> StateNodeId {
        let mut head = None;
        for i in 0..n {
            let data =
                StateStore::put_state(store, StateData::new(i.to_be_bytes().to_vec())).unwrap();
            let parents = head.into_iter().collect();
            head = Some(
                StateStore::commit_node(store, parents, data, StateMetadata::now(None)).unwrap(),
            );
        }
        head.unwrap()
    }

    /// Runs `f` on another thread and fails if it has not returned within a minute.
    fn within_a_minute(what: &str, f: impl FnOnce() + Send + 'static) {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = done.send(());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{what} hung"));
    }

    #[test]
    fn dropping_the_runtime_does_not_wait_for_an_unread_log_stream() {
        let store = InMemoryStateStore::new();
        let head = chain(&store, 1000);
        within_a_minute("dropping the runtime", move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let mut stream = AsyncStateStore::log(&store, LogOptions::new().from(head));
            runtime.block_on(stream.next()).unwrap().unwrap();
            // The walk is now waiting for the stream to be read further.
            drop(runtime);
            drop(stream);
        });
    }

    /// A walk that never runs (a runtime shut down refuses its blocking task) or that dies
    /// is an error, as any other call's would be, not an empty history: short walks (which
    /// run on the blocking pool) and long ones (on a thread of their own) alike.
    #[test]
    fn a_log_walk_that_never_ran_is_an_error_not_an_empty_history() {
        let store = InMemoryStateStore::new();
        let head = chain(&store, 3);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        drop(runtime);
        let err = handle
            .block_on(AsyncStateStore::get_node(&store, &head))
            .expect_err("no runtime to run it");
        assert!(err.to_string().contains("did not run"), "{err}");
        let mut short = AsyncStateStore::log(&store, LogOptions::new().from(head).limit(10));
        let first = handle.block_on(short.next()).expect("an item, not the end");
        let err = first.expect_err("the walk did not run");
        assert!(err.to_string().contains("stopped before its end"), "{err}");
        assert!(
            handle.block_on(short.next()).is_none(),
            "one error, then the end"
        );
        assert_eq!(short.boundary(), None);
        // A long walk runs on its own thread, which a runtime's end does not stop.
        let mut long = AsyncStateStore::log(&store, LogOptions::new().from(head));
        let first = handle
            .block_on(long.next())
            .expect("an entry")
            .expect("a node");
        assert_eq!(first.id, head);

        // A walk whose thread panics ends with an error too.
        let (tx, entries) = mpsc::channel(4);
        std::thread::spawn(move || {
            tx.blocking_send(LogItem::Node(Ok(
                StateStore::get_node(&store, &head).unwrap()
            )))
            .unwrap();
            panic!("a walk dies");
        })
        .join()
        .expect_err("it panicked");
        let mut died = LogStream {
            start: None,
            entries: Some(entries),
            boundary: None,
            failed: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(runtime.block_on(died.next()).unwrap().is_ok());
        assert!(runtime.block_on(died.next()).unwrap().is_err());
        assert!(runtime.block_on(died.next()).is_none());
    }

    #[test]
    fn a_log_stream_leaves_a_one_thread_blocking_pool_to_other_calls() {
        let store = InMemoryStateStore::new();
        let head = chain(&store, 600);
        within_a_minute("reading a log with a call per entry", move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(1)
                .build()
                .unwrap();
            // Reads each node's state while walking; how many nodes it read.
            let read_all = |options: LogOptions| {
                let store = store.clone();
                async move {
                    let mut stream = AsyncStateStore::log(&store, options);
                    let mut read = 0;
                    while let Some(node) = stream.next().await {
                        let node = node.unwrap();
                        AsyncStateStore::get_state(&store, &node.data_ref)
                            .await
                            .unwrap();
                        read += 1;
                    }
                    read
                }
            };
            let read = runtime.block_on(async {
                let long = read_all(LogOptions::new().from(head)).await;
                // A short walk runs on the pool itself, and frees it as it ends.
                long + read_all(LogOptions::new().from(head).limit(5)).await
            });
            assert_eq!(read, 605);
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_tasks_in_memory() {
        chains(Arc::new(InMemoryStateStore::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_tasks_in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::builder()
            .durability(crate::Durability::Normal)
            .open(dir.path().join("a.db"))
            .unwrap();
        chains(Arc::new(store)).await;
    }

    /// A stream that ended tells where the stored history stops, as the sync walk does: an
    /// imported snapshot whose parent is not here, whether the walk ran on the blocking pool
    /// (a limit) or on a thread of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finished_stream_reports_the_shallow_boundary() {
        let full = InMemoryStateStore::new();
        let head = chain(&full, 3);
        let package = full
            .export_snapshot(&StateStore::snapshot(&full, &head).unwrap())
            .unwrap();
        let shallow = InMemoryStateStore::new();
        StateStore::import_snapshot(&shallow, &package).unwrap();
        let parent = package.parent_ids[0];
        for options in [
            LogOptions::new().from(head),
            LogOptions::new().from(head).limit(10),
        ] {
            let mut stream = AsyncStateStore::log(&shallow, options);
            assert_eq!(stream.boundary(), None);
            assert_eq!(stream.next().await.unwrap().unwrap().id, head);
            assert_eq!(stream.boundary(), None, "not ended yet");
            assert!(stream.next().await.is_none());
            assert_eq!(stream.boundary(), Some(&[parent][..]));
        }
        let mut stream = AsyncStateStore::log(&full, LogOptions::new().from(head));
        while stream.next().await.is_some() {}
        assert_eq!(
            stream.boundary(),
            Some(&[][..]),
            "a history down to its root"
        );
        // A limit that stops the walk with nodes left: what lies below was not read.
        let mut stream = AsyncStateStore::log(&full, LogOptions::new().from(head).limit(1));
        while stream.next().await.is_some() {}
        assert_eq!(stream.boundary(), None);
        let mut log = History::log(&full, &LogOptions::new().from(head).limit(1)).unwrap();
        assert!(log.next().is_some() && log.next().is_none());
        assert!(!log.is_finished());
        // The latest snapshot in a walk, as the sync call finds it.
        let latest = AsyncStateStore::latest_snapshot_in(&full, LogOptions::new().from(head))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.node_id, head);
        let before = LogOptions::new().from(head).exclude(head);
        assert_eq!(
            AsyncStateStore::latest_snapshot_in(&full, before)
                .await
                .unwrap(),
            None
        );
    }

    /// Streams and calls work on a one-thread runtime, also after a stream is dropped
    /// half-read. (That the walk then stops is `a_dropped_stream_stops_its_walk_between_entries`.)
    #[tokio::test(flavor = "current_thread")]
    async fn works_on_a_current_thread_runtime_after_a_stream_is_dropped() {
        let store = InMemoryStateStore::new();
        let head = chain(&store, 2000);
        let mut stream = AsyncStateStore::log(&store, LogOptions::new().from(head));
        assert!(stream.next().await.unwrap().is_ok());
        drop(stream);
        let data = AsyncStateStore::put_state(&store, StateData::new(vec![1]))
            .await
            .unwrap();
        assert_eq!(
            AsyncStateStore::get_state(&store, &data)
                .await
                .unwrap()
                .bytes,
            vec![1]
        );
    }
}
