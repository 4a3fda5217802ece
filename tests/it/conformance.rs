//! The `StateStore` contract, written once and run against every backend.
//!
//! Each case is a function over a [`Harness`]; the `conformance_cases!` macro at the bottom
//! generates one `#[test]` per (backend, case) in `conformance::memory`,
//! `conformance::sqlite`, and through the async facade in `conformance::async_memory` and
//! `conformance::async_sqlite`.

use std::path::PathBuf;
use std::sync::Arc;

use stategraph::codec;
use std::time::Duration;

use stategraph::{
    ContentHash, GcOptions, GcReport, History, InMemoryStateStore, LogOptions, SnapshotId,
    SnapshotPackage, SqliteStateStore, StateData, StateDataRef, StateMetadata, StateNodeId,
    StateStore, StateStoreError,
};
use tempfile::TempDir;
use time::macros::{datetime, offset};

use crate::util::{T0, commit_bytes, count_rows, meta, open_normal, random_bytes, t};
use crate::via_async::ViaAsync;

/// A store under test, plus (for SQLite) a way to look at its rows behind its back.
pub struct Harness {
    // Drop order: the store closes before its directory is deleted.
    store: Arc<dyn StateStore>,
    sqlite: Option<(PathBuf, TempDir)>,
}

impl Harness {
    pub fn memory() -> Self {
        Self {
            store: Arc::new(InMemoryStateStore::new()),
            sqlite: None,
        }
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("conformance.db");
        Self {
            store: Arc::new(open_normal(&path)),
            sqlite: Some((path, dir)),
        }
    }

    /// The in-memory store, driven through its async facade.
    pub fn async_memory() -> Self {
        Self {
            store: Arc::new(ViaAsync::new(InMemoryStateStore::new())),
            sqlite: None,
        }
    }

    /// A SQLite store, driven through its async facade.
    pub fn async_sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("conformance.db");
        Self {
            store: Arc::new(ViaAsync::new(open_normal(&path))),
            sqlite: Some((path, dir)),
        }
    }

    fn store(&self) -> &dyn StateStore {
        &*self.store
    }

    /// Row counts of every table (SQLite only; `None` for the in-memory store), so a failed
    /// call can be shown to have written nothing.
    fn rows(&self) -> Option<Vec<(&'static str, i64)>> {
        let (path, _) = self.sqlite.as_ref()?;
        Some(
            [
                "blobs",
                "state_data",
                "state_nodes",
                "node_children",
                "snapshots",
            ]
            .into_iter()
            .map(|table| (table, count_rows(path, table)))
            .collect(),
        )
    }
}

/// Asserts an error message is a single line that names `id`.
fn assert_one_line_naming(err: &StateStoreError, id: &dyn std::fmt::Display) {
    let text = err.to_string();
    assert!(!text.contains('\n'), "message is not one line: {text:?}");
    assert!(
        text.contains(&id.to_string()),
        "message {text:?} does not mention {id}"
    );
}

fn data(bytes: &[u8], content_type: Option<&str>) -> StateData {
    StateData {
        bytes: bytes.to_vec(),
        content_type: content_type.map(str::to_owned),
    }
}

// ---------------------------------------------------------------------------------------------
// State data

fn put_get_round_trip(h: &Harness) {
    let s = h.store();
    let big = random_bytes(1, 1 << 20);
    let inputs = [
        data(b"", None),
        data(b"", Some("")),
        data(&big, Some("application/octet-stream")),
        data(&big, None),
        data(b"\0\x01\xfe\xff", Some("text/plain; charset=utf-8")),
    ];
    let refs: Vec<StateDataRef> = inputs
        .iter()
        .map(|d| s.put_state(d.clone()).expect("put_state"))
        .collect();
    for (input, r) in inputs.iter().zip(&refs) {
        let got = s.get_state(r).expect("get_state");
        assert_eq!(got.bytes.len(), input.bytes.len());
        assert!(got == *input, "state under {r} came back different");
    }
    // Reading twice gives the same answer (no consuming reads, no caching bugs).
    assert_eq!(s.get_state(&refs[2]).expect("get_state"), inputs[2]);
}

/// The same `Writes` applied again (a retry of a write that landed, say after a timeout):
/// state and nodes it stored are already there and stay intact; a ref move in it fails its
/// compare-and-swap, and that failure takes back nothing the first apply stored.
fn writes_applied_twice_change_nothing_twice(h: &Harness) {
    let s = h.store();
    let mut batch = stategraph::Batch::new(s);
    let d = batch.put_state(data(b"payload", Some("text/plain")));
    let n = batch
        .commit_node(vec![], d, meta(t(0), Some("n")))
        .expect("commit");
    batch.set_ref("main", None, &n).expect("set_ref");
    let writes = batch.into_writes();
    s.apply(writes.clone()).expect("first apply");
    assert!(matches!(
        s.apply(writes),
        Err(StateStoreError::RefConflict { .. })
    ));
    assert_eq!(s.get_state(&d).expect("state kept").bytes, b"payload");
    let snapshot = s.snapshot(&n).expect("snapshot");
    assert_eq!(
        s.load_snapshot(&snapshot).expect("load").state.bytes,
        b"payload"
    );

    // Without a ref move, the retry succeeds and stores nothing new.
    let mut batch = stategraph::Batch::new(s);
    let d2 = batch.put_state(data(b"second", None));
    let n2 = batch
        .commit_node(vec![n], d2, meta(t(1), Some("n2")))
        .expect("commit");
    let writes = batch.into_writes();
    s.apply(writes.clone()).expect("first apply");
    s.apply(writes).expect("the same writes again");
    assert_eq!(s.get_state(&d2).expect("state").bytes, b"second");
    assert_eq!(s.get_node(&n2).expect("node").data_ref, d2);
    assert_eq!(s.ref_log("main").expect("ref log").len(), 1);
}

fn put_returns_fresh_refs(h: &Harness) {
    let s = h.store();
    let a = s.put_state(data(b"same", None)).expect("put");
    let b = s.put_state(data(b"same", None)).expect("put");
    let c = s.put_state(data(b"same", Some("text/plain"))).expect("put");
    assert_ne!(a, b, "identical bytes must still get a new ref");
    assert_ne!(a, c);
    assert_ne!(b, c);
    for r in [a, b, c] {
        assert_eq!(r.as_uuid().get_version_num(), 7, "{r} is not a v7 uuid");
    }
    assert_eq!(s.get_state(&a).expect("get").content_type, None);
    assert_eq!(s.get_state(&b).expect("get").bytes, b"same");
    assert_eq!(
        s.get_state(&c).expect("get").content_type.as_deref(),
        Some("text/plain"),
        "each ref keeps its own content type even though the bytes are shared"
    );
}

// ---------------------------------------------------------------------------------------------
// Committing

fn commit_is_idempotent(h: &Harness) {
    let s = h.store();
    let first_ref = s
        .put_state(data(b"state", Some("text/plain")))
        .expect("put");
    let m = meta(T0, Some("tick"));
    let id = s.commit_node(vec![], first_ref, m.clone()).expect("commit");
    let rows_before = h.rows();
    assert_eq!(
        s.commit_node(vec![], first_ref, m.clone())
            .expect("recommit"),
        id
    );
    // The same bytes and content type under a second ref hash to the same node.
    let second_ref = s
        .put_state(data(b"state", Some("text/plain")))
        .expect("put");
    let rows_after_put = h.rows();
    assert_eq!(
        s.commit_node(vec![], second_ref, m.clone())
            .expect("commit"),
        id
    );
    let node = s.get_node(&id).expect("get_node");
    assert_eq!(node.data_ref, first_ref, "the first write of a node stays");
    assert_eq!(node.metadata, m);
    assert_eq!(h.rows(), rows_after_put, "recommitting wrote rows");
    if let (Some(before), Some(after)) = (rows_before, rows_after_put) {
        // Only the second put (one state_data row, no new blob) happened in between.
        assert_eq!(before[0], after[0], "identical bytes were stored twice");
        assert_eq!(before[1].1 + 1, after[1].1);
    }
    // Idempotent for children too: same parent list, same id.
    let child_ref = s.put_state(data(b"child", None)).expect("put");
    let child = s
        .commit_node(vec![id], child_ref, meta(t(1), None))
        .expect("commit");
    assert_eq!(
        s.commit_node(vec![id], child_ref, meta(t(1), None))
            .expect("recommit"),
        child
    );
}

fn commit_id_is_the_codec_hash(h: &Harness) {
    let s = h.store();
    let (_, root) = commit_bytes(s, vec![], b"root", None, meta(T0, None));
    let (r, child) = commit_bytes(
        s,
        vec![root],
        b"child",
        Some("application/json"),
        meta(t(5), Some("c")),
    );
    let expected = codec::node_id(
        &[root],
        &ContentHash::of(b"child"),
        Some("application/json"),
        &meta(t(5), Some("c")),
    );
    assert_eq!(child, expected);
    let node = s.get_node(&child).expect("get_node");
    assert_eq!(node.id, child);
    assert_eq!(node.parent_ids, vec![root]);
    assert_eq!(node.data_ref, r);
    assert_eq!(node.data_hash, ContentHash::of(b"child"));
    assert_eq!(node.content_type.as_deref(), Some("application/json"));
}

