//! What `SqliteStateStore::open` accepts, what it refuses, and that refusing (and read-only
//! use) leaves files exactly as they were: same bytes, no new `-wal`/`-shm` sidecars.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stategraph::{
    SCHEMA_VERSION, SqliteStateStore, StateData, StateNodeId, StateStore, StateStoreError,
};
use tempfile::TempDir;

use crate::util::{
    Fingerprint, commit_bytes, dir_entries, meta, open_normal, random_bytes, raw, sidecar, t,
};

/// A temporary directory with one file path in it.
fn scratch(name: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    (dir, path)
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Writable,
    ReadOnly,
}

/// Opens `path` in `mode`; it must fail with an error `expected` accepts, without changing the
/// file or creating anything next to it (no `-wal`, no `-shm`).
fn assert_refused_by(path: &Path, mode: Mode, expected: impl Fn(&StateStoreError) -> bool) {
    let dir = path.parent().expect("parent");
    let before = Fingerprint::of(path);
    let entries = dir_entries(dir);
    let result = match mode {
        Mode::Writable => SqliteStateStore::open(path),
        Mode::ReadOnly => SqliteStateStore::open_read_only(path),
    };
    match result {
        Ok(store) => panic!("{mode:?} open accepted {}: {store:?}", path.display()),
        Err(e) => {
            assert!(expected(&e), "{mode:?} open: unexpected error {e:?}");
            let text = e.to_string();
            assert!(
                !text.contains('\n'),
                "{mode:?} open: multi-line message {text:?}"
            );
        }
    }
    assert_eq!(
        Fingerprint::of(path),
        before,
        "{mode:?} open changed the file or its sidecars"
    );
    assert_eq!(dir_entries(dir), entries, "{mode:?} open created files");
}

/// [`assert_refused_by`] for both a writable and a read-only open.
fn assert_refused(path: &Path, expected: impl Fn(&StateStoreError) -> bool) {
    assert_refused_by(path, Mode::Writable, &expected);
    assert_refused_by(path, Mode::ReadOnly, &expected);
}

fn is_not_a_store(e: &StateStoreError) -> bool {
    matches!(e, StateStoreError::NotAStore { .. })
}

/// A closed store at `path` with `n` commits of ~1 KiB each, fully checkpointed.
fn make_store(path: &Path, n: usize) -> Vec<StateNodeId> {
    let store = open_normal(path);
    let mut ids = Vec::new();
    for i in 0..n {
        let parents = ids.last().map(|&p| vec![p]).unwrap_or_default();
        let bytes = random_bytes(i as u64, 1024);
        let (_, id) = commit_bytes(&store, parents, &bytes, None, meta(t(i as i64), None));
        if i % 10 == 0 {
            store.snapshot(&id).expect("snapshot");
        }
        ids.push(id);
    }
    drop(store);
    checkpoint(path);
    ids
}

