//! Core benchmarks for stategraph, each beside a raw-SQLite baseline measured in the same run.
//!
//! The machine these run on is usually shared and noisy, so absolute numbers drift from run to
//! run; the ratio between `stategraph` and its `raw_*` neighbour in the same group is the figure
//! to track. Every group names its benchmarks `stategraph` (the library) and `raw_*` (rusqlite
//! on the same schema, the store's own `migrations/sqlite/*.sql`, with cached prepared
//! statements, WAL, the same `synchronous`, `cache_size` and `foreign_keys` settings, and
//! nothing else: no hashing, no CBOR, no UUIDs, no verification, no connection pool). The
//! baselines also enable SQLite's query planner stability guarantee so that cached join
//! statements are not re-planned on every call (see `stable_plans`).
//!
//! Groups (throughput is one operation per iteration, so criterion prints elements/s):
//!
//! * `tick_commit_normal`, `tick_commit_immediate`: one tick is `put_state` (256 random bytes)
//!   then `commit_node` with the previous node as parent, on a file store in a temporary
//!   directory, with [`Durability::Normal`] and [`Durability::Immediate`]. Baselines:
//!   `raw_2tx` does the four inserts (`blobs`, `state_data`, `state_nodes`, `node_children`)
//!   in two transactions per tick, like stategraph's two calls; `raw_1tx` does them in one
//!   transaction, the design's reference point (target: stategraph ≥ 0.7× its throughput).
//!   `Immediate` waits for fsync on every commit, so its figures follow the disk's fsync
//!   latency, which on shared machines drifts by an order of magnitude within minutes.
//! * `get_state_256B`: random `get_state` among 10k stored states vs the same
//!   `state_data JOIN blobs` point select on the same file.
//! * `load_snapshot_256B`: random `load_snapshot` among 1k snapshots vs the same four-table
//!   join point select on the same file.
//! * `get_node`: random `get_node` among 10k nodes vs a point select of the row by id.
//! * `memory_tick_commit`, `memory_get_state`: the in-memory backend, for reference, beside
//!   raw SQLite on a `:memory:` database.
//!
//! Run with `cargo bench --bench core` (about two minutes), or a subset with
//! `cargo bench --bench core -- get_state`. Temporary stores go to the system temporary
//! directory, or to `$STATEGRAPH_BENCH_DIR` when set: use it to pick the disk whose fsync you
//! want to measure (a tmpfs makes `Durability::Immediate` meaningless). `cargo test --benches`
//! runs every benchmark once on small fixtures, as a smoke test.

#[path = "shared/schema.rs"]
mod schema;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, params};
use stategraph::{
    Durability, InMemoryStateStore, SnapshotId, SqliteStateStore, StateData, StateDataRef,
    StateMetadata, StateNodeId, StateStore,
};
use tempfile::TempDir;

/// Size of every state in these benchmarks.
const STATE_LEN: usize = 256;
/// stategraph's default page cache per connection (16 MiB), used by the baselines too.
const CACHE_SIZE_KIB: i64 = 16 * 1024;