fn every_input_changes_the_id(h: &Harness) {
    let s = h.store();
    let plain = s.put_state(data(b"bytes", None)).expect("put");
    let typed = s
        .put_state(data(b"bytes", Some("text/plain")))
        .expect("put");
    let empty_typed = s.put_state(data(b"bytes", Some(""))).expect("put");
    let other = s.put_state(data(b"bytez", None)).expect("put");
    let commit = |parents: Vec<StateNodeId>, r: StateDataRef, m: StateMetadata| {
        s.commit_node(parents, r, m).expect("commit")
    };
    let a = commit(vec![], plain, meta(T0, None));
    let b = commit(vec![], plain, meta(T0, Some("x")));
    let ids = [
        a,
        b,
        commit(vec![], plain, meta(T0, Some("y"))),
        commit(vec![], plain, meta(T0, Some(""))),
        commit(vec![], plain, meta(t(1), None)),
        commit(vec![], plain, meta(t(-1), None)),
        commit(vec![], typed, meta(T0, None)),
        commit(vec![], empty_typed, meta(T0, None)),
        commit(vec![], other, meta(T0, None)),
        commit(vec![a], plain, meta(T0, None)),
        commit(vec![a, b], plain, meta(T0, None)),
        commit(vec![b, a], plain, meta(T0, None)),
    ];
    for (i, x) in ids.iter().enumerate() {
        for (j, y) in ids.iter().enumerate().skip(i + 1) {
            assert_ne!(x, y, "inputs {i} and {j} produced the same id");
        }
    }
    let ab = s.get_node(&ids[10]).expect("get_node");
    let ba = s.get_node(&ids[11]).expect("get_node");
    assert_eq!(ab.parent_ids, vec![a, b], "parent order is kept");
    assert_eq!(ba.parent_ids, vec![b, a], "parent order is kept");
}

fn created_at_round_trips(h: &Harness) {
    let s = h.store();
    let r = s.put_state(data(b"t", None)).expect("put");
    let times = [
        T0,
        datetime!(2024-01-02 03:04:05.999999999 UTC),
        datetime!(2024-01-02 03:04:05.000000001 +05:30),
        datetime!(2024-01-02 03:04:05.123456789 -08:00),
        datetime!(2024-01-02 03:04:05.5 +01:02:03),
        datetime!(1970-01-01 00:00:00 UTC),
        datetime!(1969-12-31 23:59:59.999999999 UTC),
        datetime!(1969-12-31 23:59:59.000000001 UTC),
        datetime!(1969-07-20 20:17:40.5 -04:00),
        datetime!(1900-02-28 12:00:00.000000007 UTC),
        datetime!(-9999-01-01 00:00:00 UTC),
        datetime!(9999-12-31 23:59:59.999999999 UTC),
    ];
    for at in times {
        let m = meta(at, Some("when"));
        let id = s.commit_node(vec![], r, m.clone()).expect("commit");
        assert_eq!(id, codec::node_id(&[], &ContentHash::of(b"t"), None, &m));
        let back = s.get_node(&id).expect("get_node").metadata.created_at;
        assert_eq!(
            back.unix_timestamp_nanos(),
            at.unix_timestamp_nanos(),
            "{at} came back as {back}"
        );
        assert_eq!(back, at);
        assert_eq!(
            back.offset(),
            time::UtcOffset::UTC,
            "{at} came back as {back}"
        );
    }
    // The same instant written with another offset is the same node.
    let utc = s.commit_node(vec![], r, meta(T0, None)).expect("commit");
    let shifted = T0.to_offset(offset!(+09:00));
    assert_eq!(
        s.commit_node(vec![], r, meta(shifted, None))
            .expect("commit"),
        utc
    );
}

/// A time `time` accepts but whose UTC instant it cannot represent (the last instant of year
/// 9999, one hour west of UTC) is refused as input, alone, inside a batch (which then writes
/// nothing) and in an imported package, instead of panicking or storing a node that cannot
/// be read back.
fn created_at_past_the_utc_range_is_refused(h: &Harness) {
    let s = h.store();
    let r = s.put_state(data(b"t", None)).expect("put");
    let late = datetime!(9999-12-31 23:59:59.999999999 -01:00);
    let refused = |e: StateStoreError| {
        assert!(matches!(e, StateStoreError::InvalidInput { .. }), "{e:?}");
        assert!(e.to_string().contains("UTC"), "{e}");
    };
    refused(s.commit_node(vec![], r, meta(late, None)).unwrap_err());
    let mut batch = stategraph::Batch::new(s);
    let ok = batch
        .commit_node(vec![], r, meta(T0, None))
        .expect("commit");
    batch.set_ref("main", None, &ok).expect("set_ref");
    let result = batch
        .commit_node(vec![ok], r, meta(late, None))
        .and_then(|_| batch.commit());
    refused(result.unwrap_err());
    assert_eq!(
        s.get_ref("main").expect("get_ref"),
        None,
        "nothing of the batch"
    );
    assert!(s.ref_log("main").expect("ref log").is_empty());

    let bytes = b"from far away".to_vec();
    let metadata = meta(late, None);
    let node_id = codec::node_id(&[], &ContentHash::of(&bytes), None, &metadata);
    let package = SnapshotPackage {
        snapshot_id: codec::snapshot_id(&node_id),
        node_id,
        parent_ids: vec![],
        generation: 1,
        content_type: None,
        metadata,
        bytes,
    };
    refused(package.verify().unwrap_err());
    refused(s.import_snapshot(&package).unwrap_err());
    assert!(s.get_node(&node_id).unwrap_err().is_missing());
}

/// A package whose node has the given parents (none of them stored) and claimed generation.
fn package_with_generation(parents: Vec<StateNodeId>, generation: u64) -> SnapshotPackage {
    let bytes = b"far away".to_vec();
    let metadata = meta(T0, Some("imported"));
    let node_id = codec::node_id(&parents, &ContentHash::of(&bytes), None, &metadata);
    SnapshotPackage {
        node_id,
        snapshot_id: codec::snapshot_id(&node_id),
        parent_ids: parents,
        content_type: None,
        metadata,
        generation,
        bytes,
    }
}

fn implausible_generations_are_refused(h: &Harness) {
    let s = h.store();
    let far = vec![StateNodeId::from_bytes([0xdd; 32])];
    for (parents, generation) in [
        (vec![], 2),
        (far.clone(), 1),
        (far.clone(), u64::MAX),
        (far.clone(), i64::MAX as u64 + 1),
        (far.clone(), i64::MAX as u64),
        (far.clone(), (1 << 62) + 1),
    ] {
        let err = s
            .import_snapshot(&package_with_generation(parents, generation))
            .unwrap_err();
        assert!(
            matches!(err, StateStoreError::InvalidInput { .. }),
            "{generation}: {err}"
        );
    }
    assert_eq!(s.list_snapshots().expect("list"), vec![]);
    // The largest claim imports, and history can still grow on top of it.
    let top = package_with_generation(far, 1 << 62);
    s.import_snapshot(&top).expect("import");
    assert_eq!(s.get_node(&top.node_id).expect("node").generation, 1 << 62);
    let r = s.put_state(data(b"child", None)).expect("put");
    let child = s
        .commit_node(vec![top.node_id], r, meta(T0, None))
        .expect("a child of the largest claim");
    assert_eq!(s.get_node(&child).expect("child").generation, (1 << 62) + 1);
    let above = package_with_generation(vec![top.node_id], 2);
    s.import_snapshot(&above).expect("import on top of it");
    assert_eq!(
        s.get_node(&above.node_id).expect("node").generation,
        (1 << 62) + 1
    );
    assert_eq!(s.list_snapshots().expect("list").len(), 2);
    // This store's own work on top of the claim still exports, and another store takes it.
    let snapshot = s.snapshot(&child).expect("snapshot");
    let package = s.export_snapshot(&snapshot).expect("export");
    assert_eq!(package.generation, 1 << 62);
    let other = h.store();
    other
        .import_snapshot(&package)
        .expect("import into another store");
    assert!(other.get_node(&child).expect("node").generation >= 1 << 62);
}

/// An imported snapshot is listed with its node's time (a package does not carry when the
/// snapshot was taken): imported in any order, snapshots list along their history, and
/// importing one again keeps its time.
fn imported_snapshots_list_in_history_order(h: &Harness) {
    let source = stategraph::InMemoryStateStore::new();
    let mut head: Option<StateNodeId> = None;
    let mut packages = Vec::new();
    for i in 0..3 {
        let r = source
            .put_state(data(format!("tick {i}").as_bytes(), None))
            .expect("put");
        let node = source
            .commit_node(
                head.into_iter().collect(),
                r,
                meta(T0 + Duration::from_secs(i), None),
            )
            .expect("commit");
        let snapshot = source.snapshot(&node).expect("snapshot");
        packages.push(source.export_snapshot(&snapshot).expect("export"));
        head = Some(node);
    }
    let s = h.store();
    for package in packages.iter().rev() {
        s.import_snapshot(package).expect("import");
    }
    let listed = s.list_snapshots().expect("list");
    let order: Vec<_> = listed.iter().map(|l| l.node_id).collect();
    let expected: Vec<_> = packages.iter().map(|p| p.node_id).collect();
    assert_eq!(order, expected, "oldest first, by their nodes' times");
    for (l, p) in listed.iter().zip(&packages) {
        assert_eq!(l.created_at, p.metadata.created_at);
    }
    s.import_snapshot(&packages[0]).expect("again");
    assert_eq!(s.list_snapshots().expect("list"), listed);
}

