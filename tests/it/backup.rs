//! `SqliteStateStore::backup`: a consistent copy while writers commit, from read-only handles
//! too; it never replaces a file, and a full disk leaves nothing behind.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use stategraph::{SqliteStateStore, StateData, StateMetadata, StateStore, StateStoreError};

use crate::durability_util::{
    assert_chain_complete, child_role, child_var, error_kind, report, run_child_with_file_limit,
};
use crate::util::{open_normal, random_bytes};

const FULL_CHILD_TEST: &str = "backup::child_backup_on_a_full_disk";

/// Commits `n` ticks on `main`, each with `size` bytes of state.
fn ticks(store: &SqliteStateStore, n: u64, size: usize) {
    let mut head = store.get_ref("main").expect("get_ref");
    for i in 0..n {
        let data = StateData::new(random_bytes(i, size));
        let (_, id) = store
            .commit_on("main", head.as_ref(), data, StateMetadata::now("tick"))
            .expect("commit_on");
        head = Some(id);
    }
}

/// Files in `dir` whose names start with a dot: a backup's temporary files.
fn hidden_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect()
}

/// Backups taken while another thread commits every moment are whole stores: `main`'s
/// chain is complete, every hash checks, and each holds at least what the one before did.
#[test]
fn backups_taken_while_a_writer_commits_are_whole_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open_normal(&dir.path().join("live.db")));
    ticks(&store, 50, 256);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut written = 0u64;
            while !stop.load(Ordering::SeqCst) {
                ticks(&store, 1, 256);
                written += 1;
            }
            written
        })
    };
    let mut before = 0;
    for i in 0..3 {
        let path = dir.path().join(format!("backup-{i}.db"));
        let report = store.backup(&path).expect("backup");
        assert_eq!(report.path, path);
        assert!(report.bytes > 0);
        let copy = SqliteStateStore::open_read_only(&path).expect("the backup opens");
        let head = copy.get_ref("main").expect("get_ref").expect("main");
        let chain = assert_chain_complete(&copy, &head);
        assert_eq!(chain.len() as u64, report.nodes, "every node is on main");
        assert!(report.nodes >= before, "{} after {before}", report.nodes);
        before = report.nodes;
        let verified = copy.verify(|_| {}).expect("verify");
        assert!(verified.is_ok(), "{:?}", verified.problems);
        // What the backup holds, the live store holds too.
        store.get_node(&head).expect("in the live store");
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer");
    assert!(written > 0, "the writer committed nothing meanwhile");
    assert!(hidden_files(dir.path()).is_empty());
}

/// A backup never replaces a file, nor names the store's own files; a missing directory is
/// an error, and no temporary file is left.
#[test]
fn a_backup_never_replaces_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let store = open_normal(&path);
    ticks(&store, 3, 64);
    let taken = dir.path().join("taken.db");
    std::fs::write(&taken, b"someone's file").expect("write");
    let invalid = |dest: &Path, expected: &str| {
        let err = store.backup(dest).unwrap_err();
        assert!(
            matches!(err, StateStoreError::InvalidInput { .. }),
            "{}: {err}",
            dest.display()
        );
        assert!(err.to_string().contains(expected), "{err}");
    };
    invalid(&taken, "exists already");
    assert_eq!(std::fs::read(&taken).expect("read"), b"someone's file");
    invalid(&path, "exists already");
    // The write-ahead log's name, while it does not exist: still the store's own file.
    let wal = dir.path().join("store.db-wal");
    if !wal.exists() {
        invalid(&wal, "this store's own file");
    }
    // SQLite would take it for a hot rollback journal and delete it at the next open.
    invalid(
        &dir.path().join("store.db-journal"),
        "this store's own file",
    );
    invalid(&dir.path().join("no-such-dir/backup.db"), "does not exist");
    assert!(hidden_files(dir.path()).is_empty());
    // A relative name that reads like a URI is a file name here, also to SQLite. (Written
    // in the working directory, which tests share: a unique name, removed however the test
    // ends.)
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let relative = std::path::PathBuf::from(format!("file:backup-{}.db", std::process::id()));
    let written = Removed(std::env::current_dir().expect("cwd").join(&relative));
    let report = store
        .backup(&relative)
        .expect("backup to a relative file: name");
    assert_eq!(report.path, relative);
    assert_eq!(report.nodes, 3);
    assert!(std::fs::metadata(&written.0).expect("written").len() > 0);
    // A read-only handle backs up too.
    let read_only = SqliteStateStore::open_read_only(&path).expect("open read-only");
    let report = read_only
        .backup(dir.path().join("from-read-only.db"))
        .expect("backup");
    assert_eq!(report.nodes, 3);
}