/// Folds the WAL into the main file through a raw connection (the last connection to close
/// a WAL database checkpoints it and deletes the sidecars), and checks that it worked.
fn checkpoint(path: &Path) {
    let conn = raw(path);
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .expect("checkpoint");
    assert_eq!(busy, 0, "checkpoint was blocked");
    drop(conn);
    let f = Fingerprint::of(path);
    assert!(
        f.wal.is_none() && f.shm.is_none(),
        "checkpoint left sidecars: {f:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Files that are not stores

#[test]
fn refuses_random_bytes() {
    let (_dir, path) = scratch("random.db");
    std::fs::write(&path, random_bytes(42, 4096)).expect("write");
    assert_refused(&path, is_not_a_store);
}

#[test]
fn refuses_a_fifo_without_waiting_for_a_writer() {
    let (_dir, path) = scratch("pipe.db");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let (tx, rx) = std::sync::mpsc::channel();
    let opener = path.clone();
    std::thread::spawn(move || {
        let writable = SqliteStateStore::open(&opener).map(drop);
        let read_only = SqliteStateStore::open_read_only(&opener).map(drop);
        let _ = tx.send((writable, read_only));
    });
    let (writable, read_only) = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("opening a FIFO hung (it waits for a writer)");
    for result in [writable, read_only] {
        let err = result.expect_err("a FIFO is not a store");
        assert!(is_not_a_store(&err), "{err:?}");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

#[test]
fn refuses_a_text_file() {
    let (_dir, path) = scratch("notes.txt");
    std::fs::write(&path, "These are my notes.\nThey are not a database.\n").expect("write");
    assert_refused(&path, is_not_a_store);
}

#[test]
fn refuses_a_file_that_only_starts_like_sqlite() {
    let (_dir, path) = scratch("short.db");
    std::fs::write(&path, b"SQLite format 3\0 and then nothing useful").expect("write");
    assert_refused(&path, is_not_a_store);
}

fn make_foreign_db(path: &Path, journal_mode: &str, application_id: i32) {
    let conn = raw(path);
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", journal_mode, |r| r.get(0))
        .expect("journal_mode");
    assert!(
        mode.eq_ignore_ascii_case(journal_mode),
        "journal mode {mode}"
    );
    conn.pragma_update(None, "application_id", application_id)
        .expect("application_id");
    conn.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO customers (name) VALUES ('ada'), ('grace');
         CREATE TABLE blobs (id INTEGER PRIMARY KEY, hash BLOB, bytes BLOB);",
    )
    .expect("foreign schema");
    drop(conn);
    assert!(Fingerprint::of(path).wal_is_empty());
}

#[test]
fn refuses_a_foreign_sqlite_database_in_rollback_mode() {
    let (_dir, path) = scratch("foreign.db");
    make_foreign_db(&path, "delete", 0);
    assert_refused(&path, is_not_a_store);
}

#[test]
fn refuses_a_foreign_sqlite_database_in_wal_mode() {
    let (_dir, path) = scratch("foreign.db");
    make_foreign_db(&path, "wal", 0);
    assert_refused(&path, is_not_a_store);
}

#[test]
fn refuses_a_foreign_sqlite_database_with_its_own_application_id() {
    let (_dir, path) = scratch("foreign.db");
    make_foreign_db(&path, "wal", 0x4649_4c45);
    assert_refused(&path, is_not_a_store);
}

#[test]
fn refuses_a_foreign_database_that_another_connection_has_open() {
    let (_dir, path) = scratch("busy-foreign.db");
    let conn = raw(&path);
    conn.pragma_update(None, "journal_mode", "wal")
        .expect("wal");
    // Disable automatic checkpoints so the rows below stay in the WAL.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .expect("autocheckpoint");
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3);")
        .expect("write");
    assert!(
        !Fingerprint::of(&path).wal_is_empty(),
        "setup: WAL should hold rows"
    );
    assert_refused(&path, is_not_a_store);
    // The other application's data is intact.
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 3);
}

#[test]
fn refuses_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a-directory");
    std::fs::create_dir(&path).expect("mkdir");
    assert_refused(&path, is_not_a_store);
    assert!(
        dir_entries(&path).is_empty(),
        "something was created inside the directory"
    );
}

// ---------------------------------------------------------------------------------------------
// Damaged or newer stores

#[test]
fn refuses_a_store_truncated_to_half() {
    let (_dir, path) = scratch("store.db");
    make_store(&path, 300);
    let len = std::fs::metadata(&path).expect("metadata").len();
    assert!(
        len >= 64 * 4096,
        "setup: the store should span many pages ({len} bytes)"
    );
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open for truncation");
    file.set_len(len / 2).expect("truncate");
    drop(file);
    assert_refused(&path, |e| e.is_corrupt());
}

#[test]
fn refuses_a_store_truncated_to_50_bytes() {
    let (_dir, path) = scratch("store.db");
    make_store(&path, 3);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open for truncation");
    file.set_len(50).expect("truncate");
    drop(file);
    // Shorter than a SQLite header: documented as NotAStore; Corrupt would also be honest.
    assert_refused(&path, |e| is_not_a_store(e) || e.is_corrupt());
}

/// SQLite's file format version bytes past 2: SQLite itself opens such a file read-only
/// (byte 18) or not at all (byte 19); either way the store says its header is damaged.
#[test]
fn refuses_a_store_with_an_unknown_sqlite_file_format_version() {
    for offset in [18, 19] {
        let (_dir, path) = scratch("store.db");
        make_store(&path, 3);
        let mut bytes = std::fs::read(&path).expect("read");
        assert!(
            (1..=2).contains(&bytes[offset]),
            "setup: byte {offset} is {}",
            bytes[offset]
        );
        bytes[offset] = 3;
        std::fs::write(&path, bytes).expect("write");
        assert_refused(&path, |e| {
            e.is_corrupt() && e.to_string().contains("file format versions")
        });
    }
}

/// A closed store whose last commit was only in its log: the store's path, the log's, and
/// the log's bytes as they were while the store was open (closing checkpoints and removes
/// the log; the tests put those bytes back).
/// Opens the store at `from`, lets `write` commit, and copies the file and its log to `to`
/// while the store is still open: what a crash (or a copy taken meanwhile) leaves.
fn copy_while_open(from: &Path, to: &Path, write: impl FnOnce(&SqliteStateStore)) {
    let store = open_normal(from);
    write(&store);
    std::fs::copy(from, to).expect("copy the file");
    std::fs::copy(sidecar(from, "-wal"), sidecar(to, "-wal")).expect("copy the log");
}

fn store_with_pending_log() -> (TempDir, PathBuf, PathBuf, Vec<u8>) {
    let (dir, path) = scratch("store.db");
    let store = open_normal(&path);
    commit_bytes(&store, vec![], b"only in the log", None, meta(t(0), None));
    let log = sidecar(&path, "-wal");
    let pending = std::fs::read(&log).expect("read the log while the store is open");
    assert!(!pending.is_empty(), "setup: the commit is in the log");
    drop(store);
    (dir, path, log, pending)
}

