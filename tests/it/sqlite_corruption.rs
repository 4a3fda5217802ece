//! Rows damaged behind the store's back (through a raw rusqlite connection) must surface as
//! `Corrupt` errors, never as wrong data.

use std::path::{Path, PathBuf};

use stategraph::codec;
use stategraph::{
    History, LogOptions, SnapshotId, SqliteStateStore, StateData, StateDataRef, StateNodeId,
    StateStore,
};
use tempfile::TempDir;

use crate::util::{meta, open_normal, raw, t};

/// A closed store with a root, a second root, a merge of both, and a snapshot of each.
struct Damaged {
    _dir: TempDir,
    path: PathBuf,
    root_ref: StateDataRef,
    other_ref: StateDataRef,
    root: StateNodeId,
    other: StateNodeId,
    merge: StateNodeId,
}

const ROOT_BYTES: &[u8] = b"the root state, long enough to flip";
const OTHER_BYTES: &[u8] = b"another state";

impl Damaged {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let s = open_normal(&path);
        let root_ref = s
            .put_state(StateData::new(ROOT_BYTES).with_content_type("text/plain"))
            .expect("put");
        let other_ref = s.put_state(StateData::new(OTHER_BYTES)).expect("put");
        let root = s
            .commit_node(vec![], root_ref, meta(t(0), Some("root")))
            .expect("commit");
        let other = s
            .commit_node(vec![], other_ref, meta(t(1), Some("other")))
            .expect("commit");
        let merge = s
            .commit_node(vec![root, other], other_ref, meta(t(2), Some("merge")))
            .expect("commit");
        for id in [root, other, merge] {
            s.snapshot(&id).expect("snapshot");
        }
        drop(s);
        Self {
            _dir: dir,
            path,
            root_ref,
            other_ref,
            root,
            other,
            merge,
        }
    }

    /// Runs SQL on the file through a raw connection with foreign keys off (the bundled
    /// SQLite turns them on by default).
    fn damage(&self, sql: &str, params: impl rusqlite::Params) {
        let conn = raw(&self.path);
        conn.pragma_update(None, "foreign_keys", false)
            .expect("foreign_keys off");
        let changed = conn
            .execute(sql, params)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(changed > 0, "setup: {sql} changed no row");
    }

    /// Overwrites the stored bytes `old` with as many `fill` bytes: the same length, so
    /// only the hash check can tell.
    fn overwrite(&self, old: &[u8], fill: u8) {
        self.damage(
            "UPDATE blobs SET bytes = ?1 WHERE bytes = ?2",
            [vec![fill; old.len()], old.to_vec()],
        );
    }

    fn open(&self) -> SqliteStateStore {
        open_normal(&self.path)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

fn snap(id: &StateNodeId) -> SnapshotId {
    codec::snapshot_id(id)
}

#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(result: stategraph::Result<T>, what: &str) {
    match result {
        Err(e) if e.is_corrupt() => {
            assert!(!e.to_string().contains('\n'), "{what}: multi-line message");
        }
        other => panic!("{what}: expected a Corrupt error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// State bytes

#[test]
fn flipped_blob_bytes_are_detected() {
    let d = Damaged::new();
    let mut flipped = ROOT_BYTES.to_vec();
    flipped[3] ^= 0x01;
    d.damage(
        "UPDATE blobs SET bytes = ?1 WHERE bytes = ?2",
        rusqlite::params![flipped, ROOT_BYTES],
    );
    let s = d.open();
    assert_corrupt(s.get_state(&d.root_ref), "get_state");
    assert_corrupt(s.load_snapshot(&snap(&d.root)), "load_snapshot");
    // Undamaged data is still served.
    assert_eq!(s.get_state(&d.other_ref).expect("other").bytes, OTHER_BYTES);
    assert_eq!(
        s.get_node(&d.root)
            .expect("the node row itself is intact")
            .id,
        d.root
    );
}

#[test]
fn a_state_prefix_is_read_without_the_rest() {
    // Damage past the prefix does not reach it: only the prefix was read (it is documented
    // as unverified for this reason). Whole reads still refuse the state.
    let d = Damaged::new();
    let mut tail = ROOT_BYTES.to_vec();
    *tail.last_mut().expect("not empty") ^= 0x01;
    d.damage(
        "UPDATE blobs SET bytes = ?1 WHERE bytes = ?2",
        rusqlite::params![tail, ROOT_BYTES],
    );
    let s = d.open();
    assert_eq!(
        s.state_prefix(&d.root_ref, 8).expect("prefix"),
        &ROOT_BYTES[..8]
    );
    assert_corrupt(s.get_state(&d.root_ref), "get_state");
}

#[test]
fn a_state_prefix_of_missing_or_text_bytes_is_corrupt() {
    let d = Damaged::new();
    d.damage(
        "UPDATE blobs SET bytes = CAST(bytes AS TEXT) WHERE bytes = ?1",
        [ROOT_BYTES],
    );
    d.damage("DELETE FROM blobs WHERE bytes = ?1", [OTHER_BYTES]);
    let s = d.open();
    assert_corrupt(s.state_prefix(&d.root_ref, 8), "text bytes");
    assert_corrupt(s.state_prefix(&d.other_ref, 8), "missing bytes");
}

#[test]
fn shortened_blob_bytes_are_detected() {
    let d = Damaged::new();
    d.damage(
        "UPDATE blobs SET bytes = substr(bytes, 1, 5) WHERE bytes = ?1",
        [ROOT_BYTES],
    );
    let s = d.open();
    assert_corrupt(s.get_state(&d.root_ref), "get_state");
    assert_corrupt(s.load_snapshot(&snap(&d.root)), "load_snapshot");
}

#[test]
fn replaced_blob_hash_is_detected() {
    let d = Damaged::new();
    d.damage(
        "UPDATE blobs SET hash = ?1 WHERE bytes = ?2",
        rusqlite::params![[0x5a_u8; 32], ROOT_BYTES],
    );
    let s = d.open();
    assert_corrupt(s.get_state(&d.root_ref), "get_state");
    assert_corrupt(s.load_snapshot(&snap(&d.root)), "load_snapshot");
}

#[test]
fn blob_bytes_stored_as_text_are_reported_corrupt() {
    // An undecodable row is corruption too (see `StateStoreError::Corrupt`).
    let d = Damaged::new();
    d.damage(
        "UPDATE blobs SET bytes = CAST(bytes AS TEXT) WHERE bytes = ?1",
        [ROOT_BYTES],
    );
    let s = d.open();
    assert_corrupt(s.get_state(&d.root_ref), "get_state");
    assert_corrupt(s.load_snapshot(&snap(&d.root)), "load_snapshot");
}

#[test]
fn state_whose_blob_row_is_gone_is_corrupt_not_missing() {
    // The ref exists; its bytes do not. The in-memory store calls this Corrupt ("its bytes
    // are missing"); "no state data with ref …" would be false.
    let d = Damaged::new();
    d.damage("DELETE FROM blobs WHERE bytes = ?1", [ROOT_BYTES]);
    let s = d.open();
    assert_corrupt(s.get_state(&d.root_ref), "get_state");
    assert_corrupt(s.load_snapshot(&snap(&d.root)), "load_snapshot");
}

#[test]
fn changed_state_content_type_is_not_served_by_load_snapshot() {
    // `state_data.content_type` is not covered by any hash on its own, but the node's id
    // covers the content type, so a snapshot must not return one the node never had.
    let d = Damaged::new();
    d.damage(
        "UPDATE state_data SET content_type = 'application/x-evil' WHERE data_ref = ?1",
        [d.root_ref.as_bytes()],
    );
    let s = d.open();
    match s.load_snapshot(&snap(&d.root)) {
        Err(e) => assert!(e.is_corrupt(), "{e:?}"),
        Ok(loaded) => assert_eq!(
            loaded.state.content_type.as_deref(),
            Some("text/plain"),
            "load_snapshot returned a content type the node's id does not cover"
        ),
    }
    // `get_state` serves the state's own content type (no hash covers it alone); `verify`
    // reports that it differs from the node's.
    let problems = s.verify(|_| {}).expect("verify").problems;
    assert!(
        problems.iter().any(|p| p.contains(&d.root.to_string())
            && p.contains("content type Some(\"application/x-evil\")")),
        "{problems:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Node rows

/// Applies `sql` (with `?1` = the node id) and expects `get_node`, and a history walk through
/// the node, to report corruption.
fn node_damage_is_detected(sql: &str, which: impl Fn(&Damaged) -> StateNodeId) {
    let d = Damaged::new();
    let id = which(&d);
    d.damage(sql, [id.as_bytes()]);
    let s = d.open();
    assert_corrupt(s.get_node(&id), sql);
    let walked = s
        .log(&LogOptions::new().from(d.merge))
        .and_then(|log| log.collect::<stategraph::Result<Vec<_>>>());
    assert_corrupt(walked, &format!("log after {sql}"));
    // Other nodes are unaffected.
    for other in [d.root, d.other, d.merge].into_iter().filter(|o| *o != id) {
        assert_eq!(s.get_node(&other).expect("undamaged node").id, other);
    }
}

/// A walk that meets a damaged node yields every node above it first, the one whose parent
/// is damaged included, then the error; and it does not claim to have finished.
#[test]
fn log_shows_the_history_above_a_damaged_node_then_fails() {
    let d = Damaged::new();
    d.damage(
        "UPDATE state_nodes SET label = 'rewritten' WHERE id = ?1",
        [d.root.as_bytes()],
    );
    let s = d.open();
    let mut log = s.log(&LogOptions::new().from(d.merge)).expect("log");
    let mut seen = Vec::new();
    let error = loop {
        match log.next() {
            Some(Ok(node)) => seen.push(node.id),
            Some(Err(e)) => break e,
            None => panic!("the walk ended without an error after {seen:?}"),
        }
    };
    assert_eq!(
        seen,
        vec![d.merge],
        "the merge is read whole before its damaged parent"
    );
    assert!(error.is_corrupt(), "{error}");
    assert!(!log.is_finished());
    assert!(log.next().is_none(), "nothing after the error");
    // First parents only: the same.
    let mut log = s
        .log(&LogOptions::new().from(d.merge).first_parent(true))
        .expect("log");
    assert_eq!(
        log.next().map(|r| r.map(|n| n.id).ok()),
        Some(Some(d.merge))
    );
    assert!(log.next().is_some_and(|r| r.is_err_and(|e| e.is_corrupt())));
}

#[test]
fn changed_label_is_detected() {
    node_damage_is_detected(
        "UPDATE state_nodes SET label = 'rewritten' WHERE id = ?1",
        |d| d.root,
    );
}

#[test]
fn removed_label_is_detected() {
    node_damage_is_detected("UPDATE state_nodes SET label = NULL WHERE id = ?1", |d| {
        d.merge
    });
}

#[test]
fn changed_timestamp_is_detected() {
    node_damage_is_detected(
        "UPDATE state_nodes SET created_ns = created_ns + 1 WHERE id = ?1",
        |d| d.root,
    );
    node_damage_is_detected(
        "UPDATE state_nodes SET created_s = created_s - 1 WHERE id = ?1",
        |d| d.other,
    );
}

#[test]
fn changed_content_type_is_detected() {
    node_damage_is_detected(
        "UPDATE state_nodes SET content_type = 'text/html' WHERE id = ?1",
        |d| d.root,
    );
    node_damage_is_detected(
        "UPDATE state_nodes SET content_type = NULL WHERE id = ?1",
        |d| d.root,
    );
}

#[test]
fn changed_data_hash_is_detected() {
    let d = Damaged::new();
    d.damage(
        "UPDATE state_nodes SET data_hash = ?1 WHERE id = ?2",
        rusqlite::params![[0x33_u8; 32], d.root.as_bytes()],
    );
    let s = d.open();
    assert_corrupt(s.get_node(&d.root), "get_node");
    assert_corrupt(s.load_snapshot(&snap(&d.root)), "load_snapshot");
}

#[test]
fn reordered_parents_are_detected() {
    // Swap the two 32-byte parent ids of the merge.
    node_damage_is_detected(
        "UPDATE state_nodes
         SET parents = CAST(substr(parents, 33, 32) || substr(parents, 1, 32) AS BLOB)
         WHERE id = ?1",
        |d| d.merge,
    );
}

#[test]
fn dropped_parent_is_detected() {
    node_damage_is_detected(
        "UPDATE state_nodes SET parents = substr(parents, 1, 32),
             parent_seqs = substr(parent_seqs, 1, 8)
         WHERE id = ?1",
        |d| d.merge,
    );
}

/// A parent seq far from any row (a flipped high bit): walks and gc say so or go on, and
/// never panic (the read-ahead measured the distance between seqs with a plain subtraction).
#[test]
fn a_parent_seq_out_of_range_is_no_panic() {
    let d = Damaged::new();
    d.damage(
        "UPDATE state_nodes SET parent_seqs = X'80000000000000000000000000000001' WHERE id = ?1",
        [d.merge.as_bytes()],
    );
    let s = d.open();
    for _ in 0..2 {
        let walked = s
            .log(&LogOptions::new().from(d.merge))
            .and_then(|log| log.collect::<stategraph::Result<Vec<_>>>());
        if let Err(e) = walked {
            assert!(e.is_corrupt(), "{e}");
        }
    }
    let problems = s.verify(|_| {}).expect("verify").problems;
    assert!(!problems.is_empty());
}

#[test]
fn node_pointing_at_other_state_fails_load_snapshot() {
    let d = Damaged::new();
    d.damage(
        "UPDATE state_nodes SET data_ref = ?1 WHERE id = ?2",
        rusqlite::params![d.other_ref.as_bytes(), d.root.as_bytes()],
    );
    let s = d.open();
    assert_corrupt(s.load_snapshot(&snap(&d.root)), "load_snapshot");
}

#[test]
fn label_stored_as_a_blob_is_reported_corrupt() {
    // An undecodable row is corruption too (see `StateStoreError::Corrupt`).
    node_damage_is_detected(
        "UPDATE state_nodes SET label = X'FF00' WHERE id = ?1",
        |d| d.root,
    );
}

#[test]
fn timestamp_stored_as_text_is_reported_corrupt() {
    node_damage_is_detected(
        "UPDATE state_nodes SET created_s = 'yesterday' WHERE id = ?1",
        |d| d.root,
    );
}

#[test]
fn root_generation_other_than_one_is_not_served() {
    // The generation is not part of the id, but a root's generation is 1 by definition; a
    // store that hands out generation 7 for a root is handing out wrong data.
    let d = Damaged::new();
    d.damage(
        "UPDATE state_nodes SET generation = 7 WHERE id = ?1",
        [d.root.as_bytes()],
    );
    let s = d.open();
    match s.get_node(&d.root) {
        Err(e) => assert!(e.is_corrupt(), "{e:?}"),
        Ok(node) => assert_eq!(
            node.generation, 1,
            "a root came back with a wrong generation"
        ),
    }
}

/// With CHECK constraints switched off, damage the schema normally prevents.
fn unchecked_damage(d: &Damaged, sql: &str, id: &StateNodeId) {
    let conn = raw(d.path());
    conn.pragma_update(None, "ignore_check_constraints", true)
        .expect("ignore_check_constraints");
    conn.pragma_update(None, "foreign_keys", false)
        .expect("foreign_keys off");
    let changed = conn
        .execute(sql, [id.as_bytes()])
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(changed, 1, "setup: {sql}");
}

/// `parent_seqs` (which rows hold a node's parents) is a lookup hint no id covers. Pointed at
/// the wrong rows, walks must still find the right parents (and `verify` report the link).
#[test]
fn swapped_parent_links_do_not_change_history_answers() {
    let d = Damaged::new();
    d.damage(
        "UPDATE state_nodes
         SET parent_seqs = CAST(substr(parent_seqs, 9, 8) || substr(parent_seqs, 1, 8) AS BLOB)
         WHERE id = ?1",
        [d.merge.as_bytes()],
    );
    let s = d.open();
    let mut walked: Vec<StateNodeId> = s
        .log(&LogOptions::new().from(d.merge))
        .expect("log")
        .map(|n| n.expect("log entry").id)
        .collect();
    walked.sort();
    let mut all = vec![d.root, d.other, d.merge];
    all.sort();
    assert_eq!(walked, all);
    assert!(s.is_ancestor(&d.root, &d.merge).expect("is_ancestor"));
    assert!(s.is_ancestor(&d.other, &d.merge).expect("is_ancestor"));
    let report = s.verify(|_| {}).expect("verify");
    assert!(
        report.problems.iter().any(|p| p.contains("wrong row")),
        "{:?}",
        report.problems
    );
}

#[test]
fn damage_past_the_check_constraints_is_detected() {
    for sql in [
        "UPDATE state_nodes SET data_hash = X'0102030405' WHERE id = ?1",
        "UPDATE state_nodes SET created_ns = 1000000000 WHERE id = ?1",
        "UPDATE state_nodes SET created_ns = -1 WHERE id = ?1",
        "UPDATE state_nodes SET parents = CAST(parents || X'00' AS BLOB) WHERE id = ?1",
        "UPDATE state_nodes SET parent_seqs = CAST(parent_seqs || X'00' AS BLOB) WHERE id = ?1",
        "UPDATE state_nodes SET data_ref = X'0102' WHERE id = ?1",
        "UPDATE state_nodes SET generation = -1 WHERE id = ?1",
    ] {
        let d = Damaged::new();
        unchecked_damage(&d, sql, &d.merge);
        assert_corrupt(d.open().get_node(&d.merge), sql);
    }
}

#[test]
fn schema_rejects_wrong_length_ids_and_hashes() {
    let d = Damaged::new();
    let conn = raw(d.path());
    for sql in [
        "UPDATE blobs SET hash = X'0102030405'",
        "UPDATE state_data SET data_ref = X'01'",
        "UPDATE state_nodes SET id = X'0102030405'",
        "UPDATE state_nodes SET data_hash = X'0102030405'",
        "UPDATE state_nodes SET parents = CAST(parents || X'00' AS BLOB)",
        "UPDATE state_nodes SET created_ns = 1000000000",
        "UPDATE state_nodes SET generation = 0",
        "UPDATE snapshots SET id = X'0102030405'",
    ] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{sql}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshot rows

#[test]
fn snapshot_pointing_at_another_node_is_detected() {
    let d = Damaged::new();
    d.damage(
        "UPDATE snapshots SET node_id = ?1 WHERE id = ?2",
        rusqlite::params![d.other.as_bytes(), snap(&d.root).as_bytes()],
    );
    let s = d.open();
    assert_corrupt(s.load_snapshot(&snap(&d.root)), "load_snapshot");
    assert_eq!(
        s.load_snapshot(&snap(&d.other))
            .expect("undamaged snapshot")
            .node_id,
        d.other
    );
}

// ---------------------------------------------------------------------------------------------
// The fsck sweep finds every kind of damage at once

#[test]
fn verify_passes_a_healthy_store_and_counts_it() {
    let d = Damaged::new();
    let store = d.open();
    store.set_ref("main", None, &d.merge).expect("ref");
    let mut phases = Vec::new();
    let report = store.verify(|p| phases.push(p.phase)).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        (report.blobs, report.nodes, report.snapshots, report.refs),
        (2, 3, 3, 1)
    );
    assert!(
        phases.contains(&stategraph::VerifyPhase::Nodes),
        "progress was reported"
    );
    let stats = store.stats().expect("stats");
    assert_eq!(
        (stats.nodes, stats.states, stats.blobs, stats.snapshots),
        (3, 2, 2, 3)
    );
    assert_eq!(
        stats.blob_bytes,
        (ROOT_BYTES.len() + OTHER_BYTES.len()) as u64
    );
}

/// A blob whose bytes were rewritten as text (another type than SQLite stored) is one
/// problem among others, named by its node: the sweep does not stop at it, and a second
/// damaged blob after it is still found.
#[test]
fn verify_goes_on_past_a_blob_of_the_wrong_type() {
    let d = Damaged::new();
    d.damage(
        "UPDATE blobs SET bytes = CAST(bytes AS TEXT) WHERE bytes = ?1",
        [ROOT_BYTES],
    );
    d.overwrite(OTHER_BYTES, b'Y');
    // And the root node's label is no longer text: naming the blob's holders must not stop
    // the sweep either (the node check reports the node itself).
    d.damage(
        "UPDATE state_nodes SET label = X'ff' WHERE id = ?1",
        [d.root.as_bytes()],
    );
    let report = d.open().verify(|_| {}).expect("verify");
    let text = report.problems.join("\n");
    assert_eq!(
        report
            .problems
            .iter()
            .filter(|p| p.starts_with("blob "))
            .count(),
        2,
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "its hash or bytes are not stored as bytes (the state of node {}",
            d.root.to_short_hex(12)
        )),
        "{text}"
    );
    assert!(
        text.contains("its bytes do not match its hash (the state of node"),
        "{text}"
    );
    assert_eq!(report.blobs, 2);
}

/// A package exported before a state was damaged repairs it when imported again: the
/// package's bytes (verified against the node's hash) replace the damaged copy, reads work
/// again and `verify` is clean; an intact store is left as it was.
#[test]
fn importing_a_package_repairs_a_damaged_state() {
    let d = Damaged::new();
    let (root_package, other_package) = {
        let store = d.open();
        let snap = |id| store.snapshots_of(id).expect("snapshots")[0].id;
        (
            store.export_snapshot(&snap(&d.root)).expect("export"),
            store.export_snapshot(&snap(&d.other)).expect("export"),
        )
    };
    d.overwrite(ROOT_BYTES, b'X');
    let store = d.open();
    assert!(store.get_state(&d.root_ref).unwrap_err().is_corrupt());
    assert!(!store.verify(|_| {}).expect("verify").is_ok());
    // An intact state's package changes nothing; the damaged one's repairs it.
    store
        .import_snapshot(&other_package)
        .expect("import intact");
    assert!(store.get_state(&d.root_ref).unwrap_err().is_corrupt());
    store.import_snapshot(&root_package).expect("import");
    assert_eq!(
        store.get_state(&d.root_ref).expect("repaired").bytes,
        ROOT_BYTES
    );
    let report = store.verify(|_| {}).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// A package exported before a node row was damaged repairs the row when imported again:
/// an edited label, parents swapped for others, a data ref pointing at another state. The
/// node reads back as it was, its children and history walk as before, and `verify` is
/// clean; the row keeps its place, so nothing else changes.
#[test]
fn importing_a_package_repairs_a_damaged_node() {
    let d = Damaged::new();
    let package = |id: &StateNodeId| {
        let store = d.open();
        store.export_snapshot(&snap(id)).expect("export")
    };
    let (merge_package, root_package) = (package(&d.merge), package(&d.root));
    let before = d.open().get_node(&d.merge).expect("node");
    d.damage(
        "UPDATE state_nodes SET label = 'forged', parents = ?2, data_ref = ?3 WHERE id = ?1",
        rusqlite::params![
            d.merge.as_bytes(),
            [*d.other.as_bytes(), *d.root.as_bytes()].concat(),
            d.root_ref.as_bytes(),
        ],
    );
    d.damage(
        "UPDATE state_nodes SET label = 'forged too' WHERE id = ?1",
        [d.root.as_bytes()],
    );
    let store = d.open();
    assert!(store.get_node(&d.merge).unwrap_err().is_corrupt());
    assert!(!store.verify(|_| {}).expect("verify").is_ok());
    store.import_snapshot(&merge_package).expect("import");
    store.import_snapshot(&root_package).expect("import");
    let repaired = store.get_node(&d.merge).expect("repaired");
    // The damaged row named another state, so the repair stored the package's under a new
    // data ref; the rest is as it was.
    assert_ne!(repaired.data_ref, d.root_ref);
    let mut expected = before.clone();
    expected.data_ref = repaired.data_ref;
    assert_eq!(repaired, expected);
    assert_eq!(
        store.get_state(&repaired.data_ref).expect("state").bytes,
        OTHER_BYTES
    );
    let root = store.get_node(&d.root).expect("root");
    assert_eq!(root.metadata.label.as_deref(), Some("root"));
    assert_eq!(root.data_ref, d.root_ref, "an intact data ref is kept");
    let walked: Vec<StateNodeId> = store
        .log(&stategraph::LogOptions::new().from(d.merge))
        .expect("log")
        .map(|n| n.expect("node").id)
        .collect();
    assert_eq!(walked.len(), 3);
    let report = store.verify(|_| {}).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn verify_reports_every_problem() {
    let d = Damaged::new();
    {
        let store = d.open();
        store.set_ref("main", None, &d.merge).expect("ref");
    }
    // Flipped state bytes, an edited label, a snapshot pointing at the wrong node, a ref to a
    // node that is gone, and that node's children left with a missing parent.
    d.overwrite(ROOT_BYTES, b'X');
    d.damage(
        "UPDATE state_nodes SET label = 'forged' WHERE id = ?1",
        [d.other.as_bytes()],
    );
    d.damage(
        "UPDATE snapshots SET node_id = ?1 WHERE id = ?2",
        [
            d.root.as_bytes().to_vec(),
            snap(&d.other).as_bytes().to_vec(),
        ],
    );
    d.damage(
        "DELETE FROM snapshots WHERE node_id = ?1",
        [d.merge.as_bytes()],
    );
    d.damage(
        "DELETE FROM state_nodes WHERE id = ?1",
        [d.merge.as_bytes()],
    );
    let report = d.open().verify(|_| {}).expect("verify");
    let text = report.problems.join("\n");
    assert!(!report.is_ok());
    // Named by the node whose state it is, not only by its row.
    assert!(
        text.contains(&format!(
            "its bytes do not match its hash (the state of node {}",
            d.root.to_short_hex(12)
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("corrupt node {}", d.other)),
        "{text}"
    );
    assert!(text.contains("not the snapshot id of node"), "{text}");
    assert!(
        text.contains(&format!("ref main: its node {} is missing", d.merge)),
        "{text}"
    );
}

/// `verify` on `d` after `damage`: its problems, one per line, which must include `want`.
#[track_caller]
fn verify_finds(d: &Damaged, damage: impl FnOnce(&Damaged), want: &str) {
    assert!(
        d.open().verify(|_| {}).expect("verify").is_ok(),
        "setup: healthy before the damage"
    );
    damage(d);
    let report = d.open().verify(|_| {}).expect("verify lists, not fails");
    let text = report.problems.join("\n");
    assert!(text.contains(want), "{want:?} not in:\n{text}");
}

/// Damage that reads as a healthy store row by row: an index entry that no longer matches
/// its table, child edges that disagree with parent lists, a stored state whose bytes are
/// gone, malformed ref and ref log rows.
#[test]
fn verify_finds_damage_outside_the_node_rows() {
    // One byte of the merge's id in the id index (the store is small enough for the index to
    // fit its root page): lookups by id would miss the node, or find another.
    let d = Damaged::new();
    verify_finds(
        &d,
        |d| {
            let page: i64 = raw(d.path())
                .query_row(
                    "SELECT rootpage FROM sqlite_schema WHERE name = 'sqlite_autoindex_state_nodes_1'",
                    [],
                    |r| r.get(0),
                )
                .expect("index root page");
            let mut file = std::fs::read(d.path()).expect("read");
            let start = (page as usize - 1) * 4096;
            let at = file[start..start + 4096]
                .windows(32)
                .position(|w| w == d.merge.as_bytes())
                .expect("the id in its index page")
                + start;
            file[at + 5] ^= 0x40;
            std::fs::write(d.path(), file).expect("write");
        },
        "SQLite: ",
    );
    let d = Damaged::new();
    let unused = d
        .open()
        .put_state(StateData::new(b"stored, not committed yet".to_vec()))
        .expect("put");
    verify_finds(
        &d,
        |d| {
            d.damage(
                "DELETE FROM blobs WHERE id = (SELECT blob_id FROM state_data WHERE data_ref = ?1)",
                [unused.as_uuid().as_bytes()],
            );
        },
        &format!("state {unused}: its bytes are missing"),
    );
    // Row edits, each on a fresh store with `main` at the merge (seqs: root 1, other 2,
    // merge 3); names that are text but not UTF-8 included, in a ref and in a ref log.
    let merge_lacks_its_edge = {
        let d = Damaged::new();
        format!(
            "node {}: the child index lacks its edge from parent {}",
            d.merge, d.root
        )
    };
    for (sql, want) in [
        (
            "DELETE FROM node_children WHERE child = 3 AND parent = 1",
            merge_lacks_its_edge.as_str(),
        ),
        (
            "INSERT INTO node_children (parent, child) VALUES (2, 1)",
            "the child index holds 3 edges where the nodes' parent lists have 2",
        ),
        (
            "UPDATE refs SET node_id = x'0102' WHERE name = 'main'",
            "ref main: its target is not a node id",
        ),
        (
            "UPDATE ref_log SET new_node = '32 characters of text, not an id' WHERE name = 'main'",
            "ref log of main: ",
        ),
        (
            "UPDATE ref_log SET new_node = zeroblob(32) WHERE name = 'main'",
            "ref log of main: an entry names node blake3:0000000000000000000000000000000000000000000000000000000000000000, which is missing",
        ),
        (
            "UPDATE refs SET name = CAST(x'6d61ff6e' AS TEXT)",
            "ref ma\u{fffd}n: its name is not UTF-8",
        ),
        (
            "UPDATE ref_log SET name = CAST(x'6d61ff6e' AS TEXT)",
            "ref log of ma\u{fffd}n: its name is not UTF-8",
        ),
    ] {
        let d = Damaged::new();
        d.open().set_ref("main", None, &d.merge).expect("ref");
        verify_finds(&d, |d| d.damage(sql, []), want);
    }
}

/// A node row that does not decode has child-index edges whose parent links cannot be read:
/// the report names the row, and does not blame the index for them.
#[test]
fn verify_does_not_blame_the_child_index_for_an_undecodable_node() {
    let d = Damaged::new();
    d.damage(
        "UPDATE state_nodes SET label = CAST(x'ff41' AS TEXT) WHERE id = ?1",
        [d.merge.as_bytes()],
    );
    let report = d.open().verify(|_| {}).expect("verify");
    let text = report.problems.join("\n");
    assert!(
        text.contains(&format!("node {} (row 3)", d.merge)),
        "{text}"
    );
    assert!(!text.contains("child index"), "{text}");
}

#[test]
fn verify_lists_an_undecodable_node_and_goes_on() {
    let d = Damaged::new();
    // Text that is not UTF-8 in the root's label; the root has a child, a snapshot and a ref.
    d.damage(
        "UPDATE state_nodes SET label = CAST(x'ff41' AS TEXT) WHERE id = ?1",
        [d.root.as_bytes()],
    );
    {
        let s = d.open();
        assert!(s.get_node(&d.root).unwrap_err().is_corrupt());
    }
    d.damage(
        "INSERT INTO refs (name, node_id) VALUES ('main', ?1)",
        [d.root.as_bytes()],
    );
    let report = d.open().verify(|_| {}).expect("verify lists, not fails");
    let text = report.problems.join("\n");
    for want in [
        format!("node {}: its parent {} cannot be read", d.merge, d.root),
        format!("its node {} cannot be read", d.root),
        format!("ref main: its node {} cannot be read", d.root),
    ] {
        assert!(text.contains(&want), "{want} not in:\n{text}");
    }
    assert!(
        text.contains(&format!("node {} (row 1): ", d.root)),
        "{text}"
    );
    assert!(text.contains("utf-8"), "{text}");

    assert_eq!(report.nodes, 3, "every node was checked");
}

/// A ref log entry whose node is 32 characters of text is reported as malformed, and the
/// check for entries naming missing nodes still runs over the others.
#[test]
fn verify_reports_a_text_id_in_the_ref_log_and_checks_the_rest() {
    let d = Damaged::new();
    let s = d.open();
    s.set_ref("main", None, &d.merge).expect("ref");
    s.set_ref("other", None, &d.other).expect("ref");
    drop(s);
    d.damage(
        "UPDATE ref_log SET new_node = '32 characters of text, not an id' WHERE name = 'main'",
        [],
    );
    d.damage(
        "UPDATE ref_log SET new_node = zeroblob(32) WHERE name = 'other'",
        [],
    );
    let report = d.open().verify(|_| {}).expect("verify");
    let text = report.problems.join("\n");
    assert!(text.contains("ref log of main: "), "{text}");
    assert!(
        text.contains("ref log of other: an entry names node blake3:00000000"),
        "{text}"
    );
    assert!(!text.contains("stopped"), "{text}");
}

/// A page SQLite cannot parse stops the parts of the sweep that read it, not the sweep:
/// what `integrity_check` said before it gave up is kept, the stop is one more problem,
/// and the parts that do not read the page still run.
#[test]
fn verify_lists_what_it_found_around_a_page_sqlite_cannot_read() {
    let d = Damaged::new();
    let page: i64 = raw(d.path())
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'blobs'",
            [],
            |r| r.get(0),
        )
        .expect("blobs root page");
    assert!(page > 1, "setup: page 1 holds the schema");
    let mut file = std::fs::read(d.path()).expect("read");
    let start = (page as usize - 1) * 4096;
    file[start..start + 4096].copy_from_slice(&crate::cli_util::noise(4096, 6));
    std::fs::write(d.path(), file).expect("write");

    let report = d.open().verify(|_| {}).expect("verify lists, not fails");
    let text = report.problems.join("\n");
    assert!(text.contains("SQLite: "), "{text}");
    assert!(
        text.contains("the state bytes check stopped at data it could not read"),
        "{text}"
    );
    assert_eq!(report.snapshots, 3, "snapshots were still checked:\n{text}");
    assert!(!report.is_ok());
}

#[test]
fn verify_reports_a_missing_parent_but_accepts_a_shallow_boundary() {
    let d = Damaged::new();
    d.damage("DELETE FROM state_nodes WHERE id = ?1", [d.root.as_bytes()]);
    let report = d.open().verify(|_| {}).expect("verify");
    let text = report.problems.join("\n");
    assert!(
        text.contains(&format!("parent link to {}", d.root)),
        "{text}"
    );

    // A node imported without its parent is a shallow boundary, not damage.
    let sender = stategraph::InMemoryStateStore::new();
    let data = sender
        .put_state(StateData::new(b"a".to_vec()))
        .expect("put");
    let a = sender
        .commit_node(vec![], data, meta(t(0), None))
        .expect("commit");
    let data = sender
        .put_state(StateData::new(b"b".to_vec()))
        .expect("put");
    let b = sender
        .commit_node(vec![a], data, meta(t(1), None))
        .expect("commit");
    let package = sender
        .export_snapshot(&sender.snapshot(&b).expect("snap"))
        .expect("export");
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = open_normal(&dir.path().join("r.db"));
    receiver.import_snapshot(&package).expect("import");
    let report = receiver.verify(|_| {}).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.shallow_edges, 1);

    // The missing parent arrives later: the boundary closes, and the child's stored link to
    // it is the parent's row, as if they had arrived in order.
    let parent = sender
        .export_snapshot(&sender.snapshot(&a).expect("snap"))
        .expect("export");
    receiver.import_snapshot(&parent).expect("import parent");
    let report = receiver.verify(|_| {}).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.shallow_edges, 0);
    let below: Vec<StateNodeId> = receiver
        .descendants(&a)
        .expect("descendants")
        .map(|n| n.map(|n| n.id))
        .collect::<Result<_, _>>()
        .expect("walk");
    assert_eq!(below, vec![b]);
    assert!(receiver.is_ancestor(&a, &b).expect("ancestry"));
    drop(receiver);
    let conn = rusqlite::Connection::open(dir.path().join("r.db")).expect("open");
    let (a_seq, b_links): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT (SELECT seq FROM state_nodes WHERE id = ?1), parent_seqs
             FROM state_nodes WHERE id = ?2",
            [a.as_bytes().as_slice(), b.as_bytes().as_slice()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("rows");
    assert_eq!(b_links, a_seq.to_be_bytes());
}

/// A secondary index that lost rows (here: its root page swapped with another table's, as a
/// misdirected write leaves them) must not make gc take what it indexes for unreachable:
/// gc finds refs and snapshots in their own tables, never through an index.
#[test]
fn gc_keeps_snapshotted_nodes_when_an_index_is_damaged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let s = open_normal(&path);
    let (_, kept) = s
        .commit_state(
            vec![],
            StateData::new(b"keep me".to_vec()),
            meta(t(0), None),
        )
        .expect("commit");
    let snapshot = s.snapshot(&kept).expect("snapshot");
    // A shallow import: `shallow_edges` gets a row, so its root page is a leaf with content.
    s.import_snapshot(&child_without_its_parent())
        .expect("import");
    drop(s);
    let conn = raw(&path);
    let page: usize = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .expect("page size") as usize;
    let root_of = |name: &str| -> usize {
        conn.query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .expect("root page") as usize
    };
    let (a, b) = (root_of("snapshots_by_node"), root_of("shallow_edges"));
    drop(conn);
    let mut file = std::fs::read(&path).expect("read");
    let at = |p: usize| (p - 1) * page..p * page;
    let page_a = file[at(a)].to_vec();
    file.copy_within(at(b), (a - 1) * page);
    file[at(b)].copy_from_slice(&page_a);
    std::fs::write(&path, file).expect("write");

    let s = open_normal(&path);
    assert_eq!(
        s.load_snapshot(&snapshot).expect("before").state.bytes,
        b"keep me"
    );
    // `verify` sees it, one line a problem.
    let problems = s.verify(|_| {}).expect("verify").problems;
    assert!(
        problems.iter().any(|p| p.starts_with("SQLite: ")),
        "{problems:?}"
    );
    assert!(problems.iter().all(|p| !p.contains('\n')), "{problems:?}");
    // Stopping on the damage is fine; removing the snapshot's node is not.
    if let Err(e) = s.gc(&stategraph::GcOptions::new().grace(std::time::Duration::ZERO)) {
        assert!(e.is_corrupt(), "{e}");
    }
    let loaded = s
        .load_snapshot(&snapshot)
        .expect("the snapshot survives gc");
    assert_eq!(loaded.state.bytes, b"keep me");
    assert_eq!(s.get_node(&kept).expect("node").id, kept);
}

/// An entry of the node id index that leads to another node's row (one flipped rowid byte):
/// reads by id say so instead of answering with that other node, or its state.
#[test]
fn an_id_index_entry_leading_to_another_row_is_corrupt_not_another_node() {
    let d = Damaged::new();
    let conn = raw(d.path());
    let page: usize = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .expect("page size") as usize;
    let index_root: usize = conn
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'state_nodes' \
             AND name LIKE 'sqlite_autoindex_state_nodes%'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .expect("index root") as usize;
    let seq_of = |id: &StateNodeId| -> u8 {
        conn.query_row(
            "SELECT seq FROM state_nodes WHERE id = ?1",
            [id.as_bytes()],
            |r| r.get::<_, i64>(0),
        )
        .expect("seq") as u8
    };
    let (other_seq, root_seq) = (seq_of(&d.other), seq_of(&d.root));
    drop(conn);
    let mut file = std::fs::read(d.path()).expect("read");
    let index = &mut file[(index_root - 1) * page..index_root * page];
    // The entry is the record (id, rowid): the id's 32 bytes, then the seq in one byte.
    let mut entry = d.other.as_bytes().to_vec();
    entry.push(other_seq);
    let at = index
        .windows(entry.len())
        .position(|w| w == entry.as_slice())
        .expect("the entry in the index's root page");
    index[at + 32] = root_seq;
    std::fs::write(d.path(), &file).expect("write");

    let s = d.open();
    assert_corrupt(s.get_node(&d.other), "get_node");
    assert_corrupt(s.load_snapshot(&snap(&d.other)), "load_snapshot");
    // The root, reached through its own entry, is as it was.
    assert_eq!(
        s.load_snapshot(&snap(&d.root)).expect("root").state.bytes,
        ROOT_BYTES
    );
}

/// A snapshot whose stored time does not read fails every listing of snapshots: `verify`
/// reports it, and the error names the snapshot (which `snapshot -d` can then remove).
#[test]
fn a_damaged_snapshot_time_is_reported_and_named() {
    let d = Damaged::new();
    let conn = raw(d.path());
    conn.pragma_update(None, "ignore_check_constraints", true)
        .expect("pragma");
    conn.execute(
        "UPDATE snapshots SET created_ns = created_ns | (1 << 30) WHERE id = ?1",
        [snap(&d.other).as_bytes()],
    )
    .expect("damage");
    drop(conn);
    let s = d.open();
    let err = s.list_snapshots().expect_err("listing");
    assert!(
        err.is_corrupt() && err.to_string().contains(&snap(&d.other).to_string()),
        "{err}"
    );
    let problems = s.verify(|_| {}).expect("verify").problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&snap(&d.other).to_string()) && p.contains("nanoseconds")),
        "{problems:?}"
    );
    s.delete_snapshot(&snap(&d.other))
        .expect("delete the damaged snapshot");
    assert_eq!(s.list_snapshots().expect("listing").len(), 2);
}

