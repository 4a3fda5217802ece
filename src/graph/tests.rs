//! Unit tests of the history algorithms on small hand-built graphs (in memory).

use time::OffsetDateTime;

use super::*;
use crate::{InMemoryStateStore, StateData, StateMetadata};

/// Builds nodes from `(label, parent labels)` in order; returns ids by label.
fn build(store: &InMemoryStateStore, spec: &[(&str, &[&str])]) -> HashMap<String, StateNodeId> {
    let mut ids = HashMap::new();
    for (i, (label, parents)) in spec.iter().enumerate() {
        let data = store
            .put_state(StateData::new(label.as_bytes().to_vec()))
            .unwrap();
        let parents = parents.iter().map(|p| ids[*p]).collect();
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(i as i64);
        let meta = StateMetadata::new(at, Some((*label).to_owned()));
        ids.insert(
            (*label).to_owned(),
            store.commit_node(parents, data, meta).unwrap(),
        );
    }
    ids
}

/// Unlabelled metadata `i` seconds after the epoch.
fn at(i: i64) -> StateMetadata {
    StateMetadata::new(
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(i),
        None,
    )
}

fn labels(iter: impl Iterator<Item = Result<StateNode>>) -> Vec<String> {
    iter.map(|n| n.unwrap().metadata.label.unwrap()).collect()
}

//   a - b - c - f ----- g
//        \         /
//         d - e --
const MERGE: &[(&str, &[&str])] = &[
    ("a", &[]),
    ("b", &["a"]),
    ("c", &["b"]),
    ("d", &["b"]),
    ("e", &["d"]),
    ("f", &["c"]),
    ("g", &["f", "e"]),
];

#[test]
fn log_is_topological_and_complete() {
    let store = InMemoryStateStore::new();
    let ids = build(&store, MERGE);
    let all = labels(store.log(&LogOptions::new().from(ids["g"])).unwrap());
    assert_eq!(all.len(), 7);
    let pos = |l: &str| all.iter().position(|x| x == l).unwrap();
    for (child, parents) in MERGE {
        for p in *parents {
            assert!(pos(child) < pos(p), "{child} before {p} in {all:?}");
        }
    }
    assert_eq!(all[0], "g");
    assert_eq!(all[6], "a");
}

#[test]
fn log_limit_first_parent_and_range() {
    let store = InMemoryStateStore::new();
    let ids = build(&store, MERGE);
    let two = labels(
        store
            .log(&LogOptions::new().from(ids["g"]).limit(2))
            .unwrap(),
    );
    assert_eq!(two.len(), 2);
    let mainline = labels(
        store
            .log(&LogOptions::new().from(ids["g"]).first_parent(true))
            .unwrap(),
    );
    assert_eq!(mainline, ["g", "f", "c", "b", "a"]);
    let range = labels(store.log(&LogOptions::range(ids["c"], ids["g"])).unwrap());
    let mut sorted = range.clone();
    sorted.sort();
    assert_eq!(sorted, ["d", "e", "f", "g"]);
    let none = labels(store.log(&LogOptions::range(ids["g"], ids["c"])).unwrap());
    assert!(none.is_empty());
}

#[test]
fn log_from_ref_and_missing_tips() {
    let store = InMemoryStateStore::new();
    let ids = build(&store, MERGE);
    store.set_ref("main", None, &ids["e"]).unwrap();
    let from_ref = labels(store.log(&LogOptions::new().from_ref("main")).unwrap());
    assert_eq!(from_ref, ["e", "d", "b", "a"]);
    assert!(matches!(
        store.log(&LogOptions::new().from_ref("nope")),
        Err(StateStoreError::MissingRef { .. })
    ));
    let ghost = StateNodeId::from_bytes([9; 32]);
    assert!(matches!(
        store.log(&LogOptions::new().from(ghost)),
        Err(StateStoreError::MissingNode { id }) if id == ghost
    ));
}

#[test]
fn ancestors_and_descendants() {
    let store = InMemoryStateStore::new();
    let ids = build(&store, MERGE);
    let mut up = labels(store.ancestors(&ids["e"]).unwrap());
    up.sort();
    assert_eq!(up, ["a", "b", "d"]);
    let down = labels(store.descendants(&ids["b"]).unwrap());
    assert_eq!(down.len(), 5);
    let pos = |l: &str| down.iter().position(|x| x == l).unwrap();
    assert!(pos("d") < pos("e") && pos("e") < pos("g") && pos("f") < pos("g"));
    assert!(labels(store.descendants(&ids["g"]).unwrap()).is_empty());
}

