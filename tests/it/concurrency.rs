//! Concurrent use of SQLite stores: one shared handle, several handles on one file (as
//! separate processes would have), and readers racing writers. No sleeps: threads start
//! together at a barrier and the tests wait only by joining.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use stategraph::codec;
use stategraph::{
    ContentHash, Durability, SqliteStateStore, StateData, StateDataRef, StateMetadata, StateNodeId,
    StateStore, StateStoreError,
};
use tempfile::TempDir;
use time::Duration;

use crate::util::{T0, open_normal};

/// The bytes of commit `i` on chain `chain`: unique per commit, so dedup cannot hide a lost
/// write.
fn chain_bytes(chain: usize, i: usize) -> Vec<u8> {
    format!("chain {chain} commit {i}").into_bytes()
}

fn chain_meta(chain: usize, i: usize) -> StateMetadata {
    StateMetadata::new(
        T0 + Duration::nanoseconds((chain * 1_000 + i) as i64),
        Some(format!("c{chain}")),
    )
}

/// Commits a chain of `len` nodes on `store` and returns their ids.
fn commit_chain(store: &dyn StateStore, chain: usize, len: usize) -> Vec<StateNodeId> {
    let mut ids: Vec<StateNodeId> = Vec::with_capacity(len);
    for i in 0..len {
        let r = store
            .put_state(StateData::new(chain_bytes(chain, i)))
            .unwrap_or_else(|e| panic!("chain {chain} put {i}: {e}"));
        let parents = ids.last().map(|&p| vec![p]).unwrap_or_default();
        let id = store
            .commit_node(parents, r, chain_meta(chain, i))
            .unwrap_or_else(|e| panic!("chain {chain} commit {i}: {e}"));
        ids.push(id);
    }
    ids
}

/// Checks that chain `chain` is complete and exactly as committed, as seen through `store`.
fn check_chain(store: &dyn StateStore, chain: usize, ids: &[StateNodeId]) {
    for (i, id) in ids.iter().enumerate() {
        let node = store
            .get_node(id)
            .unwrap_or_else(|e| panic!("chain {chain} node {i}: {e}"));
        let parents: Vec<StateNodeId> = if i == 0 { vec![] } else { vec![ids[i - 1]] };
        assert_eq!(node.parent_ids, parents, "chain {chain} node {i}");
        assert_eq!(node.generation, i as u64 + 1, "chain {chain} node {i}");
        assert_eq!(node.metadata, chain_meta(chain, i));
        let bytes = chain_bytes(chain, i);
        assert_eq!(
            *id,
            codec::node_id(
                &parents,
                &ContentHash::of(&bytes),
                None,
                &chain_meta(chain, i)
            )
        );
        assert_eq!(
            store.get_state(&node.data_ref).expect("get_state").bytes,
            bytes
        );
    }
}

fn scratch() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shared.db");
    (dir, path)
}

#[test]
fn eight_threads_share_one_handle() {
    const THREADS: usize = 8;
    const LEN: usize = 100;
    let (_dir, path) = scratch();
    let store = Arc::new(open_normal(&path));
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|chain| {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                commit_chain(&*store, chain, LEN)
            })
        })
        .collect();
    let chains: Vec<Vec<StateNodeId>> = handles
        .into_iter()
        .map(|h| h.join().expect("writer thread panicked"))
        .collect();
    for (chain, ids) in chains.iter().enumerate() {
        assert_eq!(ids.len(), LEN);
        check_chain(&*store, chain, ids);
    }
    drop(store);
    let fresh = SqliteStateStore::open_read_only(&path).expect("fresh handle");
    for (chain, ids) in chains.iter().enumerate() {
        check_chain(&fresh, chain, ids);
    }
}

/// What one thread of [`failed_writes_in_a_group_undo_only_themselves`] tried and saw fail.
#[derive(Default)]
struct Failed {
    states: Vec<StateDataRef>,
    nodes: Vec<StateNodeId>,
}