/// A ref whose node is not stored (its row damaged): a walk from it names the ref.
#[test]
fn a_walk_from_a_ref_to_a_missing_node_names_the_ref() {
    let d = Damaged::new();
    d.open().set_ref("main", None, &d.merge).expect("ref");
    d.damage(
        "UPDATE refs SET node_id = zeroblob(32) WHERE name = ?1",
        ["main"],
    );
    let s = d.open();
    let err = s
        .log(&LogOptions::new().from_ref("main"))
        .map(|_| ())
        .expect_err("walk");
    assert!(err.is_corrupt(), "{err}");
    assert!(
        err.to_string()
            .starts_with("corrupt ref main: it names node"),
        "{err}"
    );
}

/// A parent seq that names the wrong row makes a parent look unreachable to gc; deleting it
/// then trips a foreign key. That is damage, said as such, and nothing is removed.
#[test]
fn gc_on_links_that_disagree_is_corrupt_and_removes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let s = open_normal(&path);
    let node = |parents: Vec<StateNodeId>, text: &str, i: i64| {
        s.commit_state(
            parents,
            StateData::new(text.as_bytes().to_vec()),
            meta(t(i), None),
        )
        .expect("commit")
        .1
    };
    let root = node(vec![], "root", 0);
    let side = node(vec![], "side", 1);
    let merge = node(vec![root, side], "merge", 2);
    s.set_ref("main", None, &merge).expect("ref");
    drop(s);
    let conn = raw(&path);
    conn.pragma_update(None, "foreign_keys", false)
        .expect("pragma");
    let root_seq: i64 = conn
        .query_row(
            "SELECT seq FROM state_nodes WHERE id = ?1",
            [root.as_bytes()],
            |r| r.get(0),
        )
        .expect("seq");
    let mut seqs = root_seq.to_be_bytes().to_vec();
    seqs.extend(root_seq.to_be_bytes());
    conn.execute(
        "UPDATE state_nodes SET parent_seqs = ?1 WHERE id = ?2",
        rusqlite::params![seqs, merge.as_bytes()],
    )
    .expect("damage");
    drop(conn);
    let s = open_normal(&path);
    let err = s
        .gc(&stategraph::GcOptions::new().grace(std::time::Duration::ZERO))
        .expect_err("gc");
    assert!(err.is_corrupt(), "{err}");
    assert!(err.to_string().contains("removed nothing"), "{err}");
    assert_eq!(s.get_node(&side).expect("still there").id, side);
}

