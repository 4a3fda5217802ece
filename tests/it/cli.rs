//! End-to-end tests of the `stategraph` binary: the real executable against real files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;
use stategraph::{
    History as _, SqliteStateStore, StateData, StateMetadata, StateNodeId, StateStore,
};

use crate::cli_util::{Env, assert_error, bare, noise, redact};
use crate::util::open_normal;

/// The merge history of the graph tests, built through the CLI:
/// a - b - d - m - f on main, b - c - e on side, m = merge(d, e).
fn merge_history() -> Env {
    let env = Env::init();
    env.commit("{\"n\":1}", "a", &["--branch", "main"]);
    env.commit("{\"n\":2}", "b", &["--branch", "main"]);
    env.ok(&["branch", "side", "main"]);
    env.commit("{\"n\":3}", "c", &["--branch", "side"]);
    env.commit("{\"n\":4}", "d", &["--branch", "main"]);
    env.commit("{\"n\":5}", "e", &["--branch", "side"]);
    env.commit(
        "{\"n\":6}",
        "m",
        &["--branch", "main", "--parent", "main", "--parent", "side"],
    );
    env.commit("{\"n\":7}", "f", &["--branch", "main"]);
    env
}

/// `NAME@{N}` is a revision, numbered as `reflog` prints it: `branch -f main main@{1}` undoes
/// the last move of main.
#[test]
fn reflog_positions_are_revisions_and_undo_a_move() {
    let env = merge_history();
    let node = |rev: &str| {
        let shown: Value = serde_json::from_str(&env.ok(&["show", "--json", rev])).expect("json");
        shown["id"].as_str().expect("id").to_owned()
    };
    let (f, m) = (node("main"), node("main~1"));
    assert_eq!(node("main@{0}"), f);
    assert_eq!(node("main@{1}"), m, "main moved from m to f last");
    assert_eq!(node("main@{1}~1"), node("main~2"));
    let reflog = env.ok(&["reflog", "-n", "2", "main"]);
    assert!(reflog.contains("main@{1}: commit: m"), "{reflog}");
    env.ok(&["branch", "-f", "main", "main@{1}"]);
    assert_eq!(node("main"), m, "the move is undone");
    assert_eq!(node("main@{1}"), f, "and can itself be undone");
    let out = env.sg(&["show", "main@{99}"]).output().expect("run");
    assert!(assert_error(&out).contains("is the oldest"));
}

/// `gc --prune-history` keeps the way from a branch down to its newest snapshot, so `restore
/// --branch` still finds it. Where a branch's history past a boundary could hold a newer
/// snapshot than any above it (here its own was deleted after the prune), `restore` says it
/// cannot choose and how to name one, where it said "no snapshot in the history of main".
#[test]
fn restore_after_pruning_history() {
    let (kept, cut) = (Env::init(), Env::init());
    for env in [&kept, &cut] {
        for n in 1..=5 {
            env.commit(
                &format!("{{\"n\":{n}}}"),
                &format!("t{n}"),
                &["--branch", "main"],
            );
        }
        env.ok(&["snapshot", "main~3"]);
    }
    cut.ok(&["snapshot", "main"]);
    for env in [&kept, &cut] {
        assert!(
            env.ok(&["gc", "--prune-history", "0"])
                .contains("shallow boundary")
        );
    }
    kept.ok(&["restore", "--branch", "main"]);
    assert!(kept.ok(&["log", "--oneline", "-n", "1"]).contains("t2"));

    cut.ok(&["snapshot", "-d", "main"]);
    let err = assert_error(
        &cut.sg(&["restore", "--branch", "main"])
            .output()
            .expect("run"),
    );
    assert!(
        err.contains("cannot tell which snapshot is the latest in the history of main"),
        "{err}"
    );
    assert!(
        err.contains("stategraph restore SNAPSHOT --branch main"),
        "{err}"
    );
}

/// `backup FILE` writes a store of its own that the other commands read; it refuses a file
/// that exists, and says so.
#[test]
fn backup_writes_a_store_and_never_replaces_a_file() {
    let env = merge_history();
    let file = env.dir.path().join("copy.db");
    let text = env.ok(&["backup", file.to_str().expect("utf-8")]);
    assert!(
        text.starts_with("backed up 7 node(s) and 0 snapshot(s) to "),
        "{text}"
    );
    let copy = Env {
        db: file.clone(),
        dir: tempfile::tempdir().expect("tempdir"),
    };
    assert!(copy.ok(&["fsck"]).ends_with(": ok\n"));
    assert_eq!(
        copy.ok(&["log", "--oneline"]),
        env.ok(&["log", "--oneline"])
    );
    let before = std::fs::read(&file).expect("read");
    let err = assert_error(
        &env.sg(&["backup", file.to_str().expect("utf-8")])
            .output()
            .expect("run"),
    );
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(std::fs::read(&file).expect("read"), before);
    let json: Value = serde_json::from_str(&env.ok(&[
        "backup",
        "--json",
        env.dir.path().join("copy2.db").to_str().expect("utf-8"),
    ]))
    .expect("json");
    assert_eq!(json["nodes"], 7);
    assert_eq!(json["snapshots"], 0);
    assert!(json.get("problems").is_none());

    // --verify checks the copy: ok here; after damage to the store, the copy holds it too,
    // and the exit code says so.
    let checked = env.ok(&[
        "backup",
        "--verify",
        env.dir.path().join("copy3.db").to_str().expect("utf-8"),
    ]);
    assert!(checked.ends_with("verified: ok\n"), "{checked}");
    let conn = rusqlite::Connection::open(&env.db).expect("raw");
    let changed = conn
        .execute(
            "UPDATE blobs SET bytes = CAST('{\"n\":9}' AS BLOB) WHERE CAST(bytes AS TEXT) = '{\"n\":1}'",
            [],
        )
        .expect("damage");
    assert_eq!(changed, 1);
    drop(conn);
    let out = env
        .sg(&[
            "backup",
            "--verify",
            "--json",
            env.dir.path().join("copy4.db").to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    let problems = json["problems"].as_array().expect("problems");
    assert!(!problems.is_empty(), "{json}");
}

/// `restore --branch B` without a snapshot takes the newest one in B's history; a snapshot
/// from outside that history is restored with a note naming where the old head is kept.
#[test]
fn restore_finds_the_latest_snapshot_and_notes_unrelated_ones() {
    let env = merge_history();
    let failed = |args: &[&str]| assert_error(&env.sg(args).output().expect("run"));
    // Runs a restore that must succeed; its stderr.
    let restore = |args: &[&str]| {
        let out = env.sg(args).output().expect("run");
        let stderr = crate::cli_util::stderr(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        stderr
    };
    let err = failed(&["restore", "--branch", "main"]);
    assert!(err.contains("no snapshot in the history of main"), "{err}");
    let err = failed(&["restore", "--branch", "nope"]);
    assert!(err.contains("no ref named \"nope\""), "{err}");
    // Snapshots of d (on main's first-parent line, generation 3) and of side's head e
    // (generation 4, merged into main): from main, e is the newest.
    let node = |rev: &str| {
        let shown: Value = serde_json::from_str(&env.ok(&["show", "--json", rev])).expect("json");
        shown["id"].as_str().expect("id").to_owned()
    };
    let e = node("side");
    env.ok(&["snapshot", "main~1^1"]);
    env.ok(&["snapshot", "side"]);
    let head = node("main");
    // Along first parents only, main's own line: d.
    let d = node("main~1^1");
    restore(&["restore", "--branch", "main", "--first-parent"]);
    assert_eq!(node("main"), d);
    env.ok(&["branch", "-f", "main", &head]);
    let note = restore(&["restore", "--branch", "main"]);
    assert_eq!(node("main"), e);
    assert_eq!(note, "", "e is in main's history");
    // Forward along the branch's line (back to where it was): no note.
    env.ok(&["branch", "-f", "main", "main~2"]);
    let snapshot_of_head = env.ok(&["snapshot", &head]);
    let note = restore(&[
        "restore",
        &snapshot_of_head.trim()[7..19],
        "--branch",
        "main",
    ]);
    assert_eq!(node("main"), head);
    assert_eq!(note, "", "a forward restore");
    // An unrelated snapshot (of a new root): moved, with a note.
    env.commit("{\"n\":0}", "elsewhere", &["--branch", "other"]);
    let snapshot = env.ok(&["snapshot", "other"]);
    let note = restore(&["restore", &snapshot.trim()[7..19], "--branch", "main"]);
    assert_eq!(node("main"), node("other"));
    assert!(
        note.contains("is not in the history of main") && note.contains(&head[7..19]),
        "{note}"
    );

    // A branch that does not exist is not created by a typo: --create says it is meant, and
    // refuses a branch that exists.
    let snap = &snapshot.trim()[7..19];
    let err = failed(&["restore", snap, "--branch", "mian"]);
    assert!(
        err.contains("no ref named \"mian\"") && err.contains("did you mean main?"),
        "{err}"
    );
    assert!(err.contains("add --create"), "{err}");
    assert!(env.ok(&["branch"]).lines().all(|l| !l.contains("mian")));
    let err = failed(&["restore", snap, "--branch", "main", "--create"]);
    assert!(err.contains("branch main already exists"), "{err}");
    restore(&["restore", snap, "--branch", "copy", "--create"]);
    assert_eq!(node("copy"), node("other"));
    let again = env.ok(&["restore", snap, "--branch", "copy"]);
    assert!(again.starts_with("copy: (already there) -> "), "{again}");
}

#[test]
fn log_graph_draws_a_merge_like_git() {
    let env = merge_history();
    // What `git log --graph --date-order --format=%s` draws for the same history (checked
    // with git): nodes newest first; d and c have the same generation and d is newer.
    let want = "\
* <id> (main) f
*   <id> m
|\\
| * <id> (side) e
* | <id> d
| * <id> c
|/
* <id> b
* <id> a
";
    assert_eq!(redact(&env.ok(&["log", "--graph", "--oneline"])), want);
    assert_eq!(
        redact(&env.ok(&["log", "--graph", "--oneline", "--all"])),
        want
    );

    // Excluded parents are not drawn: m's second line stops.
    let range = env.ok(&["log", "--graph", "--oneline", "side..main"]);
    assert_eq!(redact(&range), "* <id> (main) f\n* <id> m\n* <id> d\n");

    let first_parent = env.ok(&["log", "--graph", "--oneline", "--first-parent"]);
    let want = "* <id> (main) f\n* <id> m\n* <id> d\n* <id> b\n* <id> a\n";
    assert_eq!(redact(&first_parent), want);

    // The full format keeps the lanes going beside every text line.
    let full = redact(&env.ok(&["log", "--graph", "-n", "3"]));
    let head: Vec<&str> = full.lines().take(8).collect();
    assert_eq!(head[0], "* node <id> (main)");
    assert!(head[1].starts_with("| Date:  "), "{full}");
    assert_eq!(head[3], "|     f");
    assert_eq!(head[5], "*   node <id>");
    assert!(head[6].starts_with("|\\  Merge: <id> <id>"), "{full}");

    // Without --graph: one line per node, same order.
    let plain = redact(&env.ok(&["log", "--oneline", "-n", "4"]));
    assert_eq!(plain, "<id> (main) f\n<id> m\n<id> (side) e\n<id> d\n");
}

/// A store with one merge of `width` roots on main, roots created oldest first (the walk
/// meets the newest, last parent first). Returns the roots in parent order.
fn octopus_store(env: &Env, width: i64) -> Vec<StateNodeId> {
    let store = open_normal(&env.db);
    let base = time::macros::datetime!(2026-01-01 00:00:00 UTC);
    let mut batch = store.batch();
    let data = batch.put_state(StateData::new(b"{}".to_vec()));
    let roots: Vec<StateNodeId> = (0..width)
        .map(|i| {
            let meta = StateMetadata::new(base + time::Duration::seconds(i), Some(format!("r{i}")));
            batch.commit_node(vec![], data, meta).expect("root")
        })
        .collect();
    let meta = StateMetadata::new(base + time::Duration::seconds(width), Some("merge".into()));
    let merge = batch.commit_node(roots.clone(), data, meta).expect("merge");
    batch.set_ref("main", None, &merge).expect("ref");
    batch.commit().expect("commit");
    roots
}

#[test]
fn log_graph_draws_a_wide_octopus_with_every_parent_once() {
    let env = Env::init();
    let width = 120;
    let roots = octopus_store(&env, width);
    let out = env.ok(&["log", "--graph", "--oneline"]);
    let mut lines = out.lines();
    // `*`, then a dash pair for each parent past the second, the last pair ending in `.`.
    let dashes = "-".repeat(2 * (width as usize - 2) - 1);
    let node = lines.next().expect("the merge");
    assert!(node.starts_with(&format!("*{dashes}.   ")), "{node}");
    assert!(node.ends_with(" (main) merge"), "{node}");
    let fan = format!("|{}", "\\ ".repeat(width as usize - 1));
    assert_eq!(lines.next(), Some(fan.trim_end()));
    // Then each root in its own lane, newest (rightmost) first: nothing else moves.
    let mut drawn = 0;
    for (i, line) in lines.enumerate() {
        let root = width as usize - 1 - i;
        let want = format!(
            "{}* {} r{root}",
            "| ".repeat(root),
            roots[root].to_short_hex(12)
        );
        assert_eq!(line, want);
        drawn += 1;
    }
    assert_eq!(drawn, width as usize);
}

/// `log` looks snapshots up a page of nodes at a time (256): marks on either side of a page
/// boundary, and on the last node of a partial page, land on exactly the snapshotted nodes,
/// in text and in JSON.
#[test]
fn log_marks_exactly_the_snapshotted_nodes_across_pages() {
    let env = Env::init();
    let store = open_normal(&env.db);
    let snapshotted = [0_usize, 254, 255, 256, 511, 512, 599];
    let mut batch = store.batch();
    let mut chain = Vec::new();
    for i in 0..600 {
        let data = batch.put_state(StateData::new(format!("{i}").into_bytes()));
        let parents = chain.last().copied().into_iter().collect();
        let meta = StateMetadata::new(
            time::macros::datetime!(2026-01-01 00:00:00 UTC) + time::Duration::seconds(i),
            Some(format!("t{i}")),
        );
        chain.push(batch.commit_node(parents, data, meta).expect("node"));
    }
    batch
        .set_ref("main", None, chain.last().unwrap())
        .expect("ref");
    batch.commit().expect("commit");
    // Log order is newest first: the n-th line is node 599 - n.
    for i in snapshotted {
        store.snapshot(&chain[599 - i]).expect("snapshot");
    }
    drop(store);

    let text = env.ok(&["log", "--oneline"]);
    let marked: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains("snapshot"))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(text.lines().count(), 600);
    assert_eq!(marked, snapshotted);

    let json: Value = serde_json::from_str(&env.ok(&["log", "--json"])).expect("json");
    let nodes = json.as_array().expect("array");
    assert_eq!(nodes.len(), 600);
    let marked: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| !node["snapshots"].as_array().expect("snapshots").is_empty())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(marked, snapshotted);
}

#[test]
fn demo_runs_and_draws_a_merge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bare(dir.path()).arg("demo").output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("*   "), "a merge node: {text}");
    assert!(text.contains("|\\"), "a merge fan-out: {text}");
    assert!(text.contains("|/"), "a branch joining: {text}");
    assert!(
        text.contains("(main)") && text.contains("(agents/explorer)"),
        "{text}"
    );
    assert!(text.contains("snapshot"), "{text}");
    assert!(text.contains("restore "), "{text}");
    assert!(text.contains("nodes,"), "summary line: {text}");
    let db = dir.path().join("stategraph-demo.db");
    assert!(db.exists());

    // The store it leaves is readable by the other commands; running again replaces it.
    let env = Env {
        db: db.clone(),
        dir,
    };
    assert!(env.ok(&["log", "--oneline", "-n", "1"]).contains("(main)"));
    bare(env.dir.path()).arg("demo").assert().success();

    // Something that is not a store is never replaced. (`demo_on` runs a demo that must
    // refuse, and returns its error.)
    let demo_on = |db: &std::path::Path| {
        let out = bare(env.dir.path())
            .args(["demo", "--db"])
            .arg(db)
            .output()
            .expect("run");
        assert_error(&out)
    };
    let other = env.dir.path().join("notes.txt");
    std::fs::write(&other, b"my notes").expect("write");
    assert!(demo_on(&other).contains("not a stategraph store"));
    assert_eq!(std::fs::read(&other).expect("read"), b"my notes");

    // Nor is a stategraph store the demo did not make.
    let mine = env.dir.path().join("mine.db");
    let node = {
        let store = SqliteStateStore::open(&mine).expect("open");
        let (_, node) =
            crate::util::commit_bytes(&store, vec![], b"precious", None, StateMetadata::now(None));
        store.set_ref("main", None, &node).expect("ref");
        node
    };
    let err = demo_on(&mine);
    assert!(err.contains("the demo did not make"), "{err}");
    let store = SqliteStateStore::open_read_only(&mine).expect("still a store");
    assert_eq!(store.get_ref("main").expect("ref"), Some(node));
    assert_eq!(store.list_refs("").expect("refs").len(), 1);

    // Nor a demo store made read-only.
    let frozen = env.dir.path().join("frozen.db");
    bare(env.dir.path())
        .args(["demo", "--ticks", "12", "--db"])
        .arg(&frozen)
        .assert()
        .success();
    let mut perms = std::fs::metadata(&frozen).expect("stat").permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&frozen, perms).expect("chmod");
    let before = std::fs::read(&frozen).expect("read");
    assert!(demo_on(&frozen).contains("the file is read-only"));
    assert_eq!(std::fs::read(&frozen).expect("read"), before);

    // Nor a store holding only state (put, never committed).
    let states = env.dir.path().join("states.db");
    let data = {
        let store = SqliteStateStore::open(&states).expect("open");
        store
            .put_state(StateData::new(b"precious".to_vec()))
            .expect("put")
    };
    let err = demo_on(&states);
    assert!(err.contains("the demo did not make"), "{err}");
    let store = SqliteStateStore::open_read_only(&states).expect("still a store");
    assert_eq!(store.get_state(&data).expect("state").bytes, b"precious");

    // A demo store of an earlier build (marked by a `stategraph-demo` branch) is replaced.
    let older = env.dir.path().join("older.db");
    {
        let store = SqliteStateStore::open(&older).expect("open");
        let (_, node) =
            crate::util::commit_bytes(&store, vec![], b"old demo", None, StateMetadata::now(None));
        store.set_ref("stategraph-demo", None, &node).expect("ref");
    }
    bare(env.dir.path())
        .args(["demo", "--ticks", "12", "--db"])
        .arg(&older)
        .assert()
        .success();
    let store = SqliteStateStore::open_read_only(&older).expect("replaced");
    assert_eq!(store.get_ref("stategraph-demo").expect("ref"), None);
    assert!(
        store
            .get_ref("tags/stategraph-demo")
            .expect("ref")
            .is_some()
    );

    // An empty store holds nothing to lose: the demo takes its place.
    let empty = env.dir.path().join("empty.db");
    drop(SqliteStateStore::open(&empty).expect("open"));
    bare(env.dir.path())
        .args(["demo", "--db"])
        .arg(&empty)
        .assert()
        .success();
}

