//! The SQLite backend: one file, WAL, one writer connection and a pool of readers.

mod cursor;
pub(crate) mod gc;
mod maintenance;
mod ops;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::{BackendError, Result, StateStoreError};
use crate::id::{IdPrefix, SnapshotId, StateDataRef, StateNodeId};
use crate::model::{
    Ref, RefLogEntry, SnapshotInfo, StateData, StateInfo, StateNode, StateSnapshot,
};
use crate::refs::validate_ref_name;
use crate::store::{Applied, GraphCursor, Op, Outcome, StateStore, Writes};

use cursor::SqliteCursor;
pub use maintenance::{
    BackupReport, StoreStats, VacuumReport, VerifyPhase, VerifyProgress, VerifyReport,
};
pub use ops::MAX_STATE_LEN;
pub use schema::SCHEMA_VERSION;
use schema::{FileState, sql_error};
use writer::Writer;

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
    create_if_missing: bool,
}

impl Default for SqliteStateStoreBuilder {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            cache_size_kib: 16 * 1024,
            busy_timeout: Duration::from_secs(30),
            max_idle_readers: 4,
            create_if_missing: true,
        }
    }
}

/// Writes a handle has committed; see [`SqliteStateStore::write_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteCounts {
    /// Write calls (and batches) committed.
    pub writes: u64,
    /// Transactions that committed them.
    pub transactions: u64,
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

    /// Whether [`open`](Self::open) creates a store where there is none (default `true`).
    /// With `false`, a missing or empty file is an error, as it is for read-only opens.
    #[must_use]
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Opens the store at `path` for reading and writing, creating it if it does not exist
    /// (unless [`create_if_missing`](Self::create_if_missing) is off).
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
/// Clones are cheap handles to the same open store (one write connection, one reader pool):
/// share one per process. Writes made concurrently through clones share transactions (group
/// commit, see [`write_counts`](Self::write_counts)). Opening the same file again, here or in
/// another process, works too, but each open has its own write connection, and they take
/// turns at SQLite's write lock.
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
#[derive(Clone)]
pub struct SqliteStateStore {
    shared: Arc<Shared>,
}

/// What every handle to one opened store shares.
struct Shared {
    path: PathBuf,
    /// `path` made absolute, for read connections opened later: a relative path would name
    /// another file once the process changes directory.
    absolute: PathBuf,
    config: SqliteStateStoreBuilder,
    /// `None` when opened read-only.
    writer: Option<Writer>,
    readers: Mutex<Vec<Connection>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Close the read connections first: the last connection to close checkpoints the WAL
        // into the main file and removes it, and only the writer can do that.
        self.readers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        if let Some(writer) = self.writer.take() {
            writer.close();
        }
    }
}

impl std::fmt::Debug for SqliteStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStateStore")
            .field("path", &self.shared.path)
            .field("read_only", &self.shared.writer.is_none())
            .field("durability", &self.shared.config.durability)
            .finish_non_exhaustive()
    }
}

/// Maps a SQLite error to the crate's error, keeping full-disk and corruption distinct. A
/// value of the wrong type in a column (only possible if the file was edited behind the
/// library's back) is corruption too.
pub(crate) fn map_sqlite_error(context: &'static str, e: rusqlite::Error) -> StateStoreError {
    use rusqlite::Error as E;
    if let E::InvalidColumnType(..)
    | E::FromSqlConversionFailure(..)
    | E::IntegralValueOutOfRange(..)
    | E::Utf8Error(..) = e
    {
        return StateStoreError::corrupt("store row", format!("{context}: {e}"));
    }
    // SQLITE_IOERR_SHMSIZE: growing the `-shm` index failed, which on a full disk (or a
    // file-size limit or quota) comes before anything says "disk full".
    if let E::SqliteFailure(f, _) = &e
        && f.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE
    {
        let message = format!("{e} (SQLite could not grow the store's -shm file)");
        return StateStoreError::StorageFull(BackendError::new(context, message));
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StateStoreError::StorageFull(BackendError::new(context, e)),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StateStoreError::corrupt("store file", format!("{context}: {e}"))
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StateStoreError::Backend(BackendError::new(context, e).busy())
        }
        Some(ErrorCode::CannotOpen) if let Some(why) = out_of_descriptors() => {
            StateStoreError::Backend(BackendError::new(context, format!("{e}: {why}")))
        }
        // A row over SQLite's limit (10^9 bytes): a label, content type or parent list that
        // large, since states are checked against `MAX_STATE_LEN` first. The statement
        // failed and wrote nothing.
        Some(ErrorCode::TooBig) => StateStoreError::InvalidInput {
            what: "write",
            detail: format!(
                "{context}: {e}: a label, content type or parent list is larger than SQLite \
                 stores in one row (10^9 bytes)"
            ),
        },
        _ => StateStoreError::Backend(BackendError::new(context, e)),
    }
}

