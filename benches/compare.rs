//! One-command comparison of stategraph against hand-rolled SQLite tables and git.
//!
//! ```text
//! cargo bench --bench compare              # full run, prints a Markdown table
//! cargo bench --bench compare -- --quick   # reduced sizes, under a minute (CI smoke test)
//! cargo bench --bench compare -- --only writers --flush-delay-us 100
//!                                           # the writers with every sync 100 µs slower
//! ```
//!
//! Every workload is built three ways in the same run, on the same machine and temp dir:
//!
//! 1. **stategraph**: the SQLite backend (`SqliteStateStore`), and the in-memory backend
//!    where that makes sense;
//! 2. **raw SQLite** through rusqlite: the same schema (the crate's own migration files), WAL,
//!    the same `synchronous`, `foreign_keys` and cache size, prepared cached statements (with
//!    SQLite's query planner stability guarantee on, so they are never re-planned) and the
//!    minimal inserts and selects. It skips hashing, CBOR and verification (its ids are cheap
//!    pseudo-random bytes with the same key distribution), so it is the physical limit of
//!    stategraph's storage design;
//! 3. **git** (when `git` is on the `PATH`): `git fast-import` for ingest, `git cat-file
//!    --batch` for reads, `git rev-list` for log and `git merge-base` for ancestry, on the
//!    same history, in bare temp repos with an isolated config and no commit-graph file.
//!
//! Workloads: tick commits (256 B and 4 KiB, both durabilities, put + commit as two
//! transactions and as one `Batch`), bulk ingest of a 100k-node chain, 8 concurrent writers
//! against 1 (group commit), `get_state` / `load_snapshot` latency, full log walks of 100k-
//! and 1M-node histories with merges, `is_ancestor` / `merge_base` near the head, and the
//! peak memory (`VmHWM`) of the 1M log walk, measured in a child process (this binary
//! re-invoked with a hidden `--child-log-walk` argument), and `gc` + `vacuum` of a 100k-node
//! store.
//!
//! Each cell is the median of several runs (5 full, 3 quick) with the min–max spread, in the
//! units people think in (commits/s, nodes/s, µs/op, ms, MB); the ratio columns divide
//! stategraph's median by the other column's in the row's unit, and PASS/MISS compares
//! against the design targets. Without `--bench` (as `cargo test --benches` runs it) only a
//! tiny smoke run is done. `--only ticks,bulk,writers,history,maintenance` runs some sections
//! only.
//! Temp dirs go under the system temp dir and are removed at the end.

#[path = "shared/flush.rs"]
mod flush;
#[path = "shared/schema.rs"]
mod schema;

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Write as _;
use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use stategraph::{
    Batch, Durability, History, InMemoryStateStore, LogOptions, SnapshotId, SqliteStateStore,
    StateData, StateDataRef, StateMetadata, StateNodeId, StateStore,
};
use tempfile::TempDir;
use time::OffsetDateTime;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The store's default page cache (`SqliteStateStoreBuilder::cache_size_kib`), used for the
/// raw connections too.
const CACHE_KIB: i64 = 16 * 1024;

/// Every node's `created_at` is this plus its index, in seconds (git gets the same times).
const EPOCH_S: i64 = 1_700_000_000;

/// Config flags every git command gets; with an isolated config, no commit-graph is written.
const GIT_FLAGS: [&str; 8] = [
    "-c",
    "core.commitGraph=false",
    "-c",
    "gc.auto=0",
    "-c",
    "gc.writeCommitGraph=false",
    "-c",
    "fetch.writeCommitGraph=false",
];

/// Growth of the log walk's peak RSS, in MB, up to which memory counts as flat: the reader's
/// SQLite page cache (16 MiB) plus the walk's bounded bookkeeping, with headroom. A walk that
/// kept every node of a 1M history would grow by several hundred MB.
const FLAT_MEMORY_MB: f64 = 64.0;
/// The maintenance store has a snapshot on every this many of its kept nodes.
const PRUNE_SNAPSHOT_EVERY: u64 = 5;

// ---------------------------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Quick,
    Smoke,
}

struct Config {
    mode: Mode,
    /// Sections to run (`--only ticks,bulk,writers,history,maintenance`); all when empty.
    only: Vec<String>,
    runs: usize,
    tick_budget: Duration,
    bulk_nodes: usize,
    writer_budget: Duration,
    read_ops: usize,
    log_sizes: Vec<usize>,
    ancestry_ops: usize,
    git_ops: usize,
    chunk: usize,
    /// `--flush-delay-us N`: every sync of a store made this much slower (see `flush`).
    flush_delay: Option<Duration>,
}

impl Config {
    fn new(mode: Mode) -> Self {
        match mode {
            Mode::Full => Self {
                mode,
                only: Vec::new(),
                runs: 5,
                tick_budget: Duration::from_millis(1500),
                bulk_nodes: 100_000,
                writer_budget: Duration::from_secs(2),
                read_ops: 20_000,
                log_sizes: vec![100_000, 1_000_000],
                ancestry_ops: 2_000,
                git_ops: 20,
                chunk: 50_000,
                flush_delay: None,
            },
            Mode::Quick => Self {
                mode,
                only: Vec::new(),
                runs: 3,
                tick_budget: Duration::from_millis(200),
                bulk_nodes: 10_000,
                writer_budget: Duration::from_millis(500),
                read_ops: 5_000,
                log_sizes: vec![10_000],
                ancestry_ops: 500,
                git_ops: 5,
                chunk: 50_000,
                flush_delay: None,
            },
            Mode::Smoke => Self {
                mode,
                only: Vec::new(),
                runs: 1,
                tick_budget: Duration::from_millis(30),
                bulk_nodes: 500,
                writer_budget: Duration::from_millis(100),
                read_ops: 200,
                log_sizes: vec![1_000],
                ancestry_ops: 20,
                git_ops: 2,
                chunk: 300,
                flush_delay: None,
            },
        }
    }

    fn command(&self) -> String {
        let mut c = match self.mode {
            Mode::Full => "cargo bench --bench compare".to_owned(),
            Mode::Quick => "cargo bench --bench compare -- --quick".to_owned(),
            Mode::Smoke => "cargo test --benches (smoke run; no --bench flag)".to_owned(),
        };
        if !self.only.is_empty() {
            if self.mode == Mode::Full {
                c.push_str(" --");
            }
            let _ = write!(c, " --only {}", self.only.join(","));
        }
        if let Some(d) = self.flush_delay {
            if self.mode == Mode::Full && self.only.is_empty() {
                c.push_str(" --");
            }
            let _ = write!(c, " --flush-delay-us {}", d.as_micros());
        }
        c
    }

    fn runs_section(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and the result table

#[derive(Debug, Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn of(samples: &[f64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Self {
            median,
            min: s[0],
            max: s[n - 1],
        }
    }
}

/// Runs `f` `runs` times and summarises the samples it returns.
fn measure(runs: usize, mut f: impl FnMut() -> Res<f64>) -> Res<Stat> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(f()?);
    }
    Ok(Stat::of(&samples))
}

/// Like [`measure`] for several contenders at once: each run measures every contender in
/// turn, so that drift in a noisy machine's speed hits all of them alike.
fn measure_interleaved(
    runs: usize,
    contenders: &mut [&mut dyn FnMut() -> Res<f64>],
) -> Res<Vec<Stat>> {
    let mut samples = vec![Vec::with_capacity(runs); contenders.len()];
    for _ in 0..runs {
        for (f, s) in contenders.iter_mut().zip(&mut samples) {
            s.push(f()?);
        }
    }
    Ok(samples.iter().map(|s| Stat::of(s)).collect())
}

/// A contender that may be absent (no memory-store column, no git on the PATH).
type Contender<'a> = Option<&'a mut dyn FnMut() -> Res<f64>>;

/// `f` as a [`Contender`]'s function.
fn contender(f: &mut impl FnMut() -> Res<f64>) -> &mut dyn FnMut() -> Res<f64> {
    f
}

