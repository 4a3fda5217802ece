//! `SqliteStateStore::vacuum`: the file shrinks after `gc`, and nothing that was kept
//! changes; concurrent writers, readers in the WAL, read-only handles and a full disk.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stategraph::{
    GcOptions, History as _, LogOptions, SqliteStateStore, StateData, StateNodeId, StateStore,
    StateStoreError,
};

use crate::durability_util::{
    assert_chain_complete, assert_integrity, child_role, child_var, error_kind, report,
    run_child_with_file_limit,
};
use crate::util::{commit_bytes, meta, open_normal, random_bytes, t};

const VACUUM_FULL_CHILD_TEST: &str = "vacuum::child_vacuum_on_a_full_disk";

/// A store whose busy timeout is short, for tests that hold a lock against it.
fn open_impatient(path: &Path) -> SqliteStateStore {
    SqliteStateStore::builder()
        .durability(stategraph::Durability::Normal)
        .busy_timeout(Duration::from_millis(200))
        .open(path)
        .expect("open")
}

pub fn file_bytes(path: &Path) -> u64 {
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    len(path) + len(Path::new(&wal))
}

/// A `main` chain of `kept` small nodes with a snapshot of its head, and a `scratch` branch
/// of `dropped` nodes with 4 KiB states (incompressible) that is deleted again: `gc` with
/// no grace then frees most of the file. Returns the main chain, oldest first.
pub fn store_with_garbage(store: &SqliteStateStore, kept: u64, dropped: u64) -> Vec<StateNodeId> {
    let mut main = Vec::new();
    for i in 0..kept {
        let parents = main.last().copied().into_iter().collect();
        let label = format!("main {i}");
        let (_, id) = commit_bytes(
            store,
            parents,
            label.as_bytes(),
            None,
            meta(t(i as i64), Some(&label)),
        );
        main.push(id);
    }
    store
        .set_ref("main", None, main.last().unwrap())
        .expect("main");
    store.snapshot(main.last().unwrap()).expect("snapshot");
    let mut batch = store.batch();
    let mut head = main[0];
    for i in 0..dropped {
        let data = batch.put_state(StateData::new(random_bytes(i + 1, 4096)));
        head = batch
            .commit_node(vec![head], data, meta(t(i as i64), Some("scratch")))
            .expect("scratch node");
    }
    batch.set_ref("scratch", None, &head).expect("scratch");
    batch.commit().expect("scratch batch");
    store.delete_ref("scratch", &head).expect("delete scratch");
    main
}

fn gc_everything(store: &SqliteStateStore) {
    let options = GcOptions::new()
        .grace(Duration::ZERO)
        .expire_ref_log(Duration::ZERO);
    let report = store.gc(&options).expect("gc");
    assert!(report.nodes_removed > 0, "{report:?}");
}

fn assert_main_intact(store: &SqliteStateStore, main: &[StateNodeId]) {
    let head = store.get_ref("main").expect("get_ref").expect("main");
    assert_eq!(&head, main.last().unwrap());
    let mut walked = assert_chain_complete(store, &head);
    walked.reverse();
    assert_eq!(walked, main);
    for (i, id) in main.iter().enumerate() {
        let node = store.get_node(id).expect("node");
        let state = store.get_state(&node.data_ref).expect("state");
        assert_eq!(state.bytes, format!("main {i}").into_bytes());
    }
    let snapshots = store.list_snapshots().expect("snapshots");
    assert_eq!(snapshots.len(), 1);
    assert_eq!(&snapshots[0].node_id, main.last().unwrap());
    let report = store.verify(|_| {}).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn vacuum_gives_the_space_gc_freed_back_and_changes_nothing_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.db");
    let store = open_normal(&path);
    let main = store_with_garbage(&store, 50, 2_000);
    gc_everything(&store);
    let before = file_bytes(&path);
    assert!(before > 8 << 20, "gc left the file at {before} bytes");
    let free = store.stats().expect("stats").free_bytes;
    assert!(free > before / 2, "gc freed only {free} of {before} bytes");

    let ref_log = store.ref_log("main").expect("ref log");
    let report = store.vacuum().expect("vacuum");
    assert!(report.wal_truncated && report.rewritten, "{report:?}");
    assert_eq!(report.bytes_before, before);
    assert_eq!(report.bytes_after, file_bytes(&path));
    assert!(
        report.bytes_after < before / 10,
        "the file only went from {before} to {} bytes",
        report.bytes_after
    );
    assert_eq!(store.stats().expect("stats").free_bytes, 0);
    assert_main_intact(&store, &main);
    // Ids and the ref log are what they were; writing goes on.
    assert_eq!(store.ref_log("main").expect("ref log"), ref_log);
    let (_, next) = commit_bytes(
        &store,
        vec![*main.last().unwrap()],
        b"after",
        None,
        meta(t(99), None),
    );
    store
        .set_ref("main", main.last(), &next)
        .expect("move main after vacuum");
    drop(store);
    assert_integrity(&path);

    // Nothing to give back: a second vacuum leaves the file as it is.
    let store = open_normal(&path);
    let file = std::fs::read(&path).expect("read file");
    let again = store.vacuum().expect("vacuum again");
    assert!(!again.rewritten, "{again:?}");
    assert_eq!(std::fs::read(&path).expect("read file"), file);
    assert_eq!(store.get_ref("main").unwrap(), Some(next));
}