/// The SQLite error code behind a backend error, if there is one.
fn sqlite_code(e: &StateStoreError) -> Option<ErrorCode> {
    use std::error::Error as _;
    let StateStoreError::Backend(b) = e else {
        return None;
    };
    b.source()
        .and_then(|s| s.downcast_ref::<rusqlite::Error>())
        .and_then(rusqlite::Error::sqlite_error_code)
}

/// Whether SQLite failed to open, size or map a `-shm` file (`SQLITE_IOERR_SHMOPEN`,
/// `_SHMSIZE`, `_SHMMAP`): on a full disk, growing a new one fails.
fn shm_io_failure(e: &StateStoreError) -> bool {
    use std::error::Error as _;
    const SHMOPEN: i32 = 18;
    const SHMSIZE: i32 = 19;
    const SHMMAP: i32 = 21;
    let StateStoreError::Backend(b) = e else {
        return false;
    };
    matches!(
        b.source().and_then(|s| s.downcast_ref::<rusqlite::Error>()),
        Some(rusqlite::Error::SqliteFailure(f, _))
            if f.code == ErrorCode::SystemIoFailure
                && matches!(f.extended_code >> 8, SHMOPEN | SHMSIZE | SHMMAP)
    )
}

/// Why SQLite could not open a file, when the reason is that this process has run out of
/// file descriptors (`EMFILE`) or the system has (`ENFILE`): SQLite reports both as "unable
/// to open database file", which reads like a permission problem. Checked by opening a
/// file now, so a limit hit a moment ago and freed since is not seen.
fn out_of_descriptors() -> Option<&'static str> {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    match std::fs::File::open("/dev/null").map_err(|e| e.raw_os_error()) {
        Err(Some(EMFILE)) => Some(
            "this process has run out of file descriptors (`ulimit -n`); each open store \
             handle and read connection keeps a few",
        ),
        Err(Some(ENFILE)) => Some("the system has run out of file descriptors"),
        _ => None,
    }
}

/// The file SQLite keeps beside the store as written (`-wal`, `-shm`), as its messages name
/// it (not resolved through symlinks, unlike [`schema::wal_path`]).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Explains a first read that failed because SQLite could not create the store's `-shm` file
/// (a directory or mount this user cannot write, or a full disk): a WAL-mode file cannot be
/// read without it.
fn unreadable(path: &Path, e: StateStoreError) -> StateStoreError {
    // A rollback journal beside the file: a write that did not finish (a creation killed
    // before the store switched to its log), which only a writable open can roll back.
    // Named after the file itself, as SQLite names it (through a symbolic link too).
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let journal = sidecar(&real, "-journal");
    if matches!(sqlite_code(&e), Some(ErrorCode::ReadOnly))
        && journal.metadata().is_ok_and(|m| m.len() > 0)
    {
        return StateStoreError::NotAStore {
            path: path.to_owned(),
            detail: format!(
                "a write to it did not finish (its creation was cut short?), and the rollback \
                 journal {} it left can only be rolled back by a writable open: open it \
                 writable once",
                journal.display()
            ),
        };
    }
    let shm = sidecar(path, "-shm");
    if shm_io_failure(&e) {
        let StateStoreError::Backend(cause) = &e else {
            return e;
        };
        return StateStoreError::Backend(BackendError::new(
            "reading the store",
            format!(
                "{cause}: SQLite could not set up the {} file it reads the store through (is \
                 the disk full?)",
                shm.display()
            ),
        ));
    }
    let cannot_create = matches!(
        sqlite_code(&e),
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen)
    );
    let StateStoreError::Backend(cause) = &e else {
        return e;
    };
    if !cannot_create || shm.exists() {
        return e;
    }
    StateStoreError::Backend(BackendError::new(
        "reading the store",
        format!(
            "{cause}: SQLite reads a store through its {} file, which does not exist and could \
             not be created here (is the directory writable by this user?); while a writer \
             has the store open, the file exists and reads work",
            shm.display()
        ),
    ))
}