/// A store file cut to nothing beside a log that still holds commits (what `: > store.db`
/// does while a writer's log is pending). SQLite deletes the log of an empty database as
/// stale, so any open would have discarded the commits in it.
#[test]
fn refuses_an_empty_file_beside_a_log_with_commits() {
    let (_dir, path, log, pending) = store_with_pending_log();
    std::fs::write(&path, b"").expect("truncate the store file");
    std::fs::write(&log, &pending).expect("put the log back");
    assert_refused(&path, |e| {
        e.is_corrupt() && e.to_string().contains("write-ahead log")
    });
    // (`assert_refused` checked that the log is exactly as it was.)
}

/// The same for a store file that is missing (moved away after a crash left its log): a new
/// store is not made over the log, which SQLite would discard as stale.
#[test]
fn refuses_a_missing_file_beside_a_log_with_commits() {
    let (_dir, path, log, pending) = store_with_pending_log();
    std::fs::remove_file(&path).expect("move the store file away");
    std::fs::write(&log, &pending).expect("put the log back");
    for open in [SqliteStateStore::open, SqliteStateStore::open_read_only] {
        let e = open(&path).expect_err("refused");
        assert!(
            e.is_corrupt()
                && e.to_string()
                    .contains("it is missing, but its write-ahead log"),
            "{e}"
        );
        assert!(!path.exists(), "no store was made over the log");
        assert_eq!(
            std::fs::read(&log).expect("log"),
            pending,
            "the log is kept"
        );
    }
}

/// A young store keeps everything in its log until the first checkpoint; its file holds
/// only the stamped header (schema version 0). When the log's header is damaged, SQLite
/// ignores the whole log and sees a store whose creation did not finish: finishing it
/// would have written a new schema over the log, and the data was gone for good.
#[test]
fn refuses_a_young_store_whose_log_sqlite_cannot_read() {
    let (dir, young) = scratch("young.db");
    let path = dir.path().join("store.db");
    copy_while_open(&young, &path, |store| {
        commit_bytes(store, vec![], b"only in the log", None, meta(t(0), None));
    });
    let file = std::fs::read(&path).expect("read");
    assert_eq!(
        &file[60..64],
        &[0; 4],
        "setup: no schema version in the file yet"
    );
    let log = sidecar(&path, "-wal");
    let mut pending = std::fs::read(&log).expect("read the log");
    // One bit of the log header's checkpoint sequence: its checksum no longer matches.
    pending[14] ^= 1;
    std::fs::write(&log, &pending).expect("damage the log header");
    let refused = |what: &str, says: &str| {
        let before = Fingerprint::of(&path);
        for open in [SqliteStateStore::open, SqliteStateStore::open_read_only] {
            let e = open(&path).expect_err(what);
            assert!(
                e.is_corrupt() && e.to_string().contains(says),
                "{what}: {e}"
            );
            // SQLite leaves its `-shm` index behind; the file and its log are as they were.
            let after = Fingerprint::of(&path);
            assert_eq!(
                (&after.main, &after.wal),
                (&before.main, &before.wal),
                "{what}"
            );
        }
    };
    refused("a damaged log header", "SQLite would ignore the whole log");
    // The same with the header intact and the first frame's page damaged: SQLite reads the
    // log up to there, which is nothing.
    pending[14] ^= 1;
    pending[32 + 24 + 100] ^= 1;
    std::fs::write(&log, &pending).expect("damage the first frame");
    refused("a damaged first frame", "holds commits SQLite cannot read");
    pending[32 + 24 + 100] ^= 1;
    // Put right, the store opens with its commit.
    std::fs::write(&log, &pending).expect("repair the log header");
    let store = SqliteStateStore::open(&path).expect("open");
    assert_eq!(store.stats().expect("stats").nodes, 1);
}

/// The same damage in an older store, whose file holds what was checkpointed and whose log
/// holds the commits since: SQLite would ignore the log and open the store as it was at the
/// checkpoint, and the next write would start the log over. Refused before SQLite opens it.
#[test]
fn refuses_a_store_whose_log_header_is_damaged() {
    let (dir, path) = scratch("store.db");
    make_store(&path, 3);
    let copy = dir.path().join("copy.db");
    copy_while_open(&path, &copy, |store| {
        for i in 0..3 {
            let text = format!("in the log {i}");
            commit_bytes(store, vec![], text.as_bytes(), None, meta(t(50 + i), None));
        }
    });
    let log = sidecar(&copy, "-wal");
    let mut bytes = std::fs::read(&log).expect("read the log");
    bytes[14] ^= 1;
    std::fs::write(&log, &bytes).expect("damage the log header");
    assert_refused(&copy, |e| {
        e.is_corrupt() && e.to_string().contains("SQLite would ignore the whole log")
    });
    // Put right, it opens with every commit.
    bytes[14] ^= 1;
    std::fs::write(&log, &bytes).expect("repair");
    let store = SqliteStateStore::open(&copy).expect("open");
    assert_eq!(store.stats().expect("stats").nodes, 6);
}

