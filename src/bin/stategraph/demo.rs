//! `demo`: a simulated agent runtime writing a store, then the history it left.
//!
//! The runtime commits one JSON state per tick to `main`, forks `agents/explorer` and merges
//! it back, snapshots every 5 ticks, goes wrong for a couple of ticks, crashes mid-write (the
//! store handle is dropped and the file reopened) and is restored from its latest snapshot.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde_json::json;
use stategraph::{
    Durability, History as _, SqliteStateStore, StateData, StateMetadata, StateNodeId, StateStore,
    StateStoreError,
};

use crate::Ctx;
use crate::args::DemoArgs;
use crate::commands::history::{LogStyle, TimeWindow, print_log};
use crate::error::{CliError, CliResult};
use crate::output::Paint;
use crate::output::{human_size, progress};
use crate::revs::{WalkFlags, walk};

/// Where the demo writes unless `--db` says otherwise.
pub const DEMO_DB: &str = "stategraph-demo.db";
/// The most nodes the demo draws; larger runs point at `log` for the rest.
const GRAPH_LIMIT: usize = 60;
const MAIN: &str = "main";
const EXPLORER: &str = "agents/explorer";
const BEFORE_RESTORE: &str = "tags/before-restore";
/// The tag that marks a store as the demo's own: only a store carrying it is ever replaced.
/// A tag, so that it stays out of the `branch` list.
const MARKER: &str = "tags/stategraph-demo";
/// The marker of demo stores written by earlier builds, also replaced.
const OLD_MARKER: &str = "stategraph-demo";

/// `demo`.
pub fn run(ctx: &Ctx, args: &DemoArgs) -> CliResult {
    let path = if ctx.db_given {
        ctx.db.clone()
    } else {
        PathBuf::from(DEMO_DB)
    };
    let _running = lock_demo_dir(&path)?;
    clear_old_demo(&path)?;
    let started = Instant::now();
    let bar = progress(u64::from(args.ticks), "simulating tick");
    let story = simulate(&path, args.ticks, &bar)?;
    bar.finish_and_clear();
    let write_time = started.elapsed();

    // Read it back as a person debugging the runtime would: read-only, from the file.
    let store = SqliteStateStore::open_read_only(&path)?;
    let t = ctx.theme;
    let mut out = ctx.out(false);
    let all = WalkFlags {
        all: true,
        ..WalkFlags::default()
    };
    let nodes = store.log(&walk(&store, &[], all)?.options)?.count();
    let snapshots = store.list_snapshots()?.len();
    let refs = store.list_refs("")?.len();
    let shown = WalkFlags {
        limit: Some(GRAPH_LIMIT),
        ..all
    };
    let db = shell_word(&path);
    writeln!(
        out,
        "{} a simulated agent runtime wrote {nodes} nodes to {}\n",
        t.paint(Paint::Bold, "stategraph demo:"),
        path.display()
    )?;
    let width = story.iter().map(|(when, _)| when.len()).max().unwrap_or(0);
    for (when, what) in &story {
        let when = format!("{when:<width$}");
        writeln!(out, "  {}  {what}", t.paint(Paint::Bold, &when))?;
    }
    writeln!(
        out,
        "\n{}",
        t.paint(
            Paint::Dim,
            &format!("$ stategraph --db {db} log --graph --oneline --all")
        )
    )?;
    let style = LogStyle {
        graph: true,
        oneline: true,
    };
    print_log(
        &store,
        &walk(&store, &[], shown)?,
        style,
        TimeWindow::default(),
        t,
        &mut out,
    )?;
    if nodes > GRAPH_LIMIT {
        writeln!(out, "... {} older nodes not shown", nodes - GRAPH_LIMIT)?;
    }
    drop(store);
    writeln!(
        out,
        "\n{nodes} nodes, {snapshots} snapshots, {refs} refs in {}",
        disk_usage(&path),
    )?;
    writeln!(
        out,
        "written in {}, read back in {}",
        seconds(write_time),
        seconds(started.elapsed() - write_time),
    )?;
    writeln!(out, "\nLook around:")?;
    for command in [
        format!("stategraph --db {db} show main"),
        format!("stategraph --db {db} log main~3..main"),
        format!("stategraph --db {db} reflog main"),
        format!("stategraph --db {db} diff {BEFORE_RESTORE} main"),
    ] {
        writeln!(out, "  {command}")?;
    }
    out.finish()?;
    Ok(())
}

