//! The SQLite backend: one file, WAL, one writer connection and a pool of readers.

mod ops;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction};
use time::OffsetDateTime;

use crate::codec;
use crate::error::{BackendError, Result, StateStoreError};
use crate::id::{IdPrefix, SnapshotId, StateDataRef, StateNodeId};
use crate::model::{
    Ref, RefLogEntry, SnapshotInfo, StateData, StateMetadata, StateNode, StateSnapshot,
};
use crate::package::SnapshotPackage;
use crate::refs::validate_ref_name;
use crate::store::{GraphCursor, StateStore};

pub use schema::SCHEMA_VERSION;
use schema::{FileState, sql_error};

/// What a successful write promises to survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Survives power loss and OS crashes: the WAL is fsynced before a write returns
    /// (`PRAGMA synchronous = FULL`). The default.
    #[default]
    Immediate,
    /// Survives a crash of the process, but the last writes before a power loss or OS crash
    /// may be lost (never half-applied: the database stays consistent).
    /// (`PRAGMA synchronous = NORMAL` in WAL mode.)
    Normal,
}

/// Options for opening a [`SqliteStateStore`]; see [`SqliteStateStore::builder`].
#[derive(Debug, Clone)]
pub struct SqliteStateStoreBuilder {
    durability: Durability,
    cache_size_kib: u32,
    busy_timeout: Duration,
    max_idle_readers: usize,
}

impl Default for SqliteStateStoreBuilder {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            cache_size_kib: 16 * 1024,
            busy_timeout: Duration::from_secs(30),
            max_idle_readers: 4,
        }
    }
}

impl SqliteStateStoreBuilder {
    /// What a successful write must survive (default [`Durability::Immediate`]).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// SQLite page cache per connection, in KiB (default 16 MiB).
    #[must_use]
    pub fn cache_size_kib(mut self, kib: u32) -> Self {
        self.cache_size_kib = kib;
        self
    }

    /// How long a write waits for another connection or process holding the write lock before
    /// failing (default 30 s). Waiting happens inside the library; callers never see
    /// `SQLITE_BUSY` before this has passed.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How many idle read connections to keep for reuse (default 4).
    #[must_use]
    pub fn max_idle_readers(mut self, n: usize) -> Self {
        self.max_idle_readers = n;
        self
    }

    /// Opens the store at `path` for reading and writing, creating it if it does not exist.
    ///
    /// # Errors
    /// [`StateStoreError::NotAStore`] for a file that is not a stategraph store (random
    /// bytes, another application's SQLite database, a file shorter than a header);
    /// [`StateStoreError::Corrupt`] for a truncated store; [`StateStoreError::UnsupportedFormat`]
    /// for a store written by a newer version. In each case the file is left untouched.
    pub fn open(self, path: impl AsRef<Path>) -> Result<SqliteStateStore> {
        SqliteStateStore::open_with(self, path.as_ref(), false)
    }

    /// Opens an existing store for inspection only: every write fails with
    /// [`StateStoreError::ReadOnly`] and the file is never modified.
    ///
    /// # Errors
    /// As [`open`](Self::open), and [`StateStoreError::NotAStore`] if the file does not exist.
    pub fn open_read_only(self, path: impl AsRef<Path>) -> Result<SqliteStateStore> {
        SqliteStateStore::open_with(self, path.as_ref(), true)
    }
}

