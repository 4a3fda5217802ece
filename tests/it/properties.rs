//! Property tests (kept modest): random inputs against an independent CBOR encoder, and the
//! two backends against each other.

use std::cell::RefCell;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use stategraph::codec;
use stategraph::{
    ContentHash, InMemoryStateStore, StateData, StateMetadata, StateNodeId, StateStore,
};
use time::OffsetDateTime;

use crate::util::TempSqlite;

/// A minimal deterministic CBOR writer for the node encoding, written from RFC 8949 and the
/// `codec` module doc (not from the crate's code).
fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

fn int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        head(out, 0, v as u64);
    } else {
        head(out, 1, (-1 - v) as u64);
    }
}

fn bstr(out: &mut Vec<u8>, b: &[u8]) {
    head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

fn text_or_null(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0xf6),
        Some(s) => {
            head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn reference_encoding(
    parents: &[StateNodeId],
    data_hash: &ContentHash,
    content_type: Option<&str>,
    metadata: &StateMetadata,
) -> Vec<u8> {
    let nanos_total = metadata.created_at.unix_timestamp_nanos();
    let seconds = nanos_total.div_euclid(1_000_000_000) as i64;
    let nanos = nanos_total.rem_euclid(1_000_000_000) as i64;
    let mut out = Vec::new();
    head(&mut out, 4, 4);
    head(&mut out, 4, parents.len() as u64);
    for p in parents {
        bstr(&mut out, p.as_bytes());
    }
    bstr(&mut out, data_hash.as_bytes());
    text_or_null(&mut out, content_type);
    head(&mut out, 4, 3);
    int(&mut out, seconds);
    int(&mut out, nanos);
    text_or_null(&mut out, metadata.label.as_deref());
    out
}

/// Instants between the years -9999 and 9999, at nanosecond resolution.
fn any_instant() -> impl Strategy<Value = OffsetDateTime> {
    let min = time::macros::datetime!(-9999-01-01 00:00:00 UTC).unix_timestamp_nanos();
    let max = time::macros::datetime!(9999-12-31 23:59:59.999999999 UTC).unix_timestamp_nanos();
    prop_oneof![
        min..=max,
        // Dense around the epoch, where sign handling matters.
        -5_000_000_000i128..5_000_000_000i128,
    ]
    .prop_map(|n| OffsetDateTime::from_unix_timestamp_nanos(n).expect("in range"))
}

fn any_text() -> impl Strategy<Value = Option<String>> {
    option::of(prop_oneof!["[a-z/;=+ -]{0,20}", "\\PC{0,8}", ".{0,300}"])
}

#[derive(Debug, Clone)]
struct Commit {
    bytes: Vec<u8>,
    content_type: Option<String>,
    label: Option<String>,
    at: OffsetDateTime,
    /// Picks parents among the nodes committed so far (indexes modulo their count).
    parent_picks: Vec<usize>,
}

fn any_commit() -> impl Strategy<Value = Commit> {
    (
        vec(any::<u8>(), 0..300),
        any_text(),
        any_text(),
        any_instant(),
        vec(any::<usize>(), 0..4),
    )
        .prop_map(|(bytes, content_type, label, at, parent_picks)| Commit {
            bytes,
            content_type,
            label,
            at,
            parent_picks,
        })
}

#[test]
fn encoding_matches_an_independent_cbor_writer() {
    let mut runner = TestRunner::new(Config::with_cases(256));
    let strategy = (
        vec(any::<[u8; 32]>(), 0..5),
        any::<[u8; 32]>(),
        any_text(),
        any_text(),
        any_instant(),
    );
    runner
        .run(&strategy, |(parents, hash, content_type, label, at)| {
            let parents: Vec<StateNodeId> =
                parents.into_iter().map(StateNodeId::from_bytes).collect();
            let hash = ContentHash::from_bytes(hash);
            let m = StateMetadata::new(at, label);
            let got = codec::encode_node(&parents, &hash, content_type.as_deref(), &m);
            let want = reference_encoding(&parents, &hash, content_type.as_deref(), &m);
            prop_assert_eq!(got, want);
            Ok(())
        })
        .expect("property failed");
}

#[test]
fn backends_agree_on_random_histories() {
    let memory = InMemoryStateStore::new();
    let sqlite = TempSqlite::new();
    let committed: RefCell<Vec<StateNodeId>> = RefCell::default();
    let mut runner = TestRunner::new(Config::with_cases(200));
    runner
        .run(&any_commit(), |c| {
            let mut known = committed.borrow_mut();
            let mut parents: Vec<StateNodeId> = Vec::new();
            if !known.is_empty() {
                for pick in &c.parent_picks {
                    let p = known[pick % known.len()];
                    if !parents.contains(&p) {
                        parents.push(p);
                    }
                }
            }
            let data = StateData {
                bytes: c.bytes.clone(),
                content_type: c.content_type.clone(),
            };
            let m = StateMetadata::new(c.at, c.label.clone());
            let expected_id =
                codec::node_id(&parents, &data.hash(), data.content_type.as_deref(), &m);
            let mut nodes = Vec::new();
            for store in [&memory as &dyn StateStore, &sqlite.store] {
                let r = store.put_state(data.clone()).expect("put_state");
                prop_assert_eq!(store.get_state(&r).expect("get_state"), data.clone());
                let id = store
                    .commit_node(parents.clone(), r, m.clone())
                    .expect("commit_node");
                prop_assert_eq!(id, expected_id);
                let node = store.get_node(&id).expect("get_node");
                prop_assert_eq!(&node.metadata, &m);
                prop_assert_eq!(&node.parent_ids, &parents);
                nodes.push(node);
            }
            // Data refs are fresh per store; everything else must agree.
            nodes[1].data_ref = nodes[0].data_ref;
            prop_assert_eq!(&nodes[0], &nodes[1]);
            known.push(expected_id);
            Ok(())
        })
        .expect("property failed");
}

/// One node of a random history for the gc property: parent picks among earlier nodes, and
/// what refers to it (0: nothing, 1: a branch, 2: a snapshot, 3: a branch since deleted, so
/// only the ref log has it).
/// What role `role` of [`any_gc_history`] makes of node `i`: 1 a branch, 2 a snapshot, 3 a
/// branch deleted again (its ref log still names the node), else nothing.
fn name_by_role(store: &dyn StateStore, role: u8, i: usize, id: &StateNodeId) {
    match role {
        1 => store.set_ref(&format!("b{i}"), None, id).expect("ref"),
        2 => drop(store.snapshot(id).expect("snapshot")),
        3 => {
            store.set_ref(&format!("d{i}"), None, id).expect("ref");
            store.delete_ref(&format!("d{i}"), id).expect("delete");
        }
        _ => {}
    }
}

fn any_gc_history() -> impl Strategy<Value = Vec<(Vec<usize>, u8)>> {
    vec((vec(any::<usize>(), 0..3), 0u8..4), 1..40)
}

/// A dry run counts exactly what the collection then removes, whatever it is asked to do:
/// the SQLite store counts on a read connection, apart from the collection's own writes, so
/// the two must agree case by case (and the in-memory store's too). A SQLite collection in
/// steps of one to three rows, or in one transaction that reads the graph under the write
/// lock, removes and reports exactly what one planned in a single step does.
#[test]
fn gc_dry_run_counts_what_gc_removes() {
    use stategraph::GcOptions;
    use std::time::Duration;

    let mut runner = TestRunner::new(Config::with_cases(48));
    runner
        .run(
            &(any_gc_history(), 0u8..8, 1usize..4),
            |(history, ask, rows)| {
                let mut options = GcOptions::new().grace(Duration::ZERO);
                if ask & 1 != 0 {
                    options = options.prune_history(Duration::ZERO);
                }
                if ask & 2 != 0 {
                    options = options.expire_ref_log(Duration::ZERO);
                }
                if ask & 4 != 0 {
                    // The default grace: nothing made just now is old enough.
                    options = options.grace(Duration::from_secs(3600));
                }
                let (sqlite, in_steps) = (TempSqlite::new(), TempSqlite::new());
                let memory = InMemoryStateStore::new();
                let mut reports = Vec::new();
                for (store, options) in [
                    (&memory as &dyn StateStore, options.clone()),
                    (&sqlite.store, options.clone()),
                    (&in_steps.store, options.clone().rows_per_step(rows)),
                ] {
                    let mut ids: Vec<StateNodeId> = Vec::new();
                    for (i, (picks, role)) in history.iter().enumerate() {
                        let mut parents: Vec<StateNodeId> = Vec::new();
                        if i > 0 {
                            for pick in picks {
                                if !parents.contains(&ids[pick % i]) {
                                    parents.push(ids[pick % i]);
                                }
                            }
                        }
                        // Some states shared between nodes (one blob), some never committed.
                        let data = StateData::new(format!("state {}", i % 7).into_bytes());
                        if i % 5 == 4 {
                            store
                                .put_state(StateData::new(format!("loose {i}").into_bytes()))
                                .expect("put");
                        }
                        let (_, id) = store
                            .commit_state(
                                parents,
                                data,
                                StateMetadata::new(
                                    OffsetDateTime::UNIX_EPOCH,
                                    Some(format!("{i}")),
                                ),
                            )
                            .expect("commit");
                        name_by_role(store, *role, i, &id);
                        ids.push(id);
                    }
                    let dry = store.gc(&options.clone().dry_run(true)).expect("dry run");
                    prop_assert!(dry.dry_run);
                    let real = store.gc(&options).expect("gc");
                    prop_assert!(!real.dry_run);
                    let mut counted = dry;
                    counted.dry_run = false;
                    prop_assert_eq!(counted, real, "options {:?}", ask);
                    reports.push(real);
                }
                prop_assert_eq!(
                    reports[1],
                    reports[2],
                    "options {:?}, {} rows a step",
                    ask,
                    rows
                );
                prop_assert_eq!(reports[0], reports[1], "options {:?}", ask);
                for store in [&sqlite.store, &in_steps.store] {
                    let report = store.verify(|_| {}).expect("verify");
                    prop_assert!(report.is_ok(), "{:?}", report.problems);
                }
                let held = |store: &stategraph::SqliteStateStore| {
                    let s = store.stats().expect("stats");
                    (
                        s.nodes,
                        s.states,
                        s.blobs,
                        s.blob_bytes,
                        s.snapshots,
                        s.refs,
                        s.shallow_edges,
                    )
                };
                prop_assert_eq!(held(&sqlite.store), held(&in_steps.store));
                Ok(())
            },
        )
        .expect("property failed");
}

#[test]
fn gc_keeps_exactly_the_ancestors_of_what_is_referred_to() {
    use stategraph::GcOptions;

    let mut runner = TestRunner::new(Config::with_cases(48));
    runner
        .run(&any_gc_history(), |history| {
            let sqlite = TempSqlite::new();
            let memory = InMemoryStateStore::new();
            for store in [&memory as &dyn StateStore, &sqlite.store] {
                let mut ids: Vec<StateNodeId> = Vec::new();
                let mut parents_of: Vec<Vec<usize>> = Vec::new();
                let mut roots = Vec::new();
                for (i, (picks, role)) in history.iter().enumerate() {
                    let mut parents: Vec<usize> = Vec::new();
                    if i > 0 {
                        for pick in picks {
                            if !parents.contains(&(pick % i)) {
                                parents.push(pick % i);
                            }
                        }
                    }
                    let data = StateData::new(format!("node {i}").into_bytes());
                    let (_, id) = store
                        .commit_state(
                            parents.iter().map(|&p| ids[p]).collect(),
                            data,
                            StateMetadata::new(OffsetDateTime::UNIX_EPOCH, None),
                        )
                        .expect("commit");
                    name_by_role(store, *role, i, &id);
                    if *role != 0 {
                        roots.push(i);
                    }
                    ids.push(id);
                    parents_of.push(parents);
                }
                // The oracle: a plain closure over parents, from the nodes referred to.
                let mut kept = vec![false; ids.len()];
                let mut stack = roots;
                while let Some(i) = stack.pop() {
                    if !std::mem::replace(&mut kept[i], true) {
                        stack.extend(&parents_of[i]);
                    }
                }
                let report = store
                    .gc(&GcOptions::new().grace(std::time::Duration::ZERO))
                    .expect("gc");
                let want_kept = kept.iter().filter(|k| **k).count() as u64;
                prop_assert_eq!(report.nodes_kept, want_kept);
                prop_assert_eq!(report.nodes_removed, ids.len() as u64 - want_kept);
                for (i, id) in ids.iter().enumerate() {
                    match store.get_node(id) {
                        Ok(node) => {
                            prop_assert!(kept[i], "node {} should be gone", i);
                            store
                                .get_state(&node.data_ref)
                                .expect("a kept node's state");
                        }
                        Err(_) => prop_assert!(!kept[i], "node {} was removed", i),
                    }
                }
            }
            let report = sqlite.store.verify(|_| {}).expect("verify");
            prop_assert!(report.is_ok(), "{:?}", report.problems);
            Ok(())
        })
        .expect("property failed");
}