/// Keeps other demos out of the store's directory while this one replaces and writes its
/// store: two demos on one path would delete each other's files. An advisory lock on the
/// directory, released when the returned handle is dropped (or the process ends); where the
/// file system has no locks, the demo runs unguarded.
fn lock_demo_dir(path: &Path) -> CliResult<Option<std::fs::File>> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(handle) = std::fs::File::open(dir) else {
        // A missing directory is reported by the store's own open, with its path.
        return Ok(None);
    };
    match handle.try_lock() {
        Ok(()) => Ok(Some(handle)),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::new(format!(
            "another `stategraph demo` is running in {}",
            if dir == Path::new(".") {
                "this directory".to_owned()
            } else {
                dir.display().to_string()
            }
        ))
        .hint("wait for it to finish, or pass another --db PATH in another directory")),
        Err(std::fs::TryLockError::Error(_)) => Ok(None),
    }
}

/// Removes a previous demo store, or an empty one. Anything else, a stategraph store the
/// demo did not make included, stays untouched.
fn clear_old_demo(path: &Path) -> CliResult {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(CliError::new(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let refuse = |why: String| {
        CliError::new(format!("will not replace {}: {why}", path.display()))
            .hint("the demo only replaces a store an earlier demo made; pass another --db PATH")
    };
    if meta.permissions().readonly() {
        return Err(refuse("the file is read-only".to_owned()));
    }
    if !(meta.is_file() && meta.len() == 0) {
        let store = match SqliteStateStore::open_read_only(path) {
            Ok(store) => store,
            // A store whose creation stopped before its schema was written (a full disk, say)
            // cannot be opened read-only; a writable open finishes it, empty.
            Err(StateStoreError::NotAStore { .. }) if unfinished_store(path) => {
                SqliteStateStore::open(path).map_err(|e| refuse(e.to_string()))?
            }
            Err(e) => return Err(refuse(e.to_string())),
        };
        // An empty store (a demo stopped before its first tick, say) holds nothing to lose.
        // (Refs, snapshots and ref log entries all name nodes, which are never deleted.)
        let empty = || -> CliResult<bool> {
            let stats = store.stats()?;
            Ok(stats.nodes == 0 && stats.states == 0 && stats.blobs == 0)
        };
        let marked = store.get_ref(MARKER)?.is_some() || store.get_ref(OLD_MARKER)?.is_some();
        if !marked && !empty()? {
            return Err(refuse(format!(
                "it is a stategraph store the demo did not make (it has no `{MARKER}` tag)"
            )));
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CliError::new(format!(
                    "cannot remove the old demo store {}: {e}",
                    Path::new(&file).display()
                )));
            }
        }
    }
    Ok(())
}

/// Whether the file's SQLite header carries stategraph's application id and schema version 0:
/// a store stamped as ours whose schema was never written (its creation failed part way).
fn unfinished_store(path: &Path) -> bool {
    use std::io::Read as _;
    let mut header = [0u8; 72];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header));
    // `user_version` at offset 60, `application_id` at 68 (ASCII "SGph"), both big-endian.
    read.is_ok() && header[60..64] == [0; 4] && &header[68..72] == b"SGph"
}

/// The runtime's view of the store: state in, node out, branch moved by compare-and-swap.
struct Runtime {
    store: SqliteStateStore,
    nodes: usize,
}