/// [`measure_interleaved`] over the contenders that are present; an absent one gets `None`.
fn measure_present<const N: usize>(
    runs: usize,
    contenders: [Contender<'_>; N],
) -> Res<[Option<Stat>; N]> {
    let which = contenders.each_ref().map(Option::is_some);
    let mut list: Vec<&mut dyn FnMut() -> Res<f64>> = contenders.into_iter().flatten().collect();
    let mut stats = measure_interleaved(runs, &mut list)?.into_iter();
    Ok(which.map(|present| if present { stats.next() } else { None }))
}

/// Calls `f` on each item in turn; the time per call in µs.
fn per_item(
    items: impl ExactSizeIterator<Item = usize>,
    mut f: impl FnMut(usize) -> Res<()>,
) -> Res<f64> {
    let n = items.len();
    let start = Instant::now();
    for i in items {
        f(i)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant digits, grouped thousands.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "?".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        group_digits(x.round() as u64)
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn cell(s: Option<Stat>) -> String {
    match s {
        Some(s) => format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
        None => "—".into(),
    }
}

fn ratio(a: Option<Stat>, b: Option<Stat>) -> Option<f64> {
    Some(a?.median / b?.median)
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "—".into(), |r| format!("{r:.2}×"))
}

struct Row {
    workload: String,
    unit: &'static str,
    sg: Option<Stat>,
    mem: Option<Stat>,
    raw: Option<Stat>,
    git: Option<Stat>,
    target: String,
    result: Option<(bool, String)>,
}

impl Row {
    fn new(workload: impl Into<String>, unit: &'static str) -> Self {
        Self {
            workload: workload.into(),
            unit,
            sg: None,
            mem: None,
            raw: None,
            git: None,
            target: String::new(),
            result: None,
        }
    }

    fn sg_raw(&self) -> Option<f64> {
        ratio(self.sg, self.raw)
    }

    fn sg_git(&self) -> Option<f64> {
        ratio(self.sg, self.git)
    }
}

fn verdict(ok: bool, detail: impl Into<String>) -> Option<(bool, String)> {
    Some((ok, detail.into()))
}

fn print_table(rows: &[Row], git_missing: bool) {
    let git_head = if git_missing {
        "git (not on PATH)"
    } else {
        "git"
    };
    println!(
        "| workload | unit | stategraph SQLite | stategraph in-memory | raw SQLite | {git_head} \
         | sg/raw | sg/git | target | result |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|---|---|");
    for r in rows {
        let result = match &r.result {
            Some((true, d)) => format!("PASS {d}"),
            Some((false, d)) => format!("**MISS** {d}"),
            None => String::new(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.unit,
            cell(r.sg),
            cell(r.mem),
            cell(r.raw),
            cell(r.git),
            ratio_cell(r.sg_raw()),
            ratio_cell(r.sg_git()),
            r.target,
            result.trim_end(),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Data

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `len` distinct-looking bytes for state number `i`: its index, then pseudo-random bytes.
fn state_bytes(i: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(&i.to_le_bytes());
    let mut s = i ^ 0x5EED_0000_0000_0000;
    while out.len() < len {
        out.extend_from_slice(&splitmix(&mut s).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Makes tick states cheaply: a copy of one of 64 pre-made states, stamped with the tick
/// number so that every state is distinct (no deduplication on either side).
struct StatePool {
    pool: Vec<Vec<u8>>,
}

impl StatePool {
    fn new(len: usize) -> Self {
        Self {
            pool: (0..64).map(|i| state_bytes(i, len)).collect(),
        }
    }

    fn get(&self, i: u64, salt: u64) -> Vec<u8> {
        let mut v = self.pool[(i % 64) as usize].clone();
        v[..8].copy_from_slice(&(i ^ salt.rotate_left(48)).to_le_bytes());
        v
    }
}

/// `100k`, `1M`, or the plain number below a thousand.
fn count_name(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn created_at(i: u64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(EPOCH_S + i as i64)
}

fn meta(i: u64) -> StateMetadata {
    StateMetadata::new(created_at(i), Some(format!("tick {i}")))
}

/// The shape of a history: each node's parents (indices of earlier nodes).
struct HistorySpec {
    parents: Vec<Vec<u32>>,
    /// Whether a node is written to git's `side` branch rather than `main`.
    side: Vec<bool>,
    head: usize,
    /// `head~10`.
    head10: usize,
    /// A one-node branch off `head~10`, never merged (the last node).
    side_tip: usize,
}

impl HistorySpec {
    fn chain(n: usize) -> Self {
        Self {
            parents: (0..n)
                .map(|i| if i == 0 { vec![] } else { vec![i as u32 - 1] })
                .collect(),
            side: vec![false; n],
            head: n - 1,
            head10: n.saturating_sub(11),
            side_tip: n - 1,
        }
    }

    /// A main line with a merge every `n/10` (at most 10,000) main nodes: a side node forked
    /// from `main~3` merged back as the second parent. The last node is an unmerged side
    /// branch off `head~10`, for merge-base queries; the log of `main` covers `n - 1` nodes.
    fn with_merges(n: usize) -> Self {
        let every = (n / 10).clamp(100, 10_000);
        let mut parents: Vec<Vec<u32>> = vec![vec![]];
        let mut side = vec![false];
        let mut main: Vec<u32> = vec![0];
        while parents.len() < n - 1 {
            let i = parents.len() as u32;
            let prev = main[main.len() - 1];
            let remaining = n - 1 - parents.len();
            if main.len().is_multiple_of(every) && remaining > 100 {
                parents.push(vec![main[main.len() - 4]]);
                side.push(true);
                parents.push(vec![prev, i]);
                side.push(false);
                main.push(i + 1);
            } else {
                parents.push(vec![prev]);
                side.push(false);
                main.push(i);
            }
        }
        let head10 = main[main.len() - 11] as usize;
        parents.push(vec![head10 as u32]);
        side.push(true);
        Self {
            head: main[main.len() - 1] as usize,
            head10,
            side_tip: parents.len() - 1,
            parents,
            side,
        }
    }

    fn len(&self) -> usize {
        self.parents.len()
    }

    fn merges(&self) -> usize {
        self.parents.iter().filter(|p| p.len() > 1).count()
    }
}

// ---------------------------------------------------------------------------------------------
// stategraph side

fn sg_open(path: &Path, durability: Durability) -> Res<SqliteStateStore> {
    Ok(SqliteStateStore::builder()
        .durability(durability)
        .open(path)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TickKind {
    /// `put_state` then `commit_node`: two transactions.
    Kernel,
    /// One `Batch` holding both: one transaction.
    Batch,
    /// `commit_state`, which does both in one transaction.
    CommitState,
}

impl TickKind {
    const ALL: [TickKind; 3] = [TickKind::Kernel, TickKind::Batch, TickKind::CommitState];

    fn how(self) -> &'static str {
        match self {
            TickKind::Kernel => "put_state + commit_node (2 tx)",
            TickKind::Batch => "one Batch (1 tx)",
            TickKind::CommitState => "commit_state (1 tx)",
        }
    }
}

fn sg_tick(
    store: &dyn StateStore,
    kind: TickKind,
    head: StateNodeId,
    i: u64,
    bytes: Vec<u8>,
) -> Res<StateNodeId> {
    Ok(match kind {
        TickKind::Kernel => {
            let data = store.put_state(StateData::new(bytes))?;
            store.commit_node(vec![head], data, meta(i))?
        }
        TickKind::Batch => {
            let mut batch = Batch::new(store);
            let data = batch.put_state(StateData::new(bytes));
            let node = batch.commit_node(vec![head], data, meta(i))?;
            batch.commit()?;
            node
        }
        TickKind::CommitState => {
            store
                .commit_state(vec![head], StateData::new(bytes), meta(i))?
                .1
        }
    })
}

fn sg_root(store: &dyn StateStore, salt: u64) -> Res<StateNodeId> {
    let data = store.put_state(StateData::new(state_bytes(salt, 16)))?;
    Ok(store.commit_node(vec![], data, meta(salt))?)
}

/// Commits ticks on one chain until `budget` has passed; returns commits per second.
fn sg_ticks_rate(
    store: &dyn StateStore,
    kind: TickKind,
    pool: &StatePool,
    budget: Duration,
) -> Res<f64> {
    let mut head = sg_root(store, u64::MAX)?;
    let start = Instant::now();
    let mut n = 0u64;
    while n < 5 || start.elapsed() < budget {
        n += 1;
        head = sg_tick(store, kind, head, n, pool.get(n, 0))?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// What was built: every node's id and data ref, and the snapshots taken.
struct Built {
    ids: Vec<StateNodeId>,
    data_refs: Vec<StateDataRef>,
    snapshots: Vec<(usize, SnapshotId)>,
}

/// Writes a history through `Batch`es of `chunk` nodes (states of 256 B).
fn sg_build(
    store: &dyn StateStore,
    spec: &HistorySpec,
    chunk: usize,
    snapshot_every: Option<usize>,
) -> Res<Built> {
    let n = spec.len();
    let mut built = Built {
        ids: Vec::with_capacity(n),
        data_refs: Vec::with_capacity(n),
        snapshots: Vec::new(),
    };
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let mut batch = Batch::new(store);
        for i in start..end {
            let data = batch.put_state(StateData::new(state_bytes(i as u64, 256)));
            let parents = spec.parents[i]
                .iter()
                .map(|&p| built.ids[p as usize])
                .collect();
            let id = batch.commit_node(parents, data, meta(i as u64))?;
            built.ids.push(id);
            built.data_refs.push(data);
            if let Some(every) = snapshot_every
                && i % every == 0
            {
                built.snapshots.push((i, batch.snapshot(&id)?));
            }
        }
        if end == n {
            batch.set_ref("main", None, &built.ids[spec.head])?;
        }
        batch.commit()?;
        start = end;
    }
    Ok(built)
}

/// Bulk ingest of a chain in one `Batch`; returns nodes per second.
fn sg_bulk(store: &dyn StateStore, states: Vec<Vec<u8>>) -> Res<f64> {
    let n = states.len();
    let start = Instant::now();
    let mut batch = Batch::new(store);
    let mut head: Option<StateNodeId> = None;
    for (i, bytes) in states.into_iter().enumerate() {
        let data = batch.put_state(StateData::new(bytes));
        head = Some(batch.commit_node(head.into_iter().collect(), data, meta(i as u64))?);
    }
    batch.commit()?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn sg_log_count(store: &dyn StateStore, head: StateNodeId) -> Res<usize> {
    let mut count = 0;
    for node in store.log(&LogOptions::new().from(head))? {
        black_box(node?);
        count += 1;
    }
    Ok(count)
}

// ---------------------------------------------------------------------------------------------
// Raw SQLite side

/// Turns on SQLite's query planner stability guarantee. Without it, SQLite (3.5x) marks a
/// two-table join filtered by `col = ?1` for re-planning whenever its bindings are cleared,
/// which rusqlite's statement cache does on every reuse: each execution would compile the
/// statement again. The raw baseline should not pay that.
fn stable_plans(conn: &Connection) -> Res<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

fn raw_open(path: &Path, durability: Durability, create: bool) -> Res<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.set_prepared_statement_cache_capacity(32);
    stable_plans(&conn)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("raw SQLite: journal mode is {mode}, not WAL").into());
    }
    let sync = match durability {
        Durability::Normal => "NORMAL",
        _ => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    if create {
        schema::create(&conn)?;
    }
    Ok(conn)
}

fn raw_reader(path: &Path) -> Res<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_prepared_statement_cache_capacity(32);
    stable_plans(&conn)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    Ok(conn)
}

/// 32 pseudo-random bytes: raw SQLite's stand-in for a BLAKE3 hash (same key distribution in
/// the unique indexes, none of the hashing).
fn fake_hash(tag: u64, key: u64) -> [u8; 32] {
    let mut s = key ^ tag.rotate_left(56);
    let mut out = [0u8; 32];
    for c in out.chunks_exact_mut(8) {
        c.copy_from_slice(&splitmix(&mut s).to_le_bytes());
    }
    out
}

/// A time-ordered 16-byte key: raw SQLite's stand-in for a UUID v7 data ref.
fn fake_ref(key: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&key.to_be_bytes());
    out[8] = 0x70;
    out
}

#[derive(Clone, Copy)]
struct RawHead {
    seq: i64,
    id: [u8; 32],
    generation: i64,
}

/// The minimal inserts of one node: its blob, its state_data row, its node row (parent ids
/// and seqs inline, as the store keeps them) and its child edge.
fn raw_insert(
    tx: &Connection,
    key: u64,
    tick: u64,
    bytes: &[u8],
    parent: Option<RawHead>,
) -> rusqlite::Result<RawHead> {
    let hash = fake_hash(2, key);
    tx.prepare_cached("INSERT INTO blobs (hash, bytes) VALUES (?1, ?2)")?
        .execute(params![&hash[..], bytes])?;
    let blob_id = tx.last_insert_rowid();
    let data_ref = fake_ref(key);
    tx.prepare_cached("INSERT INTO state_data (data_ref, blob_id) VALUES (?1, ?2)")?
        .execute(params![&data_ref[..], blob_id])?;
    let id = fake_hash(1, key);
    let (parents, seqs, generation) = match parent {
        Some(p) => (
            p.id.to_vec(),
            p.seq.to_be_bytes().to_vec(),
            p.generation + 1,
        ),
        None => (Vec::new(), Vec::new(), 1),
    };
    tx.prepare_cached(
        "INSERT INTO state_nodes (id, parents, parent_seqs, data_ref, data_hash, content_type,
             created_s, created_ns, label, generation)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, 0, ?7, ?8)",
    )?
    .execute(params![
        &id[..],
        parents,
        seqs,
        &data_ref[..],
        &hash[..],
        EPOCH_S + tick as i64,
        format!("tick {tick}"),
        generation
    ])?;
    let seq = tx.last_insert_rowid();
    if let Some(p) = parent {
        tx.prepare_cached("INSERT INTO node_children (parent, child) VALUES (?1, ?2)")?
            .execute([p.seq, seq])?;
    }
    Ok(RawHead {
        seq,
        id,
        generation,
    })
}

fn raw_tick(
    conn: &mut Connection,
    key: u64,
    tick: u64,
    bytes: &[u8],
    head: RawHead,
) -> Res<RawHead> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head = raw_insert(&tx, key, tick, bytes, Some(head))?;
    tx.commit()?;
    Ok(head)
}

fn raw_root(conn: &mut Connection, key: u64) -> Res<RawHead> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head = raw_insert(&tx, key, 0, &state_bytes(key, 16), None)?;
    tx.commit()?;
    Ok(head)
}

fn raw_ticks_rate(conn: &mut Connection, pool: &StatePool, budget: Duration) -> Res<f64> {
    let mut head = raw_root(conn, u64::MAX)?;
    let start = Instant::now();
    let mut n = 0u64;
    while n < 5 || start.elapsed() < budget {
        n += 1;
        head = raw_tick(conn, n, n, &pool.get(n, 0), head)?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

const RAW_GET_STATE: &str =
    "SELECT b.bytes FROM state_data d JOIN blobs b ON b.id = d.blob_id WHERE d.data_ref = ?1";
const RAW_LOAD_SNAPSHOT: &str = "SELECT s.node_id, b.bytes FROM snapshots s
     JOIN state_nodes n ON n.id = s.node_id
     JOIN state_data d ON d.data_ref = n.data_ref
     JOIN blobs b ON b.id = d.blob_id
     WHERE s.id = ?1";

/// The raw walks of every ancestor of a node (with merges), counted. Each follows the parent
/// lists stored in the node row, trying parent positions `0..max_parents` (the largest parent
/// count in the history, which the application knows); `node_children` has no index by child,
/// so walking up through it would scan the table at every step.
fn raw_log_by_id_sql(max_parents: usize) -> String {
    format!(
        "WITH RECURSIVE
           k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {}),
           walk(id) AS (
             SELECT ?1
             UNION
             SELECT substr(n.parents, 32 * k.i + 1, 32)
             FROM walk JOIN state_nodes n ON n.id = walk.id
               JOIN k ON 32 * k.i < length(n.parents))
         SELECT count(*) FROM walk",
        max_parents.max(1) - 1
    )
}

/// `is_ancestor(?2, ?1)` as one recursive CTE: walk up from `?1` through the parent ids
/// stored in each row, only through nodes whose generation is above `?2`'s, and stop at the
/// first row that is `?2`.
fn raw_is_ancestor_sql(max_parents: usize) -> String {
    format!(
        "WITH RECURSIVE
           k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {}),
           floor(g) AS (SELECT generation FROM state_nodes WHERE id = ?2),
           walk(id) AS (
             SELECT ?1
             UNION
             SELECT substr(n.parents, 32 * k.i + 1, 32)
             FROM walk JOIN state_nodes n ON n.id = walk.id
               JOIN k ON 32 * k.i < length(n.parents)
             WHERE n.generation > (SELECT g FROM floor))
         SELECT EXISTS (SELECT 1 FROM walk WHERE id = ?2)",
        max_parents.max(1) - 1
    )
}

/// The same walk through `parent_seqs` (rowid lookups). SQL has no blob-to-integer function,
/// so each byte of an 8-byte big-endian seq is found by its position in a 256-byte table.
fn raw_log_by_seq_sql(max_parents: usize) -> String {
    let mut table = String::from("x'");
    for b in 0..=255u8 {
        let _ = write!(table, "{b:02x}");
    }
    table.push('\'');
    let decode: Vec<String> = (0..8)
        .map(|j| {
            format!(
                "((instr({table}, substr(n.parent_seqs, 8 * k.i + {}, 1)) - 1) << {})",
                j + 1,
                8 * (7 - j)
            )
        })
        .collect();
    format!(
        "WITH RECURSIVE
           k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {}),
           walk(seq) AS (
             SELECT ?1
             UNION
             SELECT {}
             FROM walk JOIN state_nodes n ON n.seq = walk.seq
               JOIN k ON 8 * k.i < length(n.parent_seqs))
         SELECT count(*) FROM walk",
        max_parents.max(1) - 1,
        decode.join(" | ")
    )
}

// ---------------------------------------------------------------------------------------------
// git side

struct Git {
    version: String,
    /// Set if any repo was found with a commit-graph file (it never should be).
    commit_graph_seen: bool,
}

impl Git {
    fn detect() -> Option<Self> {
        let out = Command::new("git").arg("--version").output().ok()?;
        if !out.status.success() {
            return None;
        }
        Some(Self {
            version: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            commit_graph_seen: false,
        })
    }
}

/// A git command on `repo` with an isolated configuration and commit-graphs off.
fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .arg(format!("--git-dir={}", repo.display()))
        .args(GIT_FLAGS);
    c
}

fn git_init(repo: &Path) -> Res<()> {
    let status = Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["init", "-q", "--bare", "--initial-branch=main"])
        .arg(repo)
        .status()?;
    if !status.success() {
        return Err("git init failed".into());
    }
    Ok(())
}

fn has_commit_graph(repo: &Path) -> bool {
    repo.join("objects/info/commit-graph").exists()
        || repo.join("objects/info/commit-graphs").exists()
}

/// Writes `spec` as a fast-import stream: per node a blob (mark `2i+1`) and a commit (mark
/// `2i+2`) whose tree holds that blob as the file `state`.
fn fast_import_stream<'a>(
    w: &mut impl Write,
    spec: &HistorySpec,
    bytes: &dyn Fn(usize) -> Cow<'a, [u8]>,
) -> std::io::Result<()> {
    for i in 0..spec.len() {
        let data = bytes(i);
        writeln!(w, "blob\nmark :{}\ndata {}", 2 * i + 1, data.len())?;
        w.write_all(&data)?;
        let message = format!("tick {i}");
        let branch = if spec.side[i] { "side" } else { "main" };
        write!(
            w,
            "\ncommit refs/heads/{branch}\nmark :{}\ncommitter bench <bench@example.com> {} +0000\n\
             data {}\n{message}\n",
            2 * i + 2,
            EPOCH_S + i as i64,
            message.len(),
        )?;
        let parents = &spec.parents[i];
        if let Some(first) = parents.first() {
            writeln!(w, "from :{}", 2 * first + 2)?;
        }
        for p in parents.iter().skip(1) {
            writeln!(w, "merge :{}", 2 * p + 2)?;
        }
        writeln!(w, "M 100644 :{} state\n", 2 * i + 1)?;
    }
    Ok(())
}

/// Imports `spec` into the empty repo at `repo` (see [`git_init`]); with `marks`, returns every
/// mark's sha.
fn git_import<'a>(
    gitinfo: &mut Git,
    repo: &Path,
    spec: &HistorySpec,
    bytes: &dyn Fn(usize) -> Cow<'a, [u8]>,
    marks: Option<&Path>,
) -> Res<Option<Vec<String>>> {
    let mut cmd = git(repo);
    cmd.args(["fast-import", "--quiet"]);
    if let Some(m) = marks {
        cmd.arg(format!("--export-marks={}", m.display()));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        let stdin = child.stdin.take().ok_or("fast-import has no stdin")?;
        let mut w = BufWriter::with_capacity(1 << 20, stdin);
        fast_import_stream(&mut w, spec, bytes)?;
        w.flush()?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "git fast-import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    if has_commit_graph(repo) {
        gitinfo.commit_graph_seen = true;
    }
    let Some(m) = marks else { return Ok(None) };
    let mut shas = vec![String::new(); 2 * spec.len() + 1];
    for line in std::fs::read_to_string(m)?.lines() {
        let (mark, sha) = line.split_once(' ').ok_or("bad marks line")?;
        let mark: usize = mark.trim_start_matches(':').parse()?;
        shas[mark] = sha.to_owned();
    }
    Ok(Some(shas))
}