/// A ref whose node id reads as text (one bit of its record header) names no node that gc
/// can match: gc stops, where it used to take the branch for unreachable and delete it.
#[test]
fn gc_stops_on_a_ref_whose_node_id_is_not_bytes() {
    let d = Damaged::new();
    let s = d.open();
    let (_, tip) = s
        .commit_state(
            vec![d.merge],
            StateData::new(b"tip".to_vec()),
            meta(t(9), None),
        )
        .expect("commit");
    s.set_ref("main", None, &tip).expect("ref");
    drop(s);
    d.damage(
        "UPDATE refs SET node_id = CAST(node_id AS TEXT) WHERE name = ?1",
        ["main"],
    );
    let s = d.open();
    let err = s
        .gc(&stategraph::GcOptions::new()
            .grace(std::time::Duration::ZERO)
            .expire_ref_log(std::time::Duration::ZERO))
        .expect_err("gc");
    assert!(
        err.is_corrupt() && err.to_string().contains("removed nothing"),
        "{err}"
    );
    assert_eq!(s.get_node(&tip).expect("kept").id, tip);
}

/// A new store at `path` holding one root node, which `main` names.
fn store_with_a_root(path: &Path) -> (SqliteStateStore, StateNodeId) {
    let s = open_normal(path);
    let (_, root) = s
        .commit_state(vec![], StateData::new(b"root".to_vec()), meta(t(0), None))
        .expect("commit");
    s.set_ref("main", None, &root).expect("ref");
    (s, root)
}

