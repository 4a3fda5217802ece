//! Refs: compare-and-swap, names, listing, the ref log, racing writers, restore, snapshot
//! management, and the SQLite schema upgrade that introduced refs.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Barrier};
use std::thread;

use stategraph::{
    History, LogOptions, SCHEMA_VERSION, SqliteStateStore, StateData, StateMetadata, StateNodeId,
    StateStore, StateStoreError,
};

use crate::history_util::{all_facades, at, commit, ghost, ids, open_sqlite};

all_facades!(
    set_ref_creates_conflicts_and_moves,
    set_ref_to_unknown_node_changes_nothing,
    invalid_names_are_refused_everywhere,
    unusual_valid_names_round_trip,
    get_and_delete_refs,
    list_refs_by_prefix,
    ref_log_records_every_move_and_survives_deletion,
    restore_moves_by_cas,
    snapshot_management,
    commit_on_moves_a_branch_in_one_step,
);

/// `commit_on`: state, node and ref move in one transaction; on a conflict, an unknown
/// head or a bad name, none of the three happens.
fn commit_on_moves_a_branch_in_one_step(store: &dyn StateStore) {
    let data = |n: u8| StateData::new(vec![n]).with_content_type("application/x-tick");
    let meta = |label: &str| StateMetadata::new(at(1_700_000_000), Some(label.to_owned()));
    let (r1, one) = store
        .commit_on("agents/1", None, data(1), meta("tick 1"))
        .unwrap();
    let (r2, two) = store
        .commit_on("agents/1", Some(&one), data(2), meta("tick 2"))
        .unwrap();
    assert_ref(store, "agents/1", Some(two), 2);
    let node = store.get_node(&two).unwrap();
    assert_eq!((node.parent_ids, node.data_ref), (vec![one], r2));
    assert_eq!(store.get_node(&one).unwrap().parent_ids, vec![]);
    assert_eq!(store.get_state(&r1).unwrap(), data(1));
    // The same node as the other ways of committing it.
    assert_eq!(
        store.commit_node(vec![one], r2, meta("tick 2")).unwrap(),
        two
    );
    let log = store.ref_log("agents/1").unwrap();
    assert_eq!(log[0].message.as_deref(), Some("commit: tick 1"));
    assert_eq!((log[1].old, log[1].new), (Some(one), Some(two)));

    // Failures write nothing: the node the call would have made is not there, and the ref
    // and its log are as they were.
    let would_be = |head: StateNodeId, label: &str| {
        let d = data(3);
        stategraph::codec::node_id(&[head], &d.hash(), d.content_type.as_deref(), &meta(label))
    };
    let err = store
        .commit_on("agents/1", Some(&one), data(3), meta("stale"))
        .unwrap_err();
    assert!(
        matches!(&err, StateStoreError::RefConflict { actual: Some(x), .. } if *x == two),
        "{err:?}"
    );
    assert!(store.get_node(&would_be(one, "stale")).is_err());
    let err = store
        .commit_on("agents/1", None, data(3), meta("exists"))
        .unwrap_err();
    assert!(
        matches!(err, StateStoreError::RefConflict { .. }),
        "{err:?}"
    );
    // A head that is not stored (never was, or gc pruned it after the ref moved on): the
    // ref is not there, which is the conflict a caller retries on.
    let g = ghost();
    let err = store
        .commit_on("agents/1", Some(&g), data(3), meta("ghost"))
        .unwrap_err();
    assert!(
        matches!(&err, StateStoreError::RefConflict { expected: Some(e), actual: Some(a), .. }
            if *e == g && *a == two),
        "{err:?}"
    );
    let err = store
        .commit_on("agents/none", Some(&g), data(3), meta("ghost"))
        .unwrap_err();
    assert!(
        matches!(&err, StateStoreError::RefConflict { actual: None, .. }),
        "{err:?}"
    );
    assert!(store.get_node(&would_be(g, "ghost")).is_err());
    let err = store
        .commit_on("bad..name", Some(&two), data(3), meta("bad"))
        .unwrap_err();
    assert!(
        matches!(err, StateStoreError::InvalidRefName { .. }),
        "{err:?}"
    );
    assert!(store.get_node(&would_be(two, "bad")).is_err());
    assert_ref(store, "agents/1", Some(two), 2);
}