/// A small deterministic PRNG (SplitMix64), so the benchmarks need no extra dependency and
/// both sides of a comparison see the same sequence.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        self.fill(&mut out);
        out
    }

    fn state(&mut self) -> Vec<u8> {
        let mut out = vec![0; STATE_LEN];
        self.fill(&mut out);
        out
    }

    /// A uniformly chosen index below `n` (n is far below 2^32, so the bias is negligible).
    fn index(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// How big the read fixtures are. `cargo test --benches` (criterion's test mode, which runs
/// each benchmark once) and `--list` get small ones so that they finish in seconds.
struct Sizes {
    states: usize,
    snapshot_every: usize,
}

fn sizes() -> Sizes {
    // The same rule criterion applies: without `--bench` (or with `--test`) it only tests.
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if !has("--bench") || has("--test") || has("--list") {
        Sizes {
            states: 100,
            snapshot_every: 10,
        }
    } else {
        Sizes {
            states: 10_000,
            snapshot_every: 10,
        }
    }
}

fn bench_dir() -> TempDir {
    match std::env::var_os("STATEGRAPH_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("create a temporary directory for the benchmark stores")
}

fn open_store(path: &Path, durability: Durability) -> SqliteStateStore {
    SqliteStateStore::builder()
        .durability(durability)
        .open(path)
        .expect("open the stategraph store")
}

fn sync_pragma(durability: Durability) -> &'static str {
    match durability {
        Durability::Normal => "NORMAL",
        _ => "FULL",
    }
}

/// Turns on SQLite's query planner stability guarantee. Without it, SQLite 3.54 marks joins
/// such as `state_data JOIN blobs ... WHERE d.data_ref = ?1` as "re-plan when ?1 changes", and
/// rusqlite's statement cache clears the bindings of every statement it takes back, which
/// expires such a statement: each cached execution is then parsed and planned again. The
/// baseline is the physical limit, so it avoids that trap (stategraph, as of this writing,
/// does not).
fn stable_plans(conn: &Connection) {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .expect("enable the query planner stability guarantee");
}

/// Applies the settings stategraph's writer uses.
fn configure_raw(conn: &Connection, synchronous: &str) {
    stable_plans(conn);
    conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB)
        .expect("cache_size");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("journal_mode");
    conn.pragma_update(None, "synchronous", synchronous)
        .expect("synchronous");
    conn.pragma_update(None, "foreign_keys", true)
        .expect("foreign_keys");
    conn.set_prepared_statement_cache_capacity(32);
}

fn create_schema(conn: &Connection) {
    schema::create(conn).expect("create the schema");
}

/// A raw-SQLite database with stategraph's schema.
fn open_raw(path: &Path, synchronous: &str) -> Connection {
    let conn = Connection::open(path).expect("open the raw database");
    configure_raw(&conn, synchronous);
    create_schema(&conn);
    conn
}

/// A raw-SQLite in-memory database with stategraph's schema.
fn open_raw_memory() -> Connection {
    let conn = Connection::open_in_memory().expect("open an in-memory database");
    stable_plans(&conn);
    conn.pragma_update(None, "foreign_keys", true)
        .expect("foreign_keys");
    conn.set_prepared_statement_cache_capacity(32);
    create_schema(&conn);
    conn
}

/// What one tick writes, generated before the clock starts.
struct TickInput {
    bytes: Vec<u8>,
    /// Stands in for blake3(bytes) in the raw baseline: uniformly random, like a hash.
    hash: [u8; 32],
    /// Stands in for the node id in the raw baseline.
    id: [u8; 32],
}

fn tick_inputs(rng: &mut Rng, n: u64) -> Vec<TickInput> {
    (0..n)
        .map(|_| TickInput {
            bytes: rng.state(),
            hash: rng.bytes(),
            id: rng.bytes(),
        })
        .collect()
}

/// stategraph's tick: `put_state` then `commit_node` onto the previous head.
fn stategraph_tick(
    store: &dyn StateStore,
    head: &mut Option<StateNodeId>,
    bytes: Vec<u8>,
) -> StateNodeId {
    let data_ref = store.put_state(StateData::new(bytes)).expect("put_state");
    let node = store
        .commit_node(
            head.take().into_iter().collect(),
            data_ref,
            StateMetadata::now(None),
        )
        .expect("commit_node");
    *head = Some(node);
    node
}

/// The raw baseline's running state: what the previous tick wrote.
#[derive(Default)]
struct RawChain {
    ticks: u64,
    head: Option<([u8; 32], i64)>,
}

/// How the raw baseline groups a tick's four inserts into transactions.
#[derive(Clone, Copy)]
enum RawTx {
    /// `blobs` + `state_data`, then `state_nodes` + `node_children`: stategraph's two calls.
    Two,
    /// All four inserts in one transaction.
    One,
}

fn raw_begin(conn: &Connection) {
    conn.prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut s| s.execute([]))
        .expect("begin");
}

fn raw_commit(conn: &Connection) {
    conn.prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
        .expect("commit");
}