#[test]
fn writers_on_the_same_handle_wait_for_vacuum_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.db");
    let store = Arc::new(open_normal(&path));
    let main = store_with_garbage(&store, 20, 1_000);
    gc_everything(&store);
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        std::thread::spawn(move || {
            let (_, root) = commit_bytes(&*store, vec![], b"w", None, meta(t(0), Some("w")));
            let mut chain = vec![root];
            // At least a few commits after vacuum started, whenever the thread runs.
            while !done.load(Ordering::Acquire) || chain.len() < 5 {
                let i = chain.len();
                let (_, id) = commit_bytes(
                    &*store,
                    vec![*chain.last().unwrap()],
                    format!("w{i}").as_bytes(),
                    None,
                    meta(t(i as i64), None),
                );
                chain.push(id);
            }
            chain
        })
    };
    let report = store.vacuum().expect("vacuum");
    done.store(true, Ordering::Release);
    let chain = writer.join().expect("writer");
    assert!(report.bytes_after < report.bytes_before, "{report:?}");
    let head = chain.last().unwrap();
    let mut walked = assert_chain_complete(&*store, head);
    walked.reverse();
    assert_eq!(walked, chain);
    assert_main_intact(&store, &main);
    drop(store);
    assert_integrity(&path);
}

/// Another connection to `path` in the middle of a read (`BEGIN` and one query, left open),
/// so it holds its snapshot in the WAL until it commits; and the node count it saw.
fn reader_in_the_wal(path: &Path) -> (rusqlite::Connection, i64) {
    let reader = rusqlite::Connection::open(path).expect("reader");
    reader.execute_batch("BEGIN").expect("begin");
    let seen = reader
        .query_row("SELECT count(*) FROM state_nodes", [], |r| r.get(0))
        .expect("read");
    (reader, seen)
}

#[test]
fn a_reader_in_the_wal_delays_only_the_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.db");
    let store = open_impatient(&path);
    let main = store_with_garbage(&store, 20, 500);
    gc_everything(&store);
    // Another connection mid-read holds a snapshot in the WAL throughout.
    let (reader, seen) = reader_in_the_wal(&path);

    let report = store.vacuum().expect("vacuum with a reader");
    assert!(!report.wal_truncated, "{report:?}");
    // The reader still sees the store as it was.
    let still: i64 = reader
        .query_row("SELECT count(*) FROM state_nodes", [], |r| r.get(0))
        .expect("read again");
    assert_eq!(still, seen);
    reader.execute_batch("COMMIT").expect("end read");
    drop(reader);
    assert_main_intact(&store, &main);
    // Once the reader is gone, the next vacuum has nothing to rewrite but gets the
    // truncation through, which shrinks the file.
    let report = store.vacuum().expect("vacuum");
    assert!(report.wal_truncated && !report.rewritten, "{report:?}");
    assert!(report.bytes_after < report.bytes_before / 2, "{report:?}");
    drop(store);
    assert_integrity(&path);
}