/// Writes that fail inside a commit group are undone alone. Eight threads share one handle
/// under `Durability::Immediate`, so their writes are committed in groups (and join groups
/// already running); between the writes of its chain, each thread sends a batch whose ref
/// compare-and-swap is stale (found only when the group applies it) and a commit on an
/// unknown parent. Every chain must be complete, and nothing of a failed write stored.
#[test]
fn failed_writes_in_a_group_undo_only_themselves() {
    const THREADS: usize = 8;
    const LEN: usize = 40;
    let (_dir, path) = scratch();
    let store = SqliteStateStore::builder()
        .durability(Durability::Immediate)
        .open(&path)
        .expect("open");
    // A ref the stale batches expect to point elsewhere.
    let anchor = {
        let data = store.put_state(StateData::new(b"anchor".to_vec())).unwrap();
        store.commit_node(vec![], data, chain_meta(99, 0)).unwrap()
    };
    store.set_ref("contended", None, &anchor).unwrap();
    let unknown = StateNodeId::from_bytes([0xee; 32]);
    let start = Barrier::new(THREADS);
    let (chains, failed): (Vec<_>, Vec<_>) = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|chain| {
                let (store, start) = (&store, &start);
                s.spawn(move || {
                    start.wait();
                    let mut ids: Vec<StateNodeId> = Vec::with_capacity(LEN);
                    let mut failed = Failed::default();
                    for i in 0..LEN {
                        let data = store
                            .put_state(StateData::new(chain_bytes(chain, i)))
                            .unwrap();
                        let parents = ids.last().map(|&p| vec![p]).unwrap_or_default();
                        let id = store
                            .commit_node(parents.clone(), data, chain_meta(chain, i))
                            .unwrap_or_else(|e| panic!("chain {chain} commit {i}: {e}"));
                        ids.push(id);

                        let mut batch = stategraph::Batch::new(store);
                        let doomed = format!("doomed {chain} {i}").into_bytes();
                        let doomed = batch.put_state(StateData::new(doomed));
                        let node = batch
                            .commit_node(vec![id], doomed, chain_meta(chain, i))
                            .unwrap();
                        batch.set_ref("contended", Some(&id), &node).unwrap();
                        let err = batch.commit().unwrap_err();
                        assert!(
                            matches!(err, StateStoreError::RefConflict { .. }),
                            "chain {chain} batch {i}: {err:?}"
                        );
                        failed.states.push(doomed);
                        failed.nodes.push(node);

                        let err = store
                            .commit_node(vec![unknown], data, chain_meta(chain, i + LEN))
                            .unwrap_err();
                        assert!(
                            matches!(err, StateStoreError::MissingNode { .. }),
                            "chain {chain} orphan {i}: {err:?}"
                        );
                    }
                    (ids, failed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .unzip()
    });
    for (chain, ids) in chains.iter().enumerate() {
        check_chain(&store, chain, ids);
    }
    for f in &failed {
        for data_ref in &f.states {
            let err = store.get_state(data_ref).unwrap_err();
            assert!(
                matches!(err, StateStoreError::MissingState { .. }),
                "{err:?}"
            );
        }
        for node in &f.nodes {
            let err = store.get_node(node).unwrap_err();
            assert!(
                matches!(err, StateStoreError::MissingNode { .. }),
                "{err:?}"
            );
        }
    }
    let stats = store.stats().expect("stats");
    assert_eq!(
        stats.nodes,
        (THREADS * LEN) as u64 + 1,
        "only the chains and the anchor"
    );
    assert_eq!(stats.states, (THREADS * LEN) as u64 + 1);
    assert_eq!(store.get_ref("contended").unwrap(), Some(anchor));
    assert_eq!(store.ref_log("contended").unwrap().len(), 1);
    // The writes were grouped: those that succeeded (three setup calls and two per link)
    // took far fewer transactions than there were of them, so the failures, sent between
    // them by the same threads, met groups too.
    let counts = store.write_counts();
    assert_eq!(counts.writes, 3 + 2 * (THREADS * LEN) as u64);
    assert!(
        counts.transactions < counts.writes * 3 / 4,
        "hardly any grouping: {counts:?}"
    );
}

/// `handles` threads each open their own store on `path` (all at once) and commit a chain.
fn separate_handles(path: &Path, handles: usize, len: usize, durability: Durability) {
    let start = Arc::new(Barrier::new(handles));
    let threads: Vec<_> = (0..handles)
        .map(|chain| {
            let path = path.to_owned();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                let store = SqliteStateStore::builder()
                    .durability(durability)
                    .open(&path)
                    .unwrap_or_else(|e| panic!("handle {chain}: open: {e}"));
                let ids = commit_chain(&store, chain, len);
                // Each handle sees the others' work through its own connections later on.
                (ids, store)
            })
        })
        .collect();
    let results: Vec<(Vec<StateNodeId>, SqliteStateStore)> = threads
        .into_iter()
        .map(|h| h.join().expect("writer thread panicked"))
        .collect();
    for (_, store) in &results {
        for (chain, (ids, _)) in results.iter().enumerate() {
            check_chain(store, chain, ids);
        }
    }
    let chains: Vec<Vec<StateNodeId>> = results.into_iter().map(|(ids, _)| ids).collect();
    let fresh = SqliteStateStore::open(path).expect("fresh handle");
    for (chain, ids) in chains.iter().enumerate() {
        check_chain(&fresh, chain, ids);
    }
}