/// A writable open that refuses a damaged store must not checkpoint on its way out: that
/// writes the log into the file and deletes the log, which the user may need to recover
/// from (and frames past damage in the log would be gone for good).
#[test]
fn a_refused_writable_open_keeps_the_log() {
    let (dir, path) = scratch("store.db");
    make_store(&path, 5);
    let copy = dir.path().join("copy.db");
    copy_while_open(&path, &copy, |store| {
        commit_bytes(store, vec![], b"only in the log", None, meta(t(99), None));
    });
    // One byte of the schema text on page 1.
    let mut file = std::fs::read(&copy).expect("read");
    let text = b"CREATE INDEX ref_log_by_name";
    let at = file
        .windows(text.len())
        .position(|w| w == text)
        .expect("schema text");
    file[at + 5] = b'M';
    std::fs::write(&copy, &file).expect("damage");
    let before = Fingerprint::of(&copy);
    assert!(before.wal.as_ref().is_some_and(|w| !w.is_empty()));
    let e = SqliteStateStore::open(&copy).expect_err("refused");
    assert!(e.is_corrupt(), "{e}");
    let after = Fingerprint::of(&copy);
    assert_eq!(
        (after.main, after.wal),
        (before.main, before.wal),
        "the refused open checkpointed"
    );
}

/// A store whose header is ours but one of whose tables was dropped: refused at open as
/// damaged, naming the table, instead of every command failing with "no such table".
#[test]
fn refuses_a_store_missing_a_table() {
    let (_dir, path) = scratch("store.db");
    make_store(&path, 3);
    raw(&path)
        .execute_batch("DROP TABLE ref_log")
        .expect("drop a table");
    let damaged = |e: &StateStoreError| {
        e.is_corrupt() && e.to_string().contains("lacks the table(s) ref_log")
    };
    assert_refused_by(&path, Mode::Writable, damaged);
    // A read-only open finds it through SQLite too, which leaves the (empty) sidecars any
    // read-only reader of a WAL store leaves; the file itself is untouched.
    let before = Fingerprint::of(&path).main;
    let err = SqliteStateStore::open_read_only(&path).expect_err("read-only open");
    assert!(damaged(&err), "{err:?}");
    assert_eq!(Fingerprint::of(&path).main, before);
}

/// A closed, checkpointed store whose `user_version` was then set to `version` behind its back.
fn store_with_schema_version(version: i64) -> (TempDir, PathBuf) {
    let (dir, path) = scratch("store.db");
    make_store(&path, 3);
    raw(&path)
        .pragma_update(None, "user_version", version)
        .expect("set user_version");
    assert!(Fingerprint::of(&path).wal_is_empty());
    (dir, path)
}

fn is_newer_format_99(e: &StateStoreError) -> bool {
    matches!(
        e,
        StateStoreError::UnsupportedFormat { found: 99, supported, .. }
            if *supported == SCHEMA_VERSION
    )
}

#[test]
fn refuses_a_store_from_a_newer_version() {
    let (_dir, path) = store_with_schema_version(99);
    assert_refused_by(&path, Mode::Writable, is_newer_format_99);
}

#[test]
fn read_only_refuses_a_store_from_a_newer_version() {
    let (_dir, path) = store_with_schema_version(99);
    assert_refused_by(&path, Mode::ReadOnly, is_newer_format_99);
    let e = SqliteStateStore::open_read_only(&path).expect_err("refused");
    assert!(!e.to_string().contains("damaged"), "{e}");
}

/// A version far past any release is more likely a damaged header, and the message says so.
#[test]
fn a_format_version_far_ahead_is_said_to_be_likely_damage() {
    let (_dir, path) = store_with_schema_version(22275);
    let e = SqliteStateStore::open_read_only(&path).expect_err("refused");
    assert!(
        matches!(e, StateStoreError::UnsupportedFormat { found: 22275, .. })
            && e.to_string().contains("upgrade stategraph")
            && e.to_string()
                .contains("more likely means the file's header is damaged"),
        "{e}"
    );
}

#[test]
fn refuses_a_store_with_a_negative_schema_version() {
    let (_dir, path) = store_with_schema_version(-1);
    assert_refused_by(&path, Mode::Writable, StateStoreError::is_corrupt);
}

#[test]
fn read_only_refuses_a_store_with_a_negative_schema_version() {
    let (_dir, path) = store_with_schema_version(-1);
    assert_refused_by(&path, Mode::ReadOnly, StateStoreError::is_corrupt);
}