/// Explains a write that SQLite refused as read-only, or a store file it could not open:
/// names the files of the store this user cannot write. The usual cause is a `-wal` and
/// `-shm` pair that another user's read-only open created (SQLite gives them the store
/// file's mode, but the reader's owner), which the store's owner then cannot write.
fn unwritable(path: &Path, e: StateStoreError) -> StateStoreError {
    use std::os::unix::fs::MetadataExt as _;
    if !matches!(
        sqlite_code(&e),
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen)
    ) {
        return e;
    }
    let StateStoreError::Backend(cause) = &e else {
        return e;
    };
    let (wal, shm) = (sidecar(path, "-wal"), sidecar(path, "-shm"));
    let denied: Vec<(&Path, std::fs::Metadata)> = [path, &wal, &shm]
        .into_iter()
        .filter_map(|file| {
            let meta = std::fs::metadata(file).ok()?;
            // Opening for writing (no create, no truncation) changes nothing.
            let open = std::fs::OpenOptions::new().write(true).open(file);
            matches!(open, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
                .then_some((file, meta))
        })
        .collect();
    let detail = if denied.is_empty() {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let creates = if path.exists() {
            format!("{} and {}", wal.display(), shm.display())
        } else {
            path.display().to_string()
        };
        format!(
            "{cause}: the directory {} may not be writable by this user (SQLite creates \
             {creates} there)",
            dir.display(),
        )
    } else {
        let files: Vec<String> = denied
            .iter()
            .map(|(file, meta)| {
                format!(
                    "{} (owner uid {}, mode {:o})",
                    file.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                )
            })
            .collect();
        let mut detail = format!("{cause}: this user cannot write {}", files.join(", "));
        if denied.iter().any(|(file, _)| *file != path) {
            detail.push_str(
                "; a read by another user leaves these; if no process has the store open and \
                 the -wal file is empty, deleting the -wal and -shm files is safe, otherwise \
                 their owner can make them writable",
            );
        }
        detail
    };
    StateStoreError::Backend(BackendError::new("writing", detail))
}

/// Runs `f` again, with backoff, while it fails with a busy error, up to `timeout`.
pub(crate) fn retry_busy<T>(timeout: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    let mut backoff = Backoff::new();
    loop {
        match f() {
            Err(e) if e.is_busy() && std::time::Instant::now() < deadline => backoff.pause(),
            other => return other,
        }
    }
}