#[test]
fn is_ancestor_cases() {
    let store = InMemoryStateStore::new();
    let ids = build(&store, MERGE);
    assert!(store.is_ancestor(&ids["a"], &ids["g"]).unwrap());
    assert!(store.is_ancestor(&ids["e"], &ids["g"]).unwrap());
    assert!(store.is_ancestor(&ids["g"], &ids["g"]).unwrap());
    assert!(!store.is_ancestor(&ids["g"], &ids["a"]).unwrap());
    assert!(!store.is_ancestor(&ids["c"], &ids["e"]).unwrap());
    let other = build(&store, &[("x", &[])]);
    assert!(!store.is_ancestor(&other["x"], &ids["g"]).unwrap());
}

#[test]
fn merge_bases_including_criss_cross() {
    let store = InMemoryStateStore::new();
    let ids = build(&store, MERGE);
    assert_eq!(
        store.merge_base(&ids["c"], &ids["e"]).unwrap(),
        Some(ids["b"])
    );
    assert_eq!(
        store.merge_base(&ids["g"], &ids["e"]).unwrap(),
        Some(ids["e"])
    );
    //   r - x1 - m1      m1 = merge(x1, y1), m2 = merge(y1, x1)
    //     \    X
    //      y1 - m2
    let cc = build(
        &store,
        &[
            ("r", &[]),
            ("x1", &["r"]),
            ("y1", &["r"]),
            ("m1", &["x1", "y1"]),
            ("m2", &["y1", "x1"]),
        ],
    );
    let mut bases = store.merge_bases(&[cc["m1"], cc["m2"]]).unwrap();
    bases.sort();
    let mut want = vec![cc["x1"], cc["y1"]];
    want.sort();
    assert_eq!(bases, want);
    let lone = build(&store, &[("lone", &[])]);
    assert_eq!(store.merge_base(&lone["lone"], &ids["g"]).unwrap(), None);
    assert_eq!(store.merge_bases(&[ids["c"]]).unwrap(), vec![ids["c"]]);
    assert!(store.merge_bases(&[]).is_err());
}