#[test]
fn concurrent_demos_do_not_delete_each_other() {
    let env = Env::new();
    env.sg(&["demo", "--ticks", "12"]).assert().success();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            env.sg_std(&["demo", "--ticks", "1500"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut succeeded = 0;
    for run in runs {
        let out = run.wait_with_output().expect("wait");
        if out.status.success() {
            succeeded += 1;
        } else {
            let err = crate::cli_util::stderr(&out);
            assert!(
                err.contains("another `stategraph demo` is running"),
                "{err}"
            );
        }
    }
    assert!(succeeded >= 1);
    assert!(env.ok(&["fsck"]).ends_with(": ok\n"));
    assert!(env.ok(&["tag"]).contains("stategraph-demo"));
    assert_eq!(
        env.ok(&["branch"]).lines().count(),
        2,
        "main and agents/explorer"
    );
}

#[test]
fn demo_with_many_ticks_stays_quick() {
    let env = Env::new();
    env.sg(&["demo", "--ticks", "300"]).assert().success();
    let nodes: Value = serde_json::from_str(&env.ok(&["log", "--all", "--json"])).expect("json");
    assert!(nodes.as_array().expect("array").len() > 250);
}

#[test]
fn unknown_ref_suggests_near_names() {
    let env = merge_history();
    let out = env.sg(&["log", "mian"]).output().expect("run");
    let err = assert_error(&out);
    assert!(err.contains("unknown revision \"mian\""), "{err}");
    assert!(err.contains("hint: did you mean main?"), "{err}");

    let out = env.sg(&["show", "sid~1"]).output().expect("run");
    assert!(assert_error(&out).contains("did you mean side?"));

    let out = env.sg(&["reflog", "mains"]).output().expect("run");
    assert!(assert_error(&out).contains("did you mean main?"));

    let out = env.sg(&["branch", "-d", "sde"]).output().expect("run");
    assert!(assert_error(&out).contains("did you mean side?"));

    // Nothing close: list what there is.
    let out = env.sg(&["show", "zzzzzz"]).output().expect("run");
    assert!(assert_error(&out).contains("hint: refs in this store: main, side"));

    // Walking past a root.
    let out = env.sg(&["show", "main~10"]).output().expect("run");
    assert!(assert_error(&out).contains("parent"));
}

#[test]
fn ambiguous_prefix_lists_candidates() {
    let env = Env::init();
    // Commit nodes (fixed times: the ids are the same every run) until two share 4 digits.
    let store = open_normal(&env.db);
    let data = store.put_state(StateData::new(b"x".to_vec())).expect("put");
    let mut seen: HashMap<String, StateNodeId> = HashMap::new();
    let base = time::macros::datetime!(2026-01-01 00:00:00 UTC);
    let (prefix, pair) = (0..100_000i64)
        .find_map(|i| {
            let meta = StateMetadata::new(base + time::Duration::seconds(i), Some(format!("n{i}")));
            let id = store.commit_node(vec![], data, meta).expect("commit");
            let prefix = id.to_short_hex(4);
            seen.insert(prefix.clone(), id)
                .map(|other| (prefix, (other, id)))
        })
        .expect("a shared prefix");
    drop(store);
    let out = env.sg(&["show", &prefix]).output().expect("run");
    let err = assert_error(&out);
    assert!(
        err.contains(&format!("ambiguous id prefix \"{prefix}\"")),
        "{err}"
    );
    assert!(err.contains(&pair.0.to_short_hex(12)), "{err}");
    assert!(err.contains(&pair.1.to_short_hex(12)), "{err}");
    // A longer prefix resolves.
    env.ok(&["show", &pair.0.to_short_hex(12)]);
}

#[test]
fn not_a_store_is_refused_and_left_unchanged() {
    let env = Env::new();
    let junk = noise(10_000, 7);
    std::fs::write(&env.db, &junk).expect("write");
    for args in [
        &["log"][..],
        &["show", "main"],
        &["branch"],
        &["init"],
        &["snapshot", "main"],
        &["put", "-"],
        &["commit", "-", "-m", "x"],
        &["demo"],
    ] {
        let out = env.sg(args).write_stdin("data").output().expect("run");
        let err = assert_error(&out);
        assert!(err.contains("is not a stategraph store"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(&env.db).expect("read"), junk);
    let names: Vec<_> = std::fs::read_dir(env.dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "no -wal or -shm next to it: {names:?}");
}

/// An empty store file is "no store" (run `init`), unless a log with commits lies beside it:
/// then it is a damaged store, and neither reads, writes nor `init` may discard that log.
#[test]
fn an_empty_store_file_beside_a_log_is_not_initialised_over() {
    let env = Env::new();
    std::fs::write(&env.db, b"").expect("empty file");
    let out = env
        .sg(&["commit", "-"])
        .write_stdin("data")
        .output()
        .expect("run");
    assert!(
        assert_error(&out).contains(" init`"),
        "an empty file alone: init"
    );
    let mut log = env.db.clone().into_os_string();
    log.push("-wal");
    let pending = b"frames of commits not yet copied into the file".to_vec();
    std::fs::write(&log, &pending).expect("log");
    for args in [
        &["init"][..],
        &["log"],
        &["commit", "-"],
        &["branch", "x", "main"],
    ] {
        let out = env.sg(args).write_stdin("data").output().expect("run");
        let err = assert_error(&out);
        assert!(
            err.contains("write-ahead log") && !err.contains(" init`"),
            "{args:?}: {err}"
        );
        assert_eq!(std::fs::read(&log).expect("log"), pending, "{args:?}");
        assert_eq!(std::fs::read(&env.db).expect("file"), b"", "{args:?}");
    }
}

#[test]
fn missing_store_is_reported_and_not_created() {
    let env = Env::new();
    for args in [
        &["log"][..],
        &["show", "main"],
        &["cat", "main"],
        &["branch"],
        &["tag"],
        &["snapshots"],
        &["reflog", "main"],
        &["merge-base", "a", "b"],
        &["is-ancestor", "a", "b"],
        &["graph"],
        &["put", "-"],
        &["commit", "-"],
        &["branch", "x", "main"],
    ] {
        let out = env.sg(args).write_stdin("data").output().expect("run");
        let err = assert_error(&out);
        assert!(err.contains("no store at"), "{args:?}: {err}");
        assert!(err.contains("stategraph --db"), "hint names init: {err}");
    }
    assert!(!env.db.exists());

    // In a directory that does not exist, `init` cannot help: say so, for init too.
    let nowhere = env.dir.path().join("no-such-dir").join("s.db");
    for args in [&["init"][..], &["log"], &["branch", "x", "main"]] {
        let out = bare(env.dir.path())
            .arg("--db")
            .arg(&nowhere)
            .args(args)
            .output()
            .expect("run");
        let err = assert_error(&out);
        assert!(
            err.contains("no-such-dir does not exist") && !err.contains(" init`"),
            "{args:?}: {err}"
        );
    }
    assert!(!env.dir.path().join("no-such-dir").exists());

    // A symlink loop is not "no store": say what it is.
    let a = env.dir.path().join("loop-a");
    let b = env.dir.path().join("loop-b");
    std::os::unix::fs::symlink(&b, &a).expect("symlink");
    std::os::unix::fs::symlink(&a, &b).expect("symlink");
    for args in [&["log"][..], &["branch", "x", "main"]] {
        let out = bare(env.dir.path())
            .arg("--db")
            .arg(&a)
            .args(args)
            .output()
            .expect("run");
        let err = assert_error(&out);
        assert!(
            err.contains("cannot open") && !err.contains("no store"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn ref_changes_are_compare_and_swap() {
    let env = merge_history();
    for rev in ["", "^main", "~1"] {
        let out = env.sg(&["show", rev]).output().expect("run");
        let err = assert_error(&out);
        assert!(
            err.contains("a revision starts with a ref name"),
            "{rev:?}: {err}"
        );
    }
    let out = env.sg(&["branch", "main", "side"]).output().expect("run");
    let err = assert_error(&out);
    assert!(err.contains("branch main already exists"), "{err}");
    assert!(err.contains("branch -f main side"), "{err}");

    assert!(
        env.ok(&["branch", "-f", "side", "main~2"])
            .starts_with("moved branch side")
    );
    assert!(
        env.ok(&["tag", "v1", "main~1"])
            .starts_with("created tag v1")
    );
    let out = env.sg(&["tag", "v1"]).output().expect("run");
    assert!(assert_error(&out).contains("tag v1 already exists"));
    assert_eq!(redact(&env.ok(&["tag"])), "v1  <id> m\n");
    // A tag by its own name, as listings print it, in revisions and in reflog; a branch of
    // that name would come first.
    let by_tag = env.ok(&["show", "tags/v1", "--json"]);
    assert_eq!(env.ok(&["show", "v1", "--json"]), by_tag);
    assert_eq!(
        env.ok(&["show", "v1~1", "--json"]),
        env.ok(&["show", "main~2", "--json"])
    );
    assert_eq!(env.ok(&["reflog", "v1"]), env.ok(&["reflog", "tags/v1"]));
    // An error quotes the revision as typed.
    let err = assert_error(&env.sg(&["show", "v1~99"]).output().expect("run"));
    assert!(err.contains("\"v1~99\" goes back past a root"), "{err}");
    // The CLI makes no branch of a tag's short name (see
    // `a_new_branch_may_not_take_a_tags_short_name`); a program can.
    let store = SqliteStateStore::open(&env.db).expect("open");
    let main = store.get_ref("main").expect("get").expect("main");
    store.set_ref("v1", None, &main).expect("branch v1");
    drop(store);
    assert_eq!(
        env.ok(&["show", "v1", "--json"]),
        env.ok(&["show", "main", "--json"])
    );
    env.ok(&["branch", "-d", "v1"]);
    // The deleted branch's log still holds the name, as `reflog v1` reads it: no fallback
    // to the tag, and the hint says how to bring the branch back.
    let out = env.sg(&["show", "v1"]).output().expect("run");
    assert!(assert_error(&out).contains("v1 was deleted"));
    assert_eq!(
        env.ok(&["reflog", "v1"]).lines().count(),
        2,
        "the branch's log"
    );
    assert!(
        env.ok(&["branch", "-d", "side"])
            .starts_with("deleted branch side")
    );
    let out = env.sg(&["branch", "tags/v2"]).output().expect("run");
    assert!(
        assert_error(&out).contains("tags are made and moved with `stategraph tag [-f] v2 REV`")
    );
    let out = env
        .sg(&["branch", "bad..name", "main"])
        .output()
        .expect("run");
    assert!(assert_error(&out).contains("invalid ref name"));

    // The reflog of the deleted branch keeps every move, newest first.
    let reflog = redact(&env.ok(&["reflog", "side"]));
    let lines: Vec<&str> = reflog.lines().collect();
    assert_eq!(lines.len(), 5, "{reflog}");
    assert!(
        lines[0].starts_with("(deleted)    side@{0}: deleted (was <id>)"),
        "{reflog}"
    );
    assert!(
        lines[1].starts_with("<id> side@{1}: branch: moved to main~2"),
        "{reflog}"
    );
    assert!(
        lines[4].starts_with("<id> side@{4}: branch: created from main"),
        "{reflog}"
    );
    // -n: the newest moves only, numbered as in the whole log; 0 shows nothing, even for a
    // deleted ref (whose log still exists).
    let newest = redact(&env.ok(&["reflog", "-n", "2", "side"]));
    assert_eq!(newest.lines().collect::<Vec<_>>(), lines[..2], "{newest}");
    assert_eq!(env.ok(&["reflog", "-n", "0", "side"]), "");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["reflog", "--max-count", "1", "side", "--json"])).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(
        json[0]["new"],
        serde_json::Value::Null,
        "the deletion: {json}"
    );
    assert_eq!(
        (json[0]["name"].as_str(), json[0]["selector"].as_str()),
        (Some("side"), Some("side@{0}")),
        "{json}"
    );
    let two: serde_json::Value =
        serde_json::from_str(&env.ok(&["reflog", "-n", "2", "side", "--json"])).unwrap();
    assert_eq!(two[1]["selector"], "side@{1}", "{two}");
    // The deleted branch as a revision: the hint says how to bring it back, and that works.
    let out = env.sg(&["log", "side"]).output().expect("run");
    let err = assert_error(&out);
    assert!(
        err.contains("side was deleted; `stategraph branch side side@{1}` brings it back"),
        "{err}"
    );
    env.ok(&["branch", "side", "side@{1}"]);
    env.ok(&["branch", "-d", "side"]);
    let out = env
        .sg(&["reflog", "-n", "0", "never"])
        .output()
        .expect("run");
    assert!(assert_error(&out).contains("never"));
}

#[test]
fn is_ancestor_and_merge_base_exit_codes() {
    let env = merge_history();
    env.sg(&["is-ancestor", "main~2", "main"])
        .assert()
        .code(0)
        .stdout("");
    env.sg(&["is-ancestor", "main", "main"]).assert().code(0);
    env.sg(&["is-ancestor", "main", "side"])
        .assert()
        .code(1)
        .stdout("")
        .stderr("");
    let out = env
        .sg(&["is-ancestor", "main", "nope"])
        .output()
        .expect("run");
    assert_error(&out);

    // d (main~2) and e (side) fork at b (main~3).
    let b = env.ok(&["log", "--json", "-n", "1", "main~3"]);
    let b: Value = serde_json::from_str(&b).expect("json");
    assert_eq!(b[0]["label"], "b");
    let base = env.ok(&["merge-base", "main~2", "side"]);
    assert_eq!(base.trim(), b[0]["id"].as_str().expect("id"));

    // A disjoint root: no merge base, exit 1 and no output.
    let root = env.commit("{}", "lonely root", &[]);
    env.sg(&["merge-base", "main", &root])
        .assert()
        .code(1)
        .stdout("");
    env.sg(&["is-ancestor", &root, "main"]).assert().code(1);
}

#[test]
fn stored_text_is_printed_without_control_characters() {
    let env = Env::init();
    let label = "first line\nsecond \u{1b}[31mred\u{1b}[0m\rforged";
    env.commit("x", label, &["--branch", "evil"]);
    let snapshot = env.ok(&["snapshot", "evil"]);
    let outputs = [
        env.ok(&["log", "--oneline", "evil"]),
        env.ok(&["log", "evil"]),
        env.ok(&["show", "evil"]),
        env.ok(&["branch"]),
        env.ok(&["reflog", "evil"]),
        env.ok(&["snapshots"]),
        env.ok(&["restore", &snapshot[7..19], "--branch", "evil2", "--create"]),
    ];
    for out in &outputs {
        assert!(
            !out.contains(['\u{1b}', '\r']),
            "a control character reached the terminal: {out:?}"
        );
        assert!(out.contains("\\u{1b}[31mred"), "shown escaped: {out:?}");
    }
    // One line per node stays one line; the full log keeps the label's own lines.
    assert_eq!(outputs[0].lines().count(), 1, "{:?}", outputs[0]);
    assert!(outputs[1].contains("    second "), "{:?}", outputs[1]);
    // JSON carries the label exactly.
    let node: Value = serde_json::from_str(&env.ok(&["show", "--json", "evil"])).expect("json");
    assert_eq!(node["label"].as_str(), Some(label));
}

/// A ref the library accepted with a direction override in its name is listed escaped, in
/// `branch` and in `log` decorations, so it cannot pass for another name.
#[test]
fn ref_names_with_invisible_characters_are_shown_escaped() {
    let env = merge_history();
    let head = open_normal(&env.db)
        .get_ref("main")
        .expect("get_ref")
        .expect("main");
    open_normal(&env.db)
        .set_ref("evil\u{202e}niam", None, &head)
        .expect("the library takes it");
    for args in [&["branch"][..], &["log", "--oneline", "-n", "1", "main"]] {
        let out = env.ok(args);
        assert!(out.contains("evil\\u{202e}niam"), "{args:?}: {out}");
        assert!(!out.contains('\u{202e}'), "{args:?}: {out}");
    }
}

#[test]
fn ref_names_the_command_line_could_not_use_are_refused() {
    let env = merge_history();
    let before = env.ok(&["branch"]);
    for (args, why) in [
        (&["branch", "905f", "main"][..], "reads as a node id"),
        (&["branch", "ABCDEF0123", "main"], "reads as a node id"),
        (&["tag", "cafe", "main"], "reads as a node id"),
        (&["branch", "--", "-x", "main"], "would read as an option"),
        (&["branch", "--", "-x/y", "main"], "would read as an option"),
        (&["branch", "tags/v9", "main"], "is a tag name"),
        (
            &["commit", "-b", "tags/v9", "-m", "x", "-"],
            "is a tag name",
        ),
        (
            &["commit", "-b", "beef", "-m", "x", "-"],
            "reads as a node id",
        ),
        // Listed as tags/x, `tag -d tags/x` would delete the tag x instead.
        (&["tag", "tags/tags/x", "main"], "another tag's full name"),
        (
            &["branch", "evil\u{202e}niam", "main"],
            "direction-changing",
        ),
        (&["branch", "ma\u{200b}in", "main"], "invisible"),
    ] {
        let out = env.sg(args).write_stdin("x").output().expect("run");
        let err = assert_error(&out);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert_eq!(env.ok(&["branch"]), before, "nothing was created");
    assert_eq!(env.ok(&["tag"]), "", "no tag was created");
    // Deleting or moving a "branch" under tags/ is refused in the same words, not as a
    // creation.
    for args in [
        &["branch", "-d", "tags/v9"][..],
        &["branch", "-f", "tags/v9", "main"],
    ] {
        let err = assert_error(&env.sg(args).output().expect("run"));
        assert!(err.contains("\"tags/v9\" is a tag name"), "{args:?}: {err}");
        assert!(!err.contains("create"), "{args:?}: {err}");
    }
    // Hex inside a longer name, or under a prefix, is fine.
    env.ok(&["branch", "agents/cafe", "main"]);
    env.ok(&["branch", "fix-905f", "main"]);
    env.ok(&["branch", "agents/-x", "main"]);
}

#[test]
fn put_and_cat_are_byte_exact() {
    let env = Env::init();
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let big = noise(1 << 20, 42);
    for (name, bytes) in [("all", &all_bytes), ("big", &big)] {
        // Through stdin and `put`, back by data ref.
        let data_ref = env
            .sg(&["put"])
            .write_stdin(bytes.clone())
            .output()
            .expect("run");
        assert!(data_ref.status.success());
        let data_ref = String::from_utf8(data_ref.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        assert_eq!(data_ref.len(), 36, "a UUID: {data_ref}");
        let out = env.sg(&["cat", &data_ref]).output().expect("run");
        assert!(out.status.success());
        assert!(out.stdout == *bytes, "{name}: cat of the data ref differs");
        // Where a node is meant, the data ref is named for what it is.
        let err = assert_error(&env.sg(&["show", &data_ref]).output().expect("run"));
        assert!(
            err.contains(&format!("{data_ref} is a data ref")) && err.contains("stategraph cat"),
            "{err}"
        );

        // Through a file and `commit`, back by node and by branch.
        let file = env.dir.path().join(name);
        std::fs::write(&file, bytes).expect("write");
        let path = file.to_str().expect("utf-8 path");
        let branch = format!("b-{name}");
        let node = env.commit("", name, &[path, "--branch", &branch]);
        for rev in [node.as_str(), &node[7..19], branch.as_str()] {
            let out = env.sg(&["cat", rev]).output().expect("run");
            assert!(out.status.success(), "cat {rev}");
            assert!(out.stdout == *bytes, "{name}: cat {rev} differs");
        }
    }
    let show: Value = serde_json::from_str(&env.ok(&["show", "--json", "b-big"])).expect("json");
    assert_eq!(show["size"], 1 << 20);
}

#[test]
fn json_outputs_parse_with_documented_fields() {
    let env = merge_history();
    env.ok(&["tag", "v1", "main~1"]);
    env.ok(&["snapshot", "main~1"]);
    let is_full_id = |v: &Value| {
        let s = v.as_str().unwrap_or_default();
        s.starts_with("blake3:") && s.len() == 71
    };

    let log: Value = serde_json::from_str(&env.ok(&["log", "--json", "--all"])).expect("log");
    let log = log.as_array().expect("array");
    assert_eq!(log.len(), 7);
    for node in log {
        for field in [
            "id",
            "parents",
            "generation",
            "created_at",
            "label",
            "data_ref",
            "data_hash",
            "content_type",
            "refs",
            "snapshots",
        ] {
            assert!(
                node.get(field).is_some(),
                "log --json lacks {field}: {node}"
            );
        }
        assert!(is_full_id(&node["id"]));
        assert!(
            node["parents"]
                .as_array()
                .expect("parents")
                .iter()
                .all(is_full_id)
        );
    }
    assert_eq!(log[0]["label"], "f");
    assert_eq!(log[0]["refs"], serde_json::json!(["main"]));
    assert_eq!(log[1]["parents"].as_array().expect("parents").len(), 2);
    assert_eq!(log[1]["refs"], serde_json::json!(["tags/v1"]));
    assert_eq!(log[1]["snapshots"].as_array().expect("snapshots").len(), 1);
    assert_eq!(log.last().expect("root")["generation"], 1);
    let created = log[0]["created_at"].as_str().expect("time").as_bytes();
    assert!(
        created.len() >= 20 && created[4] == b'-' && created[10] == b'T' && created.ends_with(b"Z"),
        "RFC 3339 in UTC: {:?}",
        log[0]["created_at"]
    );
    let empty: Value =
        serde_json::from_str(&env.ok(&["log", "--json", "main..main"])).expect("json");
    assert_eq!(empty, serde_json::json!([]));

    let show: Value = serde_json::from_str(&env.ok(&["show", "--json", "main~1"])).expect("show");
    assert_eq!(show["label"], "m");
    assert_eq!(show["children"].as_array().expect("children").len(), 1);
    assert_eq!(show["children"][0], log[0]["id"]);
    assert_eq!(show["size"], 7);

    let branches: Value = serde_json::from_str(&env.ok(&["branch", "--json"])).expect("branch");
    assert_eq!(branches[0]["name"], "main");
    assert_eq!(branches[0]["target"], log[0]["id"]);
    assert_eq!(branches[1]["name"], "side");
    assert_eq!(branches[1]["label"], "e");

    let tags: Value = serde_json::from_str(&env.ok(&["tag", "--json"])).expect("tag");
    assert_eq!(tags[0]["name"], "v1");
    assert_eq!(tags[0]["ref"], "tags/v1");
    assert_eq!(tags[0]["target"], log[1]["id"]);

    let reflog: Value =
        serde_json::from_str(&env.ok(&["reflog", "main", "--json"])).expect("reflog");
    let reflog = reflog.as_array().expect("array");
    assert_eq!(reflog.len(), 5);
    assert_eq!(reflog[0]["new"], log[0]["id"]);
    assert_eq!(reflog[4]["old"], Value::Null);
    assert!(reflog[0]["at"].is_string() && reflog[0]["message"] == "commit: f");

    let snapshots: Value =
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).expect("snapshots");
    assert_eq!(snapshots[0]["node_id"], log[1]["id"]);
    assert!(is_full_id(&snapshots[0]["id"]));
    assert_eq!(snapshots[0]["label"], "m");
    assert!(snapshots[0]["created_at"].is_string());

    let bases: Value =
        serde_json::from_str(&env.ok(&["merge-base", "--all", "--json", "main~2", "side"]))
            .expect("merge-base");
    assert_eq!(log[5]["label"], "b");
    assert_eq!(bases, serde_json::json!([log[5]["id"].clone()]));
}

/// `snapshots -n N` keeps the newest N, in the listing's own order (oldest first), in text
/// and JSON alike.
#[test]
fn snapshots_max_count_keeps_the_newest() {
    let env = merge_history();
    for rev in ["main~2", "main~1", "main"] {
        env.ok(&["snapshot", rev]);
    }
    let all = env.ok(&["snapshots"]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        env.ok(&["snapshots", "-n", "2"]),
        format!("{}\n{}\n", lines[1], lines[2])
    );
    assert_eq!(
        env.ok(&["snapshots", "--max-count", "1"]),
        format!("{}\n", lines[2])
    );
    assert_eq!(env.ok(&["snapshots", "-n", "0"]), "");
    assert_eq!(env.ok(&["snapshots", "-n", "10"]), all);
    let json = |args: &[&str]| -> Vec<Value> {
        let text = env.ok(args);
        serde_json::from_str::<Value>(&text)
            .expect("json")
            .as_array()
            .expect("array")
            .clone()
    };
    let every = json(&["snapshots", "--json"]);
    assert_eq!(
        json(&["snapshots", "--json", "-n", "2"]),
        every[1..].to_vec()
    );
    let newest: Value = serde_json::from_str(&env.ok(&["show", "--json", "main"])).expect("json");
    assert_eq!(
        json(&["snapshots", "-n", "1", "--json"])[0]["node_id"],
        newest["id"]
    );
    let out = env.sg(&["snapshots", "-n", "some"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

/// `snapshot -d SNAPSHOT` deletes the restore point by id or unique prefix, and nothing
/// else: the node, its state, its refs and the rest of the store stay.
#[test]
fn snapshot_delete_removes_only_the_restore_point() {
    let env = merge_history();
    let older = env.ok(&["snapshot", "main~1"]).trim().to_owned();
    let newer = env.ok(&["snapshot", "main"]).trim().to_owned();
    let before: Value = serde_json::from_str(&env.ok(&["stats", "--json"])).expect("json");
    let state = env.ok(&["cat", "main~1"]);
    let head_state = env.ok(&["cat", "main"]);

    let deleted = env.ok(&["snapshot", "-d", &older[7..15]]);
    assert_eq!(redact(&deleted), "deleted snapshot <id> (node <id> m)\n");
    assert!(deleted.contains(&older[7..19]), "{deleted}");
    let listed = env.ok(&["snapshots"]);
    assert_eq!(listed.lines().count(), 1);
    assert!(listed.starts_with(&newer[7..19]), "{listed}");
    let after: Value = serde_json::from_str(&env.ok(&["stats", "--json"])).expect("json");
    for kept in ["nodes", "states", "blobs", "refs"] {
        assert!(before[kept].as_u64().is_some_and(|n| n > 0), "{kept}");
        assert_eq!(after[kept], before[kept], "{kept}");
    }
    assert_eq!(after["snapshots"], 1);
    assert_eq!(env.ok(&["cat", "main~1"]), state);
    assert!(env.ok(&["fsck"]).ends_with(": ok\n"));

    // Gone now: the same words as for any unknown snapshot, and nothing changes.
    for text in [&older[7..15], older.as_str(), "not-an-id"] {
        let out = env.sg(&["snapshot", "-d", text]).output().expect("run");
        let err = assert_error(&out);
        assert!(err.contains("no snapshot matches"), "{err}");
    }
    // The full id and --delete work too.
    let out = env.ok(&["snapshot", "--delete", &newer]);
    assert!(out.starts_with("deleted snapshot"), "{out}");
    assert_eq!(env.ok(&["snapshots"]), "");
    assert_eq!(env.ok(&["cat", "main"]), head_state);
}

/// A prefix that matches several snapshots is refused with the candidates, and nothing is
/// deleted.
#[test]
fn snapshot_delete_refuses_an_ambiguous_prefix() {
    let env = Env::init();
    let store = SqliteStateStore::open(&env.db).expect("open");
    let mut ids = Vec::new();
    let mut head: Option<StateNodeId> = None;
    for i in 0..600u32 {
        let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(i64::from(i));
        let (_, node) = store
            .commit_state(
                head.into_iter().collect(),
                StateData::new(i.to_be_bytes().to_vec()),
                StateMetadata::new(at, None),
            )
            .expect("commit");
        ids.push(store.snapshot(&node).expect("snapshot").to_hex());
        head = Some(node);
    }
    drop(store);
    ids.sort();
    // 600 ids in 65,536 four-digit prefixes: some share one (the ids are fixed by the
    // fixed times, so this is the same pair on every run).
    let shared = ids
        .windows(2)
        .find(|w| w[0][..4] == w[1][..4])
        .map(|w| w[0][..4].to_owned())
        .expect("two snapshots share a 4-digit prefix");
    let out = env.sg(&["snapshot", "-d", &shared]).output().expect("run");
    let err = assert_error(&out);
    assert!(err.contains("ambiguous snapshot prefix"), "{err}");
    assert!(err.contains("use more digits"), "{err}");
    assert_eq!(env.ok(&["snapshots"]).lines().count(), 600);
}

/// Text that is a short prefix of one snapshot's id and of another node's id names two
/// things: the commands that take a snapshot refuse it instead of picking one.
#[test]
fn a_prefix_of_a_snapshot_and_of_another_node_is_ambiguous() {
    let env = Env::init();
    let store = SqliteStateStore::open(&env.db).expect("open");
    let mut batch = stategraph::Batch::new(&store);
    let mut nodes = Vec::new();
    let mut snapshots = Vec::new();
    let mut head: Option<StateNodeId> = None;
    for i in 0..6000u32 {
        let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(i64::from(i));
        let data = batch.put_state(StateData::new(i.to_be_bytes().to_vec()));
        let node = batch
            .commit_node(
                head.into_iter().collect(),
                data,
                StateMetadata::new(at, None),
            )
            .expect("commit");
        if i % 2 == 0 {
            snapshots.push((batch.snapshot(&node).expect("snapshot").to_hex(), node));
        }
        nodes.push(node);
        head = Some(node);
    }
    batch
        .set_ref("main", None, &head.expect("head"))
        .expect("ref");
    batch.commit().expect("batch");
    drop(store);
    let node_hex: Vec<String> = nodes.iter().map(StateNodeId::to_hex).collect();
    let nodes_at = |p: &str| node_hex.iter().filter(|id| id.starts_with(p)).count();
    let snapshots_at = |p: &str| snapshots.iter().filter(|(id, _)| id.starts_with(p)).count();
    // 3,000 snapshots and 6,000 nodes in 65,536 four-digit prefixes (fixed times: the same
    // ids on every run): some prefix is one snapshot's and one other node's, some one
    // snapshot's and several nodes'.
    let shared = |node_count: &dyn Fn(usize) -> bool| {
        snapshots
            .iter()
            .map(|(id, node)| (id[..4].to_owned(), node))
            .find(|(p, node)| {
                snapshots_at(p) == 1
                    && node_count(nodes_at(p))
                    && !node.to_hex().starts_with(p.as_str())
            })
            .map(|(p, _)| p)
    };
    let prefix = shared(&|n| n == 1).expect("a prefix of a snapshot and one other node");
    let several = shared(&|n| n >= 2).expect("a prefix of a snapshot and several nodes");
    let main_before = env.ok(&["show", "--json", "main"]);
    for (given, says) in [
        (&prefix, format!("and node {prefix}")),
        (&several, "2 or more nodes".to_owned()),
    ] {
        for args in [
            vec!["restore", given, "--branch", "main"],
            vec!["snapshot", "-d", given],
            vec!["export", given],
        ] {
            let out = env.sg(&args).output().expect("run");
            let err = assert_error(&out);
            assert!(
                err.contains(&format!("ambiguous \"{given}\": it names snapshot {given}"))
                    && err.contains(&says)
                    && err.contains("give more digits"),
                "{args:?}: {err}"
            );
        }
    }
    assert_eq!(env.ok(&["show", "--json", "main"]), main_before);
    assert_eq!(env.ok(&["snapshots"]).lines().count(), 3000);

    // A prefix of two nodes and no snapshot is an ambiguous node prefix, with candidates.
    let mut sorted = node_hex.clone();
    sorted.sort();
    let two = sorted
        .windows(2)
        .find(|w| w[0][..4] == w[1][..4] && snapshots_at(&w[0][..4]) == 0)
        .map(|w| w[0][..4].to_owned())
        .expect("two nodes share a prefix no snapshot has");
    let out = env
        .sg(&["restore", &two, "--branch", "main"])
        .output()
        .expect("run");
    let err = assert_error(&out);
    assert!(
        err.contains(&format!("ambiguous id prefix \"{two}\"")) && err.contains("candidates"),
        "{err}"
    );
}

/// One snapshot record whose time no longer reads fails every listing; the others can still
/// be named in full, and the damaged one deleted by its full id.
#[test]
fn a_damaged_snapshot_record_can_be_named_in_full_and_deleted() {
    let env = merge_history();
    let good = env.ok(&["snapshot", "main~1"]).trim().to_owned();
    let bad = env.ok(&["snapshot", "main"]).trim().to_owned();
    let bad_id: stategraph::SnapshotId = bad.parse().expect("id");
    let conn = rusqlite::Connection::open(&env.db).expect("raw");
    conn.pragma_update(None, "ignore_check_constraints", true)
        .expect("pragma");
    conn.execute(
        "UPDATE snapshots SET created_ns = 2000000000 WHERE id = ?1",
        [bad_id.as_bytes()],
    )
    .expect("damage");
    drop(conn);
    let err = assert_error(&env.sg(&["snapshots"]).output().expect("run"));
    assert!(
        err.contains(&bad[7..]) && err.contains("nanoseconds"),
        "{err}"
    );
    let err = assert_error(
        &env.sg(&["restore", &good[7..15], "--branch", "main"])
            .output()
            .expect("run"),
    );
    assert!(err.contains("name snapshots by their full id"), "{err}");
    let restored = env.ok(&["restore", &good, "--branch", "main"]);
    assert!(restored.starts_with("main: "), "{restored}");
    let deleted = env.ok(&["snapshot", "-d", &bad]);
    assert!(deleted.contains("its record was damaged"), "{deleted}");
    assert_eq!(env.ok(&["snapshots"]).lines().count(), 1);
    env.ok(&["fsck"]);
}

/// A tag's short name names the tag only while no ref of that name exists: a new branch
/// of that name would take it over silently, so none is made.
#[test]
fn a_new_branch_may_not_take_a_tags_short_name() {
    let env = merge_history();
    env.ok(&["tag", "v1", "main~1"]);
    let tagged = env.ok(&["show", "--json", "v1"]);
    let snapshot = env.ok(&["snapshot", "main"]);
    for args in [
        vec!["branch", "v1", "main"],
        vec!["commit", "-m", "x", "--branch", "v1"],
        vec!["restore", snapshot.trim(), "--branch", "v1", "--create"],
    ] {
        let out = env.sg(&args).write_stdin("{}").output().expect("run");
        let err = assert_error(&out);
        assert!(
            err.contains("will not create a branch named \"v1\": the tag \"v1\" exists"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(env.ok(&["show", "--json", "v1"]), tagged);
    assert!(!env.ok(&["branch"]).contains("v1"));
    // Moving an existing branch of another name is not affected, nor is a tag of a
    // branch's name (the branch keeps the name; the tag is `tags/main`).
    let out = env.sg(&["tag", "main", "main"]).output().expect("run");
    assert!(out.status.success());
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains("the branch main exists, and \"main\" names it; name this tag \"tags/main\""),
        "{note}"
    );
    env.commit("{}", "g", &["--branch", "main"]);
}

#[test]
fn snapshot_and_restore_by_prefix() {
    let env = merge_history();
    let snapshot = env.ok(&["snapshot", "main~1"]);
    let snapshot = snapshot.trim();
    assert!(snapshot.starts_with("blake3:"));
    let listed = env.ok(&["snapshots"]);
    assert!(listed.starts_with(&snapshot[7..19]), "{listed}");
    env.commit("{}", "g", &["--branch", "main"]);

    let moved = redact(&env.ok(&["restore", &snapshot[7..15], "--branch", "main"]));
    assert_eq!(moved, "main: <id> -> <id> m (snapshot <id>)\n");
    let head = redact(&env.ok(&["log", "--oneline", "-n", "1"]));
    assert_eq!(head, "<id> (main, snapshot) m\n");
    assert!(env.ok(&["reflog", "main"]).contains("restore snapshot"));

    // A node (by id prefix, full id or ref) with exactly one snapshot names that snapshot.
    let node: Value = serde_json::from_str(&env.ok(&["show", "--json", "main"])).expect("json");
    let node_id = node["id"].as_str().expect("id");
    for given in [&node_id[7..15], node_id, "main"] {
        let out = redact(&env.ok(&["restore", given, "--branch", "main"]));
        assert_eq!(
            out, "main: (already there) -> <id> m (snapshot <id>)\n",
            "{given}"
        );
    }
    let exported = env.sg(&["export", "main"]).output().expect("run");
    assert!(exported.status.success() && !exported.stdout.is_empty());
    // A node without one says so, and where to look.
    let out = env
        .sg(&["restore", "main~1", "--branch", "main"])
        .output()
        .expect("run");
    let err = assert_error(&out);
    assert!(
        err.contains("no snapshot matches") && err.contains("which has no snapshot"),
        "{err}"
    );
    // And the other way round: a snapshot id (a prefix, or in full) where a node was meant.
    for given in [&snapshot[7..19], snapshot] {
        let out = env.sg(&["show", given]).output().expect("run");
        let err = assert_error(&out);
        assert!(
            err.contains(&format!(
                "is snapshot {}, of node {}",
                &snapshot[7..19],
                &node_id[7..19]
            )),
            "{given}: {err}"
        );
    }
}

#[test]
fn show_prints_every_field() {
    let env = merge_history();
    env.ok(&["snapshot", "main~1"]);
    let text = redact(&env.ok(&["show", "main~1"]));
    for want in [
        "node <id> (snapshot)",
        "id         blake3:",
        "parents    <id> <id>",
        "children   <id>",
        "generation 5",
        "created    20",
        "label      m",
        "data ref   ",
        "size       7 bytes",
        "hash       blake3:",
        "type       (none)",
        "snapshots  <id> (taken 20",
        "refs       (none)",
        "    {\"n\":6}",
    ] {
        assert!(text.contains(want), "show lacks {want:?}:\n{text}");
    }
}

/// `show` previews a state from its first bytes: a text state with binary far into it is
/// previewed, the rest is counted from the stored size, and a character cut where the read
/// stops is not taken for binary.
#[test]
fn show_previews_the_start_of_a_large_state() {
    let env = Env::init();
    let mut text: String = (0..2000).map(|i| format!("line {i:04}\n")).collect();
    text.push_str("\0 binary tail");
    env.commit(&text, "tail", &["--branch", "tail"]);
    let shown = env.ok(&["show", "tail"]);
    let preview: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.is_empty())
        .skip(1)
        .collect();
    let mut want: Vec<String> = (0..12).map(|i| format!("    line {i:04}")).collect();
    let rest = text.len() - 12 * 10;
    want.push(format!("    ... ({rest} more bytes; see `stategraph cat`)"));
    assert_eq!(preview, want, "{shown}");
    assert!(
        shown.contains(&format!("size       {} bytes", text.len())),
        "{shown}"
    );

    // A lone carriage return is shown, not obeyed (it would print "hidden" over "shown").
    env.commit("shown\rhidden\r\nnext\n", "cr", &["--branch", "cr"]);
    let shown = env.ok(&["show", "cr"]);
    assert!(
        shown.contains("    shown\\rhidden\n    next\n"),
        "{shown:?}"
    );
    assert!(!shown.contains('\r'), "{shown:?}");

    // 61-byte lines of two-byte characters: the first 4096 bytes end inside one.
    let line = format!("{}\n", "é".repeat(30));
    let wide = line.repeat(100);
    env.commit(&wide, "wide", &["--branch", "wide"]);
    let shown = env.ok(&["show", "wide"]);
    let preview: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.is_empty())
        .skip(1)
        .collect();
    assert_eq!(preview.len(), 13, "{shown}");
    assert_eq!(preview[0], format!("    {}", line.trim_end()));
    let rest = wide.len() - 12 * line.len();
    assert_eq!(
        preview[12],
        format!("    ... ({rest} more bytes; see `stategraph cat`)")
    );
}

/// The lines `show` prints after its fields (the preview).
fn preview_of(shown: &str) -> Vec<&str> {
    shown
        .lines()
        .skip_while(|l| !l.is_empty())
        .skip(1)
        .collect()
}

/// `show` previews what a person debugging needs to see: a one-line JSON state longer than
/// the preview is cut (not hidden), control characters in it are escaped (not sent to the
/// terminal, nor a reason to show nothing), a state that is not text says so, and a state
/// whose stored bytes were damaged is flagged instead of shown.
#[test]
fn show_previews_one_line_json_control_characters_binary_and_damage() {
    let env = Env::init();
    let json = format!("{{\"memory\":\"{}\"}}", "m".repeat(5_000));
    env.commit(&json, "json", &["--branch", "json"]);
    let shown = env.ok(&["show", "json"]);
    let preview = preview_of(&shown);
    assert_eq!(preview.len(), 2, "{shown}");
    // Longer than show reads: not checked, and the JSON says so.
    let check = |env: &Env, rev: &str| -> (Option<i32>, Value) {
        let out = env.sg(&["show", "--json", rev]).output().expect("run");
        let json: Value = serde_json::from_slice(&out.stdout).expect("json");
        (out.status.code(), json["state_check"].clone())
    };
    assert_eq!(check(&env, "json"), (Some(0), Value::from("unchecked")));
    assert!(preview[0].starts_with("    {\"memory\":\"mmm"), "{shown}");
    assert!(preview[0].ends_with('…'), "{shown}");
    assert_eq!(
        preview[1],
        format!(
            "    ... ({} more bytes; see `stategraph cat`)",
            json.len() - 2048
        )
    );

    env.commit(
        "{\"x\":\"\u{1b}[31mred\u{7}\"}\n",
        "esc",
        &["--branch", "esc"],
    );
    let shown = env.ok(&["show", "esc"]);
    assert_eq!(
        preview_of(&shown),
        ["    {\"x\":\"\\u{1b}[31mred\\u{7}\"}"],
        "{shown}"
    );
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert_eq!(check(&env, "esc"), (Some(0), Value::from("ok")));

    // Windows line ends: every byte shown is counted (none "more").
    env.commit("a\r\nb\r\nc\r\n", "crlf", &["--branch", "crlf"]);
    let shown = env.ok(&["show", "crlf"]);
    assert_eq!(preview_of(&shown), ["    a", "    b", "    c"], "{shown}");

    let binary = Env::init();
    let out = binary
        .sg(&["commit", "-m", "bin", "--branch", "bin"])
        .write_stdin(vec![0xff, 0xfe, 0, 1, 2])
        .output()
        .expect("run");
    assert!(out.status.success());
    let shown = binary.ok(&["show", "bin"]);
    assert_eq!(
        preview_of(&shown),
        ["    (not text: 5 bytes; see `stategraph cat`)"],
        "{shown}"
    );

    let conn = rusqlite::Connection::open(&env.db).expect("raw");
    let changed = conn
        .execute(
            "UPDATE blobs SET bytes = CAST(replace(CAST(bytes AS TEXT), 'red', 'RED') AS BLOB) \
             WHERE CAST(bytes AS TEXT) LIKE '%red%'",
            [],
        )
        .expect("damage");
    assert_eq!(changed, 1);
    drop(conn);
    // Everything else is shown, the state is not, and the exit says something is wrong.
    let out = env.sg(&["show", "esc"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let shown = String::from_utf8(out.stdout).expect("utf-8");
    assert!(shown.contains("generation"), "{shown}");
    let preview = preview_of(&shown);
    assert_eq!(preview.len(), 1, "{shown}");
    assert!(
        preview[0].starts_with("    (damaged: its 18 stored bytes "),
        "{shown}"
    );
    assert!(!shown.contains("RED"), "{shown}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(stderr.contains("stategraph fsck"), "{stderr}");
    assert_eq!(check(&env, "esc"), (Some(2), Value::from("damaged")));
}

/// A node whose state cannot be read at all (its bytes gone), or whose state ref leads to
/// another state's bytes (whole, so their own hash passes): `show` still shows the node and
/// says the state is damaged (exit 2, `state_check` "damaged", size null), and `cat` of the
/// node refuses to print another state as its own.
#[test]
fn show_and_cat_flag_a_state_that_is_gone_or_another_states() {
    let env = Env::init();
    env.commit("state one", "first", &["--branch", "one"]);
    env.commit("state two", "second", &["--branch", "two"]);
    let sql = |statement: &str| env.damage(statement);
    let show_json = |rev: &str| {
        let out = env.sg(&["show", "--json", rev]).output().expect("run");
        let json: Value = serde_json::from_slice(&out.stdout).expect("json");
        (out.status.code(), json, crate::cli_util::stderr(&out))
    };

    // two's state ref now leads to one's bytes.
    sql(
        "UPDATE state_data SET blob_id = (SELECT id FROM blobs WHERE bytes = CAST('state one' AS BLOB)) \
         WHERE blob_id = (SELECT id FROM blobs WHERE bytes = CAST('state two' AS BLOB))",
    );
    let out = env.sg(&["cat", "two"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let err = crate::cli_util::stderr(&out);
    assert!(err.contains("is damaged") && err.contains("fsck"), "{err}");
    assert_eq!(env.ok(&["cat", "one"]), "state one");
    let (code, json, _) = show_json("two");
    assert_eq!(
        (code, &json["state_check"]),
        (Some(2), &Value::from("damaged"))
    );

    // one's bytes are gone: show says so instead of failing before it prints anything.
    sql("DELETE FROM blobs WHERE bytes = CAST('state one' AS BLOB)");
    let (code, json, err) = show_json("one");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(json["state_check"], "damaged");
    assert_eq!(json["size"], Value::Null);
    assert_eq!(json["label"], "first");
    assert!(err.contains("is damaged"), "{err}");
    let out = env.sg(&["show", "one"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let shown = String::from_utf8(out.stdout).expect("utf-8");
    assert!(shown.contains("(unreadable)"), "{shown}");
    assert!(shown.contains("(damaged: "), "{shown}");
}

/// Importing a package of a snapshot the store holds damaged writes its node and state
/// back: `import` says it repaired it (it said "already had"), counts it apart, and fails
/// when the damage is somewhere the package cannot mend.
#[test]
fn import_says_when_it_repaired_a_damaged_snapshot() {
    let env = Env::init();
    env.commit("state one", "first", &["--branch", "main"]);
    env.commit("state two", "second", &["--branch", "other"]);
    let package = |rev: &str| {
        let snapshot = env.ok(&["snapshot", rev]);
        let out = env
            .sg(&["export", &snapshot.trim()[7..]])
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", crate::cli_util::stderr(&out));
        let path = env.dir.path().join(format!("{rev}.sgpkg"));
        std::fs::write(&path, out.stdout).expect("write package");
        path.to_str().expect("utf-8").to_owned()
    };
    let (main_pkg, other_pkg) = (package("main"), package("other"));
    let sql = |statement: &str| env.damage(statement);

    sql(
        "UPDATE blobs SET bytes = CAST('state ONE' AS BLOB) WHERE bytes = CAST('state one' AS BLOB)",
    );
    // The same package twice: one transaction, the second finds it whole.
    let out = env
        .sg(&["import", &main_pkg, &main_pkg])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", crate::cli_util::stderr(&out));
    let lines = String::from_utf8(out.stdout.clone()).expect("utf-8");
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("repaired snapshot "), "{lines:?}");
    assert!(lines[1].starts_with("already had snapshot "), "{lines:?}");
    let err = crate::cli_util::stderr(&out);
    assert!(
        err.contains("2 input(s): 0 imported, 1 repaired, 1 already here, 0 failed"),
        "{err}"
    );
    assert_eq!(env.ok(&["cat", "main"]), "state one");
    assert!(env.ok(&["fsck"]).ends_with(": ok\n"));
    // Whole now: a plain "already had".
    assert!(
        env.ok(&["import", &main_pkg])
            .starts_with("already had snapshot ")
    );

    // A state ref leading to another state's bytes: the package holds the bytes and the
    // node, not that link, so the snapshot still does not load.
    sql(
        "UPDATE state_data SET blob_id = (SELECT id FROM blobs WHERE bytes = CAST('state one' AS BLOB)) \
         WHERE blob_id = (SELECT id FROM blobs WHERE bytes = CAST('state two' AS BLOB))",
    );
    let out = env.sg(&["import", &other_pkg]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = crate::cli_util::stderr(&out);
    assert!(err.contains("could not repair this snapshot here"), "{err}");
    assert!(out.stdout.is_empty(), "nothing claimed: {:?}", out.stdout);
    // Named twice in one batch: the second copy fails as the first did.
    let out = env
        .sg(&["import", &other_pkg, &other_pkg])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing claimed: {:?}", out.stdout);
    let err = crate::cli_util::stderr(&out);
    assert!(
        err.contains("0 imported, 0 already here, 2 failed"),
        "{err}"
    );
    assert!(err.contains("only those that could not repair"), "{err}");
    // Without its snapshot record, the package's snapshot is new, but its node is stored
    // (damaged): not "imported" unless it then loads.
    let snapshot = env.ok(&["snapshots", "--json"]);
    let snapshot: Value = serde_json::from_str(&snapshot).expect("json");
    let other_snapshot = snapshot
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["label"] == "second")
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .expect("other's snapshot");
    env.ok(&["snapshot", "-d", &other_snapshot]);
    let out = env.sg(&["import", &other_pkg]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing claimed: {:?}", out.stdout);
    let err = crate::cli_util::stderr(&out);
    assert!(err.contains("could not repair this snapshot here"), "{err}");
}

/// A store with a snapshot of each of three ticks on `main` (and of one tick on each of
/// `branches`), all exported into a directory `out` beside it.
fn exported_main(branches: &[&str]) -> (Env, PathBuf) {
    let sender = Env::init();
    for label in ["one", "two", "three"] {
        sender.commit(&format!("state {label}"), label, &["--branch", "main"]);
        sender.ok(&["snapshot", "main"]);
    }
    for branch in branches {
        sender.commit(&format!("state {branch}"), branch, &["--branch", branch]);
        sender.ok(&["snapshot", branch]);
    }
    let dir = sender.dir.path().join("out");
    sender.ok(&["export", "--all", "--out", dir.to_str().expect("utf-8")]);
    (sender, dir)
}

/// The file in `dir` holding the package of `rev`'s snapshot in `sender`.
fn package_of(sender: &Env, dir: &Path, rev: &str) -> PathBuf {
    let snapshot = sender.ok(&["snapshot", rev]);
    dir.join(format!("{}.sgpkg", &snapshot.trim()[7..]))
}

/// The snapshot of the package file at `path` loads from `store`: it was imported whole.
fn assert_snapshot_loads(store: &SqliteStateStore, path: &Path) {
    let package = stategraph::SnapshotPackage::from_bytes(&std::fs::read(path).expect("read"))
        .expect("package");
    store
        .load_snapshot(&package.snapshot_id)
        .expect("imported whole");
}

/// Imports `dir` into `env`'s store, which must fail (exit 2) with `summary`; the output
/// and its stderr.
fn import_failing(env: &Env, dir: &Path, summary: &str) -> (std::process::Output, String) {
    let out = env
        .sg(&["import", dir.to_str().expect("utf-8")])
        .output()
        .expect("run");
    let err = crate::cli_util::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(summary), "{err}");
    (out, err)
}

/// A store whose record of one snapshot is damaged (its time out of range, which SQLite's
/// check would refuse) does not stop `import` of a directory holding that snapshot's package
/// among others: that package fails, saying it could not repair the snapshot (an import
/// writes a node and its state back, not a snapshot record), and the others are imported.
#[test]
fn import_past_a_package_whose_snapshot_record_is_damaged() {
    let (sender, dir) = exported_main(&[]);
    let one_pkg = package_of(&sender, &dir, "main~2");
    let env = Env::init();
    env.ok(&["import", one_pkg.to_str().expect("utf-8")]);
    env.damage("UPDATE snapshots SET created_ns = 2000000000");
    let (out, err) = import_failing(
        &env,
        &dir,
        "3 input(s): 2 imported, 0 already here, 1 failed",
    );
    assert!(err.contains("could not repair this snapshot here"), "{err}");
    assert!(err.contains(&one_pkg.display().to_string()), "{err}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("imported snapshot"))
            .count(),
        2,
        "{stdout}"
    );
    let store = SqliteStateStore::open_read_only(&env.db).expect("open");
    for entry in std::fs::read_dir(&dir).expect("ls") {
        let path = entry.expect("entry").path();
        if path != one_pkg {
            assert_snapshot_loads(&store, &path);
        }
    }
}

/// `import DIR` of a package damaged every way one cut or one flipped bit can damage it:
/// every copy the library refuses is reported by name as an invalid package, the exit code
/// is 2, and the store file is left exactly as it was; the copies it accepts (their
/// generation claim changed, the one field no id covers) store the node once, with the
/// generation its stored parent gives it.
#[test]
fn import_of_every_damaged_copy_of_a_package() {
    let sender = Env::init();
    sender.commit("state one", "one", &["--branch", "main"]);
    let one = sender.ok(&["snapshot", "main"]);
    let two_node = sender.commit("state two", "two", &["--branch", "main"]);
    let two = sender.ok(&["snapshot", "main"]);
    let export = |snapshot: &str| {
        let out = sender
            .sg(&["export", &snapshot.trim()[7..]])
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", crate::cli_util::stderr(&out));
        out.stdout
    };
    let (one_pkg, wire) = (export(&one), export(&two));
    let env = Env::init();
    let one_path = env.dir.path().join("one.sgpkg");
    std::fs::write(&one_path, &one_pkg).expect("write");
    env.ok(&["import", one_path.to_str().expect("utf-8")]);

    let refused = env.dir.path().join("refused");
    let accepted = env.dir.path().join("accepted");
    std::fs::create_dir(&refused).expect("mkdir");
    std::fs::create_dir(&accepted).expect("mkdir");
    let mut names = Vec::new();
    let mut keep = |name: String, bytes: &[u8]| {
        let dir = match stategraph::SnapshotPackage::from_bytes(bytes) {
            Ok(_) => &accepted,
            Err(_) => {
                names.push(name.clone());
                &refused
            }
        };
        std::fs::write(dir.join(name), bytes).expect("write");
    };
    for len in 0..wire.len() {
        keep(format!("cut-{len:04}.sgpkg"), &wire[..len]);
    }
    for bit in 0..wire.len() * 8 {
        let mut damaged = wire.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        keep(format!("flip-{bit:05}.sgpkg"), &damaged);
    }
    let files = |dir: &std::path::Path| crate::util::dir_entries(dir).len();
    let (n_refused, n_accepted) = (files(&refused), files(&accepted));
    assert!(n_accepted > 0);

    let before = crate::util::Fingerprint::of(&env.db);
    let out = env
        .sg(&["import", refused.to_str().expect("utf-8")])
        .output()
        .expect("run");
    let err = crate::cli_util::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert!(
        err.contains(&format!(
            "{n_refused} input(s): 0 imported, 0 already here, {n_refused} failed"
        )),
        "{err}"
    );
    for name in &names {
        assert!(
            err.contains(&format!("{name}: invalid snapshot package: ")),
            "{name} in {err}"
        );
    }
    let after = crate::util::Fingerprint::of(&env.db);
    assert_eq!((&after.main, &after.wal), (&before.main, &before.wal));
    assert_eq!(env.ok(&["snapshots"]).lines().count(), 1);

    let out = env
        .sg(&["import", accepted.to_str().expect("utf-8")])
        .output()
        .expect("run");
    let err = crate::cli_util::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{n_accepted} input(s): 1 imported, {} already here, 0 failed",
            n_accepted - 1
        )),
        "{err}"
    );
    let node: Value = serde_json::from_str(&env.ok(&["show", "--json", &two_node])).expect("json");
    assert_eq!(node["generation"], 2);
    assert!(env.ok(&["fsck"]).ends_with(": ok\n"));
}

/// A node row damaged so that importing onto it fails (its generation is not a number)
/// fails the packages that touch it, its own and its child's, by name; the packages that do
/// not touch it are still imported, as with a package that could not repair its snapshot.
/// The import stopped at the first batch holding one of them.
#[test]
fn import_past_packages_that_meet_a_damaged_node_row() {
    let (sender, dir) = exported_main(&["other"]);
    let package_of = |rev: &str| package_of(&sender, &dir, rev);
    let (one, two) = (package_of("main~2"), package_of("main~1"));
    let env = Env::init();
    env.ok(&["import", one.to_str().expect("utf-8")]);
    env.damage("UPDATE state_nodes SET generation = 'x'");
    let (_, err) = import_failing(
        &env,
        &dir,
        "4 input(s): 2 imported, 0 already here, 2 failed",
    );
    for path in [&one, &two] {
        assert!(
            err.contains(&format!("while importing {}", path.display())),
            "{err}"
        );
    }
    let store = SqliteStateStore::open_read_only(&env.db).expect("open");
    for rev in ["main", "other"] {
        assert_snapshot_loads(&store, &package_of(rev));
    }
}

/// `import` looks at a file's size and first bytes before reading it whole: a file larger
/// than any package (sparse here, 3 GB) and a file that does not start as a package are
/// refused at once, with the usual hint.
#[test]
fn import_refuses_what_cannot_be_a_package_before_reading_it() {
    let env = Env::init();
    let big = env.dir.path().join("big.sgpkg");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(3_000_000_000))
        .expect("sparse file");
    let out = env
        .sg(&["import", big.to_str().expect("utf-8")])
        .output()
        .expect("run");
    let err = assert_error(&out);
    assert!(
        err.contains("more than any snapshot package can be"),
        "{err}"
    );
    let out = env
        .sg(&["import", "-"])
        .write_stdin(vec![0u8; 1 << 20])
        .output()
        .expect("run");
    let err = assert_error(&out);
    assert!(
        err.contains("does not start as one") && err.contains("`stategraph export` writes"),
        "{err}"
    );
}

/// `diff`: what a tick changed (one REV: against its first parent; a root against nothing),
/// or two revisions against each other; JSON compared field by field;
/// text line by line with control characters escaped; identical states print nothing;
/// states that are not text, and JSON that differs only in layout, say so.
#[test]
fn diff_shows_what_changed_between_states() {
    let env = Env::init();
    env.commit(
        r#"{"tick":1,"plan":["search"],"memory":{"b":1,"a":2},"x":0.25}"#,
        "tick 1",
        &["--branch", "main"],
    );
    env.commit(
        r#"{"tick":2,"plan":["search","summarise"],"memory":{"b":1,"a":2},"x":0.5}"#,
        "tick 2",
        &["--branch", "main"],
    );
    let shown = redact(&env.ok(&["diff", "main"]));
    let want = "\
--- <id> tick 1
+++ <id> tick 2
@@ -4,8 +4,9 @@
     \"b\": 1
   },
   \"plan\": [
-    \"search\"
+    \"search\",
+    \"summarise\"
   ],
-  \"tick\": 1,
-  \"x\": 0.25
+  \"tick\": 2,
+  \"x\": 0.5
 }
";
    assert_eq!(shown, want);
    // The same with both revisions named, and less context.
    let short = redact(&env.ok(&["diff", "main~1", "main", "-U", "0"]));
    assert!(
        short.contains("@@ -7 +7,2 @@\n-    \"search\"\n"),
        "{short}"
    );
    assert!(!short.contains("\"b\": 1"), "{short}");
    // A root against nothing.
    let root = redact(&env.ok(&["diff", "main~1"]));
    assert!(
        root.starts_with("--- (nothing: a root)\n+++ <id> tick 1\n@@ -0,0 +1,11 @@\n+{\n"),
        "{root}"
    );
    assert_eq!(env.ok(&["diff", "main", "main"]), "");
    // Text, with a control character and no final newline.
    env.commit("same\nold\u{1b}[31m\n", "t1", &["--branch", "text"]);
    env.commit("same\nnew", "t2", &["--branch", "text"]);
    let text = redact(&env.ok(&["diff", "text"]));
    assert!(
        text.ends_with(
            "@@ -1,2 +1,2 @@\n same\n-old\\u{1b}[31m\n+new\n\\ No newline at end of state\n"
        ),
        "{text}"
    );
    // JSON that differs only in layout.
    env.commit(r#"{"a":1,"b":2}"#, "compact", &["--branch", "layout"]);
    env.commit(
        "{\n  \"b\": 2,\n  \"a\": 1\n}\n",
        "pretty",
        &["--branch", "layout"],
    );
    let layout = env.ok(&["diff", "layout"]);
    assert!(
        layout.contains("differ only in JSON layout or key order"),
        "{layout}"
    );
    // A key given twice: the value JSON parsers drop (the first, here) is not hidden.
    env.commit(
        r#"{"mode":"safe","mode":"unsafe"}"#,
        "twice",
        &["--branch", "dup"],
    );
    env.commit(r#"{"mode":"unsafe"}"#, "once", &["--branch", "dup"]);
    let dup = env.ok(&["diff", "dup"]);
    assert!(
        !dup.contains("differ only in JSON layout") && dup.contains("\"safe\""),
        "{dup}"
    );
    // A change of line endings shows.
    env.commit("a\r\nb\r\n", "crlf", &["--branch", "eol"]);
    env.commit("a\nb\n", "lf", &["--branch", "eol"]);
    let eol = env.ok(&["diff", "eol"]);
    assert!(eol.contains("-a\\r\n-b\\r\n+a\n+b\n"), "{eol}");
    // Not text.
    let out = env
        .sg(&["commit", "-m", "bin", "--branch", "text"])
        .write_stdin(vec![0xff, 0, 1])
        .output()
        .expect("run");
    assert!(out.status.success());
    let binary = env.ok(&["diff", "text"]);
    assert!(binary.contains("states are not text: 8 bytes"), "{binary}");
}

/// `snapshots REV` lists only the restore points in REV's history (what a restart from REV
/// could use), oldest first like the full list, and `-n` keeps the newest of them.
#[test]
fn snapshots_of_one_history() {
    let env = Env::init();
    let one = env.commit("1", "one", &["--branch", "main"]);
    env.ok(&["snapshot", "main"]);
    env.ok(&["branch", "side", "main"]);
    env.commit("s", "side work", &["--branch", "side"]);
    env.ok(&["snapshot", "side"]);
    env.commit("2", "two", &["--branch", "main"]);
    env.ok(&["snapshot", "main"]);
    env.commit("3", "three", &["--branch", "main"]);
    env.ok(&["snapshot", "main"]);
    let labels = |args: &[&str]| -> Vec<String> {
        env.ok(args)
            .lines()
            .map(|l| l.rsplit("  ").next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(labels(&["snapshots"]).len(), 4);
    assert_eq!(labels(&["snapshots", "main"]), ["one", "two", "three"]);
    assert_eq!(labels(&["snapshots", "side"]), ["one", "side work"]);
    assert_eq!(labels(&["snapshots", "main", "-n", "2"]), ["two", "three"]);
    assert_eq!(labels(&["snapshots", &one]), ["one"]);
    let json: Value =
        serde_json::from_str(&env.ok(&["snapshots", "side", "--json"])).expect("json");
    assert_eq!(json.as_array().map(Vec::len), Some(2), "{json}");
}

/// Right after `stategraph demo` (which writes `stategraph-demo.db`), a command run without
/// `--db` finds no `stategraph.db`: the hint points at the demo's store.
#[test]
fn no_store_beside_the_demo_store_points_at_it() {
    let env = Env::new();
    let out = env.sg(&["log"]).output().expect("run");
    assert!(assert_error(&out).contains("create one with"));
    env.ok(&["demo", "--db", "stategraph-demo.db"]);
    let out = env.sg(&["log"]).output().expect("run");
    let err = assert_error(&out);
    let demo = env.dir.path().join("stategraph-demo.db");
    assert!(
        err.contains(&format!(
            "the demo's store is {0}: pass --db={0}",
            demo.display()
        )),
        "{err}"
    );
}

/// `commit` says on stderr what it did besides committing when that may not be what was
/// meant: it created a branch (a mistyped name does), it moved a branch to a node whose
/// history leaves the old head out (`-p` with an older parent), or the node is on no branch.
#[test]
fn commit_notes_new_branches_rewinds_and_unnamed_nodes() {
    let env = Env::init();
    let stderr_of = |args: &[&str], data: &str| {
        let out = env.sg(args).write_stdin(data).output().expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            crate::cli_util::stderr(&out)
        );
        crate::cli_util::stderr(&out)
    };
    let err = stderr_of(&["commit", "-m", "one", "--branch", "main"], "1");
    assert!(err.contains("note: created branch main"), "{err}");
    let err = stderr_of(&["commit", "-m", "two", "--branch", "main"], "2");
    assert!(err.is_empty(), "{err}");
    let two = env.ok(&["show", "main", "--json"]);
    let err = stderr_of(
        &["commit", "-m", "fix", "--branch", "main", "-p", "main~1"],
        "3",
    );
    assert!(
        err.contains("branch main moved from") && err.contains("main@{1}"),
        "{err}"
    );
    assert!(two.contains("\"two\""), "{two}");
    // Building on the head with -p is no rewind.
    let err = stderr_of(
        &["commit", "-m", "on", "--branch", "main", "-p", "main"],
        "4",
    );
    assert!(err.is_empty(), "{err}");
    let err = stderr_of(&["commit", "-m", "loose"], "5");
    assert!(err.contains("on no branch"), "{err}");
}

/// Run out of file descriptors (`ulimit -n`), the CLI says so, where SQLite's own "unable
/// to open database file" reads like a permission problem. The limit that makes the open
/// fail depends on what the process has open at start, so a range is tried: every run that
/// fails must say why, and some must fail.
#[test]
fn running_out_of_file_descriptors_is_named() {
    let env = Env::init();
    env.commit("1", "one", &["--branch", "main"]);
    let mut failed = 0;
    for limit in 4..=12 {
        let inner = env.sg_std(&["log"]);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(inner.get_program())
            .args(inner.get_args())
            .current_dir(env.dir.path())
            .output()
            .expect("run");
        if out.status.success() {
            continue;
        }
        failed += 1;
        let err = crate::cli_util::stderr(&out);
        assert!(
            err.contains("run out of file descriptors"),
            "limit {limit}: {err}"
        );
    }
    assert!(failed > 0, "no limit from 4 to 12 made `log` fail");
}

/// `cat` refuses to send a state with escape sequences to a terminal (it would recolour or
/// retitle it), says how to get the bytes, and prints them with `--raw` or into a pipe.
/// The terminal is `script`'s pseudo-terminal (util-linux, in every Debian).
#[test]
fn cat_keeps_control_characters_off_a_terminal() {
    let env = Env::init();
    env.commit(
        "\u{1b}]0;pwned\u{7}\u{1b}[31mred\n",
        "esc",
        &["--branch", "main"],
    );
    // Into a pipe: the bytes as stored.
    let piped = env.sg(&["cat", "main"]).output().expect("run");
    assert_eq!(
        piped.stdout,
        "\u{1b}]0;pwned\u{7}\u{1b}[31mred\n".as_bytes()
    );
    let on_terminal = |extra: &str| {
        let inner = env.sg_std(&["cat", "main"]);
        let mut line: Vec<String> = std::iter::once(inner.get_program())
            .chain(inner.get_args())
            .map(|a| format!("'{}'", a.to_str().expect("utf-8 arg")))
            .collect();
        line.push(extra.to_owned());
        std::process::Command::new("script")
            .args([
                "-qec",
                &format!("{}; echo \"exit=$?\"", line.join(" ")),
                "/dev/null",
            ])
            .current_dir(env.dir.path())
            .output()
            .expect("script (util-linux) runs")
    };
    let refused = on_terminal("");
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(
        text.contains("is not plain text") && text.contains("exit=2"),
        "{text}"
    );
    assert!(!text.contains("pwned"), "{text}");
    let raw = on_terminal("--raw");
    let text = String::from_utf8_lossy(&raw.stdout);
    assert!(
        text.contains("\u{1b}[31mred") && text.contains("exit=0"),
        "{text}"
    );
}

#[test]
fn graph_exports_dot() {
    let env = merge_history();
    let dot = env.ok(&["graph", "--all", "--format", "dot"]);
    assert!(dot.starts_with("digraph stategraph {"));
    assert_eq!(dot.matches(" -> ").count(), 7, "{dot}");
    assert_eq!(dot.matches("style=dashed").count(), 1, "{dot}");
}

/// A store with a chain of `len` nodes on main, labelled `n0` (the root) to `n{len-1}`, and
/// `tags/base` at `n9`.
fn chain_store(env: &Env, len: i64) {
    let store = open_normal(&env.db);
    let base = time::macros::datetime!(2026-01-01 00:00:00 UTC);
    let mut batch = store.batch();
    let data = batch.put_state(StateData::new(b"{}".to_vec()));
    let mut head = None;
    for i in 0..len {
        let meta = StateMetadata::new(base + time::Duration::seconds(i), Some(format!("n{i}")));
        let id = batch
            .commit_node(head.into_iter().collect(), data, meta)
            .expect("node");
        if i == 9 {
            batch.set_ref("tags/base", None, &id).expect("tag");
        }
        head = Some(id);
    }
    batch
        .set_ref("main", None, &head.expect("a node"))
        .expect("ref");
    batch.commit().expect("commit");
}

/// `log --since/--until` keep the nodes made in a span of time, `-n` counts what they let
/// through, JSON too; an age counts back from now; a bad time and `--graph` are refused.
#[test]
fn log_since_and_until_select_by_time() {
    let env = Env::init();
    chain_store(&env, 20);
    let labels = |args: &[&str]| -> Vec<String> {
        env.ok(args)
            .lines()
            .map(|l| l.split_whitespace().last().unwrap_or_default().to_owned())
            .collect()
    };
    let span = [
        "log",
        "--oneline",
        "--since",
        "2026-01-01T00:00:05Z",
        "--until",
        "2026-01-01T00:00:07Z",
    ];
    assert_eq!(labels(&span), ["n7", "n6", "n5"]);
    let mut first = span.to_vec();
    first.extend(["-n", "2"]);
    assert_eq!(labels(&first), ["n7", "n6"]);
    let json: Value =
        serde_json::from_str(&env.ok(&["log", "--json", "--until", "2026-01-01T00:00:02+00:00"]))
            .expect("json");
    let got: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|n| n["label"].as_str().expect("label"))
        .collect();
    assert_eq!(got, ["n2", "n1", "n0"]);
    // Everything was made long before an hour ago.
    assert_eq!(env.ok(&["log", "--since", "1h"]), "");
    assert_eq!(labels(&["log", "--oneline", "--until", "1h"]).len(), 20);
    for bad in [
        &["log", "--since", "yesterday"][..],
        &["log", "--graph", "--since", "1h"],
    ] {
        let out = env.sg(bad).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

/// `stategraph graph | head` and `stategraph log --graph A..B | head`: the reader goes away
/// long before the output ends; the command stops quietly.
#[test]
fn output_to_a_reader_that_goes_away_stops_quietly() {
    use std::io::{BufRead, BufReader};
    let env = Env::init();
    chain_store(&env, 3000);
    for args in [
        &["graph"][..],
        &["log", "--graph", "--oneline", "tags/base..main"],
    ] {
        let mut child = env
            .sg_std(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("read");
        assert!(!first.is_empty(), "{args:?} printed nothing");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
        assert_eq!(crate::cli_util::stderr(&out), "", "{args:?}");
    }
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let env = merge_history();
    let plain = env.ok(&["log", "--oneline", "--graph"]);
    assert!(!plain.contains('\x1b'));
    let coloured = env.ok(&["--color", "always", "log", "--oneline", "--graph"]);
    assert!(coloured.contains("\x1b["));
    // PAGER=false in the test environment: output is not a terminal, so no pager runs.
    assert_eq!(coloured.lines().count(), plain.lines().count());
}

#[test]
fn every_command_has_help_with_an_example() {
    let env = Env::new();
    // Every command the top-level help lists (so a new one cannot be missed here).
    let top = env.ok(&["--help"]);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 20, "{commands:?}");
    for command in commands {
        env.sg(&[command, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example"));
    }
    env.sg(&["--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples"));
    // A usage error is clap's, exit 2.
    env.sg(&["log", "--nope"]).assert().code(2);
}

#[test]
fn readers_never_fail_while_another_process_writes() {
    let env = Env::init();
    env.commit("{\"tick\":0}", "tick 0", &["--branch", "main"]);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (db, stop, written) = (env.db.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let store = SqliteStateStore::open(&db).expect("open");
            let mut tick = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let head = store.get_ref("main").expect("get").expect("main");
                let data = store
                    .put_state(StateData::new(format!("{{\"tick\":{tick}}}").into_bytes()))
                    .expect("put");
                let mut parents = vec![head];
                if tick.is_multiple_of(7)
                    && let Some(side) = store.get_ref("side").expect("get")
                    && side != head
                {
                    parents.push(side);
                }
                let id = store
                    .commit_node(parents, data, StateMetadata::now(format!("tick {tick}")))
                    .expect("commit");
                store.set_ref("main", Some(&head), &id).expect("cas");
                if tick.is_multiple_of(5) {
                    let side = store.get_ref("side").expect("get");
                    store.set_ref("side", side.as_ref(), &head).expect("side");
                    store.snapshot(&id).expect("snapshot");
                }
                written.fetch_add(1, Ordering::Relaxed);
                tick += 1;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut runs = 0;
    while Instant::now() < deadline || runs < 20 {
        for args in [
            &["log", "-n", "50"][..],
            &["log", "--graph", "--oneline", "--all", "-n", "30"],
            &["show", "main"],
            &["log", "--json", "-n", "5"],
            &["branch"],
            &["snapshots"],
        ] {
            let out = env.sg(args).output().expect("run");
            assert!(
                out.status.success(),
                "{args:?} failed while writing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            runs += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    assert!(
        written.load(Ordering::Relaxed) > 10,
        "the writer made progress"
    );
}

/// `args` run against `shallow` (holding part of `whole`'s history) succeeds and says on
/// stderr where the history stops; against `whole` it says nothing there.
fn says_where_history_stops(whole: &Env, shallow: &Env, args: &[&str]) {
    let out = shallow.sg(args).output().expect("run");
    assert!(out.status.success(), "{args:?}");
    let err = crate::cli_util::stderr(&out);
    assert!(
        err.contains("history stops at 1 parent(s) not in this store"),
        "{args:?}: {err}"
    );
    let full = whole.sg(args).output().expect("run");
    assert_eq!(
        crate::cli_util::stderr(&full),
        "",
        "{args:?} on the whole history"
    );
}

/// `snapshots REV` lists the restore points in REV's history; where that history stops at a
/// shallow boundary (pruned, or imported without its ancestors), snapshots kept below it
/// are not listed, and it says so, as `log` does, instead of passing the short list off
/// as the whole history.
#[test]
fn snapshots_of_a_rev_say_where_its_history_stops() {
    let env = merge_history();
    let snapshot = env.ok(&["snapshot", "main"]);
    let snapshot = snapshot.trim();
    let out = env.sg(&["export", &snapshot[7..19]]).output().expect("run");
    assert!(out.status.success(), "{}", crate::cli_util::stderr(&out));
    let other = Env::init();
    let pkg_path = other.dir.path().join("main.sgpkg");
    std::fs::write(&pkg_path, &out.stdout).expect("write package");
    let out = other
        .sg(&["import", pkg_path.to_str().expect("utf-8 path")])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", crate::cli_util::stderr(&out));
    let node: Value = serde_json::from_str(&env.ok(&["show", "--json", "main"])).expect("json");
    let id = node["id"].as_str().expect("id");
    for args in [&["snapshots", id][..], &["snapshots", "--json", id]] {
        says_where_history_stops(&env, &other, args);
    }
}

#[test]
fn export_and_import_between_stores() {
    let env = merge_history();
    let snapshot = env.ok(&["snapshot", "main"]);
    let snapshot = snapshot.trim();
    let out = env.sg(&["export", &snapshot[7..19]]).output().expect("run");
    assert!(out.status.success(), "{}", crate::cli_util::stderr(&out));
    let package = out.stdout;

    // Into an empty store: the node arrives without its ancestors (a shallow boundary).
    let other = Env::init();
    let pkg_path = other.dir.path().join("main.sgpkg");
    std::fs::write(&pkg_path, &package).expect("write package");
    let pkg = pkg_path.to_str().expect("utf-8 path");
    let out = other.sg(&["import", pkg]).output().expect("run");
    assert!(out.status.success(), "{}", crate::cli_util::stderr(&out));
    let imported = String::from_utf8(out.stdout.clone()).expect("utf-8");
    assert!(imported.starts_with("imported snapshot"), "{imported}");
    assert!(imported.contains("shallow boundary"), "{imported}");
    let note = crate::cli_util::stderr(&out);
    assert!(
        note.contains("no branch points at anything") && note.contains("--create"),
        "an empty store says how to name what arrived: {note}"
    );
    // `log` shows the node and says where its history stops, in text and JSON alike.
    let node: Value = serde_json::from_str(&env.ok(&["show", "--json", "main"])).expect("json");
    let id = node["id"].as_str().expect("id");
    for args in [
        &["log", id][..],
        &["log", "--json", id],
        &["log", "--oneline", id],
    ] {
        says_where_history_stops(&env, &other, args);
    }
    // The graph ends the node's line there, as at a root, instead of leading on to nothing.
    let graph = other.ok(&["log", "--graph", id]);
    assert!(graph.starts_with("* node "), "{graph}");
    assert!(
        graph.lines().skip(1).all(|l| !l.starts_with('|')),
        "{graph}"
    );
    assert_eq!(
        other.ok(&["import", pkg]),
        imported.replace("imported", "already had"),
        "importing twice changes nothing, and says so"
    );
    other.ok(&["restore", &snapshot[7..19], "--branch", "main", "--create"]);
    let main: Value = serde_json::from_str(&other.ok(&["show", "--json", "main"])).expect("json");
    assert_eq!(
        main["id"].as_str(),
        Some(id),
        "main is at the imported node"
    );
    let out = other.sg(&["import", pkg]).output().expect("run");
    assert_eq!(
        crate::cli_util::stderr(&out),
        "",
        "no note once a branch exists"
    );
    assert_eq!(other.ok(&["cat", id]), env.ok(&["cat", "main"]));
    let listed: Value = serde_json::from_str(&other.ok(&["snapshots", "--json"])).expect("json");
    assert_eq!(listed[0]["id"].as_str(), Some(snapshot));

    // Every snapshot into a directory, then all of them back.
    env.ok(&["snapshot", "main~1"]);
    let dir = env.dir.path().join("packages");
    env.ok(&["export", "--all", "--out", dir.to_str().expect("utf-8")]);
    let files: Vec<String> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2);
    // One snapshot named twice (a prefix and the full id) is exported once, and counted once.
    let twice = env.dir.path().join("twice");
    let out = env
        .sg(&[
            "export",
            &snapshot[7..19],
            snapshot,
            "--out",
            twice.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("exported 1 snapshot(s)"));
    assert_eq!(std::fs::read_dir(&twice).expect("read dir").count(), 1);
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    other.ok(&args);
    assert_eq!(other.ok(&["snapshots"]).lines().count(), 2);

    // A reader that goes away (`import ... | head -1`) does not stop the imports.
    let piped = Env::init();
    let mut child = piped
        .sg_std(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", crate::cli_util::stderr(&out));
    assert_eq!(piped.ok(&["snapshots"]).lines().count(), 2);

    // A file that is not a package is reported; the packages around it are still imported,
    // and the exit code says something failed.
    let junk = env.dir.path().join("junk.sgpkg");
    std::fs::write(&junk, b"not a package").expect("write");
    let partial = Env::init();
    let out = partial
        .sg(&[
            "import",
            &files[0],
            junk.to_str().expect("utf-8"),
            &files[1],
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = crate::cli_util::stderr(&out);
    assert!(
        err.contains("junk.sgpkg: invalid snapshot package"),
        "{err}"
    );
    assert!(err.contains("files `stategraph export` writes"), "{err}");
    assert!(
        err.contains("3 input(s): 2 imported, 0 already here, 1 failed; 1 transaction(s)"),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: 1 of 3 input(s) failed: ") && l.ends_with("junk.sgpkg")),
        "{err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2,
        "a line for each package imported"
    );
    assert_eq!(partial.ok(&["snapshots"]).lines().count(), 2);
    let out = partial.sg(&["import", "-", "-"]).output().expect("run");
    assert!(assert_error(&out).contains("can be given only once"));

    // A damaged package is refused, and nothing of it is stored.
    let mut bad = package.clone();
    let last = bad.len() - 2;
    bad[last] ^= 0x01;
    let bad_path = other.dir.path().join("bad.sgpkg");
    std::fs::write(&bad_path, &bad).expect("write");
    let fresh = Env::init();
    let out = fresh
        .sg(&["import", bad_path.to_str().expect("utf-8")])
        .output()
        .expect("run");
    let err = assert_error(&out);
    assert!(err.contains("invalid snapshot package"), "{err}");
    assert_eq!(fresh.ok(&["snapshots"]), "");
    std::fs::write(&bad_path, &package[..package.len() / 2]).expect("write");
    let out = fresh
        .sg(&["import", bad_path.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(assert_error(&out).contains("truncated"));

    // A store without snapshots: --all --out exports none, and says so.
    let none = fresh.dir.path().join("none");
    let out = fresh
        .sg(&["export", "--all", "--out", none.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(crate::cli_util::stderr(&out).contains("exported 0 snapshots"));
    // Naming nothing is a usage error, not an empty export that looks like a backup.
    for args in [
        &["export"][..],
        &["export", "--out", none.to_str().expect("utf-8")],
    ] {
        let out = fresh.sg(args).output().expect("run");
        let err = assert_error(&out);
        assert!(err.contains("--all"), "{args:?}: {err}");
    }
    assert!(!none.join("x").exists());
}

/// `import DIR` reads the directory's *.sgpkg files in name order, many per transaction,
/// says what it skipped, reports a bad package without losing the others, and counts what
/// it did in a summary on stderr.
#[test]
fn import_reads_directories_in_batches() {
    let n = 2500;
    let sender = stategraph::InMemoryStateStore::new();
    let other = Env::init();
    let dir = other.dir.path().join("packages");
    std::fs::create_dir_all(dir.join("old")).expect("mkdir");
    let mut head: Option<StateNodeId> = None;
    let mut names = Vec::new();
    for i in 0..n {
        let data = sender
            .put_state(StateData::new(format!("tick {i}").into_bytes()))
            .expect("put");
        let node = sender
            .commit_node(head.into_iter().collect(), data, StateMetadata::now(None))
            .expect("commit");
        let snapshot = sender.snapshot(&node).expect("snapshot");
        let package = sender.export_snapshot(&snapshot).expect("export");
        let name = format!("{}.sgpkg", snapshot.to_hex());
        // One package in a subdirectory, which is not searched.
        let at = if i == 7 { dir.join("old") } else { dir.clone() };
        std::fs::write(at.join(&name), package.to_bytes()).expect("write");
        if i != 7 {
            names.push(name);
        }
        head = Some(node);
    }
    names.sort();
    std::fs::write(dir.join("README.txt"), "what these are").expect("write");
    std::fs::write(dir.join("zz-damaged.sgpkg"), b"\x89 not cbor").expect("write");
    let dir_arg = dir.to_str().expect("utf-8");

    let out = other.sg(&["import", dir_arg]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "a package failed");
    let err = crate::cli_util::stderr(&out);
    for expected in [
        "skipped 1 file(s) not named *.sgpkg: README.txt",
        "skipped 1 subdirectory (subdirectories are not searched): old",
        "zz-damaged.sgpkg: invalid snapshot package",
        "2500 input(s): 2499 imported, 0 already here, 1 failed; 3 transaction(s)",
        "error: 1 of 2500 input(s) failed: ",
    ] {
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
    // A line per package, in the order of the file names.
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let shown: Vec<&str> = stdout
        .lines()
        .map(|l| l.split(' ').nth(2).expect("snapshot id"))
        .collect();
    let expected: Vec<&str> = names.iter().map(|n| &n[..12]).collect();
    assert_eq!(shown, expected);
    let stats: Value = serde_json::from_str(&other.ok(&["stats", "--json"])).expect("json");
    assert_eq!(stats["nodes"], 2499);
    assert_eq!(stats["shallow_edges"], 1, "the node in old/ is missing");
    assert!(other.ok(&["fsck"]).ends_with(": ok\n"));

    // Again without the damaged file: everything is already here, and that is no error.
    std::fs::remove_file(dir.join("zz-damaged.sgpkg")).expect("rm");
    let out = other.sg(&["import", dir_arg]).output().expect("run");
    assert!(out.status.success(), "{}", crate::cli_util::stderr(&out));
    let err = crate::cli_util::stderr(&out);
    assert!(
        err.contains("2499 input(s): 0 imported, 2499 already here, 0 failed; 3 transaction(s)"),
        "{err}"
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        stdout
            .lines()
            .all(|l| l.starts_with("already had snapshot"))
    );

    // A file and a directory together, a path that does not exist, an empty directory.
    let empty = other.dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let old_pkg = dir.join("old").join(
        std::fs::read_dir(dir.join("old"))
            .expect("ls")
            .next()
            .expect("one")
            .expect("entry")
            .file_name(),
    );
    let out = other
        .sg(&[
            "import",
            "no-such-file.sgpkg",
            empty.to_str().expect("utf-8"),
            old_pkg.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = crate::cli_util::stderr(&out);
    for expected in [
        "error: cannot read no-such-file.sgpkg: ",
        "empty holds no .sgpkg files",
        "2 input(s): 1 imported, 0 already here, 1 failed; 1 transaction(s)",
    ] {
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
    let stats: Value = serde_json::from_str(&other.ok(&["stats", "--json"])).expect("json");
    assert_eq!(stats["shallow_edges"], 0, "the boundary closed");
    assert!(other.ok(&["fsck"]).ends_with(": ok\n"));
}

#[test]
fn fsck_and_stats() {
    let env = merge_history();
    let healthy = env.ok(&["fsck"]);
    assert!(healthy.ends_with(": ok\n"), "{healthy}");
    let stats: Value = serde_json::from_str(&env.ok(&["stats", "--json"])).expect("json");
    let nodes = stats["nodes"].as_u64().expect("nodes");
    let log: Value = serde_json::from_str(&env.ok(&["log", "--all", "--json"])).expect("json");
    assert_eq!(nodes as usize, log.as_array().expect("array").len());
    assert_eq!(
        stats["schema_version"].as_i64(),
        Some(stategraph::SCHEMA_VERSION)
    );

    // Damage one node behind the store's back: fsck names it and exits 1.
    let conn = rusqlite::Connection::open(&env.db).expect("raw");
    conn.execute("UPDATE state_nodes SET label = 'forged' WHERE seq = 1", [])
        .expect("damage");
    drop(conn);
    let out = env.sg(&["fsck", "--json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let problems = report["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].as_str().expect("text").contains("corrupt node"));
    // The log shows every node above the damaged root, then the error.
    let out = env
        .sg(&["log", "--all", "--oneline"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(shown.lines().count() as u64, nodes - 1, "{shown}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt node") && err.contains("hint: `stategraph fsck`"),
        "{err}"
    );

    // A store too damaged to open is a finding too (exit 1, not the 2 of a failed command),
    // and other commands point at fsck.
    let short = env.dir.path().join("short.db");
    let bytes = std::fs::read(&env.db).expect("read");
    std::fs::write(&short, &bytes[..bytes.len() / 2]).expect("write");
    let short = short.to_str().expect("utf-8");
    let out = bare(env.dir.path())
        .args(["--db", short, "fsck"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("problem: the store cannot be read: corrupt store file")
            && text.contains("truncated")
            && text.ends_with("1 problem(s)\n"),
        "{text}"
    );
    let out = bare(env.dir.path())
        .args(["--db", short, "fsck", "--json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["problems"].as_array().map(Vec::len), Some(1));
    let out = bare(env.dir.path())
        .args(["--db", short, "log"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hint: `stategraph fsck` lists the damage"),
        "{err}"
    );
}

/// Whether the tests run as root, for whom file permissions do not bind.
fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A write that SQLite refuses because this user cannot write the store's files names them
/// (SQLite only says "attempt to write a readonly database"). As root, where permissions do
/// not bind, two unprivileged users play out the usual cause with `setpriv`: another user's
/// read leaves a `-wal`/`-shm` pair that the store's owner cannot write.
#[test]
fn a_write_refused_by_file_permissions_names_the_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new();
    let dir = env.dir.path();
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    if !running_as_root() {
        env.ok(&["init"]);
        env.commit("{}", "one", &["--branch", "main"]);
        mode(&env.db, 0o444);
        let out = env.sg(&["commit", "-m", "two"]).write_stdin("{}").output();
        let err = assert_error(&out.expect("run"));
        let want = format!("this user cannot write {} (", env.db.display());
        assert!(err.contains(&want) && err.contains("mode 444)"), "{err}");
        return;
    }
    // The binary is copied where both users can run it (the build directory may not be).
    mode(dir, 0o777);
    let bin = dir.join("stategraph");
    std::fs::copy(env!("CARGO_BIN_EXE_stategraph"), &bin).expect("copy the binary");
    mode(&bin, 0o755);
    let run = |uid: u32, args: &[&str], stdin: &str| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg(&bin)
            .arg("--db")
            .arg(&env.db)
            .args(args)
            .current_dir(dir)
            .env_remove("STATEGRAPH_DB")
            .env("PAGER", "false")
            .env("NO_COLOR", "1");
        assert_cmd::Command::from_std(cmd)
            .write_stdin(stdin)
            .output()
            .expect("run setpriv (util-linux), needed by this test when it runs as root")
    };
    let (owner, other) = (65534, 65533);
    let ok = |out: std::process::Output| {
        let stderr = crate::cli_util::stderr(&out);
        assert!(out.status.success(), "{stderr}");
    };
    ok(run(owner, &["init"], ""));
    ok(run(
        owner,
        &["commit", "-m", "one", "--branch", "main"],
        "{}",
    ));
    ok(run(other, &["log", "--oneline"], ""));
    let sidecar = |suffix: &str| dir.join(format!("state.db{suffix}"));
    assert!(
        sidecar("-wal").exists() && sidecar("-shm").exists(),
        "setup: the other user's read left the WAL files"
    );
    let err = assert_error(&run(owner, &["commit", "-m", "two"], "{}"));
    for want in [
        format!(
            "cannot write {} (owner uid {other}",
            sidecar("-wal").display()
        ),
        format!("{} (owner uid {other}", sidecar("-shm").display()),
        "deleting the -wal and -shm files is safe".to_owned(),
    ] {
        assert!(err.contains(&want), "{want:?} in {err}");
    }
    // The advice works.
    std::fs::remove_file(sidecar("-wal")).expect("remove -wal");
    std::fs::remove_file(sidecar("-shm")).expect("remove -shm");
    ok(run(
        owner,
        &["commit", "-m", "two", "--branch", "main"],
        "{}",
    ));
}

/// `gc`: a dry run and a real run report the same counts, the grace period protects new
/// things, only what no ref or ref log entry reaches goes, and a bad AGE is refused.
#[test]
fn gc_removes_what_nothing_reaches_and_says_so() {
    let env = Env::init();
    let kept = env.commit("kept", "kept", &["--branch", "main"]);
    // A node no ref points at (no --branch), and state bytes no node holds.
    let dangling = env.commit("dangling", "dangling", &["-p", "main"]);
    env.sg(&["put"]).write_stdin("orphan").assert().success();
    let json = |args: &[&str]| -> Value { serde_json::from_str(&env.ok(args)).expect("json") };
    let fresh = json(&["gc", "--json"]);
    assert_eq!(
        fresh["nodes_removed"], 0,
        "within the default grace: {fresh}"
    );
    // A dry run only reads: it counts while another program holds the write lock (a gc
    // would wait out the 30 s busy timeout, then fail).
    let other = rusqlite::Connection::open(&env.db).expect("other connection");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let dry = json(&["gc", "--grace", "0", "--dry-run", "--json"]);
    other.execute_batch("ROLLBACK").expect("release");
    drop(other);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["nodes_removed"], 1, "{dry}");
    assert_eq!(dry["states_removed"], 2, "{dry}");
    env.ok(&["show", &dangling]);
    let text = env.ok(&["gc", "--grace", "0"]);
    assert!(
        text.starts_with("removed 1 node(s), 2 state(s), 2 distinct content(s)"),
        "{text}"
    );
    let out = env.sg(&["show", &dangling]).output().expect("run");
    assert_error(&out);
    env.ok(&["show", &kept]);
    // The reflog keeps every node main passed until told to forget it.
    env.commit("next", "next", &["--branch", "main"]);
    env.ok(&["branch", "-f", "main", &kept]);
    assert_eq!(json(&["gc", "--grace", "0", "--json"])["nodes_removed"], 0);
    let expired = json(&["gc", "--grace", "0", "--expire-reflog", "0", "--json"]);
    assert_eq!(expired["nodes_removed"], 1, "{expired}");
    assert_eq!(expired["ref_log_entries_removed"], 3, "{expired}");
    // With its moves expired, main@{1} is not "an unknown revision" but an empty ref log.
    let err = assert_error(&env.sg(&["show", "main@{1}"]).output().expect("run"));
    assert!(err.contains("the ref log of main is empty"), "{err}");
    let out = env.sg(&["gc", "--grace", "2weeks"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = crate::cli_util::stderr(&out);
    assert!(err.contains("\"2weeks\" is not an age"), "{err}");
    let out = env
        .sg(&["gc", "--grace", "99999999999999999999w"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = crate::cli_util::stderr(&out);
    assert!(err.contains("too long an age"), "{err}");
    env.ok(&["fsck"]);
}

/// `gc --rows-per-step N` (steps of N rows) and `--rows-per-step 0` (one transaction) both
/// work end to end: they remove the same, leave no temporary index behind, and a count that
/// is not a number is a usage error. (That the library works in steps is tested there.)
#[test]
fn gc_in_steps_and_in_one_transaction() {
    let env = Env::init();
    env.commit("kept", "kept", &["--branch", "main"]);
    let json = |args: &[&str]| -> Value { serde_json::from_str(&env.ok(args)).expect("json") };
    let dangle = |tag: &str| {
        let mut parent = "main".to_owned();
        for i in 0..3 {
            parent = env.commit(
                &format!("{tag} {i}"),
                &format!("{tag} {i}"),
                &["-p", &parent],
            );
        }
    };
    dangle("stepped");
    let stepped = json(&["gc", "--grace", "0", "--rows-per-step", "1", "--json"]);
    dangle("at once");
    let at_once = json(&["gc", "--grace", "0", "--rows-per-step", "0", "--json"]);
    for report in [&stepped, &at_once] {
        assert_eq!(report["nodes_removed"], 3, "{report}");
        assert_eq!(report["states_removed"], 3, "{report}");
        assert_eq!(report["nodes_kept"], 1, "{report}");
    }
    let conn = rusqlite::Connection::open(&env.db).expect("open");
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'gc%'",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    assert_eq!(left, 0);
    let out = env
        .sg(&["gc", "--rows-per-step", "some"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    env.ok(&["fsck"]);
}

/// `gc --prune-history`: reachable history older than the cut goes, what a ref points at
/// stays, and `log` stops at the boundary with a note; `fsck` is still clean.
#[test]
fn gc_prune_history_cuts_the_log_to_a_boundary() {
    let env = Env::init();
    let first = env.commit("1", "one", &["--branch", "main"]);
    env.commit("2", "two", &["--branch", "main"]);
    let dry = env.ok(&["gc", "--prune-history", "0", "--dry-run"]);
    assert!(
        dry.contains("would remove 1 node(s)")
            && dry.contains("1 kept node(s) would mark a shallow boundary"),
        "{dry}"
    );
    // Everything is older than "0 seconds ago"; only main's head is kept, as a boundary.
    let out: Value =
        serde_json::from_str(&env.ok(&["gc", "--prune-history", "0", "--json"])).expect("json");
    assert_eq!(out["nodes_removed"], 1, "{out}");
    assert_eq!(out["boundary_nodes"], 1, "{out}");
    // diff of the boundary node: its parent is gone, so it is compared with nothing.
    let diff = env.ok(&["diff", "main"]);
    assert!(
        diff.contains("--- (nothing: parent ") && diff.contains("a shallow boundary)"),
        "{diff}"
    );
    assert!(diff.contains("+2"), "{diff}");
    let run = env.sg(&["log", "--oneline", "main"]).output().expect("run");
    assert!(run.status.success());
    let log = String::from_utf8(run.stdout.clone()).expect("utf-8");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("two"), "{log}");
    let note = crate::cli_util::stderr(&run);
    assert!(
        note.contains(&first[7..19]),
        "the boundary is named: {note}"
    );
    env.ok(&["fsck"]);
}

/// After pruning cut the line between a snapshot's node and the branch head, whether one
/// is an ancestor of the other is unknown here: `is-ancestor` and `merge-base` fail (exit
/// 2, saying why) instead of answering "no" (exit 1).
#[test]
fn ancestry_past_a_pruned_boundary_is_an_error() {
    let env = Env::init();
    let first = env.commit("1", "one", &["--branch", "main"]);
    env.ok(&["snapshot", &first]);
    env.commit("2", "two", &["--branch", "main"]);
    env.commit("3", "three", &["--branch", "main"]);
    // main's own snapshot: pruning need not keep the way down to `first`'s.
    env.ok(&["snapshot", "main"]);
    assert_eq!(
        env.sg(&["is-ancestor", &first, "main"])
            .output()
            .expect("run")
            .status
            .code(),
        Some(0)
    );
    env.ok(&["gc", "--prune-history", "0"]);
    for args in [
        ["is-ancestor", &first, "main"],
        ["merge-base", &first, "main"],
    ] {
        let out = env.sg(&args).output().expect("run");
        let err = assert_error(&out);
        assert!(err.contains("not stored here"), "{args:?}: {err}");
        // Named as the command is, not as the library call.
        assert!(
            err.contains(&format!("cannot answer {}:", args[0])),
            "{args:?}: {err}"
        );
    }
    // The other way round needs no missing history: a newer node is never an ancestor.
    let out = env
        .sg(&["is-ancestor", "main", &first])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    env.ok(&["fsck"]);
}

/// Runs the binary with `args` under a file-size limit of `blocks` 512-byte blocks (`ulimit
/// -f` in dash; twice that in bash), with `SIGXFSZ` ignored so a write past it fails with
/// `EFBIG` as a full disk would.
fn sg_limited(env: &Env, blocks: u32, args: &[&str]) -> std::process::Output {
    let inner = env.sg_std(args);
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks} && exec \"$0\" \"$@\""
        ))
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(env.dir.path())
        .output()
        .expect("run")
}

/// A store whose creation a full disk stopped (here: its `-shm` index cannot grow to its
/// first 32 KiB) reports a full disk, not a bare I/O error; opening it afterwards says its
/// creation did not finish, and the demo, which replaces only stores it made or empty ones,
/// takes it over once there is room.
#[test]
fn a_store_whose_creation_ran_out_of_space_says_so_and_can_be_finished() {
    let env = Env::new();
    let out = sg_limited(&env, 16, &["init"]);
    let stderr = crate::cli_util::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("storage full") && stderr.contains("-shm"),
        "{stderr}"
    );
    let out = env.sg(&["log"]).output().expect("run");
    let stderr = crate::cli_util::stderr(&out);
    assert!(stderr.contains("its creation did not finish"), "{stderr}");

    env.ok(&["demo"]);
    env.ok(&["fsck"]);
}

/// `export --out` writes each package whole or not at all: when the write fails (a
/// file-size limit here, as a full disk would), no truncated package is left under a
/// package's name for a later `import DIR` to trip over, and no temporary file either.
#[test]
fn a_failed_export_leaves_no_partial_package() {
    let env = Env::init();
    let big = "x".repeat(200_000);
    env.commit(&big, "big", &["--branch", "main"]);
    env.ok(&["snapshot", "main"]);
    // 64 KiB per file: room for the store's -shm index, not for the package.
    let out = sg_limited(&env, 128, &["export", "--all", "--out", "out"]);
    let stderr = crate::cli_util::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot write"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(env.dir.path().join("out"))
        .expect("out exists")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    env.ok(&["export", "--all", "--out", "out"]);
    // --out naming a file, not a directory, says so (not "File exists").
    std::fs::write(env.dir.path().join("plain"), b"").expect("write");
    let out = env
        .sg(&["export", "--all", "--out", "plain"])
        .output()
        .expect("run");
    let err = assert_error(&out);
    assert!(err.contains("plain is not a directory"), "{err}");
    let imported = Env::init();
    let out_dir = env.dir.path().join("out");
    imported.ok(&["import", out_dir.to_str().expect("utf-8")]);
}

/// `export --all` of a store where one snapshot's state is damaged still writes every other
/// snapshot's package (they are what can repair a store later), names the damaged snapshot,
/// and exits 2; `import` of the directory then brings the others across.
#[test]
fn export_all_writes_the_healthy_snapshots_past_a_damaged_one() {
    let env = Env::init();
    let mut snapshots = Vec::new();
    for label in ["one", "two", "three"] {
        env.commit(&format!("state {label}"), label, &["--branch", "main"]);
        let id = env.ok(&["snapshot", "main"]);
        snapshots.push(id.trim()[7..].to_owned());
    }
    env.damage(
        "UPDATE blobs SET bytes = CAST('state TWO' AS BLOB) WHERE bytes = CAST('state two' AS BLOB)",
    );
    let out = env
        .sg(&["export", "--all", "--out", "out"])
        .output()
        .expect("run");
    let err = crate::cli_util::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("snapshot {}", &snapshots[1][..12])),
        "{err}"
    );
    assert!(err.contains("corrupt"), "{err}");
    assert!(err.contains("fsck"), "{err}");
    let mut written = crate::util::dir_entries(&env.dir.path().join("out"));
    let mut expected: Vec<String> = [&snapshots[0], &snapshots[2]]
        .iter()
        .map(|id| format!("{id}.sgpkg"))
        .collect();
    written.sort();
    expected.sort();
    assert_eq!(written, expected);
    let other = Env::init();
    let out_dir = env.dir.path().join("out");
    other.ok(&["import", out_dir.to_str().expect("utf-8")]);
    assert_eq!(other.ok(&["snapshots"]).lines().count(), 2);
}

/// A damaged snapshot record stops every listing of snapshots, so `export --all` (what
/// `fsck` suggests to save the intact snapshots) cannot start: its error says how to get
/// past the record (delete it by its full id; its node and state stay), not only to run
/// `fsck`, which sends the user back to `export --all`. Done so, the export saves the rest.
#[test]
fn export_all_says_how_to_get_past_a_damaged_snapshot_record() {
    let env = Env::init();
    env.commit("state one", "one", &["--branch", "main"]);
    let damaged = env.ok(&["snapshot", "main"]);
    env.commit("state two", "two", &["--branch", "main"]);
    env.ok(&["snapshot", "main"]);
    let id: stategraph::SnapshotId = damaged.trim().parse().expect("id");
    env.damage(&format!(
        "UPDATE snapshots SET created_ns = 2000000000 WHERE id = X'{}'",
        id.to_hex()
    ));
    let out = env
        .sg(&["export", "--all", "--out", "out"])
        .output()
        .expect("run");
    let err = assert_error(&out);
    assert!(err.contains("snapshot -d"), "{err}");
    env.ok(&["snapshot", "-d", damaged.trim()]);
    env.ok(&["export", "--all", "--out", "out"]);
    assert_eq!(
        crate::util::dir_entries(&env.dir.path().join("out")).len(),
        1
    );
}

/// When the rewrite of `gc --vacuum` fails (here a file-size limit stops the copy it
/// builds), the error says that the collection before it was committed, and what it removed.
#[test]
fn gc_vacuum_says_the_collection_landed_when_the_rewrite_fails() {
    let env = Env::init();
    {
        let store = open_normal(&env.db);
        let mut batch = store.batch();
        let mut main: Option<StateNodeId> = None;
        for i in 0..40 {
            let data = batch.put_state(StateData::new(crate::util::random_bytes(i, 50_000)));
            main = Some(
                batch
                    .commit_node(main.into_iter().collect(), data, StateMetadata::now(None))
                    .expect("commit"),
            );
        }
        let root = main.expect("main");
        batch.set_ref("main", None, &root).expect("main");
        let mut scratch = root;
        for i in 0..10 {
            let data = batch.put_state(StateData::new(crate::util::random_bytes(100 + i, 4096)));
            scratch = batch
                .commit_node(vec![scratch], data, StateMetadata::now(None))
                .expect("scratch");
        }
        batch.set_ref("scratch", None, &scratch).expect("scratch");
        batch.commit().expect("batch");
        store
            .delete_ref("scratch", &scratch)
            .expect("delete scratch");
    }
    // 512 KiB per file: room for the collection's log, not for the 2 MB copy.
    let out = sg_limited(
        &env,
        1024,
        &["gc", "--grace", "0", "--expire-reflog", "0", "--vacuum"],
    );
    let stderr = crate::cli_util::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("vacuum"), "{stderr}");
    assert!(
        stderr.contains("the collection itself was committed (removed 10 node(s)"),
        "{stderr}"
    );
    let stats: Value = serde_json::from_str(&env.ok(&["stats", "--json"])).expect("json");
    assert_eq!(stats["nodes"], 40, "{stats}");
    env.ok(&["fsck"]);
}

/// `gc --vacuum` shrinks the file after removing garbage, reports the sizes (text and JSON),
/// and leaves a store that passes `fsck`; it makes no sense with `--dry-run`, which clap
/// refuses.
#[test]
fn gc_vacuum_shrinks_the_file() {
    let env = Env::init();
    let main = {
        let store = open_normal(&env.db);
        crate::vacuum::store_with_garbage(&store, 10, 1_000)
    };
    let refused = env
        .sg(&["gc", "--dry-run", "--vacuum"])
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        crate::cli_util::stderr(&refused).contains("cannot be used with"),
        "{}",
        crate::cli_util::stderr(&refused)
    );

    let stats: Value = serde_json::from_str(&env.ok(&["stats", "--json"])).expect("json");
    assert_eq!(stats["free_bytes"], 0, "nothing freed yet: {stats}");
    let before = crate::vacuum::file_bytes(&env.db);
    // gc alone frees pages inside the file; stats shows them.
    let out: Value =
        serde_json::from_str(&env.ok(&["gc", "--grace", "0", "--expire-reflog", "0", "--json"]))
            .expect("json");
    assert_eq!(out["nodes_removed"], 1_000, "{out}");
    assert!(out.get("vacuum").is_none(), "{out}");
    let stats: Value = serde_json::from_str(&env.ok(&["stats", "--json"])).expect("json");
    let free = stats["free_bytes"].as_u64().expect("free_bytes");
    assert!(free > before / 2, "{free} of {before} bytes free: {stats}");
    let text = env.ok(&["stats"]);
    assert!(text.contains("gc --vacuum"), "{text}");

    let out: Value = serde_json::from_str(&env.ok(&["gc", "--vacuum", "--json"])).expect("json");
    assert_eq!(out["nodes_removed"], 0, "{out}");
    let vacuum = &out["vacuum"];
    let after = vacuum["bytes_after"].as_u64().expect("bytes_after");
    assert!(
        vacuum["bytes_before"].as_u64().expect("bytes_before") >= before,
        "{out}"
    );
    assert_eq!(vacuum["wal_truncated"], true, "{out}");
    assert_eq!(after, crate::vacuum::file_bytes(&env.db));
    assert!(after < before / 10, "{before} -> {after}");
    let stats: Value = serde_json::from_str(&env.ok(&["stats", "--json"])).expect("json");
    assert_eq!(stats["free_bytes"], 0, "vacuum left free pages: {stats}");
    assert!(!env.ok(&["stats"]).contains("gc --vacuum"));

    assert_eq!(vacuum["rewritten"], true, "{out}");
    // Text, on a store with nothing more to remove: nothing is rewritten.
    let text = env.ok(&["gc", "--vacuum"]);
    assert!(text.contains("removed 0 node(s)"), "{text}");
    assert!(
        text.contains("vacuum: no free pages to give back"),
        "{text}"
    );
    env.ok(&["fsck"]);
    let log = env.ok(&["log", "--oneline", "main"]);
    assert_eq!(log.lines().count(), main.len());
}

/// `log --graph -n N` draws a merge whose first parent is past the limit with both its
/// lines, with or without an exclusion further down: the exclusion must not turn the merge
/// into a straight line (it did: the parent past the limit counted as not shown).
#[test]
fn log_graph_with_a_limit_draws_the_same_with_an_exclusion_below_it() {
    let env = Env::init();
    let store = open_normal(&env.db);
    let base = time::macros::datetime!(2026-01-01 00:00:00 UTC);
    let mut batch = store.batch();
    let data = batch.put_state(StateData::new(b"{}".to_vec()));
    let mut i = 0;
    let mut node = |batch: &mut stategraph::Batch<'_, SqliteStateStore>,
                    parents: Vec<StateNodeId>,
                    label: &str| {
        i += 1;
        let meta = StateMetadata::new(base + time::Duration::seconds(i), Some(label.into()));
        batch.commit_node(parents, data, meta).expect("node")
    };
    let root = node(&mut batch, vec![], "root");
    let main1 = node(&mut batch, vec![root], "main 1");
    let mut side = root;
    for k in 1..=4 {
        side = node(&mut batch, vec![side], &format!("side {k}"));
    }
    let merge = node(&mut batch, vec![main1, side], "merge");
    batch.set_ref("main", None, &merge).expect("ref");
    batch.commit().expect("commit");
    drop(store);

    let root_hex = root.to_hex();
    for n in ["2", "3", "4"] {
        let plain = env.ok(&["log", "--graph", "--oneline", "-n", n, "main"]);
        let excluding = env.ok(&[
            "log",
            "--graph",
            "--oneline",
            "-n",
            n,
            "main",
            &format!("^{root_hex}"),
        ]);
        assert!(
            plain.contains("|\\"),
            "-n {n}: the merge fans out:\n{plain}"
        );
        assert_eq!(excluding, plain, "-n {n}");
    }
}
