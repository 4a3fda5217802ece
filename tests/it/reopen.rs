//! A SQLite store keeps everything across close and reopen, writable and read-only.

use std::path::Path;

use stategraph::codec;
use stategraph::{
    ContentHash, SnapshotId, SqliteStateStore, StateData, StateMetadata, StateNode, StateNodeId,
    StateStore,
};
use time::Duration;
use time::macros::{datetime, offset};

use crate::util::{T0, open_normal, random_bytes};

/// Everything one commit put in, and what it should read back as.
struct Expected {
    node: StateNode,
    state: StateData,
}

/// The inputs of commit `i`, with varied content types, labels and (nanosecond) times.
fn inputs(i: usize) -> (StateData, StateMetadata) {
    let bytes = if i % 17 == 16 {
        // Same bytes as an earlier commit: stored once, referenced twice.
        random_bytes((i - 1) as u64, (i - 1) * 13 % 3000)
    } else {
        random_bytes(i as u64, i * 13 % 3000)
    };
    let content_type = match i % 4 {
        0 => None,
        1 => Some("application/json".to_owned()),
        2 => Some(String::new()),
        _ => Some("text/plain; charset=utf-8".to_owned()),
    };
    let label = match i % 5 {
        0 => None,
        1 => Some(format!("tick {i}")),
        2 => Some(String::new()),
        3 => Some(format!("état ✓ 🚀 #{i}")),
        _ => Some(format!("line one\nline two {i}")),
    };
    let created_at = if i.is_multiple_of(13) {
        datetime!(1969-12-31 23:59:59 UTC) - Duration::nanoseconds(i as i64 * 7_919)
    } else if i.is_multiple_of(7) {
        (T0 + Duration::nanoseconds(i as i64 * 1_000_000_007)).to_offset(offset!(+05:30))
    } else {
        T0 + Duration::nanoseconds(i as i64 * 1_000_000_007)
    };
    (
        StateData {
            bytes,
            content_type,
        },
        StateMetadata::new(created_at, label),
    )
}

/// Builds a 250-commit history: a main line with a side branch merged in every 10 commits.
/// Returns the expected nodes (computed independently of the store) and the snapshots.
fn build_history(store: &dyn StateStore) -> (Vec<Expected>, Vec<(SnapshotId, usize)>) {
    let mut expected: Vec<Expected> = Vec::new();
    let mut snapshots = Vec::new();
    let mut main: Option<usize> = None;
    let mut side: Option<usize> = None;
    for i in 0..250 {
        let parent_idx: Vec<usize> = match i % 10 {
            3 | 6 => side.or(main).into_iter().collect(),
            9 => match (main, side) {
                (Some(m), Some(s)) if m != s => vec![m, s],
                (m, _) => m.into_iter().collect(),
            },
            _ => main.into_iter().collect(),
        };
        let (state, metadata) = inputs(i);
        let parent_ids: Vec<StateNodeId> =
            parent_idx.iter().map(|&p| expected[p].node.id).collect();
        let data_ref = store.put_state(state.clone()).expect("put_state");
        let id = store
            .commit_node(parent_ids.clone(), data_ref, metadata.clone())
            .expect("commit_node");
        let data_hash = ContentHash::of(&state.bytes);
        assert_eq!(
            id,
            codec::node_id(
                &parent_ids,
                &data_hash,
                state.content_type.as_deref(),
                &metadata
            )
        );
        let generation = parent_idx
            .iter()
            .map(|&p| expected[p].node.generation)
            .max()
            .map_or(1, |g| g + 1);
        expected.push(Expected {
            node: StateNode {
                id,
                parent_ids,
                data_ref,
                data_hash,
                content_type: state.content_type.clone(),
                metadata,
                generation,
            },
            state,
        });
        match i % 10 {
            3 | 6 => side = Some(i),
            _ => main = Some(i),
        }
        if i % 9 == 0 {
            snapshots.push((store.snapshot(&id).expect("snapshot"), i));
        }
    }
    (expected, snapshots)
}

fn check_history(store: &dyn StateStore, expected: &[Expected], snapshots: &[(SnapshotId, usize)]) {
    for (i, e) in expected.iter().enumerate() {
        let node = store
            .get_node(&e.node.id)
            .unwrap_or_else(|err| panic!("node {i}: {err}"));
        assert_eq!(node, e.node, "node {i}");
        assert_eq!(
            node.metadata.created_at.unix_timestamp_nanos(),
            e.node.metadata.created_at.unix_timestamp_nanos()
        );
        let state = store.get_state(&e.node.data_ref).expect("get_state");
        assert!(state == e.state, "state of node {i} differs");
    }
    for &(snap, i) in snapshots {
        let loaded = store.load_snapshot(&snap).expect("load_snapshot");
        assert_eq!(loaded.node_id, expected[i].node.id);
        assert!(
            loaded.state == expected[i].state,
            "snapshot of node {i} differs"
        );
    }
}

#[test]
fn everything_survives_reopen_writable_and_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    let store = open_normal(&path);
    let (expected, snapshots) = build_history(&store);
    assert!(
        expected.iter().any(|e| e.node.parent_ids.len() == 2),
        "setup: no merges"
    );
    assert!(expected.iter().map(|e| e.node.generation).max() < Some(250));
    check_history(&store, &expected, &snapshots);
    drop(store);

    let store = SqliteStateStore::open(&path).expect("reopen writable");
    check_history(&store, &expected, &snapshots);
    // Recommitting after reopen finds the same nodes (idempotence survives reopen).
    for e in expected.iter().step_by(25) {
        let again = store
            .commit_node(
                e.node.parent_ids.clone(),
                e.node.data_ref,
                e.node.metadata.clone(),
            )
            .expect("recommit");
        assert_eq!(again, e.node.id);
    }
    drop(store);

    let store = SqliteStateStore::open_read_only(&path).expect("reopen read-only");
    check_history(&store, &expected, &snapshots);
}

#[test]
fn history_grows_across_many_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("grow.db");
    let mut ids: Vec<StateNodeId> = Vec::new();
    for round in 0..6i64 {
        let store = reopen(&path, round);
        if let Some(last) = ids.last() {
            assert_eq!(
                store.get_node(last).expect("previous head").generation,
                ids.len() as u64
            );
        }
        for k in 0..5i64 {
            let n = round * 5 + k;
            let r = store
                .put_state(StateData::new(n.to_le_bytes().to_vec()))
                .expect("put");
            let parents = ids.last().map(|&p| vec![p]).unwrap_or_default();
            let m = StateMetadata::new(T0 + Duration::nanoseconds(n), None);
            ids.push(store.commit_node(parents, r, m).expect("commit"));
        }
    }
    let store = SqliteStateStore::open_read_only(&path).expect("read-only");
    for (i, id) in ids.iter().enumerate() {
        let node = store.get_node(id).expect("get_node");
        assert_eq!(node.generation, i as u64 + 1);
        let bytes = store.get_state(&node.data_ref).expect("get_state").bytes;
        assert_eq!(bytes, (i as i64).to_le_bytes());
    }
}

/// Alternates durability settings between rounds; both must read each other's writes.
fn reopen(path: &Path, round: i64) -> SqliteStateStore {
    let durability = if round % 2 == 0 {
        stategraph::Durability::Normal
    } else {
        stategraph::Durability::Immediate
    };
    SqliteStateStore::builder()
        .durability(durability)
        .open(path)
        .expect("open")
}