/// The minimal SQLite work of one tick: four inserts, no reads, no hashing.
fn raw_tick(conn: &Connection, chain: &mut RawChain, input: &TickInput, tx: RawTx) {
    chain.ticks += 1;
    let n = chain.ticks;
    // Time-ordered 16-byte key, like a UUID v7.
    let mut data_ref = [0u8; 16];
    data_ref[..8].copy_from_slice(&n.to_be_bytes());
    raw_begin(conn);
    conn.prepare_cached("INSERT INTO blobs (hash, bytes) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![input.hash, input.bytes]))
        .expect("insert blob");
    let blob_id = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO state_data (data_ref, blob_id, content_type) VALUES (?1, ?2, NULL)",
    )
    .and_then(|mut s| s.execute(params![data_ref, blob_id]))
    .expect("insert state_data");
    if let RawTx::Two = tx {
        raw_commit(conn);
        raw_begin(conn);
    }
    let (parents, parent_seqs): (&[u8], Vec<u8>) = match &chain.head {
        Some((id, seq)) => (id, seq.to_be_bytes().to_vec()),
        None => (&[], Vec::new()),
    };
    conn.prepare_cached(
        "INSERT INTO state_nodes (id, parents, parent_seqs, data_ref, data_hash, content_type,
             created_s, created_ns, label, generation)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, NULL, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            input.id,
            parents,
            parent_seqs,
            data_ref,
            input.hash,
            1_700_000_000 + n as i64,
            (n % 1_000_000_000) as i64,
            n as i64,
        ])
    })
    .expect("insert node");
    let seq = conn.last_insert_rowid();
    if let Some((_, parent)) = chain.head {
        conn.prepare_cached("INSERT INTO node_children (parent, child) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute([parent, seq]))
            .expect("insert edge");
    }
    raw_commit(conn);
    chain.head = Some((input.id, seq));
}

fn configure_tick_group(group: &mut BenchmarkGroup<'_, WallTime>, durability: Durability) {
    group.throughput(Throughput::Elements(1));
    match durability {
        Durability::Normal => {
            group
                .sample_size(20)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(4));
        }
        _ => {
            // Each tick waits for fsync (two with stategraph): few, long, equal samples.
            group
                .sampling_mode(SamplingMode::Flat)
                .sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(8));
        }
    }
}

/// Workload 1: tick commit on a file store, beside raw SQLite in two and one transactions.
fn bench_tick_commit(c: &mut Criterion, durability: Durability, name: &str) {
    let dir = bench_dir();
    let mut group = c.benchmark_group(name);
    configure_tick_group(&mut group, durability);

    // Stores persist across samples, so later samples append to a grown file, as a long-running
    // program would.
    let store = open_store(&dir.path().join("stategraph.db"), durability);
    let mut head = None;
    let mut rng = Rng(1);
    group.bench_function("stategraph", |b| {
        b.iter_custom(|iters| {
            let inputs = tick_inputs(&mut rng, iters);
            let start = Instant::now();
            for input in inputs {
                black_box(stategraph_tick(&store, &mut head, input.bytes));
            }
            start.elapsed()
        });
    });

    for (label, tx, file) in [
        ("raw_2tx", RawTx::Two, "raw2.db"),
        ("raw_1tx", RawTx::One, "raw1.db"),
    ] {
        let conn = open_raw(&dir.path().join(file), sync_pragma(durability));
        let mut chain = RawChain::default();
        let mut rng = Rng(1);
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let inputs = tick_inputs(&mut rng, iters);
                let start = Instant::now();
                for input in &inputs {
                    raw_tick(&conn, &mut chain, input, tx);
                }
                start.elapsed()
            });
        });
    }
    group.finish();
}

/// A file store holding a chain of nodes, one 256-byte state each, with every
/// `snapshot_every`-th node snapshotted; plus a raw connection to the same file.
struct ReadFixture {
    _dir: TempDir,
    store: SqliteStateStore,
    raw: Connection,
    refs: Vec<StateDataRef>,
    nodes: Vec<StateNodeId>,
    snapshots: Vec<SnapshotId>,
}