/// Asserts a ref's value and its ref log length.
fn assert_ref(store: &dyn StateStore, name: &str, value: Option<StateNodeId>, log_len: usize) {
    assert_eq!(store.get_ref(name).unwrap(), value, "value of {name}");
    assert_eq!(store.ref_log(name).unwrap().len(), log_len, "log of {name}");
}

fn set_ref_creates_conflicts_and_moves(store: &dyn StateStore) {
    let a = commit(store, &[], "a");
    let b = commit(store, &[a], "b");
    let c = commit(store, &[b], "c");

    store.set_ref("main", None, &a).unwrap();
    assert_ref(store, "main", Some(a), 1);

    // Creating again: the ref exists.
    let err = store.set_ref("main", None, &b).unwrap_err();
    assert!(
        matches!(&err, StateStoreError::RefConflict { name, expected: None, actual: Some(x) }
            if name == "main" && *x == a),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("ref main already exists (at {a}); expected no ref")
    );
    assert_ref(store, "main", Some(a), 1);

    // Wrong expected value.
    let err = store.set_ref("main", Some(&c), &b).unwrap_err();
    assert!(
        matches!(&err, StateStoreError::RefConflict { name, expected: Some(e), actual: Some(x) }
            if name == "main" && *e == c && *x == a),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("ref main moved: expected {c}, found {a}")
    );
    assert_ref(store, "main", Some(a), 1);

    // Right expected value: moves, forwards and backwards alike.
    store.set_ref("main", Some(&a), &c).unwrap();
    assert_ref(store, "main", Some(c), 2);
    store.set_ref("main", Some(&c), &b).unwrap();
    assert_ref(store, "main", Some(b), 3);

    // Refs are independent.
    store.set_ref("other", None, &b).unwrap();
    assert_ref(store, "other", Some(b), 1);
    assert_ref(store, "main", Some(b), 3);
}

fn set_ref_to_unknown_node_changes_nothing(store: &dyn StateStore) {
    let a = commit(store, &[], "a");
    store.set_ref("main", None, &a).unwrap();
    let g = ghost();

    let err = store.set_ref("main", Some(&a), &g).unwrap_err();
    assert!(
        matches!(err, StateStoreError::MissingNode { id } if id == g),
        "{err:?}"
    );
    assert_ref(store, "main", Some(a), 1);

    let err = store
        .set_ref_with_message("fresh", None, &g, Some("nope"))
        .unwrap_err();
    assert!(
        matches!(err, StateStoreError::MissingNode { id } if id == g),
        "{err:?}"
    );
    assert_ref(store, "fresh", None, 0);
    let names: Vec<_> = store
        .list_refs("")
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["main"]);
}

const INVALID_NAMES: &[&str] = &[
    "", "a//b", "a/", "/a", "..", "a..b", "x.lock", "a/x.lock", "a b", "a\tb", "a\nb", "a\u{1}b",
    "a\u{7f}", "a~1", "a^2", "a:b", "a?", "a*", "a[b", "a\\b", "@", "a@{1}", ".hidden", "a.",
];

fn invalid_names_are_refused_everywhere(store: &dyn StateStore) {
    let a = commit(store, &[], "a");
    let snap = store.snapshot(&a).unwrap();
    let too_long = "a".repeat(256);
    // 128 two-byte characters: 256 bytes, over the limit though only 128 characters.
    let too_long_utf8 = "é".repeat(128);
    let names = INVALID_NAMES
        .iter()
        .copied()
        .chain([too_long.as_str(), too_long_utf8.as_str()]);
    for bad in names {
        let is_invalid = |r: Result<(), StateStoreError>, op: &str| {
            let err = r.expect_err(op);
            assert!(
                matches!(&err, StateStoreError::InvalidRefName { name, .. } if name == bad),
                "{op}({bad:?}): {err:?}"
            );
        };
        is_invalid(store.set_ref(bad, None, &a), "set_ref");
        is_invalid(
            store.set_ref_with_message(bad, None, &a, Some("m")),
            "set_ref_with_message",
        );
        is_invalid(store.get_ref(bad).map(drop), "get_ref");
        is_invalid(store.delete_ref(bad, &a), "delete_ref");
        is_invalid(store.ref_log(bad).map(drop), "ref_log");
        is_invalid(store.restore(&snap, bad, None).map(drop), "restore");
    }
    assert!(store.list_refs("").unwrap().is_empty());
}