/// Backups at once, from threads of one process, to one name or to several: each to its
/// own name succeeds; of those to one name, one succeeds and the others say the file
/// exists. No temporary file is left.
#[test]
fn backups_at_once_do_not_collide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open_normal(&dir.path().join("store.db")));
    ticks(&store, 20, 256);
    let run = |names: Vec<String>| -> Vec<Result<u64, String>> {
        let threads: Vec<_> = names
            .into_iter()
            .map(|name| {
                let (store, path) = (Arc::clone(&store), dir.path().join(name));
                std::thread::spawn(move || {
                    store
                        .backup(&path)
                        .map(|r| r.nodes)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("join"))
            .collect()
    };
    for result in run((0..4).map(|i| format!("own-{i}.db")).collect()) {
        assert_eq!(result, Ok(20));
    }
    let results = run(vec!["same.db".to_owned(); 4]);
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            e.contains("exists already") || e.contains("was created while the backup ran"),
            "{e}"
        );
    }
    assert!(hidden_files(dir.path()).is_empty());
}

/// A backup killed part-way leaves its temporary file (as large as the store) and SQLite's
/// journal beside it; the next backup to that name removes them once nothing has written
/// them for a while and the process that wrote them no longer runs. A running backup's are
/// kept: one whose process runs, and one whose file (or journal) is being written (its
/// process may be in another PID namespace, where this one cannot see it).
#[test]
fn a_backup_removes_what_killed_backups_to_its_name_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_normal(&dir.path().join("store.db"));
    ticks(&store, 5, 256);
    let write = |name: &str, idle_for: std::time::Duration| {
        let file = std::fs::File::create(dir.path().join(name)).expect("create");
        file.set_modified(std::time::SystemTime::now() - idle_for)
            .expect("set mtime");
    };
    let hour = std::time::Duration::from_secs(3600);
    // No process has an id this large (Linux allows 2^22 at most).
    let dead = [
        ".copy.db.4294967294-0.tmp",
        ".copy.db.4294967294-0.tmp-journal",
        ".copy.db.4294967294-3.tmp-journal",
    ];
    for name in dead {
        write(name, hour);
    }
    let kept = [
        // Process 1 always runs.
        ".copy.db.1-0.tmp",
        // Not a backup's of copy.db.
        ".other.db.4294967294-0.tmp",
        ".copy.db.4294967294-x.tmp",
        // Written just now: a running backup, here unseen.
        ".copy.db.4294967294-7.tmp",
        // Its journal is written just now.
        ".copy.db.4294967294-8.tmp",
        ".copy.db.4294967294-8.tmp-journal",
    ];
    for name in kept {
        let fresh = name.ends_with("-7.tmp") || name.ends_with("-journal");
        write(
            name,
            if fresh {
                std::time::Duration::ZERO
            } else {
                hour
            },
        );
    }
    store.backup(dir.path().join("copy.db")).expect("backup");
    let mut left = hidden_files(dir.path());
    left.sort();
    let mut expected: Vec<String> = kept.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    assert_eq!(left, expected);
}

