//! The SQLite backend: one file, WAL, one writer connection and a pool of readers.

mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::codec;
use crate::error::{BackendError, Result, StateStoreError};
use crate::id::{ContentHash, SnapshotId, StateDataRef, StateNodeId};
use crate::model::{StateData, StateMetadata, StateNode, StateSnapshot};
use crate::store::{self, StateStore};

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
    let StateStoreError::Backend(b) = e else { return false };
    b.source()
        .and_then(|s| s.downcast_ref::<rusqlite::Error>())
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|c| matches!(c, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

fn blob32(what: &str, bytes: &[u8]) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        StateStoreError::corrupt(what.to_owned(), format!("expected 32 bytes, found {}", bytes.len()))
    })
}

fn data_ref_from(bytes: &[u8]) -> Result<StateDataRef> {
    <[u8; 16]>::try_from(bytes).map(StateDataRef::from_bytes).map_err(|_| {
        StateStoreError::corrupt("state data ref", format!("expected 16 bytes, found {}", bytes.len()))
    })
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
            conn.busy_timeout(config.busy_timeout).map_err(sql_error("configuring the store"))?;
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
        let store = Self { path: path.to_owned(), config, writer, readers: Mutex::new(Vec::new()) };
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
        conn.pragma_update(None, "cache_size", -i64::from(config.cache_size_kib)).map_err(&ctx)?;
        if reader {
            return Ok(());
        }
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(&ctx)?;
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
        conn.pragma_update(None, "synchronous", sync).map_err(&ctx)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(&ctx)?;
        Ok(())
    }

    fn new_reader(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)
            .map_err(sql_error("opening a read connection"))?;
        conn.busy_timeout(self.config.busy_timeout).map_err(sql_error("configuring the store"))?;
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

    /// Runs `f` on a pooled read connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers().pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.new_reader()?,
        };
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
        let writer = self.writer.as_ref().ok_or(StateStoreError::ReadOnly { operation })?;
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