fn unusual_valid_names_round_trip(store: &dyn StateStore) {
    let a = commit(store, &[], "a");
    let long = "a".repeat(255);
    let long_utf8 = format!("a{}", "é".repeat(127));
    let names = [
        "agents/7/main",
        "tags/v1.0",
        "ünïcode/ok",
        "日本/枝",
        "a_b%c",
        "-dash",
        long.as_str(),
        long_utf8.as_str(),
    ];
    for name in names {
        store.set_ref(name, None, &a).unwrap();
        assert_ref(store, name, Some(a), 1);
    }
    let mut want: Vec<&str> = names.to_vec();
    want.sort_unstable();
    let listed: Vec<_> = store
        .list_refs("")
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(listed, want);
}

fn get_and_delete_refs(store: &dyn StateStore) {
    assert_eq!(store.get_ref("nope").unwrap(), None);
    let a = commit(store, &[], "a");
    let b = commit(store, &[a], "b");
    store.set_ref("main", None, &b).unwrap();

    let err = store.delete_ref("main", &a).unwrap_err();
    assert!(
        matches!(&err, StateStoreError::RefConflict { name, expected: Some(e), actual: Some(x) }
            if name == "main" && *e == a && *x == b),
        "{err:?}"
    );
    assert_ref(store, "main", Some(b), 1);

    store.delete_ref("main", &b).unwrap();
    assert_ref(store, "main", None, 2);
    assert!(store.list_refs("").unwrap().is_empty());

    // Deleting what is not there: a conflict whose actual value is "no ref".
    for name in ["main", "never"] {
        let err = store.delete_ref(name, &b).unwrap_err();
        assert!(
            matches!(&err, StateStoreError::RefConflict { name: n, expected: Some(e), actual: None }
                if n == name && *e == b),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("ref {name} does not exist (expected it at {b})")
        );
    }
    assert_ref(store, "main", None, 2);
    assert_ref(store, "never", None, 0);
    // The node itself is untouched by ref deletion.
    assert_eq!(store.get_node(&b).unwrap().id, b);
}

fn list_refs_by_prefix(store: &dyn StateStore) {
    let names = [
        "main",
        "agents/7/main",
        "agents/7/feature/x",
        "agents/70/x",
        "agents/7-x",
        "agents/7",
        "agents/8/main",
        "agents/6/main",
        "tags/v1",
        "a_b",
        "aXb",
        "a%b",
        "é/x",
        "z",
    ];
    let mut model = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let id = commit(store, &[], name);
        store.set_ref(name, None, &id).unwrap();
        model.insert((*name).to_owned(), id);
        assert_eq!(i + 1, model.len());
    }
    let expect = |prefix: &str| -> Vec<(String, StateNodeId)> {
        model
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, id)| (n.clone(), *id))
            .collect()
    };
    let got = |prefix: &str| -> Vec<(String, StateNodeId)> {
        store
            .list_refs(prefix)
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.target))
            .collect()
    };
    let seven: Vec<_> = got("agents/7/").into_iter().map(|(n, _)| n).collect();
    assert_eq!(seven, ["agents/7/feature/x", "agents/7/main"]);
    assert_eq!(got("").len(), names.len());
    for prefix in [
        "",
        "a",
        "agents",
        "agents/",
        "agents/7",
        "agents/7/",
        "agents/70/",
        "agents/9/",
        "a_",
        "a%",
        "aX",
        "é",
        "é/",
        "main",
        "mainx",
        "t",
        "zz",
        "~",
        "\u{10ffff}",
    ] {
        assert_eq!(got(prefix), expect(prefix), "prefix {prefix:?}");
    }
}