/// Damage a gc meets only at its deletes: a boundary row no node's parent list accounts
/// for, and a state ref that is not 16 bytes. The dry run (which only reads) does not see
/// it, the collection stops on it and removes nothing, and `verify` reports it.
#[test]
fn damage_that_stops_gc_at_its_deletes_shows_in_verify() {
    for sql in [
        "INSERT INTO shallow_edges VALUES (zeroblob(32), (SELECT seq FROM state_nodes WHERE id = ?1))",
        "INSERT INTO state_data VALUES ('abcdefghijklmnop', (SELECT min(id) FROM blobs), ?1 || '')",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let (s, root) = store_with_a_root(&path);
        let (_, loose) = s
            .commit_state(
                vec![root],
                StateData::new(b"loose".to_vec()),
                meta(t(1), None),
            )
            .expect("commit");
        drop(s);
        let conn = raw(&path);
        conn.pragma_update(None, "foreign_keys", false)
            .expect("pragma");
        let param: Vec<u8> = if sql.contains("?1 ||") {
            b"x".to_vec()
        } else {
            loose.as_bytes().to_vec()
        };
        conn.execute(sql, [param])
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(conn);
        let s = open_normal(&path);
        let problems = s.verify(|_| {}).expect("verify").problems;
        assert!(!problems.is_empty(), "{sql}: verify saw nothing");
        let options = stategraph::GcOptions::new().grace(std::time::Duration::ZERO);
        let dry = s
            .gc(&options.clone().dry_run(true))
            .expect("the dry run only reads");
        assert_eq!(dry.nodes_removed, 1, "{sql}");
        let err = s.gc(&options).expect_err("the collection stops");
        assert!(err.is_corrupt(), "{sql}: {err}");
        assert_eq!(s.get_node(&loose).expect("kept").id, loose);
    }
}