/// A state store in one SQLite file.
///
/// Writes go through one connection, each logical operation in one `BEGIN IMMEDIATE`
/// transaction, retried with backoff while another connection or process holds the write
/// lock. Reads use a pool of separate connections, so under WAL they never wait for writers.
///
/// # Example
///
/// ```
/// use stategraph::{Durability, SqliteStateStore, StateData, StateMetadata, StateStore};
///
/// let dir = tempfile::tempdir()?;
/// let store = SqliteStateStore::builder()
///     .durability(Durability::Normal)
///     .open(dir.path().join("state.db"))?;
/// let data_ref = store.put_state(StateData::new(b"hello".to_vec()))?;
/// let node = store.commit_node(vec![], data_ref, StateMetadata::now(None))?;
/// assert_eq!(store.get_node(&node)?.data_ref, data_ref);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SqliteStateStore {
    path: PathBuf,
    config: SqliteStateStoreBuilder,
    /// `None` when opened read-only.
    writer: Option<Mutex<Connection>>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStateStore")
            .field("path", &self.path)
            .field("read_only", &self.writer.is_none())
            .field("durability", &self.config.durability)
            .finish_non_exhaustive()
    }
}

/// Maps a SQLite error to the crate's error, keeping full-disk and corruption distinct.
pub(crate) fn map_sqlite_error(context: &'static str, e: rusqlite::Error) -> StateStoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StateStoreError::StorageFull(BackendError::new(context, e)),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StateStoreError::corrupt("store file", format!("{context}: {e}"))
        }
        _ => StateStoreError::Backend(BackendError::new(context, e)),
    }
}