/// A long-running `git cat-file --batch`: one request, one flush, one response per read.
struct CatFile {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    header: String,
    buf: Vec<u8>,
}

impl CatFile {
    fn start(repo: &Path) -> Res<Self> {
        let mut child = git(repo)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("cat-file has no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("cat-file has no stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
            header: String::new(),
            buf: Vec::new(),
        })
    }

    /// Reads one object (a sha, or `<commit>:state`); returns its size.
    fn read(&mut self, what: &str) -> Res<usize> {
        self.stdin.write_all(what.as_bytes())?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        self.header.clear();
        self.stdout.read_line(&mut self.header)?;
        let size: usize = self
            .header
            .trim_end()
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("cat-file: unexpected reply {:?}", self.header))?;
        self.buf.resize(size + 1, 0);
        self.stdout.read_exact(&mut self.buf)?;
        Ok(size)
    }

    fn finish(mut self) -> Res<()> {
        drop(self.stdin);
        self.child.wait()?;
        Ok(())
    }
}

/// Runs a git command to completion; returns its stdout when `capture`.
fn git_run(cmd: &mut Command, capture: bool) -> Res<(bool, String)> {
    cmd.stdin(Stdio::null()).stderr(Stdio::null());
    if capture {
        let out = cmd.stdout(Stdio::piped()).output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        ))
    } else {
        let status = cmd.stdout(Stdio::null()).status()?;
        Ok((status.success(), String::new()))
    }
}