#[test]
fn four_handles_on_one_existing_file() {
    let (_dir, path) = scratch();
    drop(open_normal(&path));
    separate_handles(&path, 4, 100, Durability::Normal);
}

#[test]
fn four_handles_racing_to_create_one_file() {
    // Four processes started at once on a path that does not exist yet. The window is
    // small, so the race is run many times on fresh paths.
    for _ in 0..100 {
        let (_dir, path) = scratch();
        separate_handles(&path, 4, 1, Durability::Normal);
    }
}

#[test]
fn separate_handles_with_immediate_durability() {
    let (_dir, path) = scratch();
    drop(open_normal(&path));
    separate_handles(&path, 3, 15, Durability::Immediate);
}

#[test]
fn readers_see_consistent_data_while_writers_write() {
    const WRITERS: usize = 2;
    const READERS: usize = 3;
    const LEN: usize = 150;
    let (_dir, path) = scratch();
    let store = Arc::new(open_normal(&path));
    // (chain, index, id) of every committed node, published after its commit returned.
    let published: Arc<Mutex<Vec<(usize, usize, StateNodeId)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(WRITERS + READERS));

    let writers: Vec<_> = (0..WRITERS)
        .map(|chain| {
            let (store, published, start) = (
                Arc::clone(&store),
                Arc::clone(&published),
                Arc::clone(&start),
            );
            thread::spawn(move || {
                start.wait();
                let mut head: Option<StateNodeId> = None;
                for i in 0..LEN {
                    let r = store
                        .put_state(StateData::new(chain_bytes(chain, i)))
                        .expect("put_state");
                    let id = store
                        .commit_node(head.into_iter().collect(), r, chain_meta(chain, i))
                        .expect("commit_node");
                    if i % 10 == 0 {
                        store.snapshot(&id).expect("snapshot");
                    }
                    published.lock().expect("lock").push((chain, i, id));
                    head = Some(id);
                }
            })
        })
        .collect();

    let readers: Vec<_> = (0..READERS)
        .map(|reader| {
            let (published, done, start) = (
                Arc::clone(&published),
                Arc::clone(&done),
                Arc::clone(&start),
            );
            // One reader uses its own read-only handle, the others share the writers' handle.
            let shared: Arc<dyn StateStore> = Arc::clone(&store) as Arc<dyn StateStore>;
            let path = path.clone();
            thread::spawn(move || {
                let own;
                let s: &dyn StateStore = if reader == 0 {
                    own = SqliteStateStore::open_read_only(&path).expect("read-only handle");
                    &own
                } else {
                    &*shared
                };
                start.wait();
                let mut checks = 0usize;
                let mut cursor = 0usize;
                loop {
                    // Read the flag before the list: once `done` is seen, everything is listed.
                    let finished = done.load(Ordering::Acquire);
                    let visible: Vec<(usize, usize, StateNodeId)> =
                        published.lock().expect("lock").clone();
                    for &(chain, i, id) in visible.iter().skip(cursor) {
                        let node = s.get_node(&id).expect("published node is readable");
                        assert_eq!(node.generation, i as u64 + 1);
                        assert_eq!(node.metadata, chain_meta(chain, i));
                        if let Some(parent) = node.parent_ids.first() {
                            let p = s.get_node(parent).expect("parent of a visible node");
                            assert_eq!(p.generation, i as u64);
                        }
                        let bytes = s.get_state(&node.data_ref).expect("get_state").bytes;
                        assert_eq!(bytes, chain_bytes(chain, i));
                        if i % 10 == 0 {
                            let snap = s
                                .load_snapshot(&codec::snapshot_id(&id))
                                .expect("snapshot of a published node");
                            assert_eq!(snap.state.bytes, bytes);
                        }
                        checks += 1;
                    }
                    cursor = cursor.max(visible.len() / 2);
                    if finished {
                        return checks;
                    }
                }
            })
        })
        .collect();

    for w in writers {
        w.join().expect("writer panicked");
    }
    done.store(true, Ordering::Release);
    for r in readers {
        let checks = r.join().expect("reader panicked");
        assert!(
            checks >= WRITERS * LEN / 2,
            "reader checked only {checks} nodes"
        );
    }
}