fn ref_log_records_every_move_and_survives_deletion(store: &dyn StateStore) {
    let a = commit(store, &[], "a");
    let b = commit(store, &[a], "b");
    let c = commit(store, &[b], "c");
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);

    store
        .set_ref_with_message("main", None, &a, Some("create"))
        .unwrap();
    store
        .set_ref_with_message("main", Some(&a), &b, Some("advance ✓"))
        .unwrap();
    store.set_ref("main", Some(&b), &c).unwrap();
    store
        .set_ref_with_message("main", Some(&c), &c, Some(""))
        .unwrap();
    store.set_ref("side", None, &a).unwrap();
    store.delete_ref("main", &c).unwrap();

    let want: Vec<(Option<StateNodeId>, Option<StateNodeId>, Option<&str>)> = vec![
        (None, Some(a), Some("create")),
        (Some(a), Some(b), Some("advance ✓")),
        (Some(b), Some(c), None),
        (Some(c), Some(c), Some("")),
        (Some(c), None, None),
    ];
    let log = store.ref_log("main").unwrap();
    let got: Vec<_> = log
        .iter()
        .map(|e| (e.old, e.new, e.message.as_deref()))
        .collect();
    assert_eq!(got, want, "log survives the ref's deletion");
    let after = time::OffsetDateTime::now_utc() + time::Duration::seconds(5);
    for pair in log.windows(2) {
        assert!(pair[0].at <= pair[1].at, "timestamps in order: {log:?}");
    }
    assert!(log.iter().all(|e| before <= e.at && e.at <= after));
    assert_eq!(store.ref_log("side").unwrap().len(), 1);
    assert!(store.ref_log("never").unwrap().is_empty());

    // The tail: the newest entries of the same log, oldest first; a limit past the length
    // gives it all.
    for limit in 0..=log.len() + 2 {
        let tail = store.ref_log_tail("main", limit).unwrap();
        assert_eq!(
            tail,
            log[log.len().saturating_sub(limit)..],
            "limit {limit}"
        );
    }
    assert_eq!(store.ref_log_tail("main", usize::MAX).unwrap(), log);
    assert_eq!(store.ref_log_tail("side", 3).unwrap().len(), 1);
    assert!(store.ref_log_tail("never", 3).unwrap().is_empty());
    assert!(matches!(
        store.ref_log_tail("bad..name", 1),
        Err(StateStoreError::InvalidRefName { .. })
    ));

    // Bring the deleted ref back to where it was when deleted, from its log.
    let last = log.last().unwrap();
    assert_eq!(store.get_ref("main").unwrap(), None);
    store
        .set_ref_with_message("main", None, &last.old.unwrap(), Some("undelete"))
        .unwrap();
    assert_eq!(store.get_ref("main").unwrap(), Some(c));

    // Put it back to an earlier value from the log: the second move's target.
    let log = store.ref_log("main").unwrap();
    assert_eq!(log.len(), 6);
    let current = store.get_ref("main").unwrap();
    store
        .set_ref("main", current.as_ref(), &log[1].new.unwrap())
        .unwrap();
    assert_eq!(store.get_ref("main").unwrap(), Some(b));
    let log = store.ref_log("main").unwrap();
    assert_eq!(log.len(), 7);
    assert_eq!((log[6].old, log[6].new), (Some(c), Some(b)));
}

/// `THREADS` threads race compare-and-swap updates on one ref for `ROUNDS` rounds; thread `t`
/// uses `stores[t]`. Every round each thread reads the ref and tries to move it to a fresh
/// child of what it read.
fn race(stores: &[Arc<dyn StateStore>]) {
    const ROUNDS: usize = 50;
    let threads = stores.len();
    let root = commit(stores[0].as_ref(), &[], "race root");
    stores[0].set_ref("race", None, &root).unwrap();
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(t, store)| {
            let store = Arc::clone(store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut wins = Vec::new();
                for r in 0..ROUNDS {
                    barrier.wait();
                    let current = store.get_ref("race").unwrap().expect("ref exists");
                    let label = format!("thread {t} round {r}");
                    let data = store.put_state(StateData::new(label.clone())).unwrap();
                    let meta = StateMetadata::new(at(r as i64), Some(label));
                    let node = store.commit_node(vec![current], data, meta).unwrap();
                    match store.set_ref("race", Some(&current), &node) {
                        Ok(()) => wins.push((current, node)),
                        Err(StateStoreError::RefConflict {
                            expected, actual, ..
                        }) => {
                            assert_eq!(expected, Some(current));
                            assert!(actual.is_some() && actual != Some(current));
                        }
                        Err(e) => panic!("thread {t} round {r}: {e}"),
                    }
                }
                wins
            })
        })
        .collect();
    let wins: Vec<(StateNodeId, StateNodeId)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("racing thread"))
        .collect();
    let store = stores[0].as_ref();

    // The first attempt of every round compares against the value all threads saw after the
    // barrier, so every round has at least one winner.
    assert!(wins.len() >= ROUNDS, "{} wins", wins.len());
    let olds: HashSet<_> = wins.iter().map(|w| w.0).collect();
    assert_eq!(olds.len(), wins.len(), "two moves from the same value");

    let log = store.ref_log("race").unwrap();
    assert_eq!(
        log.len(),
        wins.len() + 1,
        "one log entry per reported success"
    );
    assert_eq!((log[0].old, log[0].new), (None, Some(root)));
    for pair in log.windows(2) {
        assert_eq!(pair[1].old, pair[0].new, "log entries link");
    }
    let logged: HashSet<_> = log[1..]
        .iter()
        .map(|e| (e.old.unwrap(), e.new.unwrap()))
        .collect();
    let won: HashSet<_> = wins.iter().copied().collect();
    assert_eq!(logged, won);
    let head = store.get_ref("race").unwrap().unwrap();
    assert_eq!(Some(head), log.last().unwrap().new);

    // No update was lost: the mainline from the head is exactly the logged sequence.
    let mainline = ids(store.log(&LogOptions::new().from(head)).unwrap());
    let mut logged_chain: Vec<_> = log.iter().map(|e| e.new.unwrap()).collect();
    logged_chain.reverse();
    assert_eq!(mainline, logged_chain);
}