#[test]
fn a_stamped_but_unmigrated_store_is_upgraded_by_a_writable_open_only() {
    // What a crash between stamping a new file and migrating it leaves behind.
    let (_dir, path) = scratch("store.db");
    raw(&path)
        .pragma_update(None, "application_id", 0x5347_7068)
        .expect("stamp");
    let before = Fingerprint::of(&path);
    let err = SqliteStateStore::open_read_only(&path).expect_err("read-only must not migrate");
    assert!(is_not_a_store(&err), "{err:?}");
    assert_eq!(Fingerprint::of(&path).main, before.main);

    let store = open_normal(&path);
    let (_, id) = commit_bytes(&store, vec![], b"after upgrade", None, meta(t(0), None));
    drop(store);
    let ro = SqliteStateStore::open_read_only(&path).expect("read-only after upgrade");
    assert_eq!(ro.get_node(&id).expect("get_node").id, id);
}

// ---------------------------------------------------------------------------------------------
// Creating

#[test]
fn open_creates_a_missing_file() {
    let (_dir, path) = scratch("new.db");
    let store = SqliteStateStore::open(&path).expect("open");
    assert!(!store.is_read_only());
    assert_eq!(store.path(), path);
    let (_, id) = commit_bytes(&store, vec![], b"first", None, meta(t(0), None));
    drop(store);
    assert!(path.is_file());
    let ro = SqliteStateStore::open_read_only(&path).expect("reopen");
    assert_eq!(ro.get_node(&id).expect("get_node").id, id);
}

#[test]
fn open_turns_an_empty_file_into_a_store() {
    let (_dir, path) = scratch("empty.db");
    std::fs::write(&path, b"").expect("touch");
    let store = open_normal(&path);
    commit_bytes(&store, vec![], b"x", None, meta(t(0), None));
    drop(store);
    assert!(std::fs::metadata(&path).expect("metadata").len() > 0);
    SqliteStateStore::open_read_only(&path).expect("it is a store now");
}

#[test]
fn read_only_open_of_a_missing_path_creates_nothing() {
    let (dir, path) = scratch("missing.db");
    let err = SqliteStateStore::open_read_only(&path).expect_err("missing file");
    assert!(is_not_a_store(&err), "{err:?}");
    assert!(err.to_string().contains("missing.db"), "{err}");
    assert!(
        dir_entries(dir.path()).is_empty(),
        "read-only open created files"
    );
}

#[test]
fn read_only_open_of_an_empty_file_changes_nothing() {
    let (dir, path) = scratch("empty.db");
    std::fs::write(&path, b"").expect("touch");
    let err = SqliteStateStore::open_read_only(&path).expect_err("empty file");
    assert!(is_not_a_store(&err), "{err:?}");
    assert_eq!(std::fs::read(&path).expect("read"), b"");
    assert_eq!(dir_entries(dir.path()), vec!["empty.db".to_owned()]);
}

#[test]
fn open_in_a_missing_directory_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no-such-dir").join("store.db");
    assert!(SqliteStateStore::open(&path).is_err());
    assert!(SqliteStateStore::open_read_only(&path).is_err());
    assert!(dir_entries(dir.path()).is_empty());
}

/// Writers through two names of one file (a hard link) would keep two write-ahead logs that
/// never see each other: a writable open of a file with more than one name is refused,
/// through either name, saying why; read-only opens still work; with one name left it opens.
#[test]
fn a_store_with_hard_links_is_not_opened_writable() {
    let (dir, path) = scratch("a.db");
    make_store(&path, 3);
    let other = dir.path().join("b.db");
    std::fs::hard_link(&path, &other).expect("hard link");
    for name in [&path, &other] {
        let e = SqliteStateStore::open(name).expect_err("refused");
        let text = e.to_string();
        assert!(
            matches!(e, StateStoreError::InvalidInput { what: "path", .. })
                && text.contains("2 names (hard links)"),
            "{text}"
        );
        let reader = SqliteStateStore::open_read_only(name).expect("read-only");
        assert_eq!(reader.list_snapshots().expect("list").len(), 1);
    }
    std::fs::remove_file(&other).expect("remove the other name");
    open_normal(&path);
}

/// A store file replaced (a backup restored over it) or deleted under an open handle: the
/// handle's writes fail, saying so, instead of going on into the file that is gone; put back,
/// the same file takes writes again.
#[test]
fn writes_fail_once_the_store_file_is_replaced_or_deleted() {
    let (dir, path) = scratch("store.db");
    let backup = dir.path().join("backup.db");
    make_store(&backup, 1);
    let store = open_normal(&path);
    let (data, first) = commit_bytes(&store, vec![], b"first", None, meta(t(0), None));
    let moved = |e: StateStoreError| {
        let text = e.to_string();
        assert!(text.contains("was moved, replaced or deleted"), "{text}");
    };
    let aside = dir.path().join("aside.db");
    std::fs::rename(&path, &aside).expect("move the store away");
    std::fs::copy(&backup, &path).expect("restore a backup over the path");
    moved(
        store
            .put_state(StateData::new(b"lost?".to_vec()))
            .unwrap_err(),
    );
    std::fs::remove_file(&path).expect("delete");
    moved(
        store
            .commit_node(vec![first], data, meta(t(1), None))
            .unwrap_err(),
    );
    std::fs::rename(&aside, &path).expect("put the file back");
    let (_, second) = commit_bytes(&store, vec![first], b"second", None, meta(t(2), None));
    // A second name made while the handle is open: writes through it would keep another
    // log, so this handle stops writing too (vacuum included).
    let link = dir.path().join("link.db");
    std::fs::hard_link(&path, &link).expect("hard link");
    let text = store.vacuum().unwrap_err().to_string();
    assert!(text.contains("got a second name"), "{text}");
    std::fs::remove_file(&link).expect("remove the link");
    drop(store);
    let again = open_normal(&path);
    assert_eq!(
        again.get_node(&second).expect("kept").parent_ids,
        vec![first]
    );
}