// ---------------------------------------------------------------------------------------------
// Machine description

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn machine_lines(git: Option<&Git>) -> Vec<String> {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, v)| v.trim())
        .to_owned();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let available = std::thread::available_parallelism().map_or(0, usize::from);
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let temp = std::env::temp_dir();
    let temp = temp.canonicalize().unwrap_or(temp);
    let mut fs = ("unknown".to_owned(), String::new(), 0usize);
    for line in read("/proc/self/mounts").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let mount = f[1].replace("\\040", " ");
        if temp.starts_with(&mount) && mount.len() >= fs.2 {
            fs = (f[2].to_owned(), f[0].to_owned(), mount.len());
        }
    }
    vec![
        format!(
            "machine: {model}, {cores} cores ({available} available), {mem_gib:.1} GiB RAM, Linux {kernel}"
        ),
        format!("temp dir: {} ({} on {})", temp.display(), fs.0, fs.1),
        format!(
            "versions: stategraph {}, SQLite {} (bundled), {}",
            env!("CARGO_PKG_VERSION"),
            rusqlite::version(),
            git.map_or("git not found", |g| g.version.as_str())
        ),
    ]
}

fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn progress(msg: &str) {
    eprintln!("[compare] {msg}");
}

// ---------------------------------------------------------------------------------------------
// Workloads

struct Bench {
    cfg: Config,
    git: Option<Git>,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Bench {
    fn temp() -> Res<TempDir> {
        Ok(tempfile::Builder::new()
            .prefix("stategraph-compare-")
            .tempdir()?)
    }

    fn dur_name(d: Durability) -> &'static str {
        match d {
            Durability::Normal => "Normal",
            _ => "Immediate",
        }
    }

    fn ticks(&mut self) -> Res<()> {
        let runs = self.cfg.runs;
        let budget = self.cfg.tick_budget;
        for size in [256usize, 4096] {
            let pool = StatePool::new(size);
            let size_name = if size == 256 { "256 B" } else { "4 KiB" };
            let mut mem = [None; TickKind::ALL.len()];
            for (k, kind) in TickKind::ALL.into_iter().enumerate() {
                mem[k] = Some(measure(runs, || {
                    let store = InMemoryStateStore::new();
                    sg_ticks_rate(&store, kind, &pool, budget)
                })?);
            }
            for durability in [Durability::Immediate, Durability::Normal] {
                let dname = Self::dur_name(durability);
                progress(&format!("tick commit {size_name}, {dname}"));
                let mut raw = || -> Res<f64> {
                    let dir = Self::temp()?;
                    let mut conn = raw_open(&dir.path().join("raw.db"), durability, true)?;
                    raw_ticks_rate(&mut conn, &pool, budget)
                };
                let sg = |kind: TickKind| {
                    let pool = &pool;
                    move || -> Res<f64> {
                        let dir = Self::temp()?;
                        let store = sg_open(&dir.path().join("sg.db"), durability)?;
                        sg_ticks_rate(&store, kind, pool, budget)
                    }
                };
                let [mut kernel, mut batch, mut one] = TickKind::ALL.map(sg);
                let stats =
                    measure_interleaved(runs, &mut [&mut raw, &mut kernel, &mut batch, &mut one])?;
                for (k, kind) in TickKind::ALL.into_iter().enumerate() {
                    let mut row = Row::new(
                        format!("tick commit {size_name}, {dname}, {}", kind.how()),
                        "commits/s",
                    );
                    row.sg = Some(stats[k + 1]);
                    row.mem = mem[k];
                    row.raw = Some(stats[0]);
                    row.target = "≥ 0.7× raw".into();
                    let r = row.sg_raw().unwrap_or(0.0);
                    row.result = verdict(r >= 0.7, "");
                    self.rows.push(row);
                }
            }
        }
        self.notes.push(format!(
            "tick commit: one chain, one node per tick; raw SQLite does one transaction per \
             tick (blobs, state_data, state_nodes, node_children inserts) in every tick row. \
             Each run measures raw, put+commit, Batch and commit_state back to back, on fresh \
             files, for \
             {:.1} s each. In-memory figures do not depend on durability (measured once per size \
             and API).",
            budget.as_secs_f64()
        ));
        Ok(())
    }

    fn bulk(&mut self) -> Res<()> {
        let n = self.cfg.bulk_nodes;
        let runs = self.cfg.runs;
        progress(&format!("bulk ingest {n} nodes"));
        let states: Vec<Vec<u8>> = (0..n as u64).map(|i| state_bytes(i, 256)).collect();
        let mut sg = || -> Res<f64> {
            let dir = Self::temp()?;
            let store = sg_open(&dir.path().join("sg.db"), Durability::Immediate)?;
            let input = states.clone();
            sg_bulk(&store, input)
        };
        let mut mem = || -> Res<f64> {
            let store = InMemoryStateStore::new();
            let input = states.clone();
            sg_bulk(&store, input)
        };
        let mut raw = || -> Res<f64> {
            let dir = Self::temp()?;
            let mut conn = raw_open(&dir.path().join("raw.db"), Durability::Immediate, true)?;
            let start = Instant::now();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut head = None;
            for (i, bytes) in states.iter().enumerate() {
                head = Some(raw_insert(&tx, i as u64, i as u64, bytes, head)?);
            }
            tx.commit()?;
            Ok(n as f64 / start.elapsed().as_secs_f64())
        };
        let spec = HistorySpec::chain(n);
        let mut seen_graph = false;
        let mut git = || -> Res<f64> {
            let dir = Self::temp()?;
            let repo = dir.path().join("repo.git");
            // Like the stores' opens, the repository's creation is not part of the ingest.
            git_init(&repo)?;
            let start = Instant::now();
            let mut g = Git {
                version: String::new(),
                commit_graph_seen: false,
            };
            git_import(&mut g, &repo, &spec, &|i| Cow::Borrowed(&states[i]), None)?;
            let rate = n as f64 / start.elapsed().as_secs_f64();
            seen_graph |= g.commit_graph_seen;
            Ok(rate)
        };
        let stats = if self.git.is_some() {
            measure_interleaved(runs, &mut [&mut sg, &mut mem, &mut raw, &mut git])?
        } else {
            measure_interleaved(runs, &mut [&mut sg, &mut mem, &mut raw])?
        };
        if let Some(g) = self.git.as_mut() {
            g.commit_graph_seen |= seen_graph;
        }
        let (sg, mem, raw, git) = (stats[0], stats[1], stats[2], stats.get(3).copied());
        let mut row = Row::new(
            format!(
                "bulk ingest {}-node chain, 256 B states, one Batch",
                count_name(n)
            ),
            "nodes/s",
        );
        row.sg = Some(sg);
        row.mem = Some(mem);
        row.raw = Some(raw);
        row.git = git;
        row.target = "≥ 0.6× raw, ≥ 3× git".into();
        let r = row.sg_raw().unwrap_or(0.0);
        let ok = r >= 0.6 && row.sg_git().is_none_or(|g| g >= 3.0);
        row.result = verdict(ok, "");
        self.rows.push(row);
        self.notes.push(format!(
            "bulk ingest: stategraph builds the Batch (hashing every state and node) and commits \
             it in one transaction (Immediate); raw SQLite inserts the same rows in one \
             transaction; git fast-import gets the same {n} commits (each a tree with one 256 B \
             blob), timed from process start to exit."
        ));
        Ok(())
    }