/// `~N` past a root, or onto a parent beyond a shallow boundary, is an invalid revision that
/// says which (not a bare "no node").
fn revisions_past_the_stored_history_say_why(h: &Harness) {
    let s = h.store();
    let far = StateNodeId::from_bytes([0xdd; 32]);
    let top = package_with_generation(vec![far], 7);
    s.import_snapshot(&top).expect("import");
    let err = s
        .resolve(&format!("{}~1", top.node_id.to_hex()))
        .unwrap_err();
    assert!(
        matches!(err, StateStoreError::InvalidInput { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("is not stored here"), "{err}");
    let r = s.put_state(data(b"root", None)).expect("put");
    let root = s.commit_node(vec![], r, meta(T0, None)).expect("root");
    let r = s.put_state(data(b"child", None)).expect("put");
    let child = s.commit_node(vec![root], r, meta(T0, None)).expect("child");
    let err = s.resolve(&format!("{}~3", child.to_hex())).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "goes back past a root: {} (1 step(s) back)",
            root.to_short_hex(12)
        )),
        "{err}"
    );
}

/// Another store holding a chain with these labels (oldest first), to export packages from.
fn sender_chain(labels: &[&str]) -> (InMemoryStateStore, Vec<StateNodeId>) {
    let sender = InMemoryStateStore::new();
    let mut chain: Vec<StateNodeId> = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let r = sender.put_state(data(label.as_bytes(), None)).expect("put");
        let parents = chain.last().copied().into_iter().collect();
        chain.push(
            sender
                .commit_node(parents, r, meta(t(i as i64), Some(label)))
                .expect("commit"),
        );
    }
    (sender, chain)
}

/// The package of a snapshot of `node` (generation `generation` at the sender), claiming
/// `claim` instead.
fn claiming(
    sender: &InMemoryStateStore,
    node: &StateNodeId,
    generation: u64,
    claim: u64,
) -> SnapshotPackage {
    let mut p = sender
        .export_snapshot(&sender.snapshot(node).expect("snapshot"))
        .expect("export");
    assert_eq!(p.generation, generation);
    p.generation = claim;
    p
}

/// Packages claim generations their ids do not cover. A claim that is wrong (damaged, or
/// forged) must neither block the ancestors that arrive later nor outlive them: a node whose
/// parents are all stored always has 1 + its largest parent's generation, and once the
/// whole history is stored every generation is exact.
fn wrong_generation_claims_settle_when_the_ancestors_arrive(h: &Harness) {
    let (sender, chain) = sender_chain(&["a", "b", "c", "d"]);
    let package = |i: usize, claim: u64| claiming(&sender, &chain[i], i as u64 + 1, claim);
    let s = h.store();
    // d claims too much (40), and a node is committed on top of it here; then c claims too
    // little (2). The claims disagree and neither can be checked yet: c, below a boundary
    // itself, takes the generation under which d keeps its own, so nothing else moves.
    s.import_snapshot(&package(3, 40)).expect("import d");
    let r = s.put_state(data(b"local", None)).expect("put");
    let local = s
        .commit_node(vec![chain[3]], r, meta(t(9), Some("local")))
        .expect("commit on top");
    let generation = |id: &StateNodeId| s.get_node(id).expect("node").generation;
    assert_eq!(generation(&local), 41);
    s.import_snapshot(&package(2, 2)).expect("import c");
    assert_eq!(
        [chain[2], chain[3], local].map(|id| generation(&id)),
        [39, 40, 41]
    );
    // b arrives (its parent a still missing), and fits below c the same way.
    s.import_snapshot(&package(1, 2)).expect("import b");
    assert_eq!(
        [chain[1], chain[2], chain[3], local].map(|id| generation(&id)),
        [38, 39, 40, 41]
    );
    // The root a (generation 1, the one claim that is checked) closes the boundary: every
    // generation is recomputed from it.
    s.import_snapshot(&package(0, 1)).expect("import a");
    assert_eq!(
        [chain[0], chain[1], chain[2], chain[3], local].map(|id| generation(&id)),
        [1, 2, 3, 4, 5]
    );
    assert!(s.is_ancestor(&chain[0], &local).expect("ancestry"));
    let log: Vec<StateNodeId> = s
        .log(&LogOptions::new().from(local))
        .expect("log")
        .map(|n| n.expect("node").id)
        .collect();
    assert_eq!(log, [local, chain[3], chain[2], chain[1], chain[0]]);
    if let Some((path, _)) = &h.sqlite {
        let report = open_normal(path).verify(|_| {}).expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.shallow_edges, 0);
    }
}

/// A package whose generation claim was damaged in transit (the one field no id covers, so
/// it imports) sits below a boundary with a generation that disagrees with a node imported
/// on the other side of the missing history. Ancestry across that missing history has no
/// answer here, and must say so (`ShallowHistory`), never a confident "no" drawn from the
/// wrong claim; once the missing node arrives, the answer is "yes".
fn damaged_claim_and_ancestry_across_a_boundary(h: &Harness) {
    let (sender, chain) = sender_chain(&["a", "b", "c", "d"]);
    let package = |i: usize, claim: u64| claiming(&sender, &chain[i], i as u64 + 1, claim);
    let s = h.store();
    // b's claim 2 damaged to 34 (one flipped bit); d honest (4); a and c not here.
    s.import_snapshot(&package(1, 34)).expect("import b");
    s.import_snapshot(&package(3, 4)).expect("import d");
    let (b, d) = (chain[1], chain[3]);
    for answer in [
        s.is_ancestor(&b, &d),
        s.merge_base(&b, &d).map(|m| m == Some(b)),
    ] {
        match answer {
            Err(StateStoreError::ShallowHistory { .. }) | Ok(true) => {}
            other => panic!("b is an ancestor of d, but the store said {other:?}"),
        }
    }
    s.import_snapshot(&package(2, 3)).expect("import c");
    assert!(s.is_ancestor(&b, &d).expect("is_ancestor"));
    assert_eq!(s.merge_base(&b, &d).expect("merge base"), Some(b));
}

/// Forged generation claims, imported in orders that make them contradict each other (newest
/// first, newest first in pairs, shuffled) into a history with forks and merges: after every
/// import each node whose parents are all stored has 1 + its largest parent's generation and
/// every other node is above its stored parents; once everything is stored, every
/// generation is exact, and walks see the history as the sender does.
fn forged_generation_claims_in_any_order_keep_generations_checkable(h: &Harness) {
    let n = 90;
    let newest_first: Vec<usize> = (0..n).rev().collect();
    let mut pairs = vec![n - 1];
    pairs.extend(
        (0..n - 1)
            .rev()
            .collect::<Vec<_>>()
            .chunks(2)
            .flat_map(|c| c.iter().rev()),
    );
    let shuffled: Vec<usize> = (0..n).map(|i| (i * 37 + 11) % n).collect();
    let store = h.store();
    for (run, (order, claim)) in [
        (&newest_first, 2),
        (&pairs, 2),
        (&shuffled, 2),
        (&newest_first, 1 << 40),
        (&shuffled, 1 << 40),
    ]
    .into_iter()
    .enumerate()
    {
        // A history of its own for each run: forks every few nodes, a merge every fifth.
        let sender = InMemoryStateStore::new();
        let mut nodes: Vec<StateNodeId> = Vec::new();
        for i in 0..n {
            let mut parents = Vec::new();
            if i > 0 {
                parents.push(nodes[i - 1 - (i * 7) % i.min(4)]);
            }
            if i > 5 && i % 5 == 0 {
                let other = nodes[i - 3 - i % 3];
                if !parents.contains(&other) {
                    parents.push(other);
                }
            }
            let r = sender
                .put_state(data(format!("{run}/{i}").as_bytes(), None))
                .expect("put");
            nodes.push(
                sender
                    .commit_node(parents, r, meta(t(i as i64), None))
                    .expect("commit"),
            );
        }
        for &i in order {
            let snapshot = sender.snapshot(&nodes[i]).expect("snapshot");
            let mut package = sender.export_snapshot(&snapshot).expect("export");
            if !package.parent_ids.is_empty() {
                package.generation = claim + (i as u64 % 3);
            }
            store.import_snapshot(&package).expect("import");
            for id in &nodes {
                let Ok(node) = store.get_node(id) else {
                    continue;
                };
                let stored: Vec<u64> = node
                    .parent_ids
                    .iter()
                    .filter_map(|p| store.get_node(p).ok().map(|p| p.generation))
                    .collect();
                let above = stored.iter().max().map_or(1, |g| g + 1);
                if stored.len() == node.parent_ids.len() {
                    assert_eq!(node.generation, above, "{id}: all its parents are stored");
                } else {
                    assert!(node.generation >= above.max(2), "{id}: below its parents");
                }
            }
        }
        for id in &nodes {
            assert_eq!(
                store.get_node(id).expect("node").generation,
                sender.get_node(id).expect("node").generation
            );
        }
        let log = |s: &dyn StateStore| -> Vec<StateNodeId> {
            s.log(&LogOptions::new().from(nodes[n - 1]))
                .expect("log")
                .map(|n| n.expect("node").id)
                .collect()
        };
        assert_eq!(log(store), log(&sender));
    }
    if let Some((path, _)) = &h.sqlite {
        let report = open_normal(path).verify(|_| {}).expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
    }
}

fn strings_round_trip_exactly(h: &Harness) {
    let s = h.store();
    for (i, text) in [
        "",
        " ",
        "a\0b",
        "état ✓ 🚀",
        "e\u{301}",
        "line\nbreak",
        "\u{feff}bom",
    ]
    .into_iter()
    .enumerate()
    {
        let r = s.put_state(data(text.as_bytes(), Some(text))).expect("put");
        let got = s.get_state(&r).expect("get_state");
        assert_eq!(got.content_type.as_deref(), Some(text));
        let m = meta(t(i as i64), Some(text));
        let id = s.commit_node(vec![], r, m.clone()).expect("commit");
        let node = s.get_node(&id).expect("get_node");
        assert_eq!(node.metadata.label.as_deref(), Some(text));
        assert_eq!(node.content_type.as_deref(), Some(text));
        assert_eq!(node.metadata, m);
    }
    // None and Some("") stay distinct.
    let r = s.put_state(data(b"n", None)).expect("put");
    let id = s.commit_node(vec![], r, meta(T0, None)).expect("commit");
    let node = s.get_node(&id).expect("get_node");
    assert_eq!(node.metadata.label, None);
    assert_eq!(node.content_type, None);
}