/// A store opened through a symlink that is later pointed at another store (a deploy's
/// `current.db`): writes fail instead of going on into the old target while new readers
/// read the new one.
#[cfg(unix)]
#[test]
fn writes_fail_once_the_symlink_opened_points_elsewhere() {
    let (dir, first) = scratch("v1.db");
    let second = dir.path().join("v2.db");
    make_store(&first, 1);
    make_store(&second, 2);
    let current = dir.path().join("current.db");
    std::os::unix::fs::symlink(&first, &current).expect("symlink");
    let store = open_normal(&current);
    store
        .put_state(StateData::new(b"through the link".to_vec()))
        .expect("write through the symlink");
    let next = dir.path().join("next");
    std::os::unix::fs::symlink(&second, &next).expect("symlink");
    std::fs::rename(&next, &current).expect("point current.db at v2");
    let text = store
        .put_state(StateData::new(b"lost?".to_vec()))
        .unwrap_err()
        .to_string();
    assert!(text.contains("was moved, replaced or deleted"), "{text}");
}

/// Paths SQLite would not read as a file (a temporary or in-memory database, a URI) are
/// refused with a message saying so, not a WAL error.
#[test]
fn paths_sqlite_reads_as_no_file_are_refused() {
    for (path, why) in [
        ("", "temporary database"),
        (":memory:", "in-memory database"),
        ("file:store.db?mode=memory", "as a URI"),
    ] {
        for result in [
            SqliteStateStore::open(path),
            SqliteStateStore::open_read_only(path),
        ] {
            let e = result.expect_err("refused");
            assert!(
                matches!(
                    e,
                    stategraph::StateStoreError::InvalidInput { what: "path", .. }
                ),
                "{path:?}: {e:?}"
            );
            assert!(e.to_string().contains(why), "{path:?}: {e}");
        }
    }
}

#[test]
fn dropping_the_store_checkpoints_and_removes_the_wal() {
    // After a clean close the main file alone must hold every commit (so copying just the
    // `.db` file is a complete backup) and no sidecar files stay behind.
    let (dir, path) = scratch("store.db");
    let store = open_normal(&path);
    let (_, id) = commit_bytes(&store, vec![], b"kept", None, meta(t(0), None));
    store.get_node(&id).expect("read through the reader pool");
    drop(store);
    let f = Fingerprint::of(&path);
    assert!(
        f.wal_is_empty(),
        "commits left only in the WAL after close: {f:?}"
    );
    assert_eq!(
        dir_entries(dir.path()),
        vec!["store.db".to_owned()],
        "sidecar files left behind after close"
    );
}

// ---------------------------------------------------------------------------------------------
// Read-only stores

fn assert_read_only_error(result: stategraph::Result<impl std::fmt::Debug>, what: &str) {
    match result {
        Err(StateStoreError::ReadOnly { .. }) => {}
        other => panic!("{what} on a read-only store: expected ReadOnly, got {other:?}"),
    }
}

#[test]
fn read_only_store_refuses_every_write_and_changes_no_byte() {
    let (dir, path) = scratch("store.db");
    let ids = make_store(&path, 20);
    let before = Fingerprint::of(&path);
    let entries = dir_entries(dir.path());

    let ro = SqliteStateStore::open_read_only(&path).expect("open_read_only");
    assert!(ro.is_read_only());
    // Reads work.
    let node = ro.get_node(&ids[5]).expect("get_node");
    let state = ro.get_state(&node.data_ref).expect("get_state");
    assert_eq!(state.bytes, random_bytes(5, 1024));
    ro.load_snapshot(&stategraph::codec::snapshot_id(&ids[10]))
        .expect("load_snapshot");
    // Writes do not.
    let err = ro.put_state(StateData::new(b"nope".to_vec()));
    assert!(
        matches!(&err, Err(e) if e.to_string().lines().count() == 1),
        "{err:?}"
    );
    assert_read_only_error(err, "put_state");
    assert_read_only_error(
        ro.commit_node(vec![ids[19]], node.data_ref, meta(t(1000), None)),
        "commit_node",
    );
    assert_read_only_error(
        ro.commit_node(vec![], node.data_ref, node.metadata.clone()),
        "commit_node of an existing node",
    );
    assert_read_only_error(ro.snapshot(&ids[19]), "snapshot");
    assert_read_only_error(ro.snapshot(&ids[10]), "snapshot of an existing snapshot");
    assert_read_only_error(ro.gc(&stategraph::GcOptions::new()), "gc");
    // A dry run only reads.
    let dry = ro
        .gc(&stategraph::GcOptions::new().dry_run(true))
        .expect("a dry run on a read-only handle");
    assert!(dry.dry_run);
    drop(ro);

    let after = Fingerprint::of(&path);
    assert_eq!(
        after.main, before.main,
        "read-only use changed the store file"
    );
    assert!(after.wal_is_empty(), "read-only use wrote to the WAL");
    // SQLite needs `-wal`/`-shm` files to read a WAL database, even read-only; they may stay
    // (empty WAL) but nothing else may appear.
    let mut allowed = entries.clone();
    allowed.extend(["store.db-shm".to_owned(), "store.db-wal".to_owned()]);
    allowed.sort();
    let now = dir_entries(dir.path());
    assert!(
        now.iter().all(|n| allowed.contains(n)),
        "read-only use created unexpected files: {now:?}"
    );
}