/// A lone writer never waits for others: one transaction per write. A read-only handle
/// writes nothing.
#[test]
fn write_counts_of_a_lone_writer_and_a_reader() {
    let (_dir, path) = scratch();
    let store = SqliteStateStore::builder()
        .durability(Durability::Normal)
        .open(&path)
        .expect("open");
    assert_eq!(store.write_counts(), stategraph::WriteCounts::default());
    let mut head = None;
    for i in 0..10 {
        let data = store.put_state(StateData::new(chain_bytes(0, i))).unwrap();
        head = Some(
            store
                .commit_node(head.into_iter().collect(), data, chain_meta(0, i))
                .unwrap(),
        );
    }
    // A failed write is not counted.
    store
        .commit_node(
            vec![StateNodeId::from_bytes([1; 32])],
            store.put_state(StateData::new(vec![1])).unwrap(),
            chain_meta(0, 99),
        )
        .unwrap_err();
    let counts = store.write_counts();
    assert_eq!((counts.writes, counts.transactions), (21, 21));
    let reader = SqliteStateStore::open_read_only(&path).expect("reader");
    assert_eq!(reader.write_counts(), stategraph::WriteCounts::default());
}

/// Garbage collection racing writers: four threads move their own branch every tick while
/// another thread collects with no grace period, and a second handle (as another process
/// would) collects too, in steps of one row (each a write transaction of its own, with the
/// writers' commits in between). No writer may fail, nothing a branch reaches may go, and every
/// abandoned tick (each writer also commits one node per tick that nothing refers to) is
/// eventually removed.
#[test]
fn gc_races_writers_without_losing_what_they_reach() {
    use stategraph::{GcOptions, History};

    const WRITERS: usize = 4;
    const TICKS: usize = 60;
    let (_dir, path) = scratch();
    let store = open_normal(&path);
    let other = open_normal(&path);
    let options = GcOptions::new().grace(std::time::Duration::ZERO);
    let in_steps = options.clone().rows_per_step(1);
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(WRITERS + 2);
    let (heads, removed) = thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, barrier) = (&store, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let branch = format!("w{w}");
                    let mut head: Option<StateNodeId> = None;
                    for i in 0..TICKS {
                        let data = StateData::new(chain_bytes(w, i));
                        let (_, id) = store
                            .commit_on(&branch, head.as_ref(), data, chain_meta(w, i))
                            .unwrap_or_else(|e| panic!("writer {w} tick {i}: {e}"));
                        // Abandoned at once: a node on the head that nothing refers to.
                        let parents = vec![id];
                        let abandoned = StateData::new(format!("abandoned {w} {i}").into_bytes());
                        store
                            .commit_state(parents, abandoned, chain_meta(w, i))
                            .unwrap_or_else(|e| panic!("writer {w} abandon {i}: {e}"));
                        head = Some(id);
                    }
                    head.expect("ticked")
                })
            })
            .collect();
        let collectors: Vec<_> = [(&store, &options), (&other, &in_steps)]
            .into_iter()
            .map(|(handle, options)| {
                let (done, barrier) = (&done, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut removed = 0;
                    while !done.load(Ordering::SeqCst) {
                        removed += handle.gc(options).expect("gc").nodes_removed;
                    }
                    removed
                })
            })
            .collect();
        let heads: Vec<StateNodeId> = writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect();
        done.store(true, Ordering::SeqCst);
        let removed: u64 = collectors.into_iter().map(|c| c.join().expect("gc")).sum();
        (heads, removed)
    });
    let last = store.gc(&options).expect("gc");
    // The ref log keeps every tick the branches passed; only the abandoned nodes go.
    assert_eq!(removed + last.nodes_removed, (WRITERS * TICKS) as u64);
    assert_eq!(last.nodes_kept, (WRITERS * TICKS) as u64);
    for (w, head) in heads.iter().enumerate() {
        let chain: Vec<StateNodeId> = store
            .ancestors(head)
            .expect("walk")
            .map(|e| e.map(|e| e.id))
            .collect::<Result<_, _>>()
            .expect("walk");
        assert_eq!(chain.len(), TICKS - 1, "writer {w}'s chain above its head");
    }
    drop(other);
    let report = store.verify(|_| {}).expect("verify");
    assert!(report.is_ok(), "{report:?}");
}