fn generation_counts_the_longest_path(h: &Harness) {
    let s = h.store();
    let c = |parents: Vec<StateNodeId>, n: i64| {
        commit_bytes(s, parents, &n.to_le_bytes(), None, meta(t(n), None)).1
    };
    let gen_of = |id: &StateNodeId| s.get_node(id).expect("get_node").generation;
    let root = c(vec![], 0);
    let other_root = c(vec![], 1);
    let child = c(vec![root], 2);
    let grandchild = c(vec![child], 3);
    let merge_roots = c(vec![root, other_root], 4);
    let merge_deep_first = c(vec![grandchild, other_root], 5);
    let merge_deep_last = c(vec![other_root, grandchild], 6);
    let merge3 = c(vec![merge_roots, child, merge_deep_first], 7);
    assert_eq!(gen_of(&root), 1);
    assert_eq!(gen_of(&other_root), 1);
    assert_eq!(gen_of(&child), 2);
    assert_eq!(gen_of(&grandchild), 3);
    assert_eq!(gen_of(&merge_roots), 2);
    assert_eq!(gen_of(&merge_deep_first), 4);
    assert_eq!(gen_of(&merge_deep_last), 4);
    assert_eq!(gen_of(&merge3), 5);
}

// ---------------------------------------------------------------------------------------------
// Failures write nothing

fn commit_with_unknown_data_ref_fails_cleanly(h: &Harness) {
    let s = h.store();
    let (_, root) = commit_bytes(s, vec![], b"root", None, meta(T0, None));
    let before = h.rows();
    let unknown = StateDataRef::new_v7();
    let err = s
        .commit_node(vec![root], unknown, meta(t(1), None))
        .expect_err("unknown data ref must fail");
    match &err {
        StateStoreError::MissingState { data_ref } => assert_eq!(*data_ref, unknown),
        other => panic!("expected MissingState, got {other:?}"),
    }
    assert!(err.is_missing());
    assert_one_line_naming(&err, &unknown);
    assert_eq!(h.rows(), before, "a failed commit wrote rows");
    assert!(matches!(
        s.get_state(&unknown),
        Err(StateStoreError::MissingState { .. })
    ));
}

/// `commit_state` is `put_state` + `commit_node` in one transaction: the same id, and on a
/// failing commit not even the state is stored.
fn commit_state_is_put_and_commit_atomically(h: &Harness) {
    let s = h.store();
    let (_, root) = commit_bytes(s, vec![], b"root", None, meta(T0, None));
    let tick = || {
        s.commit_state(
            vec![root],
            data(b"tick", Some("t/x")),
            meta(t(1), Some("one")),
        )
        .expect("commit_state")
    };
    let (data_ref, node) = tick();
    let two_calls = InMemoryStateStore::new();
    let (_, root2) = commit_bytes(&two_calls, vec![], b"root", None, meta(T0, None));
    let r = two_calls
        .put_state(data(b"tick", Some("t/x")))
        .expect("put");
    let same = two_calls
        .commit_node(vec![root2], r, meta(t(1), Some("one")))
        .expect("commit");
    assert_eq!(node, same, "one transaction or two, the id is the same");
    assert_eq!(s.get_state(&data_ref).expect("state").bytes, b"tick");
    assert_eq!(s.get_node(&node).expect("node").data_ref, data_ref);

    // Again: the same node, which keeps its first data ref; the new ref reads the same bytes.
    let (again_ref, again) = tick();
    assert_eq!(again, node);
    assert_ne!(again_ref, data_ref);
    assert_eq!(s.get_node(&node).expect("node").data_ref, data_ref);
    assert_eq!(s.get_state(&again_ref).expect("state").bytes, b"tick");

    let before = h.rows();
    let ghost = StateNodeId::from_bytes([0x5a; 32]);
    let err = s
        .commit_state(vec![ghost], data(b"orphan", None), meta(t(2), None))
        .expect_err("unknown parent");
    assert!(
        matches!(err, StateStoreError::MissingNode { id } if id == ghost),
        "{err}"
    );
    assert_eq!(
        h.rows(),
        before,
        "a failed commit_state wrote rows (the state, say)"
    );
}

fn commit_with_unknown_parent_fails_cleanly(h: &Harness) {
    let s = h.store();
    let (r, known) = commit_bytes(s, vec![], b"root", None, meta(T0, None));
    let unknown = StateNodeId::from_bytes([0xab; 32]);
    let before = h.rows();
    for parents in [vec![unknown], vec![known, unknown], vec![unknown, known]] {
        let m = meta(t(1), Some("orphan"));
        let would_be = codec::node_id(&parents, &ContentHash::of(b"root"), None, &m);
        let err = s
            .commit_node(parents.clone(), r, m)
            .expect_err("unknown parent must fail");
        match &err {
            StateStoreError::MissingNode { id } => assert_eq!(*id, unknown),
            other => panic!("expected MissingNode for {parents:?}, got {other:?}"),
        }
        assert_one_line_naming(&err, &unknown);
        assert!(
            matches!(s.get_node(&would_be), Err(StateStoreError::MissingNode { id }) if id == would_be),
            "the node of a failed commit is retrievable"
        );
    }
    assert_eq!(h.rows(), before, "a failed commit wrote rows");
    // The store is not wedged: a valid commit still works.
    s.commit_node(vec![known], r, meta(t(2), None))
        .expect("commit after failures");
}

fn commit_with_duplicate_parents_fails_cleanly(h: &Harness) {
    let s = h.store();
    let (r, a) = commit_bytes(s, vec![], b"a", None, meta(T0, None));
    let (_, b) = commit_bytes(s, vec![], b"b", None, meta(T0, None));
    let before = h.rows();
    for parents in [vec![a, a], vec![a, b, a], vec![b, a, b]] {
        let m = meta(t(1), None);
        let would_be = codec::node_id(&parents, &ContentHash::of(b"a"), None, &m);
        let err = s
            .commit_node(parents.clone(), r, m)
            .expect_err("duplicate parents must fail");
        assert!(
            matches!(err, StateStoreError::InvalidInput { .. }),
            "expected InvalidInput for {parents:?}, got {err:?}"
        );
        assert!(!err.to_string().contains('\n'));
        assert!(matches!(
            s.get_node(&would_be),
            Err(StateStoreError::MissingNode { .. })
        ));
    }
    assert_eq!(h.rows(), before, "a failed commit wrote rows");
}

fn lookups_of_unknown_ids_are_typed(h: &Harness) {
    let s = h.store();
    // Make the store non-empty so "unknown" is not the same as "empty store".
    let (_, root) = commit_bytes(s, vec![], b"x", None, meta(T0, None));
    s.snapshot(&root).expect("snapshot");

    let node = StateNodeId::from_bytes([7; 32]);
    let err = s.get_node(&node).expect_err("unknown node");
    assert!(
        matches!(err, StateStoreError::MissingNode { id } if id == node),
        "{err:?}"
    );
    assert!(err.is_missing() && !err.is_corrupt());
    assert_one_line_naming(&err, &node);

    let snap = SnapshotId::from_bytes([8; 32]);
    let err = s.load_snapshot(&snap).expect_err("unknown snapshot");
    assert!(
        matches!(err, StateStoreError::MissingSnapshot { id } if id == snap),
        "{err:?}"
    );
    assert!(err.is_missing());
    assert_one_line_naming(&err, &snap);

    let data_ref = StateDataRef::new_v7();
    let err = s.get_state(&data_ref).expect_err("unknown state");
    assert!(
        matches!(err, StateStoreError::MissingState { data_ref: r } if r == data_ref),
        "{err:?}"
    );
    assert!(err.is_missing());
    assert_one_line_naming(&err, &data_ref);
}

fn state_prefix_is_the_start_of_the_bytes(h: &Harness) {
    let s = h.store();
    // Larger than a SQLite page, so the blob spans overflow pages.
    let big = random_bytes(3, 100_003);
    let big_ref = s
        .put_state(data(&big, Some("application/x-big")))
        .expect("put");
    for n in [0, 1, 4095, 4096, 100_002, 100_003, 100_004, usize::MAX] {
        let prefix = s.state_prefix(&big_ref, n).expect("prefix");
        assert!(
            prefix == big[..n.min(big.len())],
            "prefix of {n} bytes differs"
        );
    }
    // The same bytes under a second ref are the same blob; an empty state has an empty prefix.
    let again = s.put_state(data(&big, None)).expect("put");
    assert!(s.state_prefix(&again, 10).expect("prefix") == big[..10]);
    let empty = s.put_state(data(b"", None)).expect("put");
    assert_eq!(s.state_prefix(&empty, 10).expect("empty"), b"");

    let data_ref = StateDataRef::new_v7();
    let err = s.state_prefix(&data_ref, 10).expect_err("unknown state");
    assert!(
        matches!(err, StateStoreError::MissingState { data_ref: r } if r == data_ref),
        "{err:?}"
    );
}