#[test]
fn read_only_store_follows_a_live_writer() {
    let (_dir, path) = scratch("store.db");
    let writer = Arc::new(open_normal(&path));
    let (_, first) = commit_bytes(&*writer, vec![], b"0", None, meta(t(0), None));
    let ro = Arc::new(SqliteStateStore::open_read_only(&path).expect("open_read_only"));
    assert_eq!(ro.get_node(&first).expect("get_node").generation, 1);

    let w = Arc::clone(&writer);
    let writing = std::thread::spawn(move || {
        let mut head = first;
        let mut ids = vec![first];
        for i in 1..200i64 {
            head = commit_bytes(&*w, vec![head], &i.to_le_bytes(), None, meta(t(i), None)).1;
            ids.push(head);
        }
        ids
    });
    // Read while the writer writes: whatever is visible must be complete and consistent.
    loop {
        let node = ro.get_node(&first).expect("get_node during writes");
        assert_eq!(node.id, first);
        if writing.is_finished() {
            break;
        }
    }
    let ids = writing.join().expect("writer panicked");
    for (i, id) in ids.iter().enumerate() {
        let node = ro
            .get_node(id)
            .expect("read-only handle sees committed nodes");
        assert_eq!(node.generation, i as u64 + 1);
        let bytes = ro.get_state(&node.data_ref).expect("get_state").bytes;
        let want = if i == 0 {
            b"0".to_vec()
        } else {
            (i as i64).to_le_bytes().to_vec()
        };
        assert_eq!(bytes, want);
    }
    assert_read_only_error(ro.snapshot(&first), "snapshot");
}

#[test]
fn read_only_store_on_an_uncheckpointed_copy_changes_no_byte() {
    // Copy a store while its WAL still holds commits: what a crashed writer leaves behind.
    let (dir, path) = scratch("live.db");
    let writer = SqliteStateStore::builder()
        .durability(stategraph::Durability::Normal)
        .open(&path)
        .expect("open");
    let mut ids = Vec::new();
    for i in 0..30i64 {
        let parents = ids.last().map(|&p| vec![p]).unwrap_or_default();
        ids.push(commit_bytes(&writer, parents, &i.to_le_bytes(), None, meta(t(i), None)).1);
    }
    assert!(
        !Fingerprint::of(&path).wal_is_empty(),
        "setup: WAL should hold commits"
    );
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).expect("copy db");
    std::fs::copy(sidecar(&path, "-wal"), sidecar(&copy, "-wal")).expect("copy wal");
    drop(writer);

    let before = Fingerprint::of(&copy);
    let ro = SqliteStateStore::open_read_only(&copy).expect("open_read_only");
    for (i, id) in ids.iter().enumerate() {
        let node = ro.get_node(id).expect("nodes in the WAL are visible");
        assert_eq!(node.generation, i as u64 + 1);
    }
    drop(ro);
    let after = Fingerprint::of(&copy);
    assert_eq!(
        after.main, before.main,
        "read-only use checkpointed into the store file"
    );
    assert_eq!(after.wal, before.wal, "read-only use changed the WAL");
}

/// stategraph's `PRAGMA application_id`: ASCII `SGph`.
const OUR_APPLICATION_ID: i32 = 0x5347_7068;