fn is_busy(e: &StateStoreError) -> bool {
    use std::error::Error as _;
    let StateStoreError::Backend(b) = e else {
        return false;
    };
    b.source()
        .and_then(|s| s.downcast_ref::<rusqlite::Error>())
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|c| matches!(c, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

impl SqliteStateStore {
    /// Opens (or creates) the store at `path` with default options.
    ///
    /// # Errors
    /// See [`SqliteStateStoreBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder().open(path)
    }

    /// Opens an existing store read-only; see [`SqliteStateStoreBuilder::open_read_only`].
    ///
    /// # Errors
    /// See [`SqliteStateStoreBuilder::open_read_only`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder().open_read_only(path)
    }

    /// Options for opening a store: durability, cache size, busy timeout.
    pub fn builder() -> SqliteStateStoreBuilder {
        SqliteStateStoreBuilder::default()
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the store was opened with [`open_read_only`](Self::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    fn open_with(config: SqliteStateStoreBuilder, path: &Path, read_only: bool) -> Result<Self> {
        let state = schema::inspect_file(path)?;
        if read_only && state == FileState::Fresh {
            return Err(StateStoreError::NotAStore {
                path: path.to_owned(),
                detail: "no store exists there (it is missing or empty)".into(),
            });
        }
        let writer = if read_only {
            None
        } else {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let mut conn = Connection::open_with_flags(path, flags)
                .map_err(sql_error("opening the store file"))?;
            conn.busy_timeout(config.busy_timeout)
                .map_err(sql_error("configuring the store"))?;
            if state == FileState::Fresh {
                schema::stamp_new(&conn)?;
            }
            let (app, version) = schema::read_ids(&conn)?;
            schema::check_version(path, app, version)?;
            // Only now, with the file known to be ours, may anything be written to it.
            Self::configure(&conn, &config, false)?;
            schema::migrate(&mut conn, path)?;
            Some(Mutex::new(conn))
        };
        let store = Self {
            path: path.to_owned(),
            config,
            writer,
            readers: Mutex::new(Vec::new()),
        };
        // Open one reader up front: it checks the schema of read-only opens and proves that
        // reading works before the caller relies on it.
        let reader = store.new_reader()?;
        let (app, version) = schema::read_ids(&reader)?;
        schema::check_version(path, app, version)?;
        if version < SCHEMA_VERSION {
            return Err(StateStoreError::NotAStore {
                path: path.to_owned(),
                detail: format!(
                    "its schema (version {version}) must be upgraded to {SCHEMA_VERSION}; open it writable once"
                ),
            });
        }
        store.return_reader(reader);
        Ok(store)
    }

    fn configure(conn: &Connection, config: &SqliteStateStoreBuilder, reader: bool) -> Result<()> {
        let ctx = sql_error("configuring the store");
        conn.set_prepared_statement_cache_capacity(32);
        conn.pragma_update(None, "cache_size", -i64::from(config.cache_size_kib))
            .map_err(&ctx)?;
        if reader {
            return Ok(());
        }
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(&ctx)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StateStoreError::Backend(BackendError::new(
                "configuring the store",
                format!("could not enable WAL mode (journal mode is {mode})"),
            )));
        }
        let sync = match config.durability {
            Durability::Immediate => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(&ctx)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(&ctx)?;
        Ok(())
    }

    fn new_reader(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)
            .map_err(sql_error("opening a read connection"))?;
        conn.busy_timeout(self.config.busy_timeout)
            .map_err(sql_error("configuring the store"))?;
        Self::configure(&conn, &self.config, true)?;
        Ok(conn)
    }

    fn readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The pool is a plain Vec; a panic while it was locked cannot leave it inconsistent.
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn return_reader(&self, conn: Connection) {
        let mut pool = self.readers();
        if pool.len() < self.config.max_idle_readers {
            pool.push(conn);
        }
    }

    fn take_reader(&self) -> Result<Connection> {
        let pooled = self.readers().pop();
        match pooled {
            Some(c) => Ok(c),
            None => self.new_reader(),
        }
    }

    /// Runs `f` on a pooled read connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.take_reader()?;
        let out = f(&conn);
        self.return_reader(conn);
        out
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer, retrying the whole
    /// transaction with backoff while another connection holds the write lock.
    fn write<T>(
        &self,
        operation: &'static str,
        mut f: impl FnMut(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let writer = self
            .writer
            .as_ref()
            .ok_or(StateStoreError::ReadOnly { operation })?;
        // A panic inside `f` drops the transaction, which rolls it back; the connection is
        // clean again, so a poisoned lock is safe to reuse.
        let mut conn = writer.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = Instant::now() + self.config.busy_timeout;
        let mut backoff = Duration::from_millis(1);
        loop {
            let attempt = (|| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(sql_error(operation))?;
                let out = f(&tx)?;
                tx.commit().map_err(sql_error(operation))?;
                Ok(out)
            })();
            match attempt {
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }
}

impl StateStore for SqliteStateStore {
    fn put_state(&self, data: StateData) -> Result<StateDataRef> {
        // Hash outside the write lock: it is the only part proportional to the state's size.
        let hash = data.hash();
        let data_ref = StateDataRef::new_v7();
        self.write("put state", |tx| {
            ops::put_state(
                tx,
                &data_ref,
                &hash,
                &data.bytes,
                data.content_type.as_deref(),
            )
        })?;
        Ok(data_ref)
    }

    fn get_state(&self, data_ref: &StateDataRef) -> Result<StateData> {
        self.read(|conn| ops::get_state(conn, data_ref))
    }

    fn commit_node(
        &self,
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    ) -> Result<StateNodeId> {
        codec::check_parents(&parent_ids)?;
        self.write("commit a node", |tx| {
            ops::commit_node(tx, &parent_ids, &data_ref, &metadata)
        })
    }

    fn get_node(&self, id: &StateNodeId) -> Result<StateNode> {
        self.read(|conn| ops::get_node(conn, id))
    }

    fn snapshot(&self, node_id: &StateNodeId) -> Result<SnapshotId> {
        let now = OffsetDateTime::now_utc();
        self.write("take a snapshot", |tx| ops::snapshot(tx, node_id, now))
    }

    fn load_snapshot(&self, snapshot_id: &SnapshotId) -> Result<StateSnapshot> {
        self.read(|conn| ops::load_snapshot(conn, snapshot_id))
    }

    fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        self.read(ops::list_snapshots)
    }

    fn snapshots_of(&self, node_id: &StateNodeId) -> Result<Vec<SnapshotInfo>> {
        self.read(|conn| ops::snapshots_of(conn, node_id))
    }

    fn delete_snapshot(&self, snapshot_id: &SnapshotId) -> Result<()> {
        self.write("delete a snapshot", |tx| {
            ops::delete_snapshot(tx, snapshot_id)
        })
    }

    fn set_ref_with_message(
        &self,
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
        message: Option<&str>,
    ) -> Result<()> {
        validate_ref_name(name)?;
        let now = OffsetDateTime::now_utc();
        self.write("move a ref", |tx| {
            ops::set_ref(tx, name, expected, new, message, now)
        })
    }

    fn get_ref(&self, name: &str) -> Result<Option<StateNodeId>> {
        validate_ref_name(name)?;
        self.read(|conn| ops::get_ref(conn, name))
    }

    fn delete_ref(&self, name: &str, expected: &StateNodeId) -> Result<()> {
        validate_ref_name(name)?;
        let now = OffsetDateTime::now_utc();
        self.write("delete a ref", |tx| {
            ops::delete_ref(tx, name, expected, now)
        })
    }

    fn list_refs(&self, prefix: &str) -> Result<Vec<Ref>> {
        self.read(|conn| ops::list_refs(conn, prefix))
    }

    fn ref_log(&self, name: &str) -> Result<Vec<RefLogEntry>> {
        validate_ref_name(name)?;
        self.read(|conn| ops::ref_log(conn, name))
    }

    fn nodes_with_prefix(&self, prefix: &IdPrefix, limit: usize) -> Result<Vec<StateNodeId>> {
        self.read(|conn| ops::nodes_with_prefix(conn, prefix, limit))
    }

    fn import_snapshot(&self, package: &SnapshotPackage) -> Result<SnapshotId> {
        let data_hash = package.verify()?;
        let now = OffsetDateTime::now_utc();
        self.write("import a snapshot", |tx| {
            ops::import_snapshot(tx, package, &data_hash, now)
        })
    }

    fn cursor(&self) -> Result<Box<dyn GraphCursor + '_>> {
        Ok(Box::new(SqliteCursor {
            store: self,
            conn: Some(self.take_reader()?),
            parent_seqs: HashMap::new(),
        }))
    }
}