/// A snapshot row whose node id is not 32 bytes: the listing error and `verify` name the
/// snapshot (its own id reads), so it can be deleted by that id.
#[test]
fn a_snapshot_with_a_malformed_node_id_is_named() {
    let d = Damaged::new();
    let bad = snap(&d.other);
    d.damage(
        "UPDATE snapshots SET node_id = substr(node_id, 1, 31) WHERE id = ?1",
        [bad.as_bytes()],
    );
    let s = d.open();
    let err = s.list_snapshots().expect_err("listing");
    assert!(
        err.is_corrupt() && err.to_string().contains(&bad.to_string()),
        "{err}"
    );
    let problems = s.verify(|_| {}).expect("verify").problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&bad.to_string()) && p.contains("node id is malformed")),
        "{problems:?}"
    );
    s.delete_snapshot(&bad).expect("delete it by its id");
    assert_eq!(s.list_snapshots().expect("listing").len(), 2);
}

/// The same for the boundary table: a node that cannot be read, with a parent not stored
/// here, is one problem, not also a boundary table that disagrees with the parent lists.
#[test]
fn verify_does_not_blame_the_boundary_table_for_an_undecodable_node() {
    let package = child_without_its_parent();
    let tip = package.node_id;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let s = open_normal(&path);
    s.import_snapshot(&package).expect("a shallow import");
    assert!(s.verify(|_| {}).expect("verify").is_ok());
    drop(s);
    let conn = raw(&path);
    conn.execute(
        "UPDATE state_nodes SET label = CAST(x'ff41' AS TEXT) WHERE id = ?1",
        [tip.as_bytes()],
    )
    .expect("damage");
    drop(conn);
    let text = open_normal(&path)
        .verify(|_| {})
        .expect("verify")
        .problems
        .join("\n");
    assert!(text.contains(&tip.to_string()), "{text}");
    assert!(!text.contains("boundary table"), "{text}");
}