const RACERS: usize = 8;

mod race_tests {
    use super::*;
    use crate::history_util::{memory, sqlite};

    #[test]
    fn memory_shared_store() {
        let store: Arc<dyn StateStore> = Arc::new(memory());
        race(&vec![store; RACERS]);
    }

    #[test]
    fn sqlite_shared_store() {
        let fixture = sqlite();
        let store: Arc<dyn StateStore> = Arc::new(fixture.store);
        race(&vec![store; RACERS]);
    }

    #[test]
    fn sqlite_one_handle_per_thread() {
        let fixture = sqlite();
        let path = fixture.path();
        let stores: Vec<Arc<dyn StateStore>> = (0..RACERS)
            .map(|_| Arc::new(open_sqlite(&path)) as Arc<dyn StateStore>)
            .collect();
        race(&stores);
        // A handle opened afterwards sees the same result.
        let fresh = open_sqlite(&path);
        assert_eq!(
            fresh.get_ref("race").unwrap(),
            stores[3].get_ref("race").unwrap()
        );
        assert_eq!(
            fresh.ref_log("race").unwrap(),
            stores[5].ref_log("race").unwrap()
        );
        drop(stores);
        drop(fixture);
    }
}

fn restore_moves_by_cas(store: &dyn StateStore) {
    let a = commit(store, &[], "a");
    let b = commit(store, &[a], "b");
    store.set_ref("main", None, &b).unwrap();
    let snap = store.snapshot(&a).unwrap();

    let err = store.restore(&snap, "main", Some(&a)).unwrap_err();
    assert!(
        matches!(&err, StateStoreError::RefConflict { name, expected: Some(e), actual: Some(x) }
            if name == "main" && *e == a && *x == b),
        "{err:?}"
    );
    let err = store.restore(&snap, "main", None).unwrap_err();
    assert!(
        matches!(err, StateStoreError::RefConflict { .. }),
        "{err:?}"
    );
    assert_ref(store, "main", Some(b), 1);

    let missing = stategraph::SnapshotId::from_bytes([3; 32]);
    let err = store.restore(&missing, "main", Some(&b)).unwrap_err();
    assert!(
        matches!(err, StateStoreError::MissingSnapshot { id } if id == missing),
        "{err:?}"
    );
    assert_ref(store, "main", Some(b), 1);

    let restored = store.restore(&snap, "main", Some(&b)).unwrap();
    assert_eq!(restored.node_id, a);
    assert_eq!(restored.state.bytes, b"a");
    assert_ref(store, "main", Some(a), 2);
    let entry = store.ref_log("main").unwrap().pop().unwrap();
    assert_eq!((entry.old, entry.new), (Some(b), Some(a)));
    assert!(
        entry
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("restore snapshot")),
        "{entry:?}"
    );

    // Restoring where the ref already is changes nothing, the ref log included.
    assert_eq!(store.restore(&snap, "main", Some(&a)).unwrap(), restored);
    assert_ref(store, "main", Some(a), 2);

    // Restoring into a ref that does not exist yet creates it.
    let again = store.restore(&snap, "recovered", None).unwrap();
    assert_eq!(again, restored);
    assert_ref(store, "recovered", Some(a), 1);
}