impl Runtime {
    fn open(path: &Path) -> CliResult<Self> {
        // Normal durability: a simulated process crash cannot lose committed ticks, and the
        // demo stays fast.
        let store = SqliteStateStore::builder()
            .durability(Durability::Normal)
            .busy_timeout(Duration::from_secs(10))
            .open(path)?;
        Ok(Self { store, nodes: 0 })
    }

    /// Commits `state` on `branch` (parents: the head, then `extra`) and advances the branch.
    fn tick(
        &mut self,
        branch: &str,
        extra: &[StateNodeId],
        state: serde_json::Value,
        label: String,
    ) -> CliResult<StateNodeId> {
        let head = self.store.get_ref(branch)?;
        let parents: Vec<StateNodeId> = head.iter().chain(extra).copied().collect();
        let bytes = serde_json::to_vec(&state)?;
        let data = StateData::new(bytes).with_content_type("application/json");
        let data_ref = self.store.put_state(data)?;
        let message = format!("commit: {label}");
        let id = self
            .store
            .commit_node(parents, data_ref, StateMetadata::now(label))?;
        self.store
            .set_ref_with_message(branch, head.as_ref(), &id, Some(&message))?;
        self.nodes += 1;
        Ok(id)
    }
}

/// Runs the simulation; returns what happened, as (when, what) lines.
fn simulate(path: &Path, ticks: u32, bar: &ProgressBar) -> CliResult<Vec<(String, String)>> {
    let fork = (ticks / 4).max(3);
    let merge = ticks / 2;
    let bad = ticks - 5..=ticks - 4;
    let crash = ticks - 3;
    let mut story = Vec::new();
    let mut rt = Runtime::open(path)?;
    let mut snapshot_ticks = Vec::new();
    let mut memory: Vec<String> = Vec::new();
    story.push((
        format!("tick 1-{}", fork - 1),
        "main advances one node per tick: put state, commit, move the ref by compare-and-swap"
            .to_owned(),
    ));
    for t in 1..crash {
        bar.set_position(u64::from(t));
        let mut committed_main = None;
        if t == fork {
            let head = rt
                .store
                .get_ref(MAIN)?
                .ok_or_else(|| CliError::new("main vanished"))?;
            rt.store
                .set_ref_with_message(EXPLORER, None, &head, Some("branch: fork from main"))?;
            story.push((
                format!("tick {t}"),
                format!("{EXPLORER} forks from main; both agents write concurrently"),
            ));
        }
        if t > fork && t < merge {
            let state = json!({
                "tick": t, "agent": "explorer", "visited": t - fork,
                "finding": format!("route-{}", (t * 7) % 13),
            });
            rt.tick(EXPLORER, &[], state, format!("explore step {}", t - fork))?;
        }
        if t == merge {
            let explorer = rt
                .store
                .get_ref(EXPLORER)?
                .ok_or_else(|| CliError::new("no explorer"))?;
            let state = json!({
                "tick": t, "agent": "planner", "merged": EXPLORER,
                "findings": merge - fork - 1, "memory": memory,
            });
            let id = rt.tick(
                MAIN,
                &[explorer],
                state,
                format!("tick {t}: merge {EXPLORER}"),
            )?;
            committed_main = Some(id);
            story.push((
                format!("tick {t}"),
                format!(
                    "main merges {EXPLORER}: node {} has two parents",
                    id.to_short_hex(12)
                ),
            ));
        } else if t <= fork || t > merge || (t - fork).is_multiple_of(2) {
            let is_bad = bad.contains(&t);
            let state = if is_bad {
                json!({"tick": t, "agent": "planner", "error": "tool loop: search() called 41 times", "memory": memory})
            } else {
                memory.push(format!("event-{t}"));
                if memory.len() > 3 {
                    memory.remove(0);
                }
                json!({"tick": t, "agent": "planner", "plan": ["search", "summarise"], "memory": memory, "score": f64::from(t % 10) / 10.0})
            };
            let label = if is_bad {
                format!("tick {t}: looping")
            } else {
                format!("tick {t}")
            };
            let id = rt.tick(MAIN, &[], state, label)?;
            if t == 1 {
                rt.store.set_ref_with_message(
                    MARKER,
                    None,
                    &id,
                    Some("made by `stategraph demo`, which replaces only stores with this ref"),
                )?;
            }
            committed_main = Some(id);
            if is_bad && t == *bad.start() {
                story.push((
                    format!("tick {}-{}", bad.start(), bad.end()),
                    "the planner loops and writes bad state to main".to_owned(),
                ));
            }
        }
        if let Some(id) = committed_main
            && t % 5 == 0
            && !bad.contains(&t)
        {
            rt.store.snapshot(&id)?;
            snapshot_ticks.push(t.to_string());
        }
    }
    story.insert(
        story.len().saturating_sub(1),
        (
            "every 5 ticks".to_owned(),
            format!(
                "a snapshot of main: restore points (ticks {})",
                abbreviate(&snapshot_ticks)
            ),
        ),
    );

    // The crash: state written, then the process dies before committing it.
    bar.set_position(u64::from(crash));
    rt.store.put_state(StateData::new(b"{\"tick\":".to_vec()))?;
    let nodes = rt.nodes;
    drop(rt);
    let mut rt = Runtime::open(path)?;
    rt.nodes = nodes;
    let head = rt
        .store
        .get_ref(MAIN)?
        .ok_or_else(|| CliError::new("main vanished"))?;
    story.push((
        format!("tick {crash}"),
        format!(
            "crash mid-write: store handle dropped, file reopened; main intact at {} (tick {})",
            head.to_short_hex(12),
            bad.end()
        ),
    ));

    // Recovery: move main back to the latest snapshot, keeping the bad head visible.
    let latest = rt
        .store
        .list_snapshots()?
        .pop()
        .ok_or_else(|| CliError::new("the demo took no snapshot"))?;
    let restored = rt.store.restore(&latest.id, MAIN, Some(&head))?;
    rt.store.set_ref_with_message(
        BEFORE_RESTORE,
        None,
        &head,
        Some("demo: keep the abandoned head"),
    )?;
    let label = rt
        .store
        .get_node(&restored.node_id)?
        .metadata
        .label
        .unwrap_or_default();
    story.push((
        "recovery".to_owned(),
        format!(
            "restore {} --branch main: {} -> {} ({label})",
            latest.id.to_short_hex(12),
            head.to_short_hex(12),
            restored.node_id.to_short_hex(12),
        ),
    ));
    story.push((
        String::new(),
        format!("the abandoned head stays visible as {BEFORE_RESTORE}"),
    ));
    for t in crash + 1..=ticks {
        bar.set_position(u64::from(t));
        let state = json!({"tick": t, "agent": "planner", "resumed_from": latest.id.to_string(), "memory": memory});
        let label = if t == crash + 1 {
            format!("tick {t}: resumed from snapshot")
        } else {
            format!("tick {t}")
        };
        rt.tick(MAIN, &[], state, label)?;
    }
    story.push((
        format!("tick {}-{ticks}", crash + 1),
        "main resumes from the restored state".to_owned(),
    ));
    Ok(story)
}

fn abbreviate(items: &[String]) -> String {
    if items.len() <= 6 {
        return items.join(", ");
    }
    format!(
        "{}, ... {}",
        items[..3].join(", "),
        items[items.len() - 2..].join(", ")
    )
}

/// The store's size on disk: the database file plus its write-ahead log, if one is left.
fn disk_usage(path: &Path) -> String {
    let size = |suffix: &str| {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        std::fs::metadata(&file).map_or(0, |m| m.len())
    };
    let (db, wal) = (size(""), size("-wal"));
    if wal == 0 {
        human_size(db)
    } else {
        format!(
            "{} (database {} + write-ahead log {})",
            human_size(db + wal),
            human_size(db),
            human_size(wal)
        )
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The path as typed in a shell (quoted when it has spaces or quotes).
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./+:@".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
