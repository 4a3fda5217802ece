//! Several OS processes writing one store file at once: no write may fail with a busy or
//! locked error, no write may be lost, and compare-and-swap on a shared ref must stay exact.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use stategraph::{
    Durability, SCHEMA_VERSION, SqliteStateStore, StateData, StateMetadata, StateNodeId,
    StateStore, StateStoreError,
};

use crate::durability_util::{
    ChildProc, assert_chain_complete, assert_integrity, assert_node_readable,
    assert_ref_log_consistent, child_command, child_role, child_var, node_id, report,
};

const CHILD_TEST: &str = "multiprocess::child_committer";

/// Waits for the parent's start signal (a file appearing), so all children write at once.
fn wait_for_go(go: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !go.exists() {
        assert!(Instant::now() < deadline, "child: no start signal");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The child half of the multi-process tests: opens the store, commits its own chain of
/// `COUNT` nodes after a root, moving its own ref `proc/N` and racing the others to move
/// `shared` by compare-and-swap (retrying on conflict). Reports every node and, at the end,
/// how many moves of `shared` succeeded. Does nothing when run on its own.
#[test]
#[ignore = "child process of the multi-process tests; run by them"]
fn child_committer() {
    if child_role().as_deref() != Some("multiprocess") {
        return;
    }
    let path = child_var("STATEGRAPH_TEST_DB");
    let index = child_var("STATEGRAPH_TEST_INDEX");
    let count: u32 = child_var("STATEGRAPH_TEST_COUNT").parse().expect("count");
    let durability = match child_var("STATEGRAPH_TEST_DURABILITY").as_str() {
        "immediate" => Durability::Immediate,
        _ => Durability::Normal,
    };
    let go = std::path::PathBuf::from(child_var("STATEGRAPH_TEST_GO"));
    let open_after_go = std::env::var("STATEGRAPH_TEST_OPEN_AFTER_GO").is_ok();
    let open = || {
        SqliteStateStore::builder()
            .durability(durability)
            .open(&path)
            .expect("child: open")
    };
    let store = if open_after_go {
        report("ready");
        wait_for_go(&go);
        open()
    } else {
        let store = open();
        report("ready");
        wait_for_go(&go);
        store
    };

    let own = format!("proc/{index}");
    let (mut moved, mut conflicts) = (0u32, 0u32);
    let mut shared = None;
    let mut head: Option<StateNodeId> = None;
    for tick in 0..=count {
        let label = format!("p{index}/{tick}");
        let data = store
            .put_state(StateData::new(label.clone().into_bytes()))
            .expect("child: put_state");
        let node = store
            .commit_node(
                head.into_iter().collect(),
                data,
                StateMetadata::now(Some(label)),
            )
            .expect("child: commit_node");
        report(&format!("node {}", node.to_hex()));
        store
            .set_ref(&own, head.as_ref(), &node)
            .expect("child: moving its own ref");
        head = Some(node);
        // Race the other processes: CAS from where `shared` was last seen, and on a conflict
        // retry from where the conflict says it is now.
        loop {
            match store.set_ref("shared", shared.as_ref(), &node) {
                Ok(()) => {
                    moved += 1;
                    shared = Some(node);
                    break;
                }
                Err(StateStoreError::RefConflict { actual, .. }) => {
                    conflicts += 1;
                    shared = actual;
                }
                Err(e) => panic!("child: moving shared: {e}"),
            }
        }
    }
    report(&format!("done {moved} {conflicts}"));
}

/// Runs `processes` children committing `count` nodes each (after a root) on one file and
/// checks the result.
fn run(processes: usize, count: u32, durability: Durability, open_after_go: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shared.db");
    let go = dir.path().join("go");
    if !open_after_go {
        drop(SqliteStateStore::open(&path).expect("creating the store"));
    }
    let started = Instant::now();
    let mut children: Vec<ChildProc> = (0..processes)
        .map(|i| {
            let mut cmd = child_command(CHILD_TEST, "multiprocess");
            cmd.env("STATEGRAPH_TEST_DB", &path)
                .env("STATEGRAPH_TEST_INDEX", i.to_string())
                .env("STATEGRAPH_TEST_COUNT", count.to_string())
                .env(
                    "STATEGRAPH_TEST_DURABILITY",
                    match durability {
                        Durability::Immediate => "immediate",
                        _ => "normal",
                    },
                )
                .env("STATEGRAPH_TEST_GO", &go);
            if open_after_go {
                cmd.env("STATEGRAPH_TEST_OPEN_AFTER_GO", "1");
            }
            ChildProc::spawn(cmd)
        })
        .collect();
    for (i, child) in children.iter().enumerate() {
        let ready = child.next_report(Duration::from_secs(60));
        assert_eq!(ready.as_deref(), Some("ready"), "child {i} never got ready");
    }
    std::fs::write(&go, b"go").expect("start signal");

    let mut chains = Vec::new();
    let mut total_moves = 0u64;
    let mut total_conflicts = 0u64;
    for (i, child) in children.iter_mut().enumerate() {
        let status = child.wait(Duration::from_secs(120));
        let (reports, stderr) = child.finish();
        assert!(
            status.success(),
            "child {i} failed ({status}); stderr:\n{stderr}"
        );
        let nodes: Vec<StateNodeId> = reports
            .iter()
            .filter_map(|r| r.strip_prefix("node "))
            .map(node_id)
            .collect();
        assert_eq!(
            nodes.len(),
            count as usize + 1,
            "child {i} reported too few nodes"
        );
        let done = reports
            .iter()
            .find_map(|r| r.strip_prefix("done "))
            .unwrap_or_else(|| panic!("child {i} did not finish; stderr:\n{stderr}"));
        let (moved, conflicts) = done.split_once(' ').expect("done line");
        let moved: u64 = moved.parse().expect("moves");
        assert_eq!(
            moved,
            u64::from(count) + 1,
            "child {i}: each node moves shared once"
        );
        total_moves += moved;
        total_conflicts += conflicts.parse::<u64>().expect("conflicts");
        chains.push(nodes);
    }
    let elapsed = started.elapsed();

    let store = SqliteStateStore::open(&path).expect("reopening");
    let mut all = HashSet::new();
    for (i, chain) in chains.iter().enumerate() {
        for id in chain {
            assert_node_readable(&store, id);
            assert!(all.insert(*id), "two processes produced node {id}");
        }
        let head = chain.last().expect("a chain");
        assert_eq!(
            store.get_ref(&format!("proc/{i}")).expect("ref"),
            Some(*head)
        );
        let mut walked = assert_chain_complete(&store, head);
        walked.reverse();
        assert_eq!(&walked, chain, "chain {i} is not what child {i} committed");
        assert_eq!(
            assert_ref_log_consistent(&store, &format!("proc/{i}")),
            chain.len(),
            "ref log of proc/{i}"
        );
    }
    assert_eq!(all.len(), processes * (count as usize + 1));
    let shared_moves = assert_ref_log_consistent(&store, "shared");
    assert_eq!(
        shared_moves as u64, total_moves,
        "the shared ref log does not match the successful compare-and-swaps"
    );
    for entry in store.ref_log("shared").expect("ref log") {
        let new = entry.new.expect("shared is never deleted");
        assert!(
            all.contains(&new),
            "shared moved to a node nobody committed"
        );
    }
    drop(store);
    assert_integrity(&path);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, SCHEMA_VERSION);
    eprintln!(
        "{processes} processes x {} nodes ({durability:?}): {total_moves} shared moves, \
         {total_conflicts} conflicts retried, {elapsed:?}",
        count + 1
    );
}

/// Three processes commit 150 nodes each on one file (`Durability::Normal`), moving their
/// own refs and racing on a shared one. All exit cleanly (no busy or locked error reaches
/// them), all 453 nodes are there, every chain is complete, every ref log is an unbroken
/// sequence of moves, and the shared ref's log has exactly one entry per successful
/// compare-and-swap.
#[test]
fn three_processes_share_one_file() {
    run(3, 150, Durability::Normal, false);
}

/// As [`three_processes_share_one_file`] with `Durability::Immediate` (fsync per group).
#[test]
fn three_processes_share_one_file_immediate() {
    run(3, 40, Durability::Immediate, false);
}

/// Four processes create the store at the same moment (racing on schema creation and
/// migration), then commit: every open succeeds and the schema is created once.
#[test]
fn processes_racing_to_create_the_store() {
    run(4, 20, Durability::Normal, true);
}

/// Opening a store while another process is writing it (and so, now and then,
/// checkpointing its WAL into the main file) must work every time: a tool inspecting the
/// store of a running program, or a second worker starting up. Uses the crash tests' child,
/// which commits until it is killed.
#[test]
fn opening_while_another_process_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("busy.db");
    let mut cmd = child_command("crash::child_writer", "crash");
    cmd.env("STATEGRAPH_TEST_DB", &path)
        .env("STATEGRAPH_TEST_DURABILITY", "normal")
        .env("STATEGRAPH_TEST_ROUND", "0")
        .env("STATEGRAPH_TEST_CHILD_SEED", "5")
        .env("STATEGRAPH_TEST_HEAD", "");
    let mut child = ChildProc::spawn(cmd);
    assert_eq!(
        child.next_report(Duration::from_secs(30)).as_deref(),
        Some("open"),
        "the writer never opened the store"
    );
    let started = Instant::now();
    let (mut opens, mut failures) = (0u32, Vec::new());
    while started.elapsed() < Duration::from_secs(3) {
        let read_only = opens % 2 == 0;
        let opened = if read_only {
            SqliteStateStore::open_read_only(&path)
        } else {
            SqliteStateStore::open(&path)
        };
        match opened.and_then(|s| s.list_refs("")) {
            Ok(_) => {}
            Err(e) => failures.push(format!("open (read-only: {read_only}): {e}")),
        }
        opens += 1;
    }
    assert!(child.exited().is_none(), "the writer stopped on its own");
    child.kill();
    let (reports, _) = child.finish();
    let commits = reports.iter().filter(|r| r.starts_with("node ")).count();
    eprintln!("{opens} opens during {commits} commits by another process");
    // Otherwise the opens did not overlap any writing at all.
    assert!(commits > 10, "the writer committed only {commits} times");
    assert!(
        failures.is_empty(),
        "{} of {opens} opens failed while another process wrote; first: {}",
        failures.len(),
        failures[0]
    );
}