/// Looks up the content hash and content type of stored state.
fn state_info(tx: &Connection, data_ref: &StateDataRef) -> Result<(ContentHash, Option<String>)> {
    let row = tx
        .prepare_cached(
            "SELECT b.hash, d.content_type FROM state_data d JOIN blobs b ON b.id = d.blob_id
             WHERE d.data_ref = ?1",
        )
        .and_then(|mut s| {
            s.query_row([data_ref.as_bytes()], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(sql_error("reading state data"))?;
    let (hash, content_type) = row.ok_or(StateStoreError::MissingState { data_ref: *data_ref })?;
    Ok((ContentHash::from_bytes(blob32("state data hash", &hash)?), content_type))
}

impl StateStore for SqliteStateStore {
    fn put_state(&self, data: StateData) -> Result<StateDataRef> {
        // Hash outside the write lock: it is the only part proportional to the state's size.
        let hash = data.hash();
        let data_ref = StateDataRef::new_v7();
        self.write("put state", |tx| {
            let ctx = sql_error("storing state data");
            let existing: Option<i64> = tx
                .prepare_cached("SELECT id FROM blobs WHERE hash = ?1")
                .and_then(|mut s| s.query_row([hash.as_bytes()], |r| r.get(0)).optional())
                .map_err(&ctx)?;
            let blob_id = match existing {
                Some(id) => id,
                None => {
                    tx.prepare_cached("INSERT INTO blobs (hash, bytes) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![hash.as_bytes(), data.bytes]))
                        .map_err(&ctx)?;
                    tx.last_insert_rowid()
                }
            };
            tx.prepare_cached(
                "INSERT INTO state_data (data_ref, blob_id, content_type) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![data_ref.as_bytes(), blob_id, data.content_type]))
            .map_err(&ctx)?;
            Ok(())
        })?;
        Ok(data_ref)
    }

    fn get_state(&self, data_ref: &StateDataRef) -> Result<StateData> {
        let (hash, bytes, content_type) = self.read(|conn| {
            let row = conn
                .prepare_cached(
                    "SELECT b.hash, b.bytes, d.content_type
                     FROM state_data d JOIN blobs b ON b.id = d.blob_id WHERE d.data_ref = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([data_ref.as_bytes()], |r| {
                        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get(2)?))
                    })
                    .optional()
                })
                .map_err(sql_error("reading state data"))?;
            row.ok_or(StateStoreError::MissingState { data_ref: *data_ref })
        })?;
        let hash = ContentHash::from_bytes(blob32("state data hash", &hash)?);
        store::verify_state(data_ref, &hash, &bytes)?;
        Ok(StateData { bytes, content_type })
    }

    fn commit_node(
        &self,
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    ) -> Result<StateNodeId> {
        codec::check_parents(&parent_ids)?;
        let (created_s, created_ns) = codec::split_time(metadata.created_at);
        self.write("commit a node", |tx| {
            let ctx = sql_error("committing a node");
            let (data_hash, content_type) = state_info(tx, &data_ref)?;
            let mut parents = Vec::with_capacity(parent_ids.len());
            {
                let mut stmt = tx
                    .prepare_cached("SELECT seq, generation FROM state_nodes WHERE id = ?1")
                    .map_err(&ctx)?;
                for p in &parent_ids {
                    let row: Option<(i64, i64)> = stmt
                        .query_row([p.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                        .map_err(&ctx)?;
                    parents.push(row.ok_or(StateStoreError::MissingNode { id: *p })?);
                }
            }
            let node = store::build_node(
                parent_ids.clone(),
                data_ref,
                data_hash,
                content_type,
                parents.iter().map(|&(_, g)| u64::try_from(g).unwrap_or(0)),
                metadata.clone(),
            );
            let exists = tx
                .prepare_cached("SELECT 1 FROM state_nodes WHERE id = ?1")
                .and_then(|mut s| s.exists([node.id.as_bytes()]))
                .map_err(&ctx)?;
            if exists {
                // Idempotent: the first write of an id stays as it was.
                return Ok(node.id);
            }
            let generation = i64::try_from(node.generation).map_err(|_| {
                StateStoreError::invalid("parents", "generation overflows a 64-bit integer")
            })?;
            tx.prepare_cached(
                "INSERT INTO state_nodes (id, data_ref, data_hash, content_type, created_s,
                     created_ns, label, generation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    node.id.as_bytes(),
                    data_ref.as_bytes(),
                    data_hash.as_bytes(),
                    node.content_type,
                    created_s,
                    created_ns,
                    node.metadata.label,
                    generation,
                ])
            })
            .map_err(&ctx)?;
            let child = tx.last_insert_rowid();
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO node_parents (child, position, parent) VALUES (?1, ?2, ?3)",
                )
                .map_err(&ctx)?;
            for (position, (parent, _)) in parents.iter().enumerate() {
                stmt.execute(params![child, position as i64, parent]).map_err(&ctx)?;
            }
            Ok(node.id)
        })
    }

    fn get_node(&self, id: &StateNodeId) -> Result<StateNode> {
        let node = self.read(|conn| {
            let ctx = sql_error("reading a node");
            type Row = (i64, Vec<u8>, Vec<u8>, Option<String>, i64, i64, Option<String>, i64);
            let row: Option<Row> = conn
                .prepare_cached(
                    "SELECT seq, data_ref, data_hash, content_type, created_s, created_ns, label,
                         generation
                     FROM state_nodes WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([id.as_bytes()], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                        ))
                    })
                    .optional()
                })
                .map_err(&ctx)?;
            let (seq, data_ref, data_hash, content_type, created_s, created_ns, label, generation) =
                row.ok_or(StateStoreError::MissingNode { id: *id })?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT n.id FROM node_parents p JOIN state_nodes n ON n.seq = p.parent
                     WHERE p.child = ?1 ORDER BY p.position",
                )
                .map_err(&ctx)?;
            let parent_ids = stmt
                .query_map([seq], |r| r.get::<_, Vec<u8>>(0))
                .map_err(&ctx)?
                .map(|r| {
                    let bytes = r.map_err(&ctx)?;
                    Ok(StateNodeId::from_bytes(blob32("parent id", &bytes)?))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(StateNode {
                id: *id,
                parent_ids,
                data_ref: data_ref_from(&data_ref)?,
                data_hash: ContentHash::from_bytes(blob32("node data hash", &data_hash)?),
                content_type,
                metadata: StateMetadata {
                    created_at: codec::join_time(created_s, created_ns)?,
                    label,
                },
                generation: u64::try_from(generation).map_err(|_| {
                    StateStoreError::corrupt(format!("node {id}"), "negative generation")
                })?,
            })
        })?;
        store::verify_node(&node)?;
        Ok(node)
    }

    fn snapshot(&self, node_id: &StateNodeId) -> Result<SnapshotId> {
        let id = codec::snapshot_id(node_id);
        let (created_s, created_ns) = codec::split_time(OffsetDateTime::now_utc());
        self.write("take a snapshot", |tx| {
            let ctx = sql_error("taking a snapshot");
            let exists = tx
                .prepare_cached("SELECT 1 FROM state_nodes WHERE id = ?1")
                .and_then(|mut s| s.exists([node_id.as_bytes()]))
                .map_err(&ctx)?;
            if !exists {
                return Err(StateStoreError::MissingNode { id: *node_id });
            }
            tx.prepare_cached(
                "INSERT INTO snapshots (id, node_id, created_s, created_ns) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![id.as_bytes(), node_id.as_bytes(), created_s, created_ns])
            })
            .map_err(&ctx)?;
            Ok(id)
        })
    }

    fn load_snapshot(&self, snapshot_id: &SnapshotId) -> Result<StateSnapshot> {
        type Row = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Option<String>);
        let row: Row = self.read(|conn| {
            conn.prepare_cached(
                "SELECT s.node_id, n.data_ref, n.data_hash, b.hash, b.bytes, d.content_type
                 FROM snapshots s
                 JOIN state_nodes n ON n.id = s.node_id
                 JOIN state_data d ON d.data_ref = n.data_ref
                 JOIN blobs b ON b.id = d.blob_id
                 WHERE s.id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([snapshot_id.as_bytes()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })
                .optional()
            })
            .map_err(sql_error("loading a snapshot"))?
            .ok_or(StateStoreError::MissingSnapshot { id: *snapshot_id })
        })?;
        let (node_id, data_ref, node_hash, blob_hash, bytes, content_type) = row;
        let node_id = StateNodeId::from_bytes(blob32("snapshot node id", &node_id)?);
        if codec::snapshot_id(&node_id) != *snapshot_id {
            return Err(StateStoreError::corrupt(
                format!("snapshot {snapshot_id}"),
                format!("it points at {node_id}, whose snapshot id differs"),
            ));
        }
        let data_ref = data_ref_from(&data_ref)?;
        let node_hash = ContentHash::from_bytes(blob32("node data hash", &node_hash)?);
        if blob_hash != node_hash.as_bytes() {
            return Err(StateStoreError::corrupt(
                format!("node {node_id}"),
                format!("its state data {data_ref} is not the state the node hashed"),
            ));
        }
        store::verify_state(&data_ref, &node_hash, &bytes)?;
        Ok(StateSnapshot { node_id, state: StateData { bytes, content_type } })
    }
}