/// The snapshot package of a child node, whose parent a store that imports it lacks: a
/// shallow import, with one row in `shallow_edges`.
pub(crate) fn child_without_its_parent() -> stategraph::SnapshotPackage {
    let sender = stategraph::InMemoryStateStore::new();
    let (_, root) = sender
        .commit_state(vec![], StateData::new(b"r".to_vec()), meta(t(1), None))
        .expect("commit");
    let (_, tip) = sender
        .commit_state(vec![root], StateData::new(b"c".to_vec()), meta(t(2), None))
        .expect("commit");
    sender
        .export_snapshot(&sender.snapshot(&tip).expect("snapshot"))
        .expect("export")
}

/// A state row whose data ref reads as text stops the collection at its deletes (it reads
/// as unused and does not decode), even when there is nothing else to remove: a gc that
/// counts first must still run the collection and report it, not return "nothing removed".
#[test]
fn gc_with_nothing_else_to_remove_still_stops_on_a_state_ref_that_is_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let (s, root) = store_with_a_root(&path);
    drop(s);
    let conn = raw(&path);
    conn.pragma_update(None, "foreign_keys", false)
        .expect("pragma");
    conn.execute(
        "INSERT INTO state_data VALUES ('abcdefghijklmnop', (SELECT min(id) FROM blobs), 'x')",
        [],
    )
    .expect("damage");
    drop(conn);
    let s = open_normal(&path);
    let options = stategraph::GcOptions::new().grace(std::time::Duration::ZERO);
    let dry = s
        .gc(&options.clone().dry_run(true))
        .expect("the dry run only reads");
    assert_eq!((dry.nodes_removed, dry.states_removed), (0, 0), "{dry:?}");
    let err = s.gc(&options).expect_err("the collection stops");
    assert!(err.is_corrupt(), "{err}");
    assert_eq!(s.get_node(&root).expect("kept").id, root);
}