#[test]
fn resolve_names_ids_prefixes_and_suffixes() {
    let store = InMemoryStateStore::new();
    let ids = build(&store, MERGE);
    store.set_ref("main", None, &ids["g"]).unwrap();
    assert_eq!(store.resolve("main").unwrap(), ids["g"]);
    assert_eq!(store.resolve(&ids["e"].to_string()).unwrap(), ids["e"]);
    assert_eq!(store.resolve(&ids["e"].to_hex()).unwrap(), ids["e"]);
    assert_eq!(store.resolve(&ids["e"].to_short_hex(10)).unwrap(), ids["e"]);
    assert_eq!(store.resolve("main~1").unwrap(), ids["f"]);
    assert_eq!(store.resolve("main~3").unwrap(), ids["b"]);
    assert_eq!(store.resolve("main^2").unwrap(), ids["e"]);
    assert_eq!(store.resolve("main^2~1").unwrap(), ids["d"]);
    assert_eq!(store.resolve("main^").unwrap(), ids["f"]);
    assert_eq!(store.resolve("main^0").unwrap(), ids["g"]);
    assert!(matches!(
        store.resolve("main~9"),
        Err(StateStoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.resolve("main^3"),
        Err(StateStoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.resolve("nope"),
        Err(StateStoreError::UnknownRevision { .. })
    ));
    assert!(matches!(
        store.resolve(""),
        Err(StateStoreError::UnknownRevision { .. })
    ));
    assert!(matches!(
        store.resolve("~1"),
        Err(StateStoreError::UnknownRevision { .. })
    ));
    assert_eq!(store.resolve("main~~").unwrap(), ids["c"]);
    // Anything after the base that is not `~N` or `^N` is refused, never skipped over
    // (non-ASCII text included: it must not be sliced mid-character).
    for junk in [
        "main~foo",
        "main~1.json",
        "main~~x",
        "main~-1",
        "main^-3",
        "main~é",
        "main^é",
        "main~1é",
    ] {
        let got = store.resolve(junk);
        assert!(
            matches!(&got, Err(StateStoreError::InvalidInput { .. })),
            "{junk}: {got:?}"
        );
    }
}

#[test]
fn ambiguous_prefix_lists_candidates() {
    let store = InMemoryStateStore::new();
    // Commit deterministic roots until two ids share their first 4 hex digits (a birthday
    // collision in 65536 buckets: expected after ~320 nodes, certain long before 5000).
    let mut seen: HashMap<String, StateNodeId> = HashMap::new();
    let mut pair = None;
    for i in 0..5000u32 {
        let data = store
            .put_state(StateData::new(i.to_be_bytes().to_vec()))
            .unwrap();
        let meta = StateMetadata::new(OffsetDateTime::UNIX_EPOCH, None);
        let id = store.commit_node(vec![], data, meta).unwrap();
        if let Some(other) = seen.insert(id.to_short_hex(4), id) {
            pair = Some((other, id));
            break;
        }
    }
    let (a, b) = pair.expect("a 4-digit prefix collision among 5000 ids");
    let err = store.resolve(&a.to_short_hex(4)).unwrap_err();
    let StateStoreError::AmbiguousId { candidates, prefix } = &err else {
        panic!("{err}")
    };
    assert_eq!(prefix, &a.to_short_hex(4));
    assert!(candidates.contains(&a) && candidates.contains(&b), "{err}");
    assert!(err.to_string().contains(&b.to_short_hex(12)), "{err}");
    // One more digit (where they differ) is unique again, unless they share 5 digits.
    let longer = a.to_short_hex(12);
    assert_eq!(store.resolve(&longer).unwrap(), a);
}

#[test]
fn graph_and_dot_export() {
    let store = InMemoryStateStore::new();
    let ids = build(&store, MERGE);
    let graph = store.to_graph(&LogOptions::new().from(ids["g"])).unwrap();
    assert_eq!(graph.node_count(), 7);
    assert_eq!(graph.edge_count(), 7);
    let dot = store
        .to_dot(&LogOptions::range(ids["b"], ids["g"]))
        .unwrap();
    assert!(dot.starts_with("digraph stategraph {"));
    assert!(dot.contains(&format!("label=\"{}\\ng\"", ids["g"].to_short_hex(12))));
    assert!(
        dot.contains("style=dashed"),
        "second parent edge of the merge: {dot}"
    );
    assert!(!dot.contains(&ids["a"].to_hex()));
}

/// A first-parent walk that shows a merge's second parent anyway (it is a tip too) draws
/// only the first-parent lines it followed, in the petgraph view and in DOT alike.
#[test]
fn first_parent_graphs_draw_first_parent_edges_only() {
    let store = InMemoryStateStore::new();
    let ids = build(&store, MERGE);
    let both = LogOptions::new().from(ids["g"]).from(ids["e"]);
    let all_edges = store.to_graph(&both).unwrap();
    assert_eq!(all_edges.edge_count(), 7);
    assert!(store.to_dot(&both).unwrap().contains("style=dashed"));
    let first = both.first_parent(true);
    let graph = store.to_graph(&first).unwrap();
    assert_eq!(
        graph.node_count(),
        7,
        "g's line a..g, and e, d from the second tip"
    );
    assert!(graph.edge_weights().all(|&position| position == 0));
    assert_eq!(
        graph.edge_count(),
        6,
        "every node's first parent; g -> e is not drawn"
    );
    let dot = store.to_dot(&first).unwrap();
    assert!(!dot.contains("style=dashed"), "{dot}");
    let g_to_e = format!("\"{}\" -> \"{}\"", ids["g"].to_hex(), ids["e"].to_hex());
    assert!(!dot.contains(&g_to_e), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 6, "{dot}");
}

#[test]
fn restore_moves_ref_by_cas() {
    let store = InMemoryStateStore::new();
    let ids = build(&store, MERGE);
    store.set_ref("main", None, &ids["g"]).unwrap();
    let snap = store.snapshot(&ids["c"]).unwrap();
    assert!(matches!(
        store.restore(&snap, "main", Some(&ids["a"])),
        Err(StateStoreError::RefConflict { .. })
    ));
    let restored = store.restore(&snap, "main", Some(&ids["g"])).unwrap();
    assert_eq!(restored.node_id, ids["c"]);
    assert_eq!(restored.state.bytes, b"c");
    assert_eq!(store.get_ref("main").unwrap(), Some(ids["c"]));
    let log = store.ref_log("main").unwrap();
    assert_eq!(log.len(), 2);
    assert!(
        log[1]
            .message
            .as_deref()
            .unwrap()
            .starts_with("restore snapshot")
    );
}

/// Export from a full store, import into an empty one: the receiver holds the node without
/// its ancestors, walks stop at the shallow boundary and say so, and importing an ancestor
/// later joins the pieces.
fn shallow_import(receiver: &dyn StateStore) {
    let sender = InMemoryStateStore::new();
    let ids = build(&sender, &[("a", &[]), ("b", &["a"]), ("c", &["b"])]);
    let snap_c = sender.snapshot(&ids["c"]).unwrap();
    let package = sender.export_snapshot(&snap_c).unwrap();
    let wire = package.to_bytes();

    // A tampered package is rejected before anything is written.
    let mut forged = package.clone();
    forged.bytes = b"forged".to_vec();
    assert!(matches!(
        receiver.import_snapshot(&forged),
        Err(StateStoreError::InvalidInput { .. })
    ));
    assert!(receiver.get_node(&ids["c"]).is_err());

    let imported = crate::SnapshotPackage::from_bytes(&wire).unwrap();
    assert_eq!(receiver.import_snapshot(&imported).unwrap(), snap_c);
    assert_eq!(
        receiver.import_snapshot(&imported).unwrap(),
        snap_c,
        "idempotent"
    );
    let loaded = receiver.load_snapshot(&snap_c).unwrap();
    assert_eq!(loaded.state.bytes, b"c");
    let node = receiver.get_node(&ids["c"]).unwrap();
    assert_eq!(node.parent_ids, vec![ids["b"]]);
    assert_eq!(
        node.generation, 3,
        "the sender's generation is kept at a boundary"
    );

    let mut log = receiver.log(&LogOptions::new().from(ids["c"])).unwrap();
    assert_eq!(labels(log.by_ref()), ["c"]);
    assert_eq!(log.boundary(), &[ids["b"]]);
    assert!(log.is_boundary(&ids["b"]) && !log.is_boundary(&ids["c"]));
    assert!(receiver.is_ancestor(&ids["c"], &ids["c"]).unwrap());

    // Bring in the parent: the pieces join, and the boundary moves up.
    let snap_b = sender.snapshot(&ids["b"]).unwrap();
    receiver
        .import_snapshot(&sender.export_snapshot(&snap_b).unwrap())
        .unwrap();
    let mut log = receiver.log(&LogOptions::new().from(ids["c"])).unwrap();
    assert_eq!(labels(log.by_ref()), ["c", "b"]);
    assert_eq!(log.boundary(), &[ids["a"]]);
    assert!(log.is_boundary(&ids["a"]) && !log.is_boundary(&ids["b"]));
    assert_eq!(labels(receiver.descendants(&ids["b"]).unwrap()), ["c"]);
    assert!(receiver.is_ancestor(&ids["b"], &ids["c"]).unwrap());
}

/// With the history between two stored nodes missing, "is it an ancestor?" and "what is the
/// merge base?" have no answer here: an error that says so, not a confident "no". Questions
/// the stored history does settle still get their answer.
fn ancestry_across_a_boundary(receiver: &dyn StateStore) {
    let sender = InMemoryStateStore::new();
    let ids = build(
        &sender,
        &[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &["c"])],
    );
    let import = |names: [&str; 2]| {
        for name in names {
            let snap = sender.snapshot(&ids[name]).unwrap();
            receiver
                .import_snapshot(&sender.export_snapshot(&snap).unwrap())
                .unwrap();
        }
    };
    import(["a", "d"]);
    let (a, d) = (ids["a"], ids["d"]);
    let shallow = |e: StateStoreError| match e {
        StateStoreError::ShallowHistory { parent, .. } => parent,
        other => panic!("expected ShallowHistory, got {other:?}"),
    };
    assert_eq!(shallow(receiver.is_ancestor(&a, &d).unwrap_err()), ids["c"]);
    assert_eq!(shallow(receiver.merge_base(&a, &d).unwrap_err()), ids["c"]);
    assert_eq!(
        shallow(receiver.merge_bases(&[d, a]).unwrap_err()),
        ids["c"]
    );
    // Settled without the missing part: generations say d cannot be below a, and a node is
    // its own ancestor and merge base.
    assert!(!receiver.is_ancestor(&d, &a).unwrap());
    assert!(receiver.is_ancestor(&d, &d).unwrap());
    assert_eq!(receiver.merge_base(&d, &d).unwrap(), Some(d));
    let message = receiver.is_ancestor(&a, &d).unwrap_err().to_string();
    assert!(message.contains("not stored here"), "{message}");

    // A missing parent elsewhere does not hide an answer the stored history settles: m
    // merges d with a shallow import x (whose parent is missing); d is an ancestor of m, so
    // it is their merge base.
    let far = InMemoryStateStore::new();
    let far_ids = build(&far, &[("p", &[]), ("x", &["p"])]);
    let x_snap = far.snapshot(&far_ids["x"]).unwrap();
    receiver
        .import_snapshot(&far.export_snapshot(&x_snap).unwrap())
        .unwrap();
    let data = receiver.put_state(StateData::new(b"m".to_vec())).unwrap();
    let m = receiver
        .commit_node(vec![d, far_ids["x"]], data, at(100))
        .unwrap();
    assert!(receiver.is_ancestor(&d, &m).unwrap());
    assert_eq!(receiver.merge_base(&d, &m).unwrap(), Some(d));
    assert_eq!(receiver.merge_bases(&[m, d]).unwrap(), vec![d]);

    // Filling the gap answers both.
    import(["b", "c"]);
    assert!(receiver.is_ancestor(&a, &d).unwrap());
    assert_eq!(receiver.merge_base(&a, &d).unwrap(), Some(a));
}

/// A kernel merges agent lines into `main`; once `gc --prune-history` has cut another
/// agent's line, the merge base of an agent's head and `main` is still settled by the stored
/// history (every ancestor of the agent's head is stored), so it is answered, not refused as
/// depending on the cut history of the other line.
#[test]
fn merge_base_is_answered_when_only_another_line_is_cut() {
    //   a1 - a2 ------ a3        (agent a, fully stored)
    //          \
    //   [p] - x - m               (m = merge(x, a2); x's parent p was never imported)
    let far = InMemoryStateStore::new();
    let far_ids = build(&far, &[("p", &[]), ("x", &["p"])]);
    let store = InMemoryStateStore::new();
    let x_snap = far.snapshot(&far_ids["x"]).unwrap();
    store
        .import_snapshot(&far.export_snapshot(&x_snap).unwrap())
        .unwrap();
    let ids = build(&store, &[("a1", &[]), ("a2", &["a1"]), ("a3", &["a2"])]);
    let data = store.put_state(StateData::new(b"m".to_vec())).unwrap();
    let m = store
        .commit_node(vec![far_ids["x"], ids["a2"]], data, at(100))
        .unwrap();
    assert_eq!(store.merge_base(&ids["a3"], &m).unwrap(), Some(ids["a2"]));
    assert_eq!(store.merge_bases(&[m, ids["a3"]]).unwrap(), vec![ids["a2"]]);
    // Disjoint from the cut line: nothing in common, whatever lies past the cut.
    let lone = build(&store, &[("lone", &[])]);
    assert_eq!(store.merge_base(&lone["lone"], &ids["a3"]).unwrap(), None);
}

/// A common ancestor that is an ancestor of another one only through history that is not
/// stored is not a best one: `merge_bases` must not list it as if it were, but say that the
/// answer depends on the missing history.
#[test]
fn merge_bases_do_not_list_an_ancestor_of_another_base_across_a_boundary() {
    //   r - [b1] - b - x     b1 not stored here; x = merge(b, r), y = merge(b, c),
    //    \          /       m = merge(r, x). Common ancestors of m and y: b and r, but r
    //     c ------- y        is an ancestor of b (through b1): b is the only best one.
    let sender = InMemoryStateStore::new();
    let ids = build(
        &sender,
        &[
            ("r", &[]),
            ("b1", &["r"]),
            ("b", &["b1"]),
            ("c", &["r"]),
            ("x", &["b", "r"]),
            ("y", &["b", "c"]),
            ("m", &["r", "x"]),
        ],
    );
    assert_eq!(
        sender.merge_bases(&[ids["m"], ids["y"]]).unwrap(),
        vec![ids["b"]]
    );
    let receiver = InMemoryStateStore::new();
    for name in ["r", "b", "c", "x", "y", "m"] {
        let snap = sender.snapshot(&ids[name]).unwrap();
        receiver
            .import_snapshot(&sender.export_snapshot(&snap).unwrap())
            .unwrap();
    }
    match receiver.merge_bases(&[ids["m"], ids["y"]]) {
        Err(StateStoreError::ShallowHistory { parent, .. }) => assert_eq!(parent, ids["b1"]),
        Ok(bases) => assert_eq!(bases, vec![ids["b"]], "a base that is not a best one"),
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

/// Runs `check` on an empty in-memory store and on an empty SQLite store.
fn in_both_backends(check: fn(&dyn StateStore)) {
    check(&InMemoryStateStore::new());
    let dir = tempfile::tempdir().unwrap();
    check(&crate::SqliteStateStore::open(dir.path().join("s.db")).unwrap());
}

#[test]
fn ancestry_across_a_boundary_in_both_backends() {
    in_both_backends(ancestry_across_a_boundary);
}

#[test]
fn shallow_import_in_both_backends() {
    in_both_backends(shallow_import);
}

#[test]
fn dot_lines_wait_only_for_parents_still_ahead() {
    // A mainline that merges a one-node side branch at every step. Walked first-parent, the
    // side nodes are never reached: their arrows must be dropped as the walk passes them,
    // not kept to the end.
    let store = InMemoryStateStore::new();
    let data = store.put_state(StateData::new(vec![1])).unwrap();
    let mut head = store.commit_node(vec![], data, at(0)).unwrap();
    for i in 1..=300 {
        let side = store.commit_node(vec![head], data, at(2 * i - 1)).unwrap();
        head = store
            .commit_node(vec![head, side], data, at(2 * i))
            .unwrap();
    }
    for first_parent in [false, true] {
        let options = LogOptions::new().from(head).first_parent(first_parent);
        let mut dot = store.dot_lines(&options).unwrap();
        let (mut most, mut arrows) = (0, 0);
        while let Some(line) = dot.next() {
            arrows += usize::from(line.unwrap().contains(" -> "));
            most = most.max(dot.waiting_for());
        }
        let want = if first_parent { 300 } else { 900 };
        assert_eq!(arrows, want, "first parent: {first_parent}");
        assert!(
            most <= 2,
            "waited for {most} parents at once (first parent: {first_parent})"
        );
    }
}

#[test]
fn shown_parents_read_ahead_only_while_exclusions_are_above() {
    // Two chains from a common root, committed in turns: `main ^side` walks both at once,
    // the excluded side beside the shown main, so whether main's next node is shown is
    // settled a node or two ahead.
    let store = InMemoryStateStore::new();
    let data = store.put_state(StateData::new(vec![1])).unwrap();
    let root = store.commit_node(vec![], data, at(0)).unwrap();
    let (mut main, mut side) = (root, root);
    for i in 1..=500 {
        main = store.commit_node(vec![main], data, at(2 * i)).unwrap();
        side = store.commit_node(vec![side], data, at(2 * i + 1)).unwrap();
    }
    let merged = store.commit_node(vec![main, side], data, at(2000)).unwrap();
    // A merge of an old line: shown, and known to be at once, as nothing excluded is above it.
    let old = store.commit_node(vec![root], data, at(1)).unwrap();
    let late = store.commit_node(vec![main, old], data, at(2001)).unwrap();
    for (options, shown) in [
        (LogOptions::new().from(main).exclude(side), 500),
        (LogOptions::range(side, merged), 501),
        (LogOptions::range(root, merged), 1001),
        (LogOptions::range(root, late), 502),
    ] {
        let mut walk = store.log(&options).unwrap().with_shown_parents();
        let (mut most, mut nodes, mut lines) = (0, 0, 0);
        while let Some(item) = walk.next() {
            let (node, parents) = item.unwrap();
            nodes += 1;
            lines += parents.len();
            assert!(parents.iter().all(|p| node.parent_ids.contains(p)));
            most = most.max(walk.read_ahead());
        }
        assert_eq!(nodes, shown, "{options:?}");
        // A line from each node to each parent shown: one fewer than the nodes, as the
        // lowest shown nodes' parent, the root, is excluded and the merges have two.
        assert_eq!(lines, shown - 1, "{options:?}");
        assert!(most <= 1, "read {most} nodes ahead for {options:?}");
    }
}
