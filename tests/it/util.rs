//! Shared helpers: fixed clocks, deterministic bytes, temporary stores and file fingerprints.

use std::path::{Path, PathBuf};

use stategraph::{
    Durability, SqliteStateStore, StateData, StateDataRef, StateMetadata, StateNodeId, StateStore,
};
use tempfile::TempDir;
use time::OffsetDateTime;
use time::macros::datetime;

/// The fixed instant most tests start from (never `now`, so ids are reproducible).
pub const T0: OffsetDateTime = datetime!(2024-01-02 03:04:05.000000006 UTC);

/// `T0` plus `nanos` nanoseconds.
pub fn t(nanos: i64) -> OffsetDateTime {
    T0 + time::Duration::nanoseconds(nanos)
}

/// Metadata at a fixed time with an optional label.
pub fn meta(at: OffsetDateTime, label: Option<&str>) -> StateMetadata {
    StateMetadata::new(at, label.map(str::to_owned))
}

/// Deterministic pseudo-random bytes (splitmix64), so failures reproduce.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Puts `bytes` (with an optional content type) and commits a node on `parents`.
pub fn commit_bytes(
    store: &dyn StateStore,
    parents: Vec<StateNodeId>,
    bytes: &[u8],
    content_type: Option<&str>,
    metadata: StateMetadata,
) -> (StateDataRef, StateNodeId) {
    let data = StateData {
        bytes: bytes.to_vec(),
        content_type: content_type.map(str::to_owned),
    };
    let data_ref = store.put_state(data).expect("put_state");
    let id = store
        .commit_node(parents, data_ref, metadata)
        .expect("commit_node");
    (data_ref, id)
}

/// A SQLite store in its own temporary directory (deleted on drop).
pub struct TempSqlite {
    // Fields drop in declaration order: the store closes before its directory is deleted.
    pub store: SqliteStateStore,
    _dir: TempDir,
}

impl TempSqlite {
    /// A fresh store with `Durability::Normal` (fast; durability is not what most tests check).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let store = open_normal(&path);
        Self { store, _dir: dir }
    }
}

/// Opens (or creates) a writable store with `Durability::Normal`.
pub fn open_normal(path: &Path) -> SqliteStateStore {
    SqliteStateStore::builder()
        .durability(Durability::Normal)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// `path` with a suffix appended to the file name, e.g. `-wal`.
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The exact contents of a database file and of its `-wal` and `-shm` sidecars (`None` when
/// a file does not exist).
#[derive(PartialEq, Eq)]
pub struct Fingerprint {
    pub main: Option<Vec<u8>>,
    pub wal: Option<Vec<u8>>,
    pub shm: Option<Vec<u8>>,
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let describe = |b: &Option<Vec<u8>>| match b {
            None => "absent".to_owned(),
            Some(b) => format!("{} bytes, blake3 {}", b.len(), blake3::hash(b).to_hex()),
        };
        f.debug_struct("Fingerprint")
            .field("main", &describe(&self.main))
            .field("wal", &describe(&self.wal))
            .field("shm", &describe(&self.shm))
            .finish()
    }
}

fn read_opt(path: &Path) -> Option<Vec<u8>> {
    if path.is_dir() {
        return Some(b"<directory>".to_vec());
    }
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

impl Fingerprint {
    pub fn of(path: &Path) -> Self {
        Self {
            main: read_opt(path),
            wal: read_opt(&sidecar(path, "-wal")),
            shm: read_opt(&sidecar(path, "-shm")),
        }
    }

    /// True when the WAL is absent or empty, i.e. everything is in the main file.
    pub fn wal_is_empty(&self) -> bool {
        self.wal.as_ref().is_none_or(Vec::is_empty)
    }
}

/// Names of the entries of a directory, sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// A raw rusqlite connection to a store file, for inspecting or damaging it behind the
/// store's back.
pub fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw rusqlite connection")
}

/// Number of rows in `table`, read through a raw connection.
pub fn count_rows(path: &Path, table: &str) -> i64 {
    raw(path)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count rows")
}