/// Snapshots and ref moves are stamped when they are written, inside the write transaction:
/// one that waited for the write lock (another process's long transaction) used to carry
/// the time it was asked for, which `gc --expire-reflog` and snapshot listings then read.
#[test]
fn a_write_that_waited_for_the_write_lock_is_stamped_when_written() {
    let (_dir, path) = scratch();
    let store = SqliteStateStore::open(&path).expect("open");
    let data = store.put_state(StateData::new(b"s".to_vec())).expect("put");
    let node = store
        .commit_node(vec![], data, StateMetadata::now("n"))
        .expect("commit");
    let lock = rusqlite::Connection::open(&path).expect("raw");
    lock.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let released = thread::scope(|s| {
        let snapshot = s.spawn(|| store.snapshot(&node));
        let moved = s.spawn(|| store.set_ref("main", None, &node));
        // Time for both calls to start waiting. The stamps are compared with when the lock
        // is released, so a call that starts late only makes this round weaker, not wrong.
        thread::sleep(std::time::Duration::from_millis(50));
        let released = time::OffsetDateTime::now_utc();
        lock.execute_batch("ROLLBACK").expect("unlock");
        snapshot.join().expect("snapshot").expect("snapshot");
        moved.join().expect("set_ref").expect("set_ref");
        released
    });
    let snapshot = store.snapshots_of(&node).expect("snapshots");
    assert!(
        snapshot[0].created_at >= released,
        "{snapshot:?} < {released}"
    );
    let log = store.ref_log("main").expect("ref log");
    assert!(log[0].at >= released, "{log:?} < {released}");
}

/// A collection that waits for the write lock counts time from when it gets it: a node
/// committed while it waited (a revert: a new node on a state older than the grace
/// period, about to be named by `set_ref`) is new, and stays. The collection used to read
/// the clock before waiting, took such a node for an old one and removed it, so the
/// writer's `set_ref` then failed with `MissingNode`.
///
/// Another connection holds the write lock while the collection (one handle) and then
/// the commit (a second handle, as another process) queue for it; which takes it first when
/// it is freed is up to the lock. The node was lost in the rounds the commit won (about six
/// in ten), so ten rounds fail the old code almost surely.
#[test]
fn gc_waiting_for_the_write_lock_keeps_a_node_committed_meanwhile() {
    use stategraph::GcOptions;

    for round in 0..10 {
        let (_dir, path) = scratch();
        let collector = SqliteStateStore::open(&path).expect("open");
        let writer = SqliteStateStore::open(&path).expect("open");
        let (base, data) = {
            let data = writer
                .put_state(StateData::new(b"known good".to_vec()))
                .expect("put");
            let base = writer
                .commit_node(vec![], data, StateMetadata::now("base"))
                .expect("commit");
            writer.set_ref("main", None, &base).expect("ref");
            // Garbage, so that the collection has something to remove and waits for the
            // write lock (with nothing to remove it takes no lock at all).
            let scrap = writer
                .put_state(StateData::new(b"scrap".to_vec()))
                .expect("put");
            writer
                .commit_node(vec![], scrap, StateMetadata::now("scrap"))
                .expect("commit");
            (base, data)
        };
        // Everything older than this (the state) is past the grace period.
        let options = GcOptions::new().keep_newer_than(time::OffsetDateTime::now_utc());
        let lock = rusqlite::Connection::open(&path).expect("raw");
        lock.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let (report, revert) = thread::scope(|s| {
            let gc = s.spawn(|| collector.gc(&options));
            thread::sleep(std::time::Duration::from_millis(30));
            let commit = s.spawn(|| {
                writer.commit_node(vec![base], data, StateMetadata::now("revert to known good"))
            });
            thread::sleep(std::time::Duration::from_millis(30));
            lock.execute_batch("ROLLBACK").expect("unlock");
            (gc.join().expect("gc"), commit.join().expect("commit"))
        });
        let report = report.expect("gc");
        let revert = revert.expect("commit");
        assert_eq!(report.nodes_removed, 1, "round {round}: {report:?}");
        writer
            .set_ref("main", Some(&base), &revert)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(collector.get_node(&revert).is_ok());
    }
}