    /// `threads` writers that start together and each repeat `tick(state, t, n)` for `budget`
    /// (`n` = 1, 2, ...); returns their total ticks per second. `setup(t)` makes writer `t`'s
    /// state in its own thread, before the start.
    fn writers_rate<S>(
        threads: usize,
        budget: Duration,
        setup: impl Fn(usize) -> Res<S> + Sync,
        tick: impl Fn(&mut S, usize, u64) -> Res<()> + Sync,
    ) -> Res<f64> {
        let barrier = Barrier::new(threads + 1);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (setup, tick, barrier) = (&setup, &tick, &barrier);
                    s.spawn(move || -> Res<u64> {
                        let state = setup(t);
                        // Wait even when setup failed, so the other threads are not held.
                        barrier.wait();
                        let mut state = state?;
                        let start = Instant::now();
                        let mut n = 0u64;
                        while start.elapsed() < budget {
                            n += 1;
                            tick(&mut state, t, n)?;
                        }
                        Ok(n)
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let mut total = 0;
            for h in handles {
                total += h.join().map_err(|_| "writer thread panicked")??;
            }
            Ok(total as f64 / start.elapsed().as_secs_f64())
        })
    }

    /// Like [`Self::writers_rate`] for stategraph writers sharing one handle; adds the write
    /// calls they made and the transactions that committed them to `grouped`.
    fn sg_writers(
        threads: usize,
        durability: Durability,
        kind: TickKind,
        budget: Duration,
        grouped: &Cell<(u64, u64)>,
    ) -> Res<f64> {
        let dir = Self::temp()?;
        let store = sg_open(&dir.path().join("w.db"), durability)?;
        let pool = StatePool::new(256);
        let heads = (0..threads)
            .map(|t| sg_root(&store, t as u64))
            .collect::<Res<Vec<_>>>()?;
        let before = store.write_counts();
        let rate = Self::writers_rate(
            threads,
            budget,
            |t| Ok(heads[t]),
            |head, t, n| {
                *head = sg_tick(&store, kind, *head, n, pool.get(n, t as u64))?;
                Ok(())
            },
        )?;
        let after = store.write_counts();
        let (writes, transactions) = grouped.get();
        grouped.set((
            writes + after.writes - before.writes,
            transactions + after.transactions - before.transactions,
        ));
        Ok(rate)
    }

    fn raw_writers(threads: usize, budget: Duration) -> Res<f64> {
        let dir = Self::temp()?;
        let path = dir.path().join("w.db");
        drop(raw_open(&path, Durability::Immediate, true)?);
        let pool = StatePool::new(256);
        Self::writers_rate(
            threads,
            budget,
            |t| {
                let mut conn = raw_open(&path, Durability::Immediate, false)?;
                let base = (t as u64 + 1) << 40;
                let head = raw_root(&mut conn, base)?;
                Ok((conn, base, head))
            },
            |(conn, base, head), t, n| {
                *head = raw_tick(conn, *base + n, n, &pool.get(n, t as u64), *head)?;
                Ok(())
            },
        )
    }

    fn writers(&mut self) -> Res<()> {
        let runs = self.cfg.runs;
        let budget = self.cfg.writer_budget;
        progress("1 and 8 concurrent writers, Immediate");
        // Flush times are reported for this section only.
        let _ = flush::take_latencies();
        let imm = Durability::Immediate;
        let (two, one_tx) = (TickKind::Kernel, TickKind::CommitState);
        let [g1, g8, g_ceiling, g_cs1, g_cs8] = std::array::from_fn(|_| Cell::new((0, 0)));
        let stats = measure_interleaved(
            runs,
            &mut [
                &mut || Self::sg_writers(1, imm, two, budget, &g1),
                &mut || Self::sg_writers(8, imm, two, budget, &g8),
                &mut || Self::raw_writers(1, budget),
                &mut || Self::raw_writers(8, budget),
                &mut || Self::sg_writers(8, Durability::Normal, two, budget, &g_ceiling),
                &mut || Self::sg_writers(1, imm, one_tx, budget, &g_cs1),
                &mut || Self::sg_writers(8, imm, one_tx, budget, &g_cs8),
            ],
        )?;
        // Writes per transaction: how much group commit shared (1.00 for one writer).
        let per_tx = |g: &Cell<(u64, u64)>| {
            let (writes, transactions) = g.get();
            writes as f64 / transactions.max(1) as f64
        };
        let [sg1, sg8, raw1, raw8, ceiling, cs1, cs8] = [
            stats[0], stats[1], stats[2], stats[3], stats[4], stats[5], stats[6],
        ];
        let mut one = Row::new("1 writer, Immediate, put_state + commit_node", "commits/s");
        one.sg = Some(sg1);
        one.raw = Some(raw1);
        self.rows.push(one);
        let mut eight = Row::new("8 writers, Immediate, put_state + commit_node", "commits/s");
        eight.sg = Some(sg8);
        eight.raw = Some(raw8);
        eight.target = "≥ 4× one writer".into();
        let r = sg8.median / sg1.median;
        eight.result = verdict(r >= 4.0, format!("{r:.2}× one writer"));
        self.rows.push(eight);
        let mut top = Row::new(
            "ceiling: 8 writers, Normal (no fsync to wait for)",
            "commits/s",
        );
        top.sg = Some(ceiling);
        top.target = format!(
            "info: {:.2}× one Immediate writer; 8 Immediate writers reach {:.0}% of it",
            ceiling.median / sg1.median,
            100.0 * sg8.median / ceiling.median
        );
        self.rows.push(top);
        let mut one = Row::new("1 writer, Immediate, commit_state (1 tx)", "commits/s");
        one.sg = Some(cs1);
        self.rows.push(one);
        let mut eight = Row::new("8 writers, Immediate, commit_state (1 tx)", "commits/s");
        eight.sg = Some(cs8);
        eight.target = format!(
            "info: {:.2}× one commit_state writer, {:.2}× one put_state + commit_node writer",
            cs8.median / cs1.median,
            cs8.median / sg1.median
        );
        self.rows.push(eight);
        self.notes.push(format!(
            "writers: each thread commits its own chain for {:.1} s per run (8 threads share \
             one store handle, so group commit applies); raw SQLite gives each thread its own \
             connection and one BEGIN IMMEDIATE transaction per tick, waiting on SQLite's busy \
             handler. Group commit shares fsyncs, not the single write connection's SQL and WAL \
             writes, so 8 Immediate writers can at best reach the rate of 8 writers that never \
             wait for fsync (the ceiling row).",
            budget.as_secs_f64()
        ));
        self.notes.push(format!(
            "writes per transaction (`write_counts`, all runs), i.e. how many requests group \
             commit put in one COMMIT: put_state + commit_node, 1 writer {:.2}, 8 writers \
             {:.2}, ceiling {:.2}; commit_state, 1 writer {:.2}, 8 writers {:.2}.",
            per_tx(&g1),
            per_tx(&g8),
            per_tx(&g_ceiling),
            per_tx(&g_cs1),
            per_tx(&g_cs8)
        ));
        if let Some((n, median, p10, p90)) = flush::take_latencies() {
            self.notes.push(format!(
                "flush times in this section (sync of a database or WAL file, plus the added \
                 {} µs): median {median} µs (10th–90th percentile {p10}–{p90} µs) over {n} syncs.",
                flush::delay().unwrap_or_default().as_micros()
            ));
        }
        Ok(())
    }

    fn run(&mut self) -> Res<()> {
        if self.cfg.runs_section("ticks") {
            self.ticks()?;
        }
        if self.cfg.runs_section("bulk") {
            self.bulk()?;
        }
        if self.cfg.runs_section("writers") {
            self.writers()?;
        }
        if self.cfg.runs_section("history") {
            let sizes = self.cfg.log_sizes.clone();
            for (k, &n) in sizes.iter().enumerate() {
                self.history(n, k == 0, k + 1 == sizes.len())?;
            }
        }
        if self.cfg.runs_section("maintenance") {
            self.maintenance()?;
        }
        Ok(())
    }