/// While a reader keeps vacuum from truncating the log, this handle's writers are not held
/// back: only the rewrite itself holds the write connection.
#[test]
fn writers_go_on_while_a_reader_delays_the_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.db");
    // A long busy timeout: vacuum waits that long for the reader, and a writer held behind
    // it would wait as long.
    let store = SqliteStateStore::builder()
        .durability(stategraph::Durability::Normal)
        .busy_timeout(Duration::from_secs(30))
        .open(&path)
        .expect("open");
    let main = store_with_garbage(&store, 20, 500);
    gc_everything(&store);
    let (reader, _) = reader_in_the_wal(&path);
    let wal = crate::util::sidecar(&path, "-wal");
    let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let wal_before = wal_len();
    std::thread::scope(|s| {
        let vacuum = s.spawn(|| store.vacuum());
        // The rewrite goes through the log: once it has grown, vacuum is at or past it.
        let waited = std::time::Instant::now();
        while wal_len() <= wal_before {
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "setup: the rewrite never reached the log"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let (done, written) = std::sync::mpsc::channel();
        let store = &store;
        s.spawn(move || {
            let put = store.put_state(StateData::new(b"written meanwhile".to_vec()));
            let _ = done.send(put);
        });
        let put = written
            .recv_timeout(Duration::from_secs(10))
            .expect("a write was held behind vacuum's wait for the reader")
            .expect("the write");
        assert!(!vacuum.is_finished(), "vacuum still waits for the reader");
        reader.execute_batch("COMMIT").expect("end read");
        let report = vacuum.join().expect("vacuum thread").expect("vacuum");
        assert!(report.rewritten && report.wal_truncated, "{report:?}");
        assert_eq!(
            store.get_state(&put).expect("kept").bytes,
            b"written meanwhile"
        );
    });
    assert_main_intact(&store, &main);
}

#[test]
fn a_read_only_handle_cannot_vacuum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.db");
    let main = store_with_garbage(&open_normal(&path), 5, 10);
    let bytes = std::fs::read(&path).expect("read file");
    let store = SqliteStateStore::open_read_only(&path).expect("open read-only");
    let err = store.vacuum().unwrap_err();
    assert!(
        matches!(
            err,
            StateStoreError::ReadOnly {
                operation: "vacuum"
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        store
            .log(&LogOptions::new().from(*main.last().unwrap()))
            .unwrap()
            .count(),
        5
    );
    drop(store);
    assert_eq!(std::fs::read(&path).expect("read file"), bytes);
}

/// Vacuum needs room for a second copy of what it keeps; when a write fails for lack of
/// room (a file-size limit, `ulimit -f`, as in `crash::a_full_disk_fails_writes_cleanly`)
/// it must fail with an error, and the store must be exactly as usable as before.
#[test]
fn vacuum_on_a_full_disk_fails_and_keeps_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("full.db");
    let main = {
        let store = open_normal(&path);
        // Little garbage and much kept: the rewritten copy does not fit beside the file.
        let main = store_with_garbage(&store, 20, 1);
        let mut batch = store.batch();
        let mut head = *main.last().unwrap();
        for i in 0..600 {
            let data = batch.put_state(StateData::new(random_bytes(1_000 + i, 4096)));
            head = batch
                .commit_node(vec![head], data, meta(t(i as i64), Some("kept")))
                .expect("kept node");
        }
        batch.set_ref("kept", None, &head).expect("kept");
        batch.commit().expect("batch");
        gc_everything(&store);
        drop(store);
        main
    };
    let size = std::fs::metadata(&path).expect("size").len();
    // Blocks of 512 bytes. The limit is per file: VACUUM writes the rewritten store into
    // the WAL, which at half the store's size cannot hold it.
    let blocks = size / 2 / 512;
    // SQLite builds the new copy in its temporary directory: keep it on the same limit.
    let (reports, _) = run_child_with_file_limit(
        VACUUM_FULL_CHILD_TEST,
        "vacuum-full",
        &path,
        blocks,
        &[("SQLITE_TMPDIR", dir.path())],
    );
    let outcome = reports
        .iter()
        .find(|r| r.starts_with("vacuum "))
        .expect("the child reported no vacuum outcome");
    eprintln!("vacuum under a file-size limit: {outcome}");
    assert!(
        outcome.starts_with("vacuum error storage-full")
            || outcome.starts_with("vacuum error backend"),
        "vacuum under the limit: {outcome}"
    );
    assert!(reports.iter().any(|r| r == "reads-ok"), "{reports:?}");
    let after = reports
        .iter()
        .find_map(|r| r.strip_prefix("write-ok "))
        .unwrap_or_else(|| panic!("no write after the failed vacuum: {reports:?}"));

    let store = open_normal(&path);
    assert_main_intact(&store, &main);
    let kept = store.get_ref("kept").unwrap().expect("kept");
    assert_eq!(kept.to_hex(), after);
    assert_eq!(assert_chain_complete(&store, &kept).len(), 621);
    // With room again, vacuum works.
    store.vacuum().expect("vacuum with room");
    drop(store);
    assert_integrity(&path);
}