/// The pause between attempts to take a lock another process holds: short and growing to a
/// small cap. SQLite offers no queue for its write lock, and a process that commits back to
/// back frees it only for microseconds between transactions, so a waiter must look often.
/// SQLite's own busy timeout sleeps up to 100 ms at a time, which let a busy process keep
/// the lock for seconds. The price of looking often: the lock changes hands more often, and
/// each process then rereads what the other wrote, so two processes committing flat out
/// commit less together than with SQLite's long sleeps. Writers that share one handle
/// group-commit instead and pay neither.
pub(crate) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_micros(50);
    const MAX: Duration = Duration::from_millis(2);

    pub(crate) fn new() -> Self {
        Self(Self::FIRST)
    }

    pub(crate) fn pause(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Self::MAX);
    }
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
        &self.shared.path
    }

    /// True when the store was opened with [`open_read_only`](Self::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self.shared.writer.is_none()
    }

    /// What group commit has done for this handle (and its clones) since it was opened:
    /// write calls committed, and the transactions (each one fsync under
    /// [`Durability::Immediate`]) they took. Concurrent writers sharing the handle make the
    /// second smaller than the first. Zero for a read-only handle.
    pub fn write_counts(&self) -> WriteCounts {
        let (writes, transactions) = self
            .shared
            .writer
            .as_ref()
            .map_or((0, 0), Writer::committed);
        WriteCounts {
            writes,
            transactions,
        }
    }

    fn open_with(config: SqliteStateStoreBuilder, path: &Path, read_only: bool) -> Result<Self> {
        // Names SQLite reads as something other than a file: a temporary or an in-memory
        // database (gone at close, and without the WAL a store needs), or a URI.
        let text = path.to_string_lossy();
        let special = if text.is_empty() {
            Some("an empty path names a temporary database, not a file")
        } else if text == ":memory:" {
            Some("SQLite reads \":memory:\" as an in-memory database; use InMemoryStateStore")
        } else if text.starts_with("file:") {
            Some("SQLite reads a path starting with \"file:\" as a URI; write it as ./file:...")
        } else {
            None
        };
        if let Some(why) = special {
            return Err(StateStoreError::invalid(
                "path",
                format!("{text:?} is not a store file: {why}"),
            ));
        }
        let state = schema::inspect_file(path)?;
        if !read_only {
            schema::check_single_name(path)?;
        }
        if let FileState::Store { header_version } = state {
            // Refuse a newer or broken schema before SQLite opens the file (and creates its
            // WAL sidecars). The authoritative check, which also sees the WAL, follows below.
            schema::check_version(path, schema::APPLICATION_ID, header_version)?;
            // And a log SQLite would skip whole, with commits in it.
            schema::check_log_header(path)?;
        }
        if (read_only || !config.create_if_missing) && state == FileState::Fresh {
            return Err(StateStoreError::NotAStore {
                path: path.to_owned(),
                detail: "no store exists there (it is missing or empty)".into(),
            });
        }
        if state == FileState::Fresh
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(StateStoreError::Backend(BackendError::new(
                "creating the store",
                format!(
                    "cannot create {}: the directory {} does not exist",
                    path.display(),
                    dir.display()
                ),
            )));
        }
        let writer = if read_only {
            None
        } else {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let mut conn = Connection::open_with_flags(path, flags)
                .map_err(sql_error("opening the store file"))
                .map_err(|e| unwritable(path, e))?;
            // Until the file is known to be a store, closing this connection must not
            // checkpoint a log that holds anything: that writes the log into the file and
            // deletes it, and a refused open leaves the files as they were (an empty log it
            // may delete, as SQLite does). Turned back on once the open succeeds.
            if std::fs::metadata(schema::wal_path(path)).is_ok_and(|m| m.len() > 0) {
                conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
                    .map_err(sql_error("configuring the store"))?;
            }
            // No SQLite busy handler on the write connection (it sleeps up to 100 ms between
            // looks): `retry_busy` here, and the writer's group loop later, wait with
            // `Backoff` up to the busy timeout.
            conn.busy_timeout(Duration::ZERO)
                .map_err(sql_error("configuring the store"))?;
            // Several handles or processes may be creating or upgrading the file at once; the
            // journal-mode switch in particular fails with BUSY without waiting, so the whole
            // setup is retried.
            retry_busy(config.busy_timeout, || {
                // What SQLite reads decides, not the look before opening: a creation killed
                // while stamping leaves a stamped page 1 and a rollback journal, and opening
                // rolls the file back to empty. Stamped now, before the switch to the log,
                // the id lands in the file, where other openers look for it.
                if state == FileState::Fresh || schema::is_empty(&conn)? {
                    schema::stamp_new(&conn)?;
                }
                let (mut app, mut version) = schema::read_ids(&conn)?;
                if version == 0 && app == schema::APPLICATION_ID {
                    // No schema yet: finishing the creation writes one, so make sure SQLite
                    // did not just skip a log it could not read.
                    (app, version) = schema::check_log_was_read(&conn, path)?;
                }
                schema::check_version(path, app, version)?;
                schema::check_tables(&conn, path, version)?;
                // Only now, with the file known to be ours, may anything be written to it.
                Self::configure(&conn, &config, false)?;
                if version == schema::SCHEMA_VERSION && app == schema::APPLICATION_ID {
                    // Up to date: no need to take the write lock (which another process may
                    // hold for a while) just to find that out again.
                    return Ok(());
                }
                schema::migrate(&mut conn, path)
            })
            .map_err(|e| unwritable(path, e))?;
            Some(Writer::new(
                conn,
                config.busy_timeout,
                schema::wal_path(path),
                path,
            ))
        };
        let store = Self {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                absolute: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
                config,
                writer,
                readers: Mutex::new(Vec::new()),
            }),
        };
        // Open one reader up front: it checks the schema of read-only opens and proves that
        // reading works before the caller relies on it.
        let reader = store.new_reader().map_err(|e| unreadable(path, e))?;
        let (app, version) = schema::read_ids(&reader).map_err(|e| unreadable(path, e))?;
        schema::check_version(path, app, version)?;
        if version < schema::OLDEST_READABLE {
            if version == 0 && app == schema::APPLICATION_ID {
                schema::check_log_was_read(&reader, path)?;
            }
            // Stamped as ours, or empty (a creation rolled back): unfinished either way.
            let detail = if version == 0 && (app == schema::APPLICATION_ID || app == 0) {
                // Stamped as ours, but the schema's transaction never committed.
                "its creation did not finish (no schema was written); open it writable once to \
                 finish it"
                    .to_owned()
            } else {
                format!(
                    "its schema (version {version}) must be upgraded to {SCHEMA_VERSION}; open \
                     it writable once"
                )
            };
            return Err(StateStoreError::NotAStore {
                path: path.to_owned(),
                detail,
            });
        }
        // A writable open checked the tables before migrating (which creates any missing
        // from later versions); a read-only open checks them here.
        if read_only {
            schema::check_tables(&reader, path, version)?;
        }
        store.return_reader(reader);
        if let Some(writer) = &store.shared.writer {
            writer.exclusive(|conn| {
                conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
                    .map_err(sql_error("configuring the store"))
            })?;
        }
        Ok(store)
    }

    fn configure(conn: &Connection, config: &SqliteStateStoreBuilder, reader: bool) -> Result<()> {
        let ctx = sql_error("configuring the store");
        conn.set_prepared_statement_cache_capacity(64);
        // Plan each cached statement once. Without this, SQLite re-prepares (re-parses)
        // statements whose plan could depend on a bound value every time they are re-bound,
        // which made some hot-path queries cost a full parse per call.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(&ctx)?;
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
        // When the WAL starts over after growing past its usual ~4 MiB (see
        // `Writer::keep_wal_bounded`), the file is cut back to this.
        conn.pragma_update(None, "journal_size_limit", 8_i64 << 20)
            .map_err(&ctx)?;
        Ok(())
    }

    fn new_reader(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.shared.absolute, flags)
            .map_err(sql_error("opening a read connection"))?;
        conn.busy_timeout(self.shared.config.busy_timeout)
            .map_err(sql_error("configuring the store"))?;
        Self::configure(&conn, &self.shared.config, true)?;
        Ok(conn)
    }

    fn readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The pool is a plain Vec; a panic while it was locked cannot leave it inconsistent.
        self.shared
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn return_reader(&self, conn: Connection) {
        let mut pool = self.readers();
        if pool.len() < self.shared.config.max_idle_readers {
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

    /// Applies `ops` all-or-nothing through the writer thread (grouped with concurrent
    /// writers into one transaction) and returns once they are durable.
    fn apply_ops(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        let Some(writer) = &self.shared.writer else {
            let operation = ops.first().map_or("write", Op::describe);
            return Err(StateStoreError::ReadOnly { operation });
        };
        writer
            .apply(ops)
            .map_err(|e| unwritable(&self.shared.path, e))
    }
}

impl StateStore for SqliteStateStore {
    fn get_state(&self, data_ref: &StateDataRef) -> Result<StateData> {
        self.read(|conn| ops::get_state(conn, data_ref))
    }

    fn get_node(&self, id: &StateNodeId) -> Result<StateNode> {
        self.read(|conn| ops::get_node(conn, id))
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

    fn snapshot_info(&self, id: &SnapshotId) -> Result<Option<SnapshotInfo>> {
        self.read(|conn| ops::snapshot_info(conn, id))
    }

    fn snapshots_of_each(&self, node_ids: &[StateNodeId]) -> Result<Vec<Vec<SnapshotInfo>>> {
        self.read(|conn| ops::snapshots_of_each(conn, node_ids))
    }

    fn get_ref(&self, name: &str) -> Result<Option<StateNodeId>> {
        validate_ref_name(name)?;
        self.read(|conn| ops::get_ref(conn, name))
    }

    fn list_refs(&self, prefix: &str) -> Result<Vec<Ref>> {
        self.read(|conn| ops::list_refs(conn, prefix))
    }

    fn ref_log(&self, name: &str) -> Result<Vec<RefLogEntry>> {
        validate_ref_name(name)?;
        self.read(|conn| ops::ref_log(conn, name, None))
    }

    fn ref_log_tail(&self, name: &str, limit: usize) -> Result<Vec<RefLogEntry>> {
        validate_ref_name(name)?;
        self.read(|conn| ops::ref_log(conn, name, Some(limit)))
    }

    fn nodes_with_prefix(&self, prefix: &IdPrefix, limit: usize) -> Result<Vec<StateNodeId>> {
        self.read(|conn| ops::nodes_with_prefix(conn, prefix, limit))
    }

    fn state_info(&self, data_ref: &StateDataRef) -> Result<StateInfo> {
        self.read(|conn| ops::state_info(conn, data_ref))
    }

    fn state_prefix(&self, data_ref: &StateDataRef, max_len: usize) -> Result<Vec<u8>> {
        self.read(|conn| ops::state_prefix(conn, data_ref, max_len))
    }

    fn apply(&self, writes: Writes) -> Result<Applied> {
        self.apply_ops(writes.ops)
            .map(|outcomes| Applied { outcomes })
    }

    /// A dry run works out what to remove in one read transaction on a read connection: it
    /// works on a read-only handle and takes no write lock, so writers carry on meanwhile. A
    /// collection works it out the same way (reading every node's parents takes about a
    /// second per million nodes, which writers need not wait for), returns at once when it
    /// finds nothing, and otherwise removes it in steps (see [`GcOptions::rows_per_step`]),
    /// each a write transaction that checks the rows it removes against what writers did
    /// since.
    ///
    /// [`GcOptions::rows_per_step`]: crate::GcOptions::rows_per_step
    fn gc(&self, options: &crate::GcOptions) -> Result<crate::GcReport> {
        self.gc_with_progress(options, |_| {})
    }

    fn cursor(&self) -> Result<Box<dyn GraphCursor + '_>> {
        Ok(Box::new(SqliteCursor::new(self, self.take_reader()?)))
    }
}

impl SqliteStateStore {
    /// [`StateStore::gc`], calling `progress` after each step of a collection in steps
    /// (see [`GcOptions::rows_per_step`](crate::GcOptions::rows_per_step)), for a progress
    /// bar: a collection of a million nodes takes tens of seconds.
    ///
    /// # Errors
    /// As [`StateStore::gc`].
    pub fn gc_with_progress(
        &self,
        options: &crate::GcOptions,
        mut progress: impl FnMut(crate::GcProgress),
    ) -> Result<crate::GcReport> {
        if options.is_dry_run() {
            return self.plan_garbage(options).map(|plan| plan.counted);
        }
        let Some(writer) = &self.shared.writer else {
            // Read-only: fails as any write does.
            return self.collect_at_once(options);
        };
        if options.step_rows() == usize::MAX {
            return self.collect_at_once(options);
        }
        let plan = self.plan_garbage(options)?;
        // Damage that only the collection's deletes meet: let it report it.
        if plan.damaged {
            return self.collect_at_once(options);
        }
        if plan.counted.removes_nothing() {
            if plan.leftover_indexes {
                // A collection in steps that stopped left its indexes, which every write
                // keeps up to date: drop them (a write: it checks the file as below).
                self.apply(Writes::one(Op::CollectStep(Arc::new(
                    gc::Step::DropIndexes,
                ))))?;
            }
            // The plan read through read connections, which may have read another file (or
            // the old one, moved away): fail as the collection would have.
            writer.check_file()?;
            return Ok(crate::GcReport {
                dry_run: false,
                ..plan.counted
            });
        }
        self.collect_in_steps(plan, options.step_rows(), |step, plan| {
            progress(step.public(plan))
        })
    }

    /// What a collection with `options` removes, worked out in one read transaction.
    fn plan_garbage(&self, options: &crate::GcOptions) -> Result<gc::Plan> {
        self.read(|conn| {
            // The read starts the snapshot; the time is taken after it, so every node the
            // plan sees was committed before the collection's start (see `Op::Collect`).
            let plan = conn
                .execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
                .map_err(sql_error("working out what to collect"))
                .and_then(|()| {
                    let cutoffs = options.cutoffs(time::OffsetDateTime::now_utc());
                    gc::plan(conn, cutoffs)
                });
            // A read transaction has nothing to lose: end it whatever happened, and never
            // hand the connection back to the pool inside one (as `snapshots_of_each`).
            if !conn.is_autocommit() && conn.execute_batch("COMMIT").is_err() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            plan
        })
    }

    /// Carries out `plan` in steps of `rows` rows; `between` runs after each step (for
    /// progress, and for tests: what writers may do meanwhile).
    fn collect_in_steps(
        &self,
        plan: gc::Plan,
        rows: usize,
        mut between: impl FnMut(&gc::Progress, &gc::Plan),
    ) -> Result<crate::GcReport> {
        let plan = Arc::new(plan);
        let mut progress = gc::Progress::default();
        loop {
            let step = Arc::new(gc::Step::new(Arc::clone(&plan), progress.clone(), rows));
            if let Err(e) = self.apply(Writes::one(Op::CollectStep(Arc::clone(&step)))) {
                if progress.started() {
                    // The indexes the steps made are still there, and writers keep them up
                    // to date until something drops them (the next gc does, if this fails).
                    let _ = self.apply(Writes::one(Op::CollectStep(Arc::new(
                        gc::Step::DropIndexes,
                    ))));
                }
                return Err(e);
            }
            progress = step.take().ok_or_else(|| {
                StateStoreError::Backend(BackendError::new(
                    "collecting garbage",
                    "internal error: a committed step left no progress",
                ))
            })?;
            between(&progress, &plan);
            if progress.is_finished() {
                return Ok(progress.report(&plan));
            }
        }
    }

    /// A collection in one write transaction that reads the graph itself, under the lock.
    fn collect_at_once(&self, options: &crate::GcOptions) -> Result<crate::GcReport> {
        self.apply(Writes::one(Op::Collect(Box::new(options.clone()))))?
            .single()?
            .collected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node whose row SQLite cannot store (here under a lowered length limit, standing in
    /// for a label of 10^9 bytes) is the caller's error, stores nothing, and leaves the
    /// store writable; an imported package with such a label fails the same way.
    #[test]
    fn a_row_too_big_for_sqlite_is_invalid_input() {
        use crate::store::StateStore as _;
        use crate::{StateData, StateMetadata};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::open(dir.path().join("big.db")).unwrap();
        let writer = store.shared.writer.as_ref().unwrap();
        writer
            .exclusive(|conn| {
                conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, 10_000)
                    .unwrap();
                Ok(())
            })
            .unwrap();
        let data = store.put_state(StateData::new(b"small".to_vec())).unwrap();
        let label = "x".repeat(20_000);
        let err = store
            .commit_node(vec![], data, StateMetadata::now(Some(label.clone())))
            .unwrap_err();
        assert!(
            matches!(err, StateStoreError::InvalidInput { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("one row"), "{err}");
        assert_eq!(store.stats().unwrap().nodes, 0);
        let node = store
            .commit_node(vec![], data, StateMetadata::now(Some("short".into())))
            .unwrap();
        assert_eq!(store.get_node(&node).unwrap().id, node);

        let bytes = b"imported".to_vec();
        let metadata = StateMetadata::now(Some(label));
        let node_id = crate::codec::node_id(&[], &crate::ContentHash::of(&bytes), None, &metadata);
        let package = crate::SnapshotPackage {
            node_id,
            snapshot_id: crate::codec::snapshot_id(&node_id),
            parent_ids: vec![],
            content_type: None,
            metadata,
            generation: 1,
            bytes,
        };
        let err = store.import_snapshot(&package).unwrap_err();
        assert!(
            matches!(err, StateStoreError::InvalidInput { .. }),
            "{err:?}"
        );
        assert_eq!(store.stats().unwrap().nodes, 1);
    }

    fn sqlite_failure(code: ErrorCode, message: &str) -> StateStoreError {
        sqlite_failure_extended(code, 0, message)
    }

    fn sqlite_failure_extended(code: ErrorCode, extended: i32, message: &str) -> StateStoreError {
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error {
                code,
                extended_code: extended,
            },
            Some(message.to_owned()),
        );
        StateStoreError::Backend(BackendError::new("configuring the store", e))
    }

    #[test]
    fn a_shm_file_that_cannot_grow_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        // SQLite has created the file and failed to size it.
        std::fs::write(dir.path().join("s.db-shm"), b"").unwrap();
        let io = |extended| {
            sqlite_failure_extended(ErrorCode::SystemIoFailure, extended, "disk I/O error")
        };
        let text = unreadable(&path, io(rusqlite::ffi::SQLITE_IOERR_SHMSIZE)).to_string();
        assert!(
            text.contains("s.db-shm file") && text.contains("disk full"),
            "{text}"
        );
        assert!(text.contains("disk I/O error"), "{text}");
        // Another I/O error (a read) is left as it was.
        let read = io(rusqlite::ffi::SQLITE_IOERR_READ);
        assert_eq!(
            unreadable(&path, read).to_string(),
            io(rusqlite::ffi::SQLITE_IOERR_READ).to_string()
        );
    }

    #[test]
    fn an_uncreatable_shm_file_is_explained_and_other_errors_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let readonly =
            || sqlite_failure(ErrorCode::ReadOnly, "attempt to write a readonly database");
        let text = unreadable(&path, readonly()).to_string();
        assert!(
            text.contains("s.db-shm file, which does not exist"),
            "{text}"
        );
        assert!(
            text.contains("attempt to write a readonly database"),
            "{text}"
        );
        // Other failures, and a -shm file that exists, are left as they were.
        let busy = sqlite_failure(ErrorCode::DatabaseBusy, "database is locked");
        assert_eq!(
            unreadable(&path, busy).to_string(),
            sqlite_failure(ErrorCode::DatabaseBusy, "database is locked").to_string()
        );
        std::fs::write(dir.path().join("s.db-shm"), b"").unwrap();
        assert_eq!(
            unreadable(&path, readonly()).to_string(),
            readonly().to_string()
        );
    }
}