impl ReadFixture {
    fn build(sizes: &Sizes) -> Self {
        let dir = bench_dir();
        let path = dir.path().join("read.db");
        let store = open_store(&path, Durability::Normal);
        let mut rng = Rng(2);
        let mut head = None;
        let (mut refs, mut nodes, mut snapshots) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..sizes.states {
            let data_ref = store
                .put_state(StateData::new(rng.state()))
                .expect("put_state");
            let node = store
                .commit_node(
                    head.into_iter().collect(),
                    data_ref,
                    StateMetadata::now(None),
                )
                .expect("commit_node");
            if i % sizes.snapshot_every == 0 {
                snapshots.push(store.snapshot(&node).expect("snapshot"));
            }
            refs.push(data_ref);
            nodes.push(node);
            head = Some(node);
        }
        // The baseline reads the very same file, through one plain connection.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let raw = Connection::open_with_flags(&path, flags).expect("open the raw reader");
        stable_plans(&raw);
        raw.pragma_update(None, "cache_size", -CACHE_SIZE_KIB)
            .expect("cache_size");
        Self {
            _dir: dir,
            store,
            raw,
            refs,
            nodes,
            snapshots,
        }
    }
}

fn configure_read_group(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .throughput(Throughput::Elements(1))
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

const GET_STATE_SQL: &str = "SELECT b.hash, b.bytes, d.content_type
     FROM state_data d JOIN blobs b ON b.id = d.blob_id WHERE d.data_ref = ?1";

/// Workload 2: `get_state` of a random one of the stored states.
fn bench_get_state(c: &mut Criterion, fx: &ReadFixture) {
    let mut group = c.benchmark_group("get_state_256B");
    configure_read_group(&mut group);
    let mut rng = Rng(3);
    group.bench_function("stategraph", |b| {
        b.iter(|| {
            let data_ref = &fx.refs[rng.index(fx.refs.len())];
            fx.store.get_state(data_ref).expect("get_state")
        });
    });
    let mut rng = Rng(3);
    group.bench_function("raw_select", |b| {
        b.iter(|| {
            let data_ref = &fx.refs[rng.index(fx.refs.len())];
            fx.raw
                .prepare_cached(GET_STATE_SQL)
                .and_then(|mut s| {
                    s.query_row([data_ref.as_bytes()], |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                        ))
                    })
                })
                .expect("select state")
        });
    });
    group.finish();
}

/// Workload 3: `load_snapshot` of a random one of the snapshots.
fn bench_load_snapshot(c: &mut Criterion, fx: &ReadFixture) {
    let mut group = c.benchmark_group("load_snapshot_256B");
    configure_read_group(&mut group);
    let mut rng = Rng(4);
    group.bench_function("stategraph", |b| {
        b.iter(|| {
            let id = &fx.snapshots[rng.index(fx.snapshots.len())];
            fx.store.load_snapshot(id).expect("load_snapshot")
        });
    });
    let mut rng = Rng(4);
    group.bench_function("raw_select", |b| {
        b.iter(|| {
            let id = &fx.snapshots[rng.index(fx.snapshots.len())];
            fx.raw
                .prepare_cached(
                    "SELECT s.node_id, n.data_ref, n.data_hash, b.hash, b.bytes, d.content_type
                     FROM snapshots s
                     JOIN state_nodes n ON n.id = s.node_id
                     JOIN state_data d ON d.data_ref = n.data_ref
                     JOIN blobs b ON b.id = d.blob_id
                     WHERE s.id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([id.as_bytes()], |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                            r.get::<_, Vec<u8>>(3)?,
                            r.get::<_, Vec<u8>>(4)?,
                            r.get::<_, Option<String>>(5)?,
                        ))
                    })
                })
                .expect("select snapshot")
        });
    });
    group.finish();
}

/// The raw column values of one `state_nodes` row.
type RawNodeRow = (
    i64,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Option<String>,
    i64,
    i64,
    Option<String>,
    i64,
);