/// The child half of [`vacuum_on_a_full_disk_fails_and_keeps_the_store`]. Does nothing when
/// run on its own.
#[test]
#[ignore = "child process of the vacuum tests; run by them"]
fn child_vacuum_on_a_full_disk() {
    if child_role().as_deref() != Some("vacuum-full") {
        return;
    }
    let path = child_var("STATEGRAPH_TEST_DB");
    let store = open_normal(Path::new(&path));
    match store.vacuum() {
        Ok(r) => report(&format!("vacuum ok {r:?}")),
        Err(e) => {
            let kind = error_kind(&e);
            report(&format!("vacuum error {kind} {e}"));
        }
    }
    let head = store.get_ref("kept").expect("get_ref").expect("kept");
    assert_eq!(assert_chain_complete(&store, &head).len(), 620);
    report("reads-ok");
    // The same handle goes on writing (a small commit fits under the limit): the failed
    // vacuum left its write connection usable.
    let written = store
        .put_state(StateData::new(b"after the failed vacuum".to_vec()))
        .and_then(|data| store.commit_node(vec![head], data, meta(t(1), Some("after"))))
        .and_then(|id| store.set_ref("kept", Some(&head), &id).map(|()| id));
    match written {
        Ok(id) => report(&format!("write-ok {}", id.to_hex())),
        Err(e) => report(&format!("write-error {e}")),
    }
}

/// Another connection holding the write lock past the busy timeout makes vacuum fail with
/// an error that says so, and changes nothing.
#[test]
fn vacuum_waits_for_the_write_lock_then_says_who_held_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.db");
    let store = open_impatient(&path);
    let main = store_with_garbage(&store, 5, 10);
    gc_everything(&store);
    let other = rusqlite::Connection::open(&path).expect("other connection");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let started = std::time::Instant::now();
    let err = store.vacuum().unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it did not wait"
    );
    let text = err.to_string();
    assert!(
        text.contains("write lock") && text.contains("busy timeout"),
        "{text}"
    );
    assert!(err.is_busy(), "{err:?}");
    other.execute_batch("ROLLBACK").expect("release");
    drop(other);
    assert_main_intact(&store, &main);
    store.vacuum().expect("vacuum once the lock is free");
}

/// A gc dry run only reads: it counts while another connection holds the write lock (past
/// this handle's busy timeout), where a real gc has to wait for it and gives up.
#[test]
fn gc_dry_run_counts_while_another_connection_holds_the_write_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.db");
    let store = open_impatient(&path);
    store_with_garbage(&store, 5, 10);
    let other = rusqlite::Connection::open(&path).expect("other connection");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let options = GcOptions::new()
        .grace(Duration::ZERO)
        .expire_ref_log(Duration::ZERO);
    let dry = store
        .gc(&options.clone().dry_run(true))
        .expect("a dry run needs no write lock");
    assert!(dry.dry_run && dry.nodes_removed > 0, "{dry:?}");
    let err = store.gc(&options).expect_err("gc waits for the lock");
    assert!(err.is_busy(), "{err:?}");
    other.execute_batch("ROLLBACK").expect("release");
    let real = store.gc(&options).expect("gc");
    assert_eq!(real.nodes_removed, dry.nodes_removed);
}

/// A collection that finds nothing to remove takes no write lock: it counts in a read
/// transaction first, so a periodic gc on a big store whose refs keep everything does not
/// hold writers back while it reads every node (it waited for the lock, and held it).
#[test]
fn gc_with_nothing_to_remove_takes_no_write_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.db");
    let store = open_impatient(&path);
    store_with_garbage(&store, 5, 10);
    let options = GcOptions::new()
        .grace(Duration::ZERO)
        .expire_ref_log(Duration::ZERO);
    let first = store.gc(&options).expect("gc");
    assert!(first.nodes_removed > 0, "{first:?}");
    let other = rusqlite::Connection::open(&path).expect("other connection");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let again = store.gc(&options).expect("nothing left: no lock needed");
    assert!(!again.dry_run, "{again:?}");
    assert_eq!(
        (again.nodes_removed, again.states_removed, again.nodes_kept),
        (0, 0, first.nodes_kept),
        "{again:?}"
    );
    other.execute_batch("ROLLBACK").expect("release");
}