    /// `gc` and `vacuum` on a store of `bulk_nodes` kept nodes plus a deleted branch of a
    /// tenth as many (4 KiB states) for gc to remove. Every run works on a fresh copy of the
    /// same file. Baselines from the same runs: a full log walk of the kept history (gc
    /// reads every node's parents once) and copying the file (vacuum rewrites it).
    fn maintenance(&mut self) -> Res<()> {
        let n = self.cfg.bulk_nodes;
        let garbage = n / 10;
        progress(&format!(
            "gc and vacuum: {} kept nodes, {} to remove",
            count_name(n),
            count_name(garbage)
        ));
        let dir = Self::temp()?;
        let master = dir.path().join("master.db");
        let head = {
            let store = sg_open(&master, Durability::Normal)?;
            let mut batch = Batch::new(&store);
            let mut head = None;
            for i in 0..n as u64 {
                let data = batch.put_state(StateData::new(state_bytes(i, 256)));
                let node = batch.commit_node(head.into_iter().collect(), data, meta(i))?;
                // Restore points along the history: what pruning keeps as boundary nodes.
                if i % PRUNE_SNAPSHOT_EVERY == PRUNE_SNAPSHOT_EVERY - 1 {
                    batch.snapshot(&node)?;
                }
                head = Some(node);
            }
            let head = head.ok_or("no nodes")?;
            batch.set_ref("main", None, &head)?;
            batch.commit()?;
            let mut batch = Batch::new(&store);
            let mut tip = head;
            for i in 0..garbage as u64 {
                let data = batch.put_state(StateData::new(state_bytes(n as u64 + i, 4096)));
                tip = batch.commit_node(vec![tip], data, meta(n as u64 + i))?;
            }
            batch.set_ref("scratch", None, &tip)?;
            batch.commit()?;
            store.delete_ref("scratch", &tip)?;
            head
        };
        let master_bytes = std::fs::metadata(&master)?.len();
        let options = stategraph::GcOptions::new()
            .grace(Duration::ZERO)
            .expire_ref_log(Duration::ZERO);
        // Everything is older than the cut: only the snapshots' nodes (and main's head) stay,
        // each a boundary node. The dry run counts (reads only); the real prune runs last,
        // after gc and vacuum, on the run's own copy.
        let prune = stategraph::GcOptions::new()
            .grace(Duration::ZERO)
            .prune_history(Duration::ZERO);
        let prune_dry = prune.clone().dry_run(true);
        let (mut gc_ms, mut vacuum_ms, mut walk_ms, mut copy_ms) = (vec![], vec![], vec![], vec![]);
        let (mut prune_ms, mut prune_dry_ms, mut backup_ms) = (vec![], vec![], vec![]);
        let mut boundary = 0;
        let mut after_bytes = 0;
        for run in 0..self.cfg.runs {
            let path = dir.path().join(format!("run{run}.db"));
            let t = Instant::now();
            std::fs::copy(&master, &path)?;
            File::open(&path)?.sync_all()?;
            copy_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let store = sg_open(&path, Durability::Immediate)?;
            let t = Instant::now();
            let walked = store.log(&LogOptions::new().from(head))?.count();
            walk_ms.push(t.elapsed().as_secs_f64() * 1e3);
            if walked != n {
                return Err(format!("walked {walked} of {n} nodes").into());
            }
            let backup = dir.path().join(format!("backup{run}.db"));
            let t = Instant::now();
            let copied = store.backup(&backup)?;
            backup_ms.push(t.elapsed().as_secs_f64() * 1e3);
            if copied.nodes != (n + garbage) as u64 {
                return Err(format!("the backup holds {} nodes", copied.nodes).into());
            }
            std::fs::remove_file(&backup)?;
            let t = Instant::now();
            let counted = store.gc(&prune_dry)?;
            prune_dry_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let report = store.gc(&options)?;
            gc_ms.push(t.elapsed().as_secs_f64() * 1e3);
            if report.nodes_removed != garbage as u64 {
                return Err(
                    format!("gc removed {} nodes, not {garbage}", report.nodes_removed).into(),
                );
            }
            let t = Instant::now();
            let vacuumed = store.vacuum()?;
            vacuum_ms.push(t.elapsed().as_secs_f64() * 1e3);
            after_bytes = vacuumed.bytes_after;
            let t = Instant::now();
            let pruned = store.gc(&prune)?;
            prune_ms.push(t.elapsed().as_secs_f64() * 1e3);
            // The dry run counted before gc took the unreachable branch: the same kept
            // history, cut the same way.
            if (pruned.boundary_nodes, pruned.nodes_kept)
                != (counted.boundary_nodes, counted.nodes_kept)
            {
                return Err(format!(
                    "prune did not do what its dry run counted: {pruned:?} vs {counted:?}"
                )
                .into());
            }
            boundary = pruned.boundary_nodes;
            drop(store);
            std::fs::remove_file(&path)?;
        }
        let (gc, vacuum, walk, copy) = (
            Stat::of(&gc_ms),
            Stat::of(&vacuum_ms),
            Stat::of(&walk_ms),
            Stat::of(&copy_ms),
        );
        let mut row = Row::new(
            format!(
                "gc: {}-node store, removing {} unreachable nodes",
                count_name(n),
                count_name(garbage)
            ),
            "ms",
        );
        row.sg = Some(gc);
        row.target = format!(
            "info: {:.2}× a full log walk of the kept history ({} ms)",
            gc.median / walk.median,
            num(walk.median)
        );
        self.rows.push(row);
        let prune = Stat::of(&prune_ms);
        let mut row = Row::new(
            format!(
                "gc --prune-history of that store (after the gc above): {} boundary nodes",
                count_name(boundary as usize)
            ),
            "ms",
        );
        row.sg = Some(prune);
        row.target = format!("info: {:.2}× the full log walk", prune.median / walk.median);
        self.rows.push(row);
        let prune_dry = Stat::of(&prune_dry_ms);
        let mut row = Row::new(
            "gc --prune-history --dry-run of that store (counts, reads only)",
            "ms",
        );
        row.sg = Some(prune_dry);
        row.target = format!(
            "info: {:.2}× the full log walk",
            prune_dry.median / walk.median
        );
        self.rows.push(row);
        // Both rewrite the whole store: the baseline is copying it.
        let against_copy = |stat: Stat| {
            format!(
                "info: {:.2}× copying the file and fsyncing the copy ({} ms)",
                stat.median / copy.median,
                num(copy.median)
            )
        };
        let backup = Stat::of(&backup_ms);
        let mut row = Row::new("backup of that store (before gc), into a new file", "ms");
        row.sg = Some(backup);
        row.target = against_copy(backup);
        self.rows.push(row);
        let mut row = Row::new("vacuum after that gc", "ms");
        row.sg = Some(vacuum);
        row.target = format!(
            "{}; {:.1} → {:.1} MB",
            against_copy(vacuum),
            master_bytes as f64 / 1e6,
            after_bytes as f64 / 1e6
        );
        self.rows.push(row);
        self.notes.push(format!(
            "maintenance: every run copies one prepared store (a chain of kept nodes with 256 B \
             states and a snapshot every {PRUNE_SNAPSHOT_EVERY} nodes, plus a deleted branch \
             of 4 KiB states), walks its log, backs it up into a new file (a consistent copy \
             through SQLite, synced), counts what pruning all history before now would \
             remove (a dry run: one read transaction), runs gc (no grace, ref log expired), \
             vacuum, and last that pruning for real (every snapshot's node becomes a boundary \
             node), all on the copy; the walk and the copy are the baselines. gc plans in a \
             read transaction and removes in steps of 10,000 rows (the default \
             `rows_per_step`), each holding the write lock; pruning makes its cuts and \
             removes the history below them in one last step; vacuum holds the lock \
             throughout; the dry run holds none."
        ));
        Ok(())
    }

    /// Builds one history three ways, then measures reads and ancestry (on the first, smaller
    /// history), the log walk, and the walk's memory.
    fn history(&mut self, n: usize, small: bool, largest: bool) -> Res<()> {
        let size = count_name(n);
        let spec = HistorySpec::with_merges(n);
        progress(&format!(
            "building the {size} history ({} merges)",
            spec.merges()
        ));
        let dir = Self::temp()?;
        let path = dir.path().join("history.db");
        let store = sg_open(&path, Durability::Immediate)?;
        let snap_every = small.then_some(10);
        let t = Instant::now();
        let built = sg_build(&store, &spec, self.cfg.chunk, snap_every)?;
        let sg_build_s = t.elapsed().as_secs_f64();
        let mem_store = InMemoryStateStore::new();
        let mem_built = if n <= 100_000 {
            Some(sg_build(&mem_store, &spec, self.cfg.chunk, snap_every)?)
        } else {
            None
        };
        let repo = dir.path().join("history.git");
        let marks = dir.path().join("marks");
        let mut git_build_s = None;
        let shas = match self.git.as_mut() {
            None => None,
            Some(g) => {
                git_init(&repo)?;
                let t = Instant::now();
                let shas = git_import(
                    g,
                    &repo,
                    &spec,
                    &|i| Cow::Owned(state_bytes(i as u64, 256)),
                    small.then_some(marks.as_path()),
                )?;
                git_build_s = Some(t.elapsed().as_secs_f64());
                shas
            }
        };
        self.notes.push(format!(
            "{size} history ({} nodes, {} merges): built by stategraph in Batches of {} nodes in \
             {sg_build_s:.1} s{}",
            spec.len(),
            spec.merges(),
            self.cfg.chunk,
            git_build_s.map_or(String::new(), |s| format!(
                ", by git fast-import in {s:.1} s"
            ))
        ));
        if small {
            self.reads(
                &spec,
                &store,
                &path,
                &built,
                mem_store_ref(&mem_store, &mem_built),
                shas.as_deref(),
                &repo,
            )?;
            self.ancestry(
                &spec,
                &store,
                &path,
                &built,
                mem_store_ref(&mem_store, &mem_built),
                shas.as_deref(),
                &repo,
            )?;
        }
        self.log(
            &size,
            &spec,
            &store,
            &path,
            &built,
            mem_store_ref(&mem_store, &mem_built),
            &repo,
            largest,
        )?;
        self.memory(&size, &spec, &path, &built, largest)?;
        drop(store);
        Ok(())
    }
}

fn mem_store_ref<'a>(
    store: &'a InMemoryStateStore,
    built: &'a Option<Built>,
) -> Option<(&'a InMemoryStateStore, &'a Built)> {
    built.as_ref().map(|b| (store, b))
}