/// A store file stamped as ours (page 1 only) beside a hot rollback journal that rolls it
/// back to nothing: what a creation killed while stamping leaves.
fn killed_while_stamping(path: &Path) {
    let conn = raw(path);
    conn.pragma_update(None, "application_id", OUR_APPLICATION_ID)
        .expect("stamp");
    let page_size: u32 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .expect("page size");
    drop(conn);
    // A journal header (SQLite's format): magic, 0 records, nonce, 0 pages before the
    // write, sector size, page size; padded to the sector.
    let mut journal = vec![0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
    for word in [0u32, 0x1234_5678, 0, 512, page_size] {
        journal.extend(word.to_be_bytes());
    }
    journal.resize(512, 0);
    std::fs::write(sidecar(path, "-journal"), journal).expect("journal");
}

/// A creation killed while stamping: a read-only open says the write must be finished by a
/// writable open; the writable open rolls the file back, stamps it, and makes the store, whose
/// stamp then stands in the file, where every other opener looks for it (it was written to
/// the log only, and other opens were refused as another application's database until the
/// first checkpoint; forever, if the writer died before one).
#[test]
fn a_creation_killed_while_stamping_is_finished_by_the_next_writable_open() {
    let (dir, path) = scratch("store.db");
    killed_while_stamping(&path);
    let link = dir.path().join("link.db");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&path, &link).expect("symlink");
    #[cfg(not(unix))]
    let link = path.clone();
    for name in [&path, &link] {
        let e = SqliteStateStore::open_read_only(name).expect_err("read-only");
        assert!(
            is_not_a_store(&e) && e.to_string().contains("open it writable once"),
            "{}: {e}",
            name.display()
        );
    }
    let copy = dir.path().join("copy.db");
    copy_while_open(&path, &copy, |store| {
        commit_bytes(store, vec![], b"first", None, meta(t(0), None));
        // Another opener meanwhile.
        let other = SqliteStateStore::open_read_only(&path).expect("a second opener");
        assert_eq!(other.stats().expect("stats").nodes, 1);
    });
    // The files as they were while the writer ran (as a kill leaves them).
    let store = SqliteStateStore::open(&copy).expect("the copy opens");
    assert_eq!(store.stats().expect("stats").nodes, 1);
}

/// A store left by the build before: stamped in its log only (its file's header says
/// application id 0) and never checkpointed. It opens, with its commits.
#[test]
fn a_store_stamped_only_in_its_log_opens() {
    let (dir, path) = scratch("store.db");
    let source = dir.path().join("source.db");
    make_store(&source, 1);
    let schema: Vec<String> = raw(&source)
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
        .expect("schema")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("schema");
    let copy = dir.path().join("copy.db");
    {
        let conn = raw(&path);
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .expect("wal");
        assert_eq!(mode, "wal");
        conn.execute_batch("BEGIN").expect("begin");
        for sql in &schema {
            conn.execute_batch(sql).expect("schema");
        }
        conn.pragma_update(None, "application_id", OUR_APPLICATION_ID)
            .expect("stamp");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .expect("version");
        conn.execute_batch("COMMIT").expect("commit");
        std::fs::copy(&path, &copy).expect("copy the file");
        std::fs::copy(sidecar(&path, "-wal"), sidecar(&copy, "-wal")).expect("copy the log");
    }
    let header = std::fs::read(&copy).expect("read");
    assert_eq!(&header[68..72], &[0; 4], "setup: the file is not stamped");
    for open in [SqliteStateStore::open_read_only, SqliteStateStore::open] {
        let store = open(&copy).expect("opens");
        assert_eq!(store.stats().expect("stats").nodes, 0);
    }
    let store = SqliteStateStore::open(&copy).expect("open");
    commit_bytes(&store, vec![], b"more", None, meta(t(1), None));
    assert_eq!(store.stats().expect("stats").nodes, 1);
}

/// Another program's database (application id 0) with a stategraph log beside it (copied,
/// or left by a store once at that path): not a store stamped in its log only. Refused, and
/// left as it was (opening it would have checkpointed the log over its pages).
#[test]
fn a_foreign_database_beside_a_stategraph_log_is_refused() {
    let (dir, path) = scratch("theirs.db");
    let store_path = dir.path().join("store.db");
    let ours = dir.path().join("ours.db");
    copy_while_open(&store_path, &ours, |store| {
        commit_bytes(store, vec![], b"ours", None, meta(t(0), None));
    });
    make_foreign_db(&path, "DELETE", 0);
    std::fs::copy(sidecar(&ours, "-wal"), sidecar(&path, "-wal")).expect("the log beside it");
    assert_refused(&path, |e| {
        is_not_a_store(e) && e.to_string().contains("another application")
    });
}

/// A gc that finds nothing to remove reads only (it counts first), but on a handle whose
/// file was moved away it fails as the collection does, rather than reporting on the old
/// file.
#[test]
fn gc_with_nothing_to_remove_on_a_moved_file_fails_as_a_write_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let s = open_normal(&path);
    let (_, a) = s
        .commit_state(
            vec![],
            stategraph::StateData::new(b"a".to_vec()),
            stategraph::StateMetadata::new(time::OffsetDateTime::UNIX_EPOCH, None),
        )
        .expect("commit");
    s.set_ref("main", None, &a).expect("ref");
    std::fs::rename(&path, dir.path().join("moved.db")).expect("move");
    let err = s.gc(&stategraph::GcOptions::new()).expect_err("moved");
    assert!(
        err.to_string().contains("was moved, replaced or deleted"),
        "{err}"
    );
}