/// Workload 4: `get_node` of a random one of the stored nodes.
fn bench_get_node(c: &mut Criterion, fx: &ReadFixture) {
    let mut group = c.benchmark_group("get_node");
    configure_read_group(&mut group);
    let mut rng = Rng(5);
    group.bench_function("stategraph", |b| {
        b.iter(|| {
            let id = &fx.nodes[rng.index(fx.nodes.len())];
            fx.store.get_node(id).expect("get_node")
        });
    });
    let mut rng = Rng(5);
    group.bench_function("raw_select", |b| {
        b.iter(|| {
            let id = &fx.nodes[rng.index(fx.nodes.len())];
            fx.raw
                .prepare_cached(
                    "SELECT seq, id, parents, parent_seqs, data_ref, data_hash, content_type,
                         created_s, created_ns, label, generation
                     FROM state_nodes WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([id.as_bytes()], |r| -> rusqlite::Result<RawNodeRow> {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                            r.get(9)?,
                            r.get(10)?,
                        ))
                    })
                })
                .expect("select node")
        });
    });
    group.finish();
}

fn configure_memory_group(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

/// Workload 5a: tick commit on the in-memory backend, beside raw SQLite on `:memory:`.
fn bench_memory_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_tick_commit");
    configure_memory_group(&mut group);
    // A fresh store per sample keeps memory bounded: in-memory ticks are cheap enough that a
    // run makes millions of them.
    let mut rng = Rng(6);
    group.bench_function("stategraph", |b| {
        b.iter_custom(|iters| {
            let inputs = tick_inputs(&mut rng, iters);
            let store = InMemoryStateStore::new();
            let mut head = None;
            let start = Instant::now();
            for input in inputs {
                black_box(stategraph_tick(&store, &mut head, input.bytes));
            }
            let elapsed = start.elapsed();
            drop(store);
            elapsed
        });
    });
    let mut rng = Rng(6);
    group.bench_function("raw_1tx", |b| {
        b.iter_custom(|iters| {
            let inputs = tick_inputs(&mut rng, iters);
            let conn = open_raw_memory();
            let mut chain = RawChain::default();
            let start = Instant::now();
            for input in &inputs {
                raw_tick(&conn, &mut chain, input, RawTx::One);
            }
            start.elapsed()
        });
    });
    group.finish();
}

/// Workload 5b: `get_state` on the in-memory backend, beside raw SQLite on `:memory:`.
fn bench_memory_get_state(c: &mut Criterion, sizes: &Sizes) {
    let mut group = c.benchmark_group("memory_get_state_256B");
    configure_memory_group(&mut group);
    let mut rng = Rng(7);
    let inputs = tick_inputs(&mut rng, sizes.states as u64);

    let store = InMemoryStateStore::new();
    let refs: Vec<StateDataRef> = inputs
        .iter()
        .map(|i| {
            store
                .put_state(StateData::new(i.bytes.clone()))
                .expect("put_state")
        })
        .collect();
    group.bench_function("stategraph", |b| {
        b.iter(|| {
            let data_ref = &refs[rng.index(refs.len())];
            store.get_state(data_ref).expect("get_state")
        });
    });

    let conn = open_raw_memory();
    let mut chain = RawChain::default();
    for input in &inputs {
        raw_tick(&conn, &mut chain, input, RawTx::One);
    }
    let raw_refs: Vec<[u8; 16]> = (1..=sizes.states as u64)
        .map(|n| {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&n.to_be_bytes());
            key
        })
        .collect();
    group.bench_function("raw_select", |b| {
        b.iter(|| {
            let data_ref = &raw_refs[rng.index(raw_refs.len())];
            conn.prepare_cached(GET_STATE_SQL)
                .and_then(|mut s| {
                    s.query_row([data_ref], |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                        ))
                    })
                })
                .expect("select state")
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let sizes = sizes();
    bench_tick_commit(&mut c, Durability::Normal, "tick_commit_normal");
    bench_tick_commit(&mut c, Durability::Immediate, "tick_commit_immediate");
    {
        let fixture = ReadFixture::build(&sizes);
        bench_get_state(&mut c, &fixture);
        bench_load_snapshot(&mut c, &fixture);
        bench_get_node(&mut c, &fixture);
    }
    bench_memory_tick(&mut c);
    bench_memory_get_state(&mut c, &sizes);
    c.final_summary();
}