/// Process ids repeat (across containers sharing a directory, or after a restart): a
/// temporary name this process would take may belong to a backup running elsewhere, which
/// is left alone while it is being written (the backup takes the next name), and taken over
/// once nothing has written it for a while (a killed process that had this id).
#[test]
fn a_backup_whose_temporary_name_is_taken_uses_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_normal(&dir.path().join("store.db"));
    ticks(&store, 5, 256);
    let pid = std::process::id();
    let hour = std::time::Duration::from_secs(3600);
    // Names from every counter this process's backups can have reached (each backup in
    // this process takes the next; a test binary makes far fewer than 400).
    let names: Vec<String> = (0..400)
        .map(|n| format!(".copy.db.{pid}-{n}.tmp"))
        .collect();
    for (n, name) in names.iter().enumerate() {
        let file = std::fs::File::create(dir.path().join(name)).expect("create");
        // Even ones: a live backup's, just written; odd ones: one killed an hour ago.
        let idle = if n % 2 == 0 {
            std::time::Duration::ZERO
        } else {
            hour
        };
        file.set_modified(std::time::SystemTime::now() - idle)
            .expect("set mtime");
    }
    store.backup(dir.path().join("copy.db")).expect("backup");
    assert!(SqliteStateStore::open(dir.path().join("copy.db")).is_ok());
    // The backup skipped at most one live name, took over the abandoned one after it (and
    // renamed it to copy.db), and touched nothing else.
    let left = hidden_files(dir.path());
    let gone: Vec<usize> = (0..names.len())
        .filter(|&n| !left.contains(&names[n]))
        .collect();
    assert!(matches!(gone[..], [n] if n % 2 == 1), "taken: {gone:?}");
    assert_eq!(left.len(), names.len() - 1, "{left:?}");
}

/// A backup that does not fit fails with a clear error, leaves no file under the backup's
/// name nor a temporary one, and the store goes on.
#[test]
fn a_backup_on_a_full_disk_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    {
        let store = open_normal(&path);
        ticks(&store, 300, 4096);
    }
    let size = std::fs::metadata(&path).expect("size").len();
    // Blocks of 512 bytes, per file: half the store's size cannot hold the copy.
    let dest = dir.path().join("backup.db");
    let (reports, _) = run_child_with_file_limit(
        FULL_CHILD_TEST,
        "backup-full",
        &path,
        size / 2 / 512,
        &[("STATEGRAPH_TEST_BACKUP", dest.as_path())],
    );
    let outcome = reports
        .iter()
        .find(|r| r.starts_with("backup "))
        .unwrap_or_else(|| panic!("no backup outcome: {reports:?}"));
    eprintln!("backup under a file-size limit: {outcome}");
    assert!(
        outcome.starts_with("backup error storage-full")
            || outcome.starts_with("backup error backend"),
        "{outcome}"
    );
    assert!(!dest.exists(), "a partial backup was left at its name");
    assert!(
        hidden_files(dir.path()).is_empty(),
        "a temporary file was left"
    );
    assert!(reports.iter().any(|r| r == "write-ok"), "{reports:?}");
    let store = open_normal(&path);
    let head = store.get_ref("main").expect("get_ref").expect("main");
    assert_eq!(assert_chain_complete(&store, &head).len(), 301);
}

/// Run by [`a_backup_on_a_full_disk_leaves_nothing`] under a file-size limit: backs up, and
/// reports how it went, then commits once more. Does nothing when run on its own.
#[test]
#[ignore = "child process of the backup tests; run by them"]
fn child_backup_on_a_full_disk() {
    if child_role().as_deref() != Some("backup-full") {
        return;
    }
    let store = open_normal(Path::new(&child_var("STATEGRAPH_TEST_DB")));
    match store.backup(child_var("STATEGRAPH_TEST_BACKUP")) {
        Ok(r) => report(&format!("backup ok {r:?}")),
        Err(e) => {
            let kind = error_kind(&e);
            report(&format!("backup error {kind} {e}"));
        }
    }
    ticks(&store, 1, 64);
    report("write-ok");
}