fn snapshot_management(store: &dyn StateStore) {
    let a = commit(store, &[], "a");
    let data = store
        .put_state(StateData::new(b"{\"b\":1}".to_vec()).with_content_type("application/json"))
        .unwrap();
    let b = store
        .commit_node(vec![a], data, StateMetadata::new(at(1), Some("b".into())))
        .unwrap();
    let c = commit(store, &[b], "c");
    assert!(store.list_snapshots().unwrap().is_empty());

    let mut snaps = Vec::new();
    for node in [c, a, b] {
        snaps.push(store.snapshot(&node).unwrap());
        // Snapshot times are wall-clock; keep them apart so "oldest first" is observable.
        thread::sleep(std::time::Duration::from_millis(3));
    }
    let [sc, sa, sb] = snaps[..] else {
        unreachable!()
    };
    let listed = store.list_snapshots().unwrap();
    let pairs: Vec<_> = listed.iter().map(|s| (s.id, s.node_id)).collect();
    assert_eq!(pairs, [(sc, c), (sa, a), (sb, b)]);
    assert!(listed.windows(2).all(|w| w[0].created_at < w[1].created_at));

    // Snapshotting again returns the same id and keeps the first time.
    assert_eq!(store.snapshot(&a).unwrap(), sa);
    assert_eq!(store.list_snapshots().unwrap(), listed);
    assert_eq!(store.snapshots_of(&a).unwrap(), vec![listed[1].clone()]);
    assert!(store.snapshots_of(&ghost()).unwrap().is_empty());
    // Asked for several nodes at once: the same answers, in the order asked.
    let asked = [b, ghost(), a, c, a];
    let each = store.snapshots_of_each(&asked).unwrap();
    assert_eq!(each[2], vec![listed[1].clone()]);
    assert!(each[1].is_empty());
    let one_by_one: Vec<_> = asked
        .iter()
        .map(|id| store.snapshots_of(id).unwrap())
        .collect();
    assert_eq!(each, one_by_one);
    assert!(store.snapshots_of_each(&[]).unwrap().is_empty());
    let err = store.snapshot(&ghost()).unwrap_err();
    assert!(
        matches!(err, StateStoreError::MissingNode { .. }),
        "{err:?}"
    );

    let loaded = store.load_snapshot(&sb).unwrap();
    assert_eq!(loaded.node_id, b);
    assert_eq!(
        loaded.state.content_type.as_deref(),
        Some("application/json")
    );

    store.delete_snapshot(&sb).unwrap();
    let err = store.load_snapshot(&sb).unwrap_err();
    assert!(
        matches!(err, StateStoreError::MissingSnapshot { id } if id == sb),
        "{err:?}"
    );
    let err = store.delete_snapshot(&sb).unwrap_err();
    assert!(
        matches!(err, StateStoreError::MissingSnapshot { id } if id == sb),
        "{err:?}"
    );
    let pairs: Vec<_> = store
        .list_snapshots()
        .unwrap()
        .iter()
        .map(|s| (s.id, s.node_id))
        .collect();
    assert_eq!(pairs, [(sc, c), (sa, a)]);
    assert!(store.snapshots_of(&b).unwrap().is_empty());
    // The batched read saw the deletion: it left no read transaction open behind it.
    let after: Vec<usize> = store
        .snapshots_of_each(&[a, b, c])
        .unwrap()
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(after, [1, 0, 1]);

    // The node and its state survive.
    let node = store.get_node(&b).unwrap();
    assert_eq!(store.get_state(&node.data_ref).unwrap().bytes, b"{\"b\":1}");
    assert_eq!(
        ids(store.log(&LogOptions::new().from(c)).unwrap()),
        [c, b, a]
    );
    // Other snapshots still load.
    assert_eq!(store.load_snapshot(&sc).unwrap().state.bytes, b"c");

    // Taking it again brings it back, now the newest.
    assert_eq!(store.snapshot(&b).unwrap(), sb);
    let last = store.list_snapshots().unwrap().pop().unwrap();
    assert_eq!((last.id, last.node_id), (sb, b));
}

mod migration {
    use super::*;
    use rusqlite::Connection;

    const APPLICATION_ID: i32 = 0x5347_7068;

    /// The released migrations, in order: migration `i` (0-based) brings a file to version
    /// `i + 1`.
    const MIGRATIONS: [&str; 3] = [
        include_str!("../../migrations/sqlite/0001_initial.sql"),
        include_str!("../../migrations/sqlite/0002_history.sql"),
        include_str!("../../migrations/sqlite/0003_lean_indexes.sql"),
    ];

