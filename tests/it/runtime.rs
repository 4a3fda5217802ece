//! An agent runtime's life on one SQLite store, as the features meet in use: ticks on `main`
//! and on agent branches that merge back, a snapshot of each branch every few ticks, history
//! pruning and backups between runs, and restarts that resume every branch from the latest
//! snapshot on its own line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use stategraph::{
    GcOptions, History as _, LogOptions, SqliteStateStore, StateData, StateMetadata, StateNodeId,
    StateStore,
};

use crate::util::open_normal;

const BRANCHES: [&str; 3] = ["main", "agents/1", "agents/2"];
const LIVES: usize = 4;
const TICKS: u64 = 23;

fn state(branch: &str, life: usize, tick: u64) -> StateData {
    StateData::new(format!(r#"{{"branch":"{branch}","life":{life},"tick":{tick}}}"#).into_bytes())
        .with_content_type("application/json")
}

/// Resumes every branch from the latest snapshot on its own line, which must be the one the
/// runtime took last (`resume`), and checks that the whole history's answer is not in doubt
/// either.
fn restart(store: &SqliteStateStore, resume: &BTreeMap<&str, StateNodeId>) {
    for (&branch, expected) in resume {
        let head = store.get_ref(branch).expect("get_ref").expect("branch");
        let own_line = LogOptions::new().from(head).first_parent(true);
        let latest = store
            .latest_snapshot_in(&own_line)
            .expect("latest on the branch's line")
            .expect("a snapshot");
        assert_eq!(&latest.node_id, expected, "{branch}");
        store
            .latest_snapshot(&head)
            .expect("latest in the whole history")
            .expect("a snapshot");
        let restored = store
            .restore(&latest.id, branch, Some(&head))
            .expect("restore");
        assert_eq!(restored.node_id, *expected);
    }
}

/// Checks a store (or a backup of one) as a person would after an incident: `fsck`, and
/// every branch resumable.
fn assert_sound(path: &Path, resume: &BTreeMap<&str, StateNodeId>) {
    let store = SqliteStateStore::open_read_only(path).expect("open");
    let report = store.verify(|_| {}).expect("verify");
    assert!(report.is_ok(), "{}: {:?}", path.display(), report.problems);
    for (&branch, expected) in resume {
        let head = store.get_ref(branch).expect("get_ref").expect("branch");
        let own_line = LogOptions::new().from(head).first_parent(true);
        let latest = store.latest_snapshot_in(&own_line).expect("latest");
        assert_eq!(latest.map(|s| s.node_id), Some(*expected), "{branch}");
    }
}

#[test]
fn an_agent_runtime_resumes_from_its_snapshots_through_pruning_and_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("runtime.db");
    // The node of each branch's newest snapshot, as the runtime took it.
    let mut resume: BTreeMap<&str, StateNodeId> = BTreeMap::new();
    let mut backups = Vec::new();
    for life in 0..LIVES {
        let store = open_normal(&path);
        restart(&store, &resume);
        for tick in 1..=TICKS {
            for branch in BRANCHES {
                let head = match store.get_ref(branch).expect("get_ref") {
                    Some(head) => Some(head),
                    // An agent starts from main's head.
                    None if branch != "main" => store.get_ref("main").expect("get_ref"),
                    None => None,
                };
                let label = format!("{branch} {life}.{tick}");
                let meta = StateMetadata::now(label.as_str());
                let node = match store.get_ref(branch).expect("get_ref") {
                    Some(_) => {
                        store
                            .commit_on(branch, head.as_ref(), state(branch, life, tick), meta)
                            .expect("commit_on")
                            .1
                    }
                    None => {
                        let (_, node) = store
                            .commit_state(
                                head.into_iter().collect(),
                                state(branch, life, tick),
                                meta,
                            )
                            .expect("commit_state");
                        store.set_ref(branch, None, &node).expect("new branch");
                        node
                    }
                };
                if tick % 5 == 0 {
                    store.snapshot(&node).expect("snapshot");
                    resume.insert(branch, node);
                }
            }
            // Every 7 ticks main merges agents/1 (main first: main's own line stays first).
            if tick % 7 == 0 {
                let main = store.get_ref("main").expect("get_ref").expect("main");
                let agent = store.get_ref("agents/1").expect("get_ref").expect("agent");
                let mut batch = store.batch();
                let data = batch.put_state(state("merge", life, tick));
                let merged = batch
                    .commit_node(vec![main, agent], data, StateMetadata::now("merge"))
                    .expect("merge");
                batch.set_ref("main", Some(&main), &merged).expect("move");
                batch.commit().expect("merge batch");
            }
        }
        // Maintenance between runs: cut all history a restart does not need, then back up.
        let report = store
            .gc(&GcOptions::new()
                .grace(Duration::ZERO)
                .prune_history(Duration::ZERO))
            .expect("gc");
        assert!(report.nodes_removed > 0, "{report:?}");
        let backup = dir.path().join(format!("backup-{life}.db"));
        store.backup(&backup).expect("backup");
        backups.push((backup, resume.clone()));
        drop(store);
        assert_sound(&path, &resume);
    }
    for (backup, resume) in &backups {
        assert_sound(backup, resume);
    }
    // The last backup is a store to carry on from.
    let (last, resume) = backups.last().expect("a backup");
    let copy = dir.path().join("carried-on.db");
    std::fs::copy(last, &copy).expect("copy");
    let store = open_normal(&copy);
    restart(&store, resume);
}