impl Bench {
    #[allow(clippy::too_many_arguments)]
    fn reads(
        &mut self,
        spec: &HistorySpec,
        store: &SqliteStateStore,
        path: &Path,
        built: &Built,
        mem: Option<(&InMemoryStateStore, &Built)>,
        shas: Option<&[String]>,
        repo: &Path,
    ) -> Res<()> {
        let runs = self.cfg.runs;
        let ops = self.cfg.read_ops;
        progress(&format!("get_state / load_snapshot, {ops} random lookups"));
        let n = spec.len();
        let mut seed = 42u64;
        let picks: Vec<usize> = (0..ops)
            .map(|_| (splitmix(&mut seed) % n as u64) as usize)
            .collect();
        let snap_picks: Vec<usize> = (0..ops)
            .map(|_| (splitmix(&mut seed) % built.snapshots.len() as u64) as usize)
            .collect();

        // get_state and load_snapshot, each contender's runs interleaved with the others'.
        let conn = raw_reader(path)?;
        let mut cat = shas.map(|_| CatFile::start(repo)).transpose()?;
        let snaps = &built.snapshots;
        let mut sg_get = || {
            per_item(picks.iter().copied(), |i| {
                black_box(store.get_state(&built.data_refs[i])?);
                Ok(())
            })
        };
        let mut mem_get = mem.map(|(m, b)| {
            let picks = &picks;
            move || {
                per_item(picks.iter().copied(), |i| {
                    black_box(m.get_state(&b.data_refs[i])?);
                    Ok(())
                })
            }
        });
        let mut raw_get = || {
            per_item(picks.iter().copied(), |i| {
                let bytes: Vec<u8> = conn
                    .prepare_cached(RAW_GET_STATE)?
                    .query_row([&built.data_refs[i].as_bytes()[..]], |r| r.get(0))?;
                black_box(bytes);
                Ok(())
            })
        };
        let mut git_get = cat.as_mut().zip(shas).map(|(cat, shas)| {
            let picks = &picks;
            move || {
                per_item(picks.iter().copied(), |i| {
                    black_box(cat.read(&shas[2 * i + 1])?);
                    Ok(())
                })
            }
        });
        let [sg, mem_get, raw, git_get]: [Option<Stat>; 4] = measure_present(
            runs,
            [
                Some(&mut sg_get),
                mem_get.as_mut().map(contender),
                Some(&mut raw_get),
                git_get.as_mut().map(contender),
            ],
        )?;
        let mut row = Row::new(
            format!("get_state 256 B, random among {}", count_name(n)),
            "µs/op",
        );
        row.sg = sg;
        row.mem = mem_get;
        row.raw = raw;
        row.git = git_get;
        row.target = "≤ 2× raw".into();
        let r = row.sg_raw().unwrap_or(f64::INFINITY);
        row.result = verdict(r <= 2.0, "");
        self.rows.push(row);

        let mut sg_load = || {
            per_item(snap_picks.iter().copied(), |k| {
                black_box(store.load_snapshot(&snaps[k].1)?);
                Ok(())
            })
        };
        let mut mem_load = mem.map(|(m, b)| {
            let snap_picks = &snap_picks;
            move || {
                per_item(snap_picks.iter().copied(), |k| {
                    black_box(m.load_snapshot(&b.snapshots[k].1)?);
                    Ok(())
                })
            }
        });
        let mut raw_load = || {
            per_item(snap_picks.iter().copied(), |k| {
                let row: (Vec<u8>, Vec<u8>) = conn
                    .prepare_cached(RAW_LOAD_SNAPSHOT)?
                    .query_row([&snaps[k].1.as_bytes()[..]], |r| Ok((r.get(0)?, r.get(1)?)))?;
                black_box(row);
                Ok(())
            })
        };
        let mut git_load = cat.as_mut().zip(shas).map(|(cat, shas)| {
            let snap_picks = &snap_picks;
            move || {
                per_item(snap_picks.iter().copied(), |k| {
                    let node = snaps[k].0;
                    black_box(cat.read(&format!("{}:state", shas[2 * node + 2]))?);
                    Ok(())
                })
            }
        });
        let [sg, mem_load, raw, git_load]: [Option<Stat>; 4] = measure_present(
            runs,
            [
                Some(&mut sg_load),
                mem_load.as_mut().map(contender),
                Some(&mut raw_load),
                git_load.as_mut().map(contender),
            ],
        )?;
        if let Some(cat) = cat {
            cat.finish()?;
        }
        let mut row = Row::new(
            format!(
                "load_snapshot 256 B, random among {} snapshots",
                count_name(snaps.len())
            ),
            "µs/op",
        );
        row.sg = sg;
        row.mem = mem_load;
        row.raw = raw;
        row.git = git_load;
        self.rows.push(row);
        self.notes.push(format!(
            "reads: {ops} random lookups per run on the {} history's file (raw SQLite reads the \
             same file through its own connection: `{RAW_GET_STATE}`, and the four-table join \
             for load_snapshot). stategraph also verifies the BLAKE3 of every state it returns. \
             git: one long-running `git cat-file --batch`, one request and flush per read, by \
             blob id (get_state) or `<commit>:state` (load_snapshot).",
            count_name(n)
        ));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn ancestry(
        &mut self,
        spec: &HistorySpec,
        store: &SqliteStateStore,
        path: &Path,
        built: &Built,
        mem: Option<(&InMemoryStateStore, &Built)>,
        shas: Option<&[String]>,
        repo: &Path,
    ) -> Res<()> {
        let runs = self.cfg.runs;
        let ops = self.cfg.ancestry_ops;
        let gops = self.cfg.git_ops;
        let n = spec.len();
        progress("is_ancestor / merge_base near the head");
        let (head, head10, side) = (spec.head, spec.head10, spec.side_tip);
        let is_anc = |s: &dyn StateStore, b: &Built| -> Res<f64> {
            per_item(0..ops, |_| {
                if !s.is_ancestor(&b.ids[head10], &b.ids[head])? {
                    return Err("is_ancestor gave false".into());
                }
                Ok(())
            })
        };
        let mbase = |s: &dyn StateStore, b: &Built| -> Res<f64> {
            per_item(0..ops, |_| {
                if s.merge_base(&b.ids[side], &b.ids[head])? != Some(b.ids[head10]) {
                    return Err("merge_base gave the wrong node".into());
                }
                Ok(())
            })
        };
        let mut rows = [
            Row::new(
                format!("is_ancestor(head~10, head), {} history", count_name(n)),
                "µs/op",
            ),
            Row::new(
                format!(
                    "merge_base(branch off head~10, head), {} history",
                    count_name(n)
                ),
                "µs/op",
            ),
            Row::new("git start-up floor: `git --version`", "µs/op"),
        ];
        // Raw SQLite: a recursive CTE from the head through the stored parent ids, pruned by
        // generation as stategraph prunes (only nodes above the target's generation can lead
        // to it), stopping at the first hit.
        let conn = raw_reader(path)?;
        let max_parents = spec.parents.iter().map(Vec::len).max().unwrap_or(1);
        let anc_sql = raw_is_ancestor_sql(max_parents);
        let (target, from) = (built.ids[head10], built.ids[head]);
        let mut raw_anc = || {
            per_item(0..ops, |_| {
                let found: bool = conn
                    .prepare_cached(&anc_sql)?
                    .query_row([&from.as_bytes()[..], &target.as_bytes()[..]], |r| r.get(0))?;
                if !found {
                    return Err("raw is_ancestor CTE gave false".into());
                }
                Ok(())
            })
        };
        let sha = |i: usize| shas.map(|s| s[2 * i + 2].clone()).unwrap_or_default();
        let mut git_anc = shas.map(|_| {
            || {
                per_item(0..gops, |_| {
                    let (ok, _) = git_run(
                        git(repo).args(["merge-base", "--is-ancestor", &sha(head10), &sha(head)]),
                        false,
                    )?;
                    if !ok {
                        return Err("git merge-base --is-ancestor said no".into());
                    }
                    Ok(())
                })
            }
        });
        let mut git_base = shas.map(|_| {
            || {
                per_item(0..gops, |_| {
                    let (_, out) =
                        git_run(git(repo).args(["merge-base", &sha(side), &sha(head)]), true)?;
                    if out != sha(head10) {
                        return Err(format!("git merge-base gave {out}").into());
                    }
                    Ok(())
                })
            }
        });
        let mut git_floor = shas.map(|_| {
            || {
                per_item(0..gops, |_| {
                    git_run(git(repo).arg("--version"), false)?;
                    Ok(())
                })
            }
        });
        let mut sg_anc = || is_anc(store, built);
        let mut sg_base = || mbase(store, built);
        let mut mem_anc = mem.map(|(m, b)| move || is_anc(m, b));
        let mut mem_base = mem.map(|(m, b)| move || mbase(m, b));
        let stats = measure_present(
            runs,
            [
                Some(&mut sg_anc),
                mem_anc.as_mut().map(contender),
                Some(&mut raw_anc),
                git_anc.as_mut().map(contender),
                Some(&mut sg_base),
                mem_base.as_mut().map(contender),
                git_base.as_mut().map(contender),
                git_floor.as_mut().map(contender),
            ],
        )?;
        (rows[0].sg, rows[0].mem, rows[0].raw, rows[0].git) =
            (stats[0], stats[1], stats[2], stats[3]);
        (rows[1].sg, rows[1].mem, rows[1].git) = (stats[4], stats[5], stats[6]);
        rows[2].git = stats[7];
        self.rows.extend(rows);
        self.notes.push(format!(
            "ancestry: stategraph and the raw SQLite recursive CTE (walking up from the head \
             through stored parent ids, pruned by generation) {ops} calls per run; git {gops} \
             processes per run (a process \
             per query, so git pays its start-up each time; `git --version` is that floor, \
             measured in the same run)."
        ));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &mut self,
        size: &str,
        spec: &HistorySpec,
        store: &SqliteStateStore,
        path: &Path,
        built: &Built,
        mem: Option<(&InMemoryStateStore, &Built)>,
        repo: &Path,
        largest: bool,
    ) -> Res<()> {
        let runs = self.cfg.runs;
        let expect = spec.len() - 1;
        let head = built.ids[spec.head];
        progress(&format!("log walk of the {size} history"));
        let ms = |e: Duration| e.as_secs_f64() * 1e3;
        let mut sg_log = || {
            let start = Instant::now();
            let count = sg_log_count(store, head)?;
            let t = ms(start.elapsed());
            if count != expect {
                return Err(format!("stategraph log walked {count}, expected {expect}").into());
            }
            Ok(t)
        };
        let mut mem_log = mem.map(|(m, b)| {
            move || {
                let start = Instant::now();
                let count = sg_log_count(m, b.ids[spec.head])?;
                let t = ms(start.elapsed());
                if count != expect {
                    return Err(format!("in-memory log walked {count}").into());
                }
                Ok(t)
            }
        });
        let conn = raw_reader(path)?;
        let max_parents = spec.parents.iter().map(Vec::len).max().unwrap_or(1);
        let by_seq_sql = raw_log_by_seq_sql(max_parents);
        let by_id_sql = raw_log_by_id_sql(max_parents);
        let head_seq: i64 = conn.query_row(
            "SELECT seq FROM state_nodes WHERE id = ?1",
            [&head.as_bytes()[..]],
            |r| r.get(0),
        )?;
        let raw_walk = |sql: &str, arg: rusqlite::types::Value| -> Res<f64> {
            let start = Instant::now();
            let count: i64 = conn.prepare_cached(sql)?.query_row([arg], |r| r.get(0))?;
            let t = ms(start.elapsed());
            if count as usize != expect {
                return Err(format!("raw CTE walked {count}, expected {expect}").into());
            }
            Ok(t)
        };
        // One trial walk of each raw query picks the faster; only that one is measured.
        let by_id = || raw_walk(&by_id_sql, head.as_bytes().to_vec().into());
        let by_seq = || raw_walk(&by_seq_sql, head_seq.into());
        let (id_trial, seq_trial) = (by_id()?, by_seq()?);
        let by_id_faster = id_trial <= seq_trial;
        let mut raw_log = || if by_id_faster { by_id() } else { by_seq() };
        let (raw_name, other_trial, other_name) = if by_id_faster {
            (
                "parent ids via the id index",
                seq_trial,
                "parent_seqs via rowid",
            )
        } else {
            (
                "parent_seqs via rowid",
                id_trial,
                "parent ids via the id index",
            )
        };
        let with_git = self.git.is_some();
        let mut git_count = with_git.then_some(|| {
            let start = Instant::now();
            let (ok, out) = git_run(git(repo).args(["rev-list", "--count", "HEAD"]), true)?;
            let t = ms(start.elapsed());
            if !ok || out.parse::<usize>().ok() != Some(expect) {
                return Err(format!("git rev-list --count gave {out}").into());
            }
            Ok(t)
        });
        let mut git_list = with_git.then_some(|| {
            let start = Instant::now();
            let (ok, _) = git_run(git(repo).args(["rev-list", "HEAD"]), false)?;
            if !ok {
                return Err("git rev-list failed".into());
            }
            Ok(ms(start.elapsed()))
        });
        let [sg, mem_log, raw, count_t, list_t]: [Option<Stat>; 5] = measure_present(
            runs,
            [
                Some(&mut sg_log),
                mem_log.as_mut().map(contender),
                Some(&mut raw_log),
                git_count.as_mut().map(contender),
                git_list.as_mut().map(contender),
            ],
        )?;
        let (sg, raw) = (
            sg.ok_or("no stategraph figure")?,
            raw.ok_or("no raw figure")?,
        );
        if with_git
            && has_commit_graph(repo)
            && let Some(g) = self.git.as_mut()
        {
            g.commit_graph_seen = true;
        }
        for (git_t, how) in [
            (count_t, "git rev-list --count HEAD"),
            (list_t, "git rev-list HEAD > /dev/null"),
        ] {
            let mut row = Row::new(format!("log, full walk of {size} nodes (vs `{how}`)"), "ms");
            row.sg = Some(sg);
            row.mem = mem_log;
            row.raw = Some(raw);
            row.git = git_t;
            if largest {
                row.target = "faster than git".into();
                row.result = row.sg_git().map(|r| (r < 1.0, String::new()));
            }
            self.rows.push(row);
        }
        self.notes.push(format!(
            "log {size}: stategraph walks `log(from head)` to the end ({expect} nodes, in \
             topological order, each node decoded and checked against its id); raw SQLite column = recursive CTE following \
             {raw_name} (median {} ms), the faster of two in a trial walk; following \
             {other_name} took {} ms there. Both use UNION to visit merged history once and try \
             parent positions up to the history's largest parent count ({max_parents}).",
            num(raw.median),
            num(other_trial)
        ));
        Ok(())
    }

    fn memory(
        &mut self,
        size: &str,
        spec: &HistorySpec,
        path: &Path,
        built: &Built,
        largest: bool,
    ) -> Res<()> {
        progress(&format!(
            "peak memory of the {size} log walk (child process)"
        ));
        let out = Command::new(std::env::current_exe()?)
            .arg("--child-log-walk")
            .arg(path)
            .arg(built.ids[spec.head].to_string())
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err("the log-walk child failed".into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| -> Res<f64> {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("child output lacks {name}: {text}").into())
        };
        let (count, open_kb, end_kb) = (
            field("count=")?,
            field("hwm_open_kb=")?,
            field("hwm_end_kb=")?,
        );
        if count as usize != spec.len() - 1 {
            return Err(format!("child walked {count} nodes").into());
        }
        let growth = (end_kb - open_kb) / 1024.0;
        let one = |x: f64| {
            Some(Stat {
                median: x,
                min: x,
                max: x,
            })
        };
        let mut row = Row::new(
            format!("log {size}: peak RSS growth of the walk (VmHWM)"),
            "MB",
        );
        row.sg = one(growth);
        if largest {
            row.target = format!("flat (≤ {FLAT_MEMORY_MB:.0} MB)");
        }
        row.result = largest.then(|| {
            (
                growth <= FLAT_MEMORY_MB,
                format!(
                    "{:.1} MB after open → {:.1} MB after walk",
                    open_kb / 1024.0,
                    end_kb / 1024.0
                ),
            )
        });
        if !largest {
            row.target = format!("info: {:.1} → {:.1} MB", open_kb / 1024.0, end_kb / 1024.0);
        }
        self.rows.push(row);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The child process and main

fn vm_hwm_kb() -> f64 {
    read("/proc/self/status")
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `--child-log-walk PATH HEAD`: opens the store read-only, walks the whole log from HEAD and
/// prints the node count and VmHWM after opening and after the walk.
fn child_log_walk(path: &Path, head: &str) -> Res<()> {
    let head: StateNodeId = head.parse()?;
    let store = SqliteStateStore::open_read_only(path)?;
    black_box(store.get_node(&head)?);
    let open_kb = vm_hwm_kb();
    let count = sg_log_count(&store, head)?;
    let end_kb = vm_hwm_kb();
    println!("count={count} hwm_open_kb={open_kb} hwm_end_kb={end_kb}");
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child-log-walk") {
        let path = args.get(i + 1).ok_or("--child-log-walk needs PATH HEAD")?;
        let head = args.get(i + 2).ok_or("--child-log-walk needs PATH HEAD")?;
        return child_log_walk(&PathBuf::from(path), head);
    }
    let mode = if args.iter().any(|a| a == "--quick") {
        Mode::Quick
    } else if args.iter().any(|a| a == "--bench" || a == "--full") {
        Mode::Full
    } else {
        Mode::Smoke
    };
    let started = Instant::now();
    let git = Git::detect();
    let mut cfg = Config::new(mode);
    if let Some(i) = args.iter().position(|a| a == "--only") {
        let list = args
            .get(i + 1)
            .ok_or("--only needs ticks,bulk,writers,history,maintenance")?;
        cfg.only = list.split(',').map(str::to_owned).collect();
    }
    if let Some(i) = args.iter().position(|a| a == "--flush-delay-us") {
        let us: u64 = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or("--flush-delay-us needs a whole number of microseconds")?;
        let delay = Duration::from_micros(us);
        flush::install(delay);
        cfg.flush_delay = Some(delay);
    }
    let mut bench = Bench {
        cfg,
        git,
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let load_start = loadavg();
    bench.run()?;
    let load_end = loadavg();

    println!();
    println!("## stategraph comparison benchmark");
    println!();
    println!("command: `{}`", bench.cfg.command());
    for line in machine_lines(bench.git.as_ref()) {
        println!("{line}");
    }
    println!(
        "mode: {:?}, median of {} runs per cell (min–max in parentheses); load average {} at \
         start, {} at end; took {:.0} s",
        bench.cfg.mode,
        bench.cfg.runs,
        load_start,
        load_end,
        started.elapsed().as_secs_f64()
    );
    if bench.cfg.mode != Mode::Full {
        println!(
            "NOTE: reduced sizes ({:?} mode): this proves the harness works; judge speed only \
             from a full run.",
            bench.cfg.mode
        );
    }
    match &bench.git {
        None => println!("git: not found on PATH, git column skipped"),
        Some(g) => println!(
            "git: bare temp repos, config isolated (GIT_CONFIG_NOSYSTEM=1, \
             GIT_CONFIG_GLOBAL=/dev/null), every command run with `{}`; commit-graph file: {}",
            GIT_FLAGS.join(" "),
            if g.commit_graph_seen {
                "FOUND in a repo (results invalid)"
            } else {
                "none in any repo (checked after every import and log)"
            }
        ),
    }
    println!(
        "raw SQLite: the store's own migrations, WAL, the same `synchronous`, foreign_keys=ON, \
         16 MiB cache, prepared cached statements, query planner stability guarantee \
         (SQLITE_DBCONFIG_ENABLE_QPSG) on; ids are pseudo-random bytes: no hashing, CBOR or \
         verification."
    );
    match flush::delay() {
        Some(d) if d.is_zero() => println!(
            "flush: every sync of a database or WAL file is timed through a wrapping VFS (no \
             wait added); the notes give the flush times measured"
        ),
        Some(d) => println!(
            "flush: EMULATED SLOWER DISK: every sync of a database or WAL file (stategraph and \
             raw SQLite; not git) waits {} µs more, through a wrapping VFS; the notes give the \
             flush times measured",
            d.as_micros()
        ),
        None => {}
    }
    println!(
        "ratios: stategraph SQLite median ÷ the other column's median, in the row's unit \
         (rates: higher is faster; µs/op, ms: lower is faster)."
    );
    println!();
    print_table(&bench.rows, bench.git.is_none());
    println!();
    for note in &bench.notes {
        println!("- {note}");
    }
    let misses = bench
        .rows
        .iter()
        .filter(|r| matches!(r.result, Some((false, _))))
        .count();
    println!();
    println!(
        "targets: {} PASS, {misses} MISS",
        bench
            .rows
            .iter()
            .filter(|r| matches!(r.result, Some((true, _))))
            .count()
    );
    Ok(())
}