/// A graph cursor holding one pooled read connection until dropped.
///
/// Walks ask for the parents of the nodes they just read; the cursor remembers those parents'
/// local seqs so the next lookups are rowid lookups instead of id-index searches.
struct SqliteCursor<'a> {
    store: &'a SqliteStateStore,
    conn: Option<Connection>,
    parent_seqs: HashMap<StateNodeId, i64>,
}

impl SqliteCursor<'_> {
    /// Bound on remembered seqs; past it the memo is cleared (lookups fall back to ids).
    const MEMO_LIMIT: usize = 1 << 16;

    fn conn(&self) -> Result<&Connection> {
        self.conn.as_ref().ok_or_else(|| {
            StateStoreError::Backend(BackendError::new("walking the graph", "cursor was closed"))
        })
    }
}

impl GraphCursor for SqliteCursor<'_> {
    fn node(&mut self, id: &StateNodeId) -> Result<Option<StateNode>> {
        let row = match self.parent_seqs.remove(id) {
            Some(seq) => ops::find_node_by_seq(self.conn()?, seq)?.filter(|r| r.node.id == *id),
            None => ops::find_node(self.conn()?, id)?,
        };
        let Some(row) = row else { return Ok(None) };
        if self.parent_seqs.len() > Self::MEMO_LIMIT {
            self.parent_seqs.clear();
        }
        for (parent, &seq) in row.node.parent_ids.iter().zip(&row.parent_seqs) {
            if seq != ops::ABSENT_SEQ {
                self.parent_seqs.insert(*parent, seq);
            }
        }
        Ok(Some(row.node))
    }

    fn children(&mut self, id: &StateNodeId) -> Result<Vec<StateNodeId>> {
        ops::children(self.conn()?, id)
    }
}

impl Drop for SqliteCursor<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.store.return_reader(conn);
        }
    }
}