/// What a store holds that an import could change, for `nodes`: each node (without its data
/// ref, a fresh UUID per store) with its state bytes, or the error reading it; the
/// snapshots; the refs; and for SQLite the row count of every table an import writes.
fn import_view(
    s: &dyn StateStore,
    sqlite: Option<&std::path::Path>,
    nodes: &[StateNodeId],
) -> String {
    let nodes: Vec<String> = nodes
        .iter()
        .map(|id| match s.get_node(id) {
            Ok(n) => format!(
                "{:?}",
                (
                    n.id,
                    n.parent_ids,
                    n.data_hash,
                    n.content_type,
                    n.metadata,
                    n.generation,
                    s.get_state(&n.data_ref).map(|d| d.bytes),
                )
            ),
            Err(e) => e.to_string(),
        })
        .collect();
    let rows = sqlite.map(|path| {
        [
            "blobs",
            "state_data",
            "state_nodes",
            "node_children",
            "shallow_edges",
            "snapshots",
        ]
        .map(|table| count_rows(path, table))
    });
    format!(
        "{nodes:#?}\n{:?}\n{:?}\n{rows:?}",
        s.list_snapshots().expect("list snapshots"),
        s.list_refs("").expect("list refs"),
    )
}

/// A package damaged in transit, by every cut and every change of one byte of its encoding,
/// is refused with `InvalidInput`, or else decodes to the same package but for its generation
/// (the one field no id covers); imported, that stores exactly what the undamaged package
/// does, since its parent is stored here. Tampered fields of a package handed over as a
/// value are refused by the import, which then leaves the store as it was.
fn damaged_packages_are_refused_or_import_what_the_original_would(h: &Harness) {
    let sender = InMemoryStateStore::new();
    let (_, a) = commit_bytes(&sender, vec![], b"root", None, meta(T0, Some("a")));
    let (_, b) = commit_bytes(
        &sender,
        vec![a],
        b"{\"n\":1}",
        Some("t/j"),
        meta(t(1), Some("b")),
    );
    let (_, m) = commit_bytes(&sender, vec![a, b], b"merged", None, meta(t(2), None));
    let package = |id: &StateNodeId| {
        sender
            .export_snapshot(&sender.snapshot(id).expect("snapshot"))
            .expect("export")
    };
    let (pa, pb, pm) = (package(&a), package(&b), package(&m));
    let s = h.store();
    s.import_snapshot(&pa).expect("import a");
    let all = [a, b, m];
    let sqlite = h.sqlite.as_ref().map(|(path, _)| path.as_path());
    let view = || import_view(s, sqlite, &all);
    let before = view();
    // What the undamaged package of b stores, from another store that holds a.
    let reference = InMemoryStateStore::new();
    reference.import_snapshot(&pa).expect("import a");
    reference.import_snapshot(&pb).expect("import b");
    assert_eq!(reference.get_node(&b).expect("b").generation, 2);
    let as_imported = import_view(&reference, None, &all);

    let wire = pb.to_bytes();
    let mut accepted = 0;
    let mut after: Option<String> = None;
    let mut try_bytes = |bytes: &[u8]| match SnapshotPackage::from_bytes(bytes) {
        Err(e) => {
            assert!(matches!(e, StateStoreError::InvalidInput { .. }), "{e:?}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        Ok(p) => {
            assert_ne!(
                p.generation, pb.generation,
                "another encoding of the same package"
            );
            assert_eq!(
                SnapshotPackage {
                    generation: pb.generation,
                    ..p.clone()
                },
                pb
            );
            assert_eq!(s.import_snapshot(&p).expect("import"), pb.snapshot_id);
            assert_eq!(import_view(s, None, &all), as_imported);
            let now = view();
            assert_eq!(after.get_or_insert_with(|| now.clone()), &now);
            accepted += 1;
        }
    };
    for len in 0..wire.len() {
        try_bytes(&wire[..len]);
    }
    for at in 0..wire.len() {
        for value in 0..=255u8 {
            if value != wire[at] {
                let mut damaged = wire.clone();
                damaged[at] = value;
                try_bytes(&damaged);
            }
        }
    }
    assert!(
        accepted > 0,
        "some changes of the generation are plausible claims"
    );
    assert!(s.load_snapshot(&pb.snapshot_id).is_ok());

    // Tampered values, each of which verify() refuses: nothing of them is stored.
    let expected = view();
    let mut tampered: Vec<SnapshotPackage> = Vec::new();
    for p in [&pb, &pm] {
        let flipped = |bytes: &[u8]| -> Vec<Vec<u8>> {
            (0..bytes.len() * 8)
                .map(|bit| {
                    let mut v = bytes.to_vec();
                    v[bit / 8] ^= 1 << (bit % 8);
                    v
                })
                .collect()
        };
        let id = |v: Vec<u8>| <[u8; 32]>::try_from(v).expect("32 bytes");
        for v in flipped(&p.bytes) {
            tampered.push(SnapshotPackage {
                bytes: v,
                ..p.clone()
            });
        }
        for v in flipped(p.node_id.as_bytes()) {
            let node_id = StateNodeId::from_bytes(id(v));
            tampered.push(SnapshotPackage {
                node_id,
                ..p.clone()
            });
            // The snapshot id that belongs to the tampered node id, as a forger would send.
            tampered.push(SnapshotPackage {
                node_id,
                snapshot_id: codec::snapshot_id(&node_id),
                ..p.clone()
            });
        }
        for v in flipped(p.snapshot_id.as_bytes()) {
            let snapshot_id = SnapshotId::from_bytes(id(v));
            tampered.push(SnapshotPackage {
                snapshot_id,
                ..p.clone()
            });
        }
        for v in flipped(p.parent_ids[0].as_bytes()) {
            let mut q = p.clone();
            q.parent_ids[0] = StateNodeId::from_bytes(id(v));
            tampered.push(q);
        }
        let mut q = p.clone();
        q.metadata.created_at += time::Duration::nanoseconds(1);
        tampered.push(q);
        let mut q = p.clone();
        q.metadata.label = Some(q.metadata.label.clone().unwrap_or_default() + "!");
        tampered.push(q);
        let mut q = p.clone();
        q.content_type = match &p.content_type {
            Some(_) => None,
            None => Some("t/x".to_owned()),
        };
        tampered.push(q);
        let mut q = p.clone();
        q.parent_ids.push(m);
        tampered.push(q);
        let mut q = p.clone();
        q.parent_ids.pop();
        tampered.push(q);
        let mut q = p.clone();
        q.parent_ids.push(q.parent_ids[0]);
        tampered.push(q);
        let mut q = p.clone();
        q.parent_ids.reverse();
        if q.parent_ids != p.parent_ids {
            tampered.push(q);
        }
        for generation in [0, 1, (1 << 62) + 1, u64::MAX] {
            let mut q = p.clone();
            q.generation = generation;
            tampered.push(q);
        }
    }
    let mut root = pa.clone();
    root.generation = 2;
    tampered.push(root);
    for q in &tampered {
        assert_ne!(q, &pb);
        let err = s.import_snapshot(q).expect_err("a tampered package");
        assert!(
            matches!(err, StateStoreError::InvalidInput { .. }),
            "{err:?}"
        );
        assert_eq!(view(), expected, "after {q:?}");
    }
    assert_ne!(before, expected, "b was imported");
}

// ---------------------------------------------------------------------------------------------
// Snapshots

fn snapshots_are_per_node_and_idempotent(h: &Harness) {
    let s = h.store();
    let (_, a) = commit_bytes(s, vec![], b"same", Some("t/x"), meta(T0, Some("a")));
    let (_, b) = commit_bytes(s, vec![], b"same", Some("t/x"), meta(T0, Some("b")));
    let sa = s.snapshot(&a).expect("snapshot a");
    let sb = s.snapshot(&b).expect("snapshot b");
    assert_ne!(sa, sb, "nodes with identical bytes share a snapshot id");
    assert_eq!(sa, codec::snapshot_id(&a));
    assert_eq!(sb, codec::snapshot_id(&b));
    let before = h.rows();
    assert_eq!(s.snapshot(&a).expect("snapshot again"), sa);
    assert_eq!(h.rows(), before, "snapshotting twice wrote rows");

    let loaded = s.load_snapshot(&sa).expect("load a");
    assert_eq!(loaded.node_id, a);
    assert_eq!(loaded.state, data(b"same", Some("t/x")));
    assert_eq!(s.load_snapshot(&sb).expect("load b").node_id, b);
}

fn snapshot_round_trips_large_state(h: &Harness) {
    let s = h.store();
    let big = random_bytes(2, (1 << 20) + 3);
    let (_, root) = commit_bytes(s, vec![], b"root", None, meta(T0, None));
    let (_, id) = commit_bytes(s, vec![root], &big, None, meta(t(1), None));
    let snap = s.snapshot(&id).expect("snapshot");
    let loaded = s.load_snapshot(&snap).expect("load");
    assert_eq!(loaded.node_id, id);
    assert_eq!(loaded.state.content_type, None);
    assert!(loaded.state.bytes == big, "snapshot bytes differ");
}

fn snapshot_of_unknown_node_fails_cleanly(h: &Harness) {
    let s = h.store();
    commit_bytes(s, vec![], b"x", None, meta(T0, None));
    let before = h.rows();
    let unknown = StateNodeId::from_bytes([9; 32]);
    let err = s.snapshot(&unknown).expect_err("unknown node");
    assert!(
        matches!(err, StateStoreError::MissingNode { id } if id == unknown),
        "{err:?}"
    );
    assert_one_line_naming(&err, &unknown);
    assert_eq!(h.rows(), before);
    assert!(matches!(
        s.load_snapshot(&codec::snapshot_id(&unknown)),
        Err(StateStoreError::MissingSnapshot { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Sharing

fn shared_across_threads(h: &Harness) {
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn StateStore>();
    assert_send_sync::<Arc<dyn StateStore>>();

    let store: Arc<dyn StateStore> = Arc::clone(&h.store);
    let threads: Vec<_> = (0..4u8)
        .map(|n| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut ids = Vec::new();
                for i in 0..10u8 {
                    let r = store.put_state(StateData::new(vec![n, i])).expect("put");
                    let id = store
                        .commit_node(head, r, meta(t(i64::from(i)), Some("thread")))
                        .expect("commit");
                    head = vec![id];
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    for (n, thread) in threads.into_iter().enumerate() {
        let ids = thread.join().expect("thread panicked");
        for (i, id) in ids.iter().enumerate() {
            let node = store.get_node(id).expect("get_node");
            assert_eq!(node.generation, i as u64 + 1);
            assert_eq!(
                store.get_state(&node.data_ref).expect("get").bytes,
                vec![n as u8, i as u8]
            );
        }
    }
}

/// Builds a small fixed DAG (with merges, snapshots, odd times) and returns every id.
fn build_reference_dag(s: &dyn StateStore) -> (Vec<StateNodeId>, Vec<SnapshotId>) {
    let mut ids: Vec<StateNodeId> = Vec::new();
    let mut snaps = Vec::new();
    let times = [
        T0,
        datetime!(1969-12-31 23:59:59.999999999 UTC),
        datetime!(2030-05-06 07:08:09.123456789 +02:00),
    ];
    for i in 0..12usize {
        let parents = match i {
            0 | 5 => vec![],
            4 => vec![ids[3], ids[0]],
            9 => vec![ids[8], ids[5], ids[2]],
            _ => vec![ids[i - 1]],
        };
        let content_type = [None, Some("application/json"), Some("")][i % 3];
        let label = [None, Some("tick"), Some("é ✓")][(i / 3) % 3];
        let bytes = random_bytes(i as u64, i * 37);
        let (_, id) = commit_bytes(
            s,
            parents,
            &bytes,
            content_type,
            meta(times[i % 3] + time::Duration::nanoseconds(i as i64), label),
        );
        ids.push(id);
        if i % 4 == 0 {
            snaps.push(s.snapshot(&id).expect("snapshot"));
        }
    }
    (ids, snaps)
}

fn cross_backend_ids_agree(h: &Harness) {
    // The other backend: a SQLite store for the memory harnesses, a memory store for SQLite.
    let other = match h.sqlite {
        Some(_) => Harness::memory(),
        None => Harness::sqlite(),
    };
    let reference = other.store();
    let (want_ids, want_snaps) = build_reference_dag(reference);
    let (ids, snaps) = build_reference_dag(h.store());
    assert_eq!(ids, want_ids);
    assert_eq!(snaps, want_snaps);
    for id in &ids {
        let mut got = h.store().get_node(id).expect("get_node");
        let want = reference.get_node(id).expect("get_node");
        // Data refs are fresh UUIDs per store; everything else must agree.
        got.data_ref = want.data_ref;
        assert_eq!(got, want);
    }
}

/// Commits a node holding `label` as its state and label, made at `t(i)`.
fn labelled(s: &dyn StateStore, parents: &[StateNodeId], label: &str, i: i64) -> StateNodeId {
    commit_bytes(
        s,
        parents.to_vec(),
        label.as_bytes(),
        None,
        meta(t(i), Some(label)),
    )
    .1
}

/// The newest snapshot in a node's history, whichever branch of it holds it.
fn latest_snapshot_finds_the_newest_in_history(h: &Harness) {
    let s = h.store();
    let node = |parents: &[StateNodeId], label: &str, i: i64| labelled(s, parents, label, i);
    let root = node(&[], "root", 0);
    let a = node(&[root], "a", 1);
    let b = node(&[a], "b", 2);
    let c = node(&[b], "c", 3);
    let side = node(&[a], "side", 4);
    let side2 = node(&[side], "side 2", 5);
    let merge = node(&[c, side2], "merge", 6);
    let other = node(&[], "other root", 7);
    for id in [root, b, side2] {
        s.snapshot(&id).expect("snapshot");
    }
    let latest = |id: &StateNodeId| s.latest_snapshot(id).expect("latest").map(|i| i.node_id);
    assert_eq!(latest(&c), Some(b), "past a node without one");
    assert_eq!(latest(&b), Some(b), "the node itself");
    assert_eq!(latest(&a), Some(root));
    // From the merge: side 2 (generation 4) is newer than b (generation 3), though it is on
    // the second parent's side.
    assert_eq!(latest(&merge), Some(side2));
    assert_eq!(latest(&other), None, "a history without snapshots");
    // Deep histories are looked up a page at a time (16, 32, 64, ... nodes): a snapshot at
    // the edge of each page, and none at all over several pages.
    let mut chain = vec![other];
    for i in 0..200 {
        let parent = *chain.last().unwrap();
        chain.push(node(&[parent], &format!("deep {i}"), 8 + i));
    }
    let head = *chain.last().unwrap();
    assert_eq!(latest(&head), None, "200 nodes, no snapshot");
    // Depth from the head: 15 (last of the first page), 16 (first of the second), 47, 48,
    // 200 (the root of the chain, in the fifth page).
    for depth in [200, 48, 47, 16, 15] {
        let target = chain[chain.len() - 1 - depth];
        s.snapshot(&target).expect("snapshot");
        assert_eq!(latest(&head), Some(target), "snapshot {depth} nodes deep");
    }
    let err = s
        .latest_snapshot(&StateNodeId::from_bytes([9; 32]))
        .unwrap_err();
    assert!(matches!(err, StateStoreError::MissingNode { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Garbage collection

/// A store with something of every kind gc must keep, and two things it may remove.
struct GcScene {
    /// On `main`: root <- b <- head.
    chain: [StateNodeId; 3],
    /// A child of root that only a snapshot holds.
    snapshotted: StateNodeId,
    /// A child of b that a branch pointed at before it was deleted: only the ref log has it.
    logged: StateNodeId,
    /// A child of b nothing refers to, and its state.
    dangling: (StateNodeId, StateDataRef),
    /// A state no node holds.
    orphan: StateDataRef,
}

fn gc_scene(s: &dyn StateStore) -> GcScene {
    let tick = |parent: Option<StateNodeId>, label: &str| {
        let head = s.get_ref("main").expect("get_ref");
        s.commit_on(
            "main",
            head.as_ref(),
            data(label.as_bytes(), None),
            meta(t(0), Some(label)),
        )
        .map(|(_, id)| {
            assert_eq!(parent, head);
            id
        })
        .expect("commit_on")
    };
    let root = tick(None, "root");
    let b = tick(Some(root), "b");
    let head = tick(Some(b), "head");
    let (_, snapshotted) = commit_bytes(s, vec![root], b"snap", None, meta(t(1), None));
    s.snapshot(&snapshotted).expect("snapshot");
    let (_, logged) = commit_bytes(s, vec![b], b"logged", None, meta(t(2), None));
    s.set_ref("gone", None, &logged).expect("set_ref");
    s.delete_ref("gone", &logged).expect("delete_ref");
    // Shares its bytes with `b`: the bytes must stay.
    let (dangling_state, dangling) = commit_bytes(s, vec![b], b"b", None, meta(t(3), None));
    let orphan = s.put_state(data(b"orphan bytes", None)).expect("put");
    GcScene {
        chain: [root, b, head],
        snapshotted,
        logged,
        dangling: (dangling, dangling_state),
        orphan,
    }
}

fn assert_kept(s: &dyn StateStore, scene: &GcScene) {
    for id in scene
        .chain
        .iter()
        .chain([&scene.snapshotted, &scene.logged])
    {
        let node = s.get_node(id).expect("a kept node");
        s.get_state(&node.data_ref).expect("a kept node's state");
    }
    let log: Vec<StateNodeId> = s
        .log(&LogOptions::new().from_ref("main"))
        .expect("log")
        .map(|e| e.expect("entry").id)
        .collect();
    let [root, b, head] = scene.chain;
    assert_eq!(log, [head, b, root]);
}

fn gc_within_the_grace_period_removes_nothing(h: &Harness) {
    let s = h.store();
    let scene = gc_scene(s);
    let before = h.rows();
    let report = s.gc(&GcOptions::new()).expect("gc");
    assert_eq!(
        (
            report.nodes_removed,
            report.states_removed,
            report.blobs_removed
        ),
        (0, 0, 0)
    );
    assert_eq!(report.nodes_kept, 6);
    assert_eq!(h.rows(), before);
    s.get_node(&scene.dangling.0).expect("still there");
    s.get_state(&scene.orphan).expect("still there");
}

fn gc_removes_exactly_what_nothing_reaches(h: &Harness) {
    let s = h.store();
    let scene = gc_scene(s);
    let report = s.gc(&GcOptions::new().grace(Duration::ZERO)).expect("gc");
    assert_eq!(report.nodes_removed, 1, "{report:?}");
    assert_eq!(report.nodes_kept, 5);
    assert_eq!(
        report.states_removed, 2,
        "the dangling node's state and the orphan"
    );
    // The dangling node's bytes are `b`'s too; only the orphan's go.
    assert_eq!((report.blobs_removed, report.bytes_removed), (1, 12));
    assert!(!report.dry_run);
    assert_kept(s, &scene);
    let (dangling, dangling_state) = scene.dangling;
    assert!(matches!(
        s.get_node(&dangling),
        Err(StateStoreError::MissingNode { .. })
    ));
    for r in [dangling_state, scene.orphan] {
        assert!(matches!(
            s.get_state(&r),
            Err(StateStoreError::MissingState { .. })
        ));
    }
    let children = s
        .cursor()
        .expect("cursor")
        .children(&scene.chain[1])
        .expect("children");
    assert!(
        !children.contains(&dangling) && children.contains(&scene.chain[2]),
        "{children:?}"
    );
    // Removed is removed: a second run finds nothing, and the node can be committed again.
    let again = s.gc(&GcOptions::new().grace(Duration::ZERO)).expect("gc");
    assert_eq!((again.nodes_removed, again.states_removed), (0, 0));
    let (_, back) = commit_bytes(s, vec![scene.chain[1]], b"b", None, meta(t(3), None));
    assert_eq!(back, dangling, "the same content gives the same id");
    if let Some((path, _)) = &h.sqlite {
        let report = SqliteStateStore::open_read_only(path)
            .expect("open")
            .verify(|_| {})
            .expect("verify");
        assert!(report.is_ok(), "{report:?}");
    }
}

fn gc_dry_run_counts_and_changes_nothing(h: &Harness) {
    let s = h.store();
    let scene = gc_scene(s);
    let options = GcOptions::new().grace(Duration::ZERO);
    let before = h.rows();
    let dry = s.gc(&options.clone().dry_run(true)).expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(h.rows(), before);
    s.get_node(&scene.dangling.0).expect("still there");
    s.get_state(&scene.orphan).expect("still there");
    let real = s.gc(&options).expect("gc");
    let mut expected: GcReport = real;
    expected.dry_run = true;
    assert_eq!(expected, dry);
    assert_eq!(real.nodes_removed, 1);
}

fn gc_expires_the_ref_log_only_when_asked(h: &Harness) {
    let s = h.store();
    let scene = gc_scene(s);
    let grace = GcOptions::new().grace(Duration::ZERO);
    s.gc(&grace).expect("gc");
    s.get_node(&scene.logged).expect("the ref log keeps it");
    let moves =
        s.ref_log("main").expect("ref log").len() + s.ref_log("gone").expect("ref log").len();
    let report = s.gc(&grace.expire_ref_log(Duration::ZERO)).expect("gc");
    assert_eq!(report.ref_log_entries_removed, moves as u64);
    assert_eq!(report.nodes_removed, 1, "{report:?}");
    assert!(matches!(
        s.get_node(&scene.logged),
        Err(StateStoreError::MissingNode { .. })
    ));
    assert!(s.ref_log("main").expect("ref log").is_empty());
    // The refs themselves, and what they and the snapshot reach, stay.
    assert_kept_but_logged(s, &scene);
}

fn assert_kept_but_logged(s: &dyn StateStore, scene: &GcScene) {
    for id in scene.chain.iter().chain([&scene.snapshotted]) {
        s.get_node(id).expect("a kept node");
    }
    assert_eq!(s.get_ref("main").expect("get_ref"), Some(scene.chain[2]));
}

/// The first time after `after` in a later millisecond: a UUID v7 (a data ref, whose time
/// gc goes by) has millisecond precision, so things made on either side of such a wait are
/// strictly ordered against it. Waits on the clock itself, for at most a millisecond.
fn next_ms(after: time::OffsetDateTime) -> time::OffsetDateTime {
    let ms = after.unix_timestamp_nanos() / 1_000_000;
    loop {
        let now = time::OffsetDateTime::now_utc();
        if now.unix_timestamp_nanos() / 1_000_000 > ms {
            return now;
        }
        std::hint::spin_loop();
    }
}

fn gc_keeps_new_nodes_and_their_ancestors(h: &Harness) {
    let s = h.store();
    // `old` is made strictly before `mid` and `young` strictly after (see `next_ms`).
    let start = time::OffsetDateTime::now_utc();
    let (_, old_parent) = commit_bytes(s, vec![], b"old parent", None, meta(t(0), None));
    let (_, old_alone) = commit_bytes(s, vec![], b"old alone", None, meta(t(1), None));
    let mid = next_ms(next_ms(start));
    next_ms(mid);
    let (_, young) = commit_bytes(s, vec![old_parent], b"young", None, meta(t(2), None));
    let report = s.gc(&GcOptions::new().keep_newer_than(mid)).expect("gc");
    assert_eq!(report.nodes_removed, 1, "{report:?}");
    assert!(s.get_node(&old_alone).is_err());
    s.get_node(&young).expect("new");
    s.get_node(&old_parent).expect("the parent of a new node");
}

/// A node committed now on a state put long ago (a revert to a known-good state) is new: gc
/// keeps it (and its state) for its grace period, as it keeps any node between its commit
/// and the `set_ref` that makes it reachable. A `created_at` in the past, or in the future,
/// does not make such a node new.
fn gc_keeps_a_new_node_on_an_old_state(h: &Harness) {
    let s = h.store();
    let start = time::OffsetDateTime::now_utc();
    let good = s.put_state(data(b"known good", None)).expect("put");
    let mid = next_ms(next_ms(start));
    next_ms(mid);
    let revert = s
        .commit_node(vec![], good, StateMetadata::now("revert"))
        .expect("commit");
    let backdated = s
        .commit_node(vec![], good, meta(t(5), Some("backdated")))
        .expect("commit");
    let future = s
        .commit_node(
            vec![],
            good,
            meta(datetime!(2999-01-01 00:00 UTC), Some("future")),
        )
        .expect("commit");
    let report = s.gc(&GcOptions::new().keep_newer_than(mid)).expect("gc");
    assert_eq!(report.nodes_removed, 2, "{report:?}");
    s.get_node(&revert).expect("the node committed now");
    assert!(s.get_node(&backdated).unwrap_err().is_missing());
    assert!(s.get_node(&future).unwrap_err().is_missing());
    assert_eq!(s.get_state(&good).expect("its state").bytes, b"known good");
    s.set_ref("main", None, &revert)
        .expect("the writer's set_ref still works");
}

/// A node imported without its parents (a shallow boundary) goes like any other once nothing
/// reaches it, its boundary edge with it; imported again later, it joins its parent normally.
fn gc_removes_a_shallow_import_and_its_boundary(h: &Harness) {
    let (sender, chain) = sender_chain(&["a", "b", "c"]);
    let package = |i: usize| {
        sender
            .export_snapshot(&sender.snapshot(&chain[i]).expect("snapshot"))
            .expect("export")
    };
    let s = h.store();
    let gc = || s.gc(&GcOptions::new().grace(Duration::ZERO)).expect("gc");
    let c = s.import_snapshot(&package(2)).expect("import c");
    assert_eq!(gc().nodes_removed, 0, "its snapshot keeps it");
    s.delete_snapshot(&c).expect("delete snapshot");
    let report = gc();
    assert_eq!((report.nodes_removed, report.nodes_kept), (1, 0));
    assert!(s.get_node(&chain[2]).is_err());
    s.import_snapshot(&package(1)).expect("import b");
    s.import_snapshot(&package(2)).expect("import c again");
    assert_eq!(s.get_node(&chain[2]).expect("c").generation, 3);
    if let Some((path, _)) = &h.sqlite {
        let report = open_normal(path).verify(|_| {}).expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.shallow_edges, 1, "only b's edge to a");
    }
}

/// Commits `chain[0..6]` on `main`, snapshots `chain[i]` for each `i` of `snapshots`, and
/// prunes history before a cut between `chain[2]` and `chain[3]`.
fn pruned_chain(s: &dyn StateStore, snapshots: &[usize]) -> (Vec<StateNodeId>, GcReport) {
    let mut head = None;
    let mut chain = Vec::new();
    let mut prune_cut = None;
    for i in 0..6 {
        let (_, id) = s
            .commit_on(
                "main",
                head.as_ref(),
                data(format!("{i}").as_bytes(), None),
                meta(t(i), None),
            )
            .expect("commit_on");
        chain.push(id);
        head = Some(id);
        if i == 2 {
            // chain[0..=2] before the cut, chain[3..] after it.
            let cut = next_ms(next_ms(time::OffsetDateTime::now_utc()));
            next_ms(cut);
            prune_cut = Some(cut);
        }
    }
    for &i in snapshots {
        s.snapshot(&chain[i]).expect("snapshot");
    }
    let cut = prune_cut.expect("cut");
    let report = s
        .gc(&GcOptions::new().prune_history_before(cut))
        .expect("gc");
    (chain, report)
}

/// History pruning removes reachable nodes older than the cut, but not what refs and
/// snapshots point at; the nodes kept above them mark a shallow boundary.
fn gc_prunes_old_history_to_a_boundary(h: &Harness) {
    let s = h.store();
    // main's newest snapshot, chain[4], is above the cut.
    let (chain, report) = pruned_chain(s, &[1, 4]);
    // chain[0] and chain[2] go; chain[1] stays (a snapshot), chain[3] keeps a boundary.
    assert_eq!(report.nodes_removed, 2, "{report:?}");
    assert_eq!(report.boundary_nodes, 2, "{report:?}");
    // Every move from or to chain[0] or chain[2]: created at 0, 0->1, 1->2, 2->3.
    assert_eq!(report.ref_log_entries_removed, 4, "{report:?}");
    assert!(s.get_node(&chain[0]).is_err() && s.get_node(&chain[2]).is_err());
    s.get_node(&chain[1]).expect("snapshotted");
    let log = s.log(&LogOptions::new().from_ref("main")).expect("log");
    let walked: Vec<StateNodeId> = log.map(|e| e.expect("entry").id).collect();
    assert_eq!(walked, [chain[5], chain[4], chain[3]]);
    assert_eq!(s.get_node(&chain[3]).expect("kept").parent_ids, [chain[2]]);
    assert_eq!(s.ref_log("main").expect("ref log").len(), 2);
    if let Some((path, _)) = &h.sqlite {
        let report = open_normal(path).verify(|_| {}).expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.shallow_edges, 2);
    }
}

/// History pruning keeps the nodes between a ref and the newest snapshot in its history,
/// however old: a program restarting from the branch finds its restore point.
fn gc_prune_keeps_the_way_from_a_ref_to_its_snapshot(h: &Harness) {
    let s = h.store();
    let (chain, report) = pruned_chain(s, &[1]);
    // Only chain[0] goes: chain[2] is on main's way down to chain[1].
    assert_eq!(report.nodes_removed, 1, "{report:?}");
    assert_eq!(report.boundary_nodes, 1, "{report:?}");
    assert!(s.get_node(&chain[0]).is_err());
    for id in &chain[1..] {
        s.get_node(id).expect("kept");
    }
    let latest = s
        .latest_snapshot(&chain[5])
        .expect("latest")
        .expect("found");
    assert_eq!(latest.node_id, chain[1]);
}

/// After a merge, a branch's newest snapshot on its own (first-parent) line can be older
/// than one on the merged side; `latest_snapshot_in` with `first_parent` finds it, also
/// after pruning, which keeps the way down to both.
fn latest_snapshot_on_the_first_parent_line_survives_pruning(h: &Harness) {
    let s = h.store();
    let tick = |parents: &[StateNodeId], label: &str, i: i64| labelled(s, parents, label, i);
    let base = tick(&[], "base", 0);
    let mine = tick(&[base], "mine", 1);
    let mine2 = tick(&[mine], "mine 2", 2);
    let agent = tick(&[base], "agent", 3);
    let agent2 = tick(&[agent], "agent 2", 4);
    let agent3 = tick(&[agent2], "agent 3", 5);
    let merged = tick(&[mine2, agent3], "merge", 6);
    s.set_ref("main", None, &merged).expect("ref");
    s.snapshot(&mine).expect("snapshot");
    s.snapshot(&agent3).expect("snapshot");
    let own_line = LogOptions::new().from(merged).first_parent(true);
    let check = || {
        let latest = s.latest_snapshot(&merged).expect("latest").expect("found");
        assert_eq!(latest.node_id, agent3, "the whole history's newest");
        let latest = s
            .latest_snapshot_in(&own_line)
            .expect("latest")
            .expect("found");
        assert_eq!(latest.node_id, mine, "main's own line");
    };
    check();
    let cut = next_ms(next_ms(time::OffsetDateTime::now_utc()));
    next_ms(cut);
    let report = s
        .gc(&GcOptions::new().prune_history_before(cut))
        .expect("gc");
    // base, agent and agent 2 go; mine 2 stays, on main's way down to mine.
    assert_eq!(report.nodes_removed, 3, "{report:?}");
    s.get_node(&mine2).expect("kept");
    check();
}

/// Pruning keeps the parents of what a branch's walk down to its snapshot passes: a merged
/// branch without snapshots, older than that snapshot, would otherwise leave a boundary
/// above it, and a snapshot elsewhere (of a generation in between) would make the answer
/// look uncertain.
fn latest_snapshot_after_pruning_a_merged_branch(h: &Harness) {
    let s = h.store();
    let tick = |parents: &[StateNodeId], label: &str, i: i64| labelled(s, parents, label, i);
    let s0 = tick(&[], "side 0", 0);
    let s1 = tick(&[s0], "side 1", 1);
    let mut main = vec![tick(&[], "main 0", 2)];
    for i in 1..5 {
        main.push(tick(&[main[i - 1]], &format!("main {i}"), 2 + i as i64));
    }
    let merge = tick(&[main[4], s1], "merge", 7);
    let head = tick(&[merge], "head", 8);
    s.set_ref("main", None, &head).expect("ref");
    s.snapshot(&main[2]).expect("snapshot");
    // Another branch's snapshot at generation 4, between main 2 (3) and the merge (6).
    let a0 = tick(&[], "agent 0", 9);
    let a1 = tick(&[a0], "agent 1", 10);
    let a2 = tick(&[a1], "agent 2", 11);
    let a3 = tick(&[a2], "agent 3", 12);
    s.set_ref("agent", None, &a3).expect("ref");
    s.snapshot(&a3).expect("snapshot");
    let cut = next_ms(next_ms(time::OffsetDateTime::now_utc()));
    next_ms(cut);
    s.gc(&GcOptions::new().prune_history_before(cut))
        .expect("gc");
    let latest = s.latest_snapshot(&head).expect("latest").expect("found");
    assert_eq!(latest.node_id, main[2]);
    s.get_node(&s1).expect("the merge's parent is kept");
}

/// `latest_snapshot` from above a boundary that pruning left: a snapshot past it (kept, but
/// cut off from the node) could be the answer, so it says the history is shallow instead
/// of "none"; a snapshot found above the boundary, or none stored where the cut history
/// could hold one, is an answer.
fn latest_snapshot_says_when_pruning_hid_the_answer(h: &Harness) {
    let s = h.store();
    let (chain, _) = pruned_chain(s, &[1, 4]);
    // From main~2, whose parent is gone, the snapshot of chain[1] may be the answer.
    let err = s.latest_snapshot(&chain[3]).unwrap_err();
    match &err {
        StateStoreError::ShallowHistory { question, parent } => {
            assert_eq!(*question, "latest_snapshot");
            assert_eq!(*parent, chain[2]);
        }
        other => panic!("expected ShallowHistory, got {other}"),
    }
    let latest = |id: &StateNodeId| s.latest_snapshot(id).expect("latest").map(|i| i.node_id);
    assert_eq!(latest(&chain[1]), Some(chain[1]), "the snapshot's own node");
    assert_eq!(
        latest(&chain[5]),
        Some(chain[4]),
        "a snapshot above the boundary"
    );
    // With no snapshot stored that the cut history could hold, "none" is the answer.
    for info in s.list_snapshots().expect("list") {
        if info.node_id == chain[1] {
            s.delete_snapshot(&info.id).expect("delete");
        }
    }
    assert_eq!(latest(&chain[3]), None);
}

macro_rules! conformance_cases {
    ($($case:ident),* $(,)?) => {
        /// The contract against [`InMemoryStateStore`].
        mod memory {
            $(
                #[test]
                fn $case() {
                    super::$case(&super::Harness::memory());
                }
            )*
        }

        /// The contract against a `SqliteStateStore` in a temporary directory.
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    super::$case(&super::Harness::sqlite());
                }
            )*
        }

        /// The contract through `AsyncStateStore` on the in-memory store.
        mod async_memory {
            $(
                #[test]
                fn $case() {
                    super::$case(&super::Harness::async_memory());
                }
            )*
        }

        /// The contract through `AsyncStateStore` on a SQLite store.
        mod async_sqlite {
            $(
                #[test]
                fn $case() {
                    super::$case(&super::Harness::async_sqlite());
                }
            )*
        }
    };
}

conformance_cases!(
    put_get_round_trip,
    writes_applied_twice_change_nothing_twice,
    put_returns_fresh_refs,
    commit_is_idempotent,
    commit_id_is_the_codec_hash,
    every_input_changes_the_id,
    created_at_round_trips,
    created_at_past_the_utc_range_is_refused,
    strings_round_trip_exactly,
    generation_counts_the_longest_path,
    commit_with_unknown_data_ref_fails_cleanly,
    commit_with_unknown_parent_fails_cleanly,
    commit_state_is_put_and_commit_atomically,
    commit_with_duplicate_parents_fails_cleanly,
    lookups_of_unknown_ids_are_typed,
    snapshots_are_per_node_and_idempotent,
    snapshot_round_trips_large_state,
    snapshot_of_unknown_node_fails_cleanly,
    shared_across_threads,
    cross_backend_ids_agree,
    implausible_generations_are_refused,
    damaged_packages_are_refused_or_import_what_the_original_would,
    revisions_past_the_stored_history_say_why,
    imported_snapshots_list_in_history_order,
    wrong_generation_claims_settle_when_the_ancestors_arrive,
    forged_generation_claims_in_any_order_keep_generations_checkable,
    latest_snapshot_finds_the_newest_in_history,
    latest_snapshot_says_when_pruning_hid_the_answer,
    gc_prune_keeps_the_way_from_a_ref_to_its_snapshot,
    latest_snapshot_on_the_first_parent_line_survives_pruning,
    latest_snapshot_after_pruning_a_merged_branch,
    gc_within_the_grace_period_removes_nothing,
    gc_removes_exactly_what_nothing_reaches,
    gc_dry_run_counts_and_changes_nothing,
    gc_expires_the_ref_log_only_when_asked,
    gc_keeps_new_nodes_and_their_ancestors,
    gc_keeps_a_new_node_on_an_old_state,
    gc_removes_a_shallow_import_and_its_boundary,
    gc_prunes_old_history_to_a_boundary,
    state_prefix_is_the_start_of_the_bytes,
);

/// [`damaged_claim_and_ancestry_across_a_boundary`] on both backends. `is_ancestor` and
/// `merge_base` stop walking at the target's generation, which is sound only while every
/// path, including those through history not stored here, rises in generation; a wrong claim
/// below a boundary breaks that, and `is_ancestor(b, d)` answers `false` for a b that is an
/// ancestor of d (README: such a question "fails with ShallowHistory rather than answering
/// no").
#[test]
#[ignore = "defect: a wrong generation claim below a shallow boundary makes is_ancestor / \
            merge_base answer a confident no; a sound fix needs to know which generations \
            are exact (not stored today) or to walk past the generation floor whenever a \
            boundary may lie below it, which the generation numbers exist to avoid"]
fn a_damaged_generation_claim_does_not_answer_ancestry_across_a_boundary() {
    for h in [Harness::memory(), Harness::sqlite()] {
        damaged_claim_and_ancestry_across_a_boundary(&h);
    }
}