    /// Creates a store of an older schema version by hand, as that version of the library did.
    fn create_at(path: &std::path::Path, version: usize) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64)
            .unwrap();
        conn
    }

    fn create_v1(path: &std::path::Path) -> Connection {
        create_at(path, 1)
    }

    fn user_version(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    /// Inserts a root node through raw SQL, the way a version-1 store holds it.
    fn insert_v1_root(conn: &Connection) -> StateNodeId {
        let bytes = b"from v1".to_vec();
        let hash = StateData::new(bytes.clone()).hash();
        let data_ref = [7u8; 16];
        let created = at(1_700_000_000) + time::Duration::nanoseconds(123);
        let meta = StateMetadata::new(created, Some("v1 root".into()));
        let id = stategraph::codec::node_id(&[], &hash, Some("text/plain"), &meta);
        conn.execute(
            "INSERT INTO blobs (id, hash, bytes) VALUES (1, ?1, ?2)",
            rusqlite::params![hash.as_bytes().as_slice(), bytes],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO state_data (data_ref, blob_id, content_type) VALUES (?1, 1, 'text/plain')",
            [data_ref.as_slice()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO state_nodes (id, parents, parent_seqs, data_ref, data_hash,
                 content_type, created_s, created_ns, label, generation)
             VALUES (?1, x'', x'', ?2, ?3, 'text/plain', ?4, 123, 'v1 root', 1)",
            rusqlite::params![
                id.as_bytes().as_slice(),
                data_ref.as_slice(),
                hash.as_bytes().as_slice(),
                created.unix_timestamp()
            ],
        )
        .unwrap();
        id
    }

    #[test]
    fn a_header_below_the_tables_version_is_refused_briefly_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lowered.db");
        drop(create_at(&path, 3));
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 1)
            .unwrap();
        let err = SqliteStateStore::open(&path).unwrap_err();
        assert!(err.is_corrupt(), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("header says schema version 1") && text.contains("migration 2"),
            "{text}"
        );
        assert!(text.len() < 300, "the message quotes the migration: {text}");
        assert_eq!(user_version(&path), 1);
    }

    #[test]
    fn empty_v1_store_is_upgraded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        drop(create_v1(&path));
        assert_eq!(user_version(&path), 1);

        let store = open_sqlite(&path);
        assert_eq!(user_version(&path), 3);
        assert_eq!(SCHEMA_VERSION, 3);
        let a = commit(&store, &[], "a");
        store.set_ref("main", None, &a).unwrap();
        assert_ref(&store, "main", Some(a), 1);
        drop(store);

        let store = open_sqlite(&path);
        assert_ref(&store, "main", Some(a), 1);
        assert_eq!(user_version(&path), 3);
    }

    /// A damaged v1 store (a table of its version dropped) is refused before the upgrade
    /// touches it: still version 1, and no tables of later versions created.
    #[test]
    fn damaged_v1_store_is_refused_not_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        create_v1(&path)
            .execute_batch("DROP TABLE snapshots")
            .unwrap();
        let err = SqliteStateStore::open(&path).unwrap_err();
        assert!(
            err.is_corrupt() && err.to_string().contains("lacks the table(s) snapshots"),
            "{err}"
        );
        assert_eq!(user_version(&path), 1);
        let tables: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name IN ('refs', 'ref_log')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "no migration ran");
    }

    #[test]
    fn v1_store_with_a_node_is_upgraded_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let root = {
            let conn = create_v1(&path);
            insert_v1_root(&conn)
        };
        assert_eq!(user_version(&path), 1);

        // A read-only open may not upgrade, and must leave the file as it was.
        let err = SqliteStateStore::open_read_only(&path).unwrap_err();
        assert!(matches!(err, StateStoreError::NotAStore { .. }), "{err:?}");
        assert_eq!(user_version(&path), 1);

        let store = open_sqlite(&path);
        assert_eq!(user_version(&path), 3);
        let node = store.get_node(&root).unwrap();
        assert_eq!(node.metadata.label.as_deref(), Some("v1 root"));
        assert_eq!(store.get_state(&node.data_ref).unwrap().bytes, b"from v1");
        assert_eq!(store.resolve(&root.to_short_hex(8)).unwrap(), root);

        store
            .set_ref_with_message("main", None, &root, Some("adopt v1 history"))
            .unwrap();
        let child = commit(&store, &[root], "after upgrade");
        store.set_ref("main", Some(&root), &child).unwrap();
        assert_ref(&store, "main", Some(child), 2);
        assert_eq!(
            ids(store.log(&LogOptions::new().from_ref("main")).unwrap()),
            [child, root]
        );
        assert!(store.is_ancestor(&root, &child).unwrap());
        let snap = store.snapshot(&root).unwrap();
        drop(store);

        let store = SqliteStateStore::open_read_only(&path).unwrap();
        assert_eq!(store.get_ref("main").unwrap(), Some(child));
        assert_eq!(store.ref_log("main").unwrap().len(), 2);
        // Read-only: every ref move is refused and nothing changes.
        for result in [
            store.set_ref("main", Some(&child), &root),
            store.set_ref("other", None, &root),
            store.delete_ref("main", &child),
            store.restore(&snap, "main", Some(&child)).map(drop),
        ] {
            let err = result.unwrap_err();
            assert!(matches!(err, StateStoreError::ReadOnly { .. }), "{err:?}");
        }
        assert_eq!(store.get_ref("main").unwrap(), Some(child));
        assert_eq!(store.ref_log("main").unwrap().len(), 2);
    }

    /// The names of the indexes a file has, sorted (SQLite's automatic ones left out).
    fn index_names(path: &std::path::Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL
                 ORDER BY name",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn v2_store_loses_the_unread_indexes_and_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        let root = {
            let conn = create_at(&path, 2);
            let root = insert_v1_root(&conn);
            conn.execute(
                "INSERT INTO refs (name, node_id) VALUES ('main', ?1)",
                [root.as_bytes().as_slice()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO ref_log (name, old_node, new_node, created_s, created_ns, message)
                 VALUES ('main', NULL, ?1, 1700000000, 0, 'from v2')",
                [root.as_bytes().as_slice()],
            )
            .unwrap();
            root
        };
        assert_eq!(user_version(&path), 2);
        // A read-only open cannot migrate, but version 3 only dropped indexes: it reads the
        // file as it is and leaves it at version 2.
        {
            let store = SqliteStateStore::open_read_only(&path).unwrap();
            assert_ref(&store, "main", Some(root), 1);
            assert_eq!(store.stats().unwrap().schema_version, 2);
            let node = store.get_node(&root).unwrap();
            assert_eq!(store.get_state(&node.data_ref).unwrap().bytes, b"from v1");
        }
        assert_eq!(user_version(&path), 2);
        let before = index_names(&path);
        assert!(
            before.contains(&"state_data_by_blob".to_owned())
                && before.contains(&"state_nodes_by_data".to_owned()),
            "{before:?}"
        );

        let store = open_sqlite(&path);
        assert_eq!(user_version(&path), 3);
        assert_eq!(store.stats().unwrap().schema_version, 3);
        assert_eq!(
            index_names(&path),
            ["ref_log_by_name", "snapshots_by_node"],
            "exactly the two unread indexes are gone"
        );
        assert_ref(&store, "main", Some(root), 1);
        let node = store.get_node(&root).unwrap();
        assert_eq!(store.get_state(&node.data_ref).unwrap().bytes, b"from v1");
        // Writing goes on as before: new states (one a duplicate of the v2 bytes), a child, a
        // snapshot, a ref move; and the whole file still verifies.
        let again = store
            .put_state(StateData::new(b"from v1".to_vec()))
            .unwrap();
        let child = store
            .commit_node(
                vec![root],
                again,
                StateMetadata::new(at(1_700_000_100), Some("after v3".into())),
            )
            .unwrap();
        store.set_ref("main", Some(&root), &child).unwrap();
        let snap = store.snapshot(&child).unwrap();
        assert_eq!(store.load_snapshot(&snap).unwrap().state.bytes, b"from v1");
        assert_eq!(
            ids(store.log(&LogOptions::new().from_ref("main")).unwrap()),
            [child, root]
        );
        let report = store.verify(|_| {}).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!((report.blobs, report.nodes, report.refs), (1, 2, 1));
        drop(store);
        assert_eq!(user_version(&path), 3);
    }

    #[test]
    fn concurrent_opens_upgrade_a_v1_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let root = {
            let conn = create_v1(&path);
            insert_v1_root(&conn)
        };
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (path, barrier) = (path.clone(), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    let store = open_sqlite(&path);
                    store.set_ref(&format!("t/{t}"), None, &root).unwrap();
                    store
                })
            })
            .collect();
        let stores: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(user_version(&path), 3);
        let names: Vec<_> = stores[0]
            .list_refs("t/")
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["t/0", "t/1", "t/2", "t/3"]);
    }
}
