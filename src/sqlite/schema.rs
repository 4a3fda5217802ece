//! Recognising a stategraph file before SQLite touches it, and migrating its schema.
//!
//! A file is a stategraph store when it is a SQLite database whose header carries our
//! `application_id`. That id is written while the database is still in rollback-journal mode
//! (before WAL is switched on), so it is always in the main file's header, never only in the
//! WAL. Checking the raw header first means random bytes, a truncated file or somebody else's
//! SQLite database are refused without SQLite opening them, so they stay exactly as they were.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{BackendError, Result, StateStoreError};

/// `PRAGMA application_id` of every stategraph store: ASCII `SGph`.
pub(crate) const APPLICATION_ID: i32 = 0x5347_7068;

/// The schema migrations, in order. Migration `i` (0-based) brings the schema to version `i+1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_history.sql"),
    include_str!("../../migrations/sqlite/0003_lean_indexes.sql"),
];

/// The newest schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The oldest schema version this build reads as it is, without migrating: a read-only open
/// cannot migrate. Version 3 only dropped indexes that no query reads, so a version-2 file
/// reads the same; version 1 lacks the refs tables.
pub(crate) const OLDEST_READABLE: i64 = 2;

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const HEADER_LEN: usize = 100;

/// What the raw file says about itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileState {
    /// No file, or an empty one: a new store may be created here.
    Fresh,
    /// A SQLite database carrying the stategraph application id, with the schema version its
    /// header records (the WAL may hold a newer one).
    Store {
        /// `user_version` from the main file's header.
        header_version: i64,
    },
}

fn not_a_store(path: &Path, detail: impl Into<String>) -> StateStoreError {
    StateStoreError::NotAStore {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

fn io_error(context: &'static str, path: &Path, e: std::io::Error) -> StateStoreError {
    StateStoreError::Backend(BackendError::new(
        context,
        format!("{}: {e}", path.display()),
    ))
}

/// Reads the file's SQLite header and decides whether it is ours, without writing anything.
/// A missing or empty store file is a fresh store, unless a write-ahead log with commits lies
/// beside it: SQLite would take that log for a stale one and discard it (a store file cut to
/// nothing, or moved away from its log after a crash). `how` is "missing" or "empty".
fn fresh_unless_logged(path: &Path, how: &str, retries: u32) -> Result<FileState> {
    let wal = wal_path(path);
    if let Some(wal_len) = wal.metadata().ok().map(|m| m.len()).filter(|&n| n > 0) {
        // Another process may have created the store since the file was looked at: a log
        // appears only once the file is stamped, so a file that has content now is that.
        if retries > 0 && std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0) {
            return inspect(path, retries - 1);
        }
        return Err(StateStoreError::corrupt(
            format!("store file {}", path.display()),
            format!(
                "it is {how}, but its write-ahead log {} holds {wal_len} bytes (which may be \
                 commits not yet copied into the file); opening it would discard them (put the \
                 store file back beside its log, or move the log away to start a new store \
                 here)",
                wal.display()
            ),
        ));
    }
    Ok(FileState::Fresh)
}

/// Refuses to write to a store file that has more than one name (hard links): SQLite keeps a
/// write-ahead log and its index per *name* (`NAME-wal`, `NAME-shm`), so writers that opened
/// two names of one file keep two logs that never see each other, and their checkpoints
/// overwrite each other's pages. Nothing about a file tells which of its names is in use
/// without locks this crate does not take, so a store must have one name to be written.
/// Symbolic links are fine: SQLite names the log after the resolved path, as [`wal_path`]
/// does.
pub(crate) fn check_single_name(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.nlink() > 1
        {
            return Err(StateStoreError::invalid(
                "path",
                format!(
                    "{} has {} names (hard links); SQLite keeps one write-ahead log per name, so \
                     writes through two of them would lose commits: remove the other links (or \
                     copy the file) before opening it writable (read-only opens are allowed, \
                     but see only what is in the file and this name's own log)",
                    path.display(),
                    meta.nlink()
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

pub(crate) fn inspect_file(path: &Path) -> Result<FileState> {
    inspect(path, 2)
}

/// [`inspect_file`], looking again at most `retries` times when another process seems to
/// be creating the store at that moment.
fn inspect(path: &Path, retries: u32) -> Result<FileState> {
    // Look before opening: opening a FIFO would wait for a writer forever.
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fresh_unless_logged(path, "missing", retries);
        }
        Err(e) => return Err(io_error("cannot read the store file", path, e)),
        Ok(meta) if meta.is_dir() => return Err(not_a_store(path, "it is a directory")),
        Ok(meta) if !meta.is_file() => {
            return Err(not_a_store(
                path,
                "it is not a regular file (a FIFO, socket or device)",
            ));
        }
        Ok(_) => {}
    }
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fresh_unless_logged(path, "missing", retries);
        }
        Err(e) => return Err(io_error("cannot open the store file", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_error("cannot read the store file", path, e))?;
    let len = meta.len();
    if len == 0 {
        return fresh_unless_logged(path, "empty", retries);
    }
    let mut header = [0u8; HEADER_LEN];
    let mut read = 0;
    while read < HEADER_LEN {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("cannot read the store file", path, e)),
        }
    }
    // A header that came up short from a file that has changed since its size was read, or
    // that holds a whole header now: another opener rolling back a creation cut short (and
    // perhaps stamping it again). Look again.
    let changed =
        || std::fs::metadata(path).is_ok_and(|m| m.len() != len || m.len() >= HEADER_LEN as u64);
    if read < HEADER_LEN && retries > 0 && changed() {
        return inspect(path, retries - 1);
    }
    if read < SQLITE_MAGIC.len() || &header[..SQLITE_MAGIC.len()] != SQLITE_MAGIC {
        return Err(not_a_store(
            path,
            "it is not a SQLite database (wrong file header)",
        ));
    }
    if read < HEADER_LEN {
        return Err(not_a_store(
            path,
            format!("it is truncated: {len} bytes, shorter than a SQLite header"),
        ));
    }
    let be32 = |at: usize| be32(&header, at);
    let app_id = be32(68) as i32;
    // Stamped in the log only (a creation that found the file rolled back to empty stamped
    // it after the switch to the log, before this build stamped first): ours, with the
    // schema version the log holds, until a checkpoint copies the stamp into the file.
    // Only a file that is what that left (one page, in WAL mode, no schema of its own):
    // another program's database beside a stategraph log is not ours.
    let left_by_that =
        header[18] == 2 && header[19] == 2 && be32(40) == 0 && len <= page_size_of(&header);
    if app_id == 0
        && left_by_that
        && let Some(logged) = logged_page_one(&wal_path(path))
        && be_word(&logged, 68) as i32 == APPLICATION_ID
    {
        return Ok(FileState::Store {
            header_version: i64::from(be_word(&logged, 60) as i32),
        });
    }
    if app_id != APPLICATION_ID {
        let detail = if app_id == 0 {
            "it is a SQLite database of another application (no stategraph application id)"
                .to_owned()
        } else {
            format!(
                "it is a SQLite database of another application (application id {app_id:#010x})"
            )
        };
        return Err(not_a_store(path, detail));
    }
    // SQLite's file format versions (1 rollback journal, 2 WAL). SQLite opens a file with a
    // larger write version read-only, so every write would fail as "attempt to write a
    // readonly database", which reads like a permission problem; a larger read version it
    // calls "not a database".
    let (write_version, read_version) = (header[18], header[19]);
    if write_version > 2 || read_version > 2 {
        return Err(StateStoreError::corrupt(
            format!("store file {}", path.display()),
            format!(
                "its SQLite header records file format versions {write_version} (write) and \
                 {read_version} (read), and SQLite knows 1 and 2: the header is damaged, or a \
                 newer SQLite wrote the file"
            ),
        ));
    }
    // The "in-header database size" is valid when the version-valid-for number matches the
    // change counter; a file shorter than that has lost pages.
    let page_size = page_size_of(&header);
    let pages = u64::from(be32(28));
    // In WAL mode a checkpoint copies pages into the main file page 1 first, so while one
    // runs (or after a crash cut one short) the header may already count pages that are still
    // only in the WAL. The size check is meaningful only without a WAL to recover from.
    let wal_pending = wal_path(path).metadata().is_ok_and(|m| m.len() > 0);
    if !wal_pending && be32(92) == be32(24) && pages > 0 && len < pages * page_size {
        // Another process's checkpoint may have rewritten page 1 and grown (or, after a
        // vacuum, shrunk) the file between the reads above, then emptied the WAL. A file
        // that has lost pages still looks so when read again.
        let again = read_size_fields(&mut file)
            .map_err(|e| io_error("cannot read the store file", path, e))?;
        let wal_pending = wal_path(path).metadata().is_ok_and(|m| m.len() > 0);
        if let Some((pages, len)) = again
            && !wal_pending
            && len < pages * page_size
        {
            return Err(StateStoreError::corrupt(
                format!("store file {}", path.display()),
                format!(
                    "it is truncated: the header records {} bytes but the file has {len}",
                    pages * page_size
                ),
            ));
        }
    }
    Ok(FileState::Store {
        header_version: i64::from(be32(60) as i32),
    })
}

/// The header's page count, when it is valid (its version-valid-for number matches the
/// change counter), and the file's length, read now.
fn read_size_fields(file: &mut File) -> std::io::Result<Option<(u64, u64)>> {
    use std::io::{Seek, SeekFrom};
    let mut header = [0u8; HEADER_LEN];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut header)?;
    let len = file.metadata()?.len();
    Ok((be32(&header, 92) == be32(&header, 24)).then(|| (u64::from(be32(&header, 28)), len)))
}

/// The page size a SQLite header records (its 1 stands for 65536).
fn page_size_of(header: &[u8; HEADER_LEN]) -> u64 {
    match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    }
}

/// The big-endian 32-bit field of a SQLite header at byte `at`.
fn be32(header: &[u8; HEADER_LEN], at: usize) -> u32 {
    u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
}

/// The WAL file SQLite keeps beside a database: beside the file itself, so with symlinks
/// resolved (and a relative path made absolute) once the file exists.
pub(crate) fn wal_path(path: &Path) -> std::path::PathBuf {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut name = real.into_os_string();
    name.push("-wal");
    name.into()
}

/// For a store SQLite sees without a schema (version 0: its creation never committed):
/// refuses it when its write-ahead log holds commits all the same. A young store keeps
/// everything in its log until the first checkpoint, so when SQLite cannot read the log (a
/// damaged log header or first frame), the store looks unfinished, and finishing it would
/// write an empty schema over the log. Returns the ids read again: another connection may
/// have committed the schema meanwhile, which is no damage.
pub(crate) fn check_log_was_read(conn: &Connection, path: &Path) -> Result<(i32, i64)> {
    let wal = wal_path(path);
    // The log is read without a lock: another opener may be writing it at that moment (its
    // new header read before it was written, its new frames after), which looks like damage
    // until its commit lands. Damage stays; a write in progress does not.
    let mut commits = 0;
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let Some(unread) = unread_commits(&wal, db_page_size(path)) else {
            return read_ids(conn);
        };
        let (app, version) = read_ids(conn)?;
        if version != 0 {
            return Ok((app, version));
        }
        commits = unread;
    }
    Err(StateStoreError::corrupt(
        format!("store file {}", path.display()),
        format!(
            "no schema is written in it yet, but its write-ahead log {} holds commits SQLite \
             cannot read ({commits} commit frame(s); the log is damaged): opening it would \
             write a new, empty store over them. Keep both files; a backup of the store is the \
             way back",
            wal.display()
        ),
    ))
}

/// For a store file with a log beside it: refuses the store when the log's header is
/// damaged while commit frames follow it. SQLite ignores such a log whole (the store opens
/// as it was at its last checkpoint), and the next write starts the log over: the commits
/// in it would be gone for good. Reads only the log's header unless that is damaged. A
/// header another process is rewriting that moment (when the log starts over) can read as
/// damaged: the log is read again a moment later before it is refused.
pub(crate) fn check_log_header(path: &Path) -> Result<()> {
    let wal = wal_path(path);
    let header_ok = || -> bool {
        let mut header = [0u8; WAL_HEADER];
        File::open(&wal)
            .and_then(|mut f| f.read_exact(&mut header))
            .map_or(true, |()| wal_header(&header).is_some())
    };
    if header_ok() {
        return Ok(());
    }
    let page_size = db_page_size(path);
    if unread_commits(&wal, page_size).is_none() {
        return Ok(());
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    if header_ok() {
        return Ok(());
    }
    let Some(commits) = unread_commits(&wal, page_size) else {
        return Ok(());
    };
    Err(StateStoreError::corrupt(
        format!("store file {}", path.display()),
        format!(
            "the header of its write-ahead log {} is damaged, and {commits} commit frame(s) \
             follow it: SQLite would ignore the whole log, and the next write would start it \
             over. Keep both files; a backup of the store is the way back",
            wal.display()
        ),
    ))
}

/// The page size the store file's header records (4096 when it cannot be read).
fn db_page_size(path: &Path) -> usize {
    let mut header = [0u8; 18];
    match File::open(path).and_then(|mut f| f.read_exact(&mut header)) {
        Ok(()) => match u16::from_be_bytes([header[16], header[17]]) {
            1 => 65536,
            n => usize::from(n).max(512),
        },
        Err(_) => 4096,
    }
}

const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

fn be_word(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// SQLite's running checksum over `data` (a multiple of 8 bytes) from `sum`, in the byte
/// order the log's magic names.
fn wal_checksum(big_endian: bool, sum: (u32, u32), data: &[u8]) -> (u32, u32) {
    data.chunks_exact(8).fold(sum, |(s0, s1), pair| {
        let read = |b: &[u8]| {
            let b = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let s0 = s0.wrapping_add(read(&pair[..4])).wrapping_add(s1);
        (s0, s1.wrapping_add(read(&pair[4..])).wrapping_add(s0))
    })
}

/// What a log header that SQLite accepts says.
struct WalHeader {
    big_endian: bool,
    page_size: usize,
    salts: [u8; 8],
    /// Its checksum: where the first frame's starts from.
    sum: (u32, u32),
}

/// The log header, when SQLite accepts it; `None` when SQLite would ignore the log: a wrong
/// magic, a page size it does not take, or a checksum that does not match.
fn wal_header(header: &[u8]) -> Option<WalHeader> {
    let magic = be_word(header, 0);
    if magic & !1 != 0x377f_0682 {
        return None;
    }
    let big_endian = magic & 1 == 1;
    // Stored as it is (65536 too), unlike the database header's 1 for 65536.
    let page_size = be_word(header, 8) as usize;
    if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
        return None;
    }
    let sum = wal_checksum(big_endian, (0, 0), &header[..24]);
    if sum != (be_word(header, 24), be_word(header, 28)) {
        return None;
    }
    let salts = header[16..24].try_into().ok()?;
    Some(WalHeader {
        big_endian,
        page_size,
        salts,
        sum,
    })
}

/// The first bytes (the database header) of page 1 as the log holds it after its last
/// commit SQLite reads; `None` when no commit in the log wrote page 1, or the log cannot be
/// read.
fn logged_page_one(wal: &Path) -> Option<[u8; HEADER_LEN]> {
    let bytes = std::fs::read(wal).ok()?;
    let header = wal_header(bytes.get(..WAL_HEADER)?)?;
    let mut sum = header.sum;
    let (mut pending, mut committed) = (None, None);
    for frame in bytes[WAL_HEADER..].chunks_exact(FRAME_HEADER + header.page_size) {
        sum = wal_checksum(header.big_endian, sum, &frame[..8]);
        sum = wal_checksum(header.big_endian, sum, &frame[FRAME_HEADER..]);
        if frame[8..16] != header.salts || sum != (be_word(frame, 16), be_word(frame, 20)) {
            break;
        }
        if be_word(frame, 0) == 1 {
            pending = frame[FRAME_HEADER..FRAME_HEADER + HEADER_LEN]
                .try_into()
                .ok();
        }
        if be_word(frame, 4) != 0 && pending.is_some() {
            committed = pending;
        }
    }
    committed
}

/// How many commit frames the WAL file at `wal` holds that SQLite does not read: all of
/// them when the log's header is damaged (SQLite then ignores the log; frames are then
/// taken to be `page_size`, the store file's), else those of the log's current generation
/// (its salts) past the first frame whose checksum fails (SQLite reads the log up to
/// there). `None` when there are none, or the log cannot be read.
fn unread_commits(wal: &Path, page_size: usize) -> Option<usize> {
    let bytes = std::fs::read(wal).ok()?;
    let header = bytes.get(..WAL_HEADER)?;
    let parsed = wal_header(header);
    let intact = parsed.is_some();
    let WalHeader {
        big_endian,
        page_size,
        salts,
        mut sum,
    } = parsed.unwrap_or(WalHeader {
        big_endian: false,
        page_size,
        salts: [0; 8],
        sum: (0, 0),
    });
    let mut broken = !intact;
    let mut unread = 0;
    for frame in bytes[WAL_HEADER..].chunks_exact(FRAME_HEADER + page_size) {
        let ours = frame[8..16] == salts;
        let commit = be_word(frame, 4) != 0;
        if broken {
            // Past the damage: a commit of this log (any, when its header is damaged).
            unread += usize::from(commit && (ours || !intact));
            continue;
        }
        sum = wal_checksum(big_endian, sum, &frame[..8]);
        sum = wal_checksum(big_endian, sum, &frame[FRAME_HEADER..]);
        // The first frame SQLite would not read ends what it reads; the frame itself may be
        // one another connection is writing right now, so only what follows it counts.
        broken = !ours || be_word(frame, 0) == 0 || sum != (be_word(frame, 16), be_word(frame, 20));
    }
    (unread > 0).then_some(unread)
}

pub(crate) fn sql_error(context: &'static str) -> impl Fn(rusqlite::Error) -> StateStoreError {
    move |e| super::map_sqlite_error(context, e)
}

/// Reads `(application_id, user_version)` through SQLite, which sees WAL content too.
pub(crate) fn read_ids(conn: &Connection) -> Result<(i32, i64)> {
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(sql_error("reading the store header"))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql_error("reading the store header"))?;
    Ok((app, version))
}

/// The store's tables, in the order the migrations create them.
const TABLES: [&str; 8] = [
    "blobs",
    "state_data",
    "state_nodes",
    "node_children",
    "snapshots",
    "refs",
    "ref_log",
    "shallow_edges",
];

/// Refuses a store whose header is ours but whose tables are not all there for its schema
/// `version` (dropped or renamed behind its back): otherwise every command fails later with
/// "no such table", or a migration runs on a damaged file.
pub(crate) fn check_tables(conn: &Connection, path: &Path, version: i64) -> Result<()> {
    // Version 1 (migration 0001) has the first five; version 2 on, all of them.
    let expected = match version {
        i64::MIN..=0 => 0,
        1 => 5,
        _ => TABLES.len(),
    };
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .map_err(sql_error("reading the store schema"))?;
    let present: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(Iterator::collect)
        .map_err(sql_error("reading the store schema"))?;
    let missing: Vec<&str> = TABLES[..expected]
        .iter()
        .copied()
        .filter(|t| !present.iter().any(|p| p == t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StateStoreError::corrupt(
        format!("store file {}", path.display()),
        format!(
            "its header is a stategraph store's, but it lacks the table(s) {}",
            missing.join(", ")
        ),
    ))
}

/// Refuses a file whose schema is newer than this build, before anything is written.
pub(crate) fn check_version(path: &Path, app: i32, version: i64) -> Result<()> {
    if app != APPLICATION_ID && app != 0 {
        return Err(not_a_store(
            path,
            format!("application id {app:#010x} is not stategraph's"),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(StateStoreError::UnsupportedFormat {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 0 {
        return Err(StateStoreError::corrupt(
            format!("store file {}", path.display()),
            format!("negative schema version {version}"),
        ));
    }
    Ok(())
}

/// Whether the database SQLite reads holds no page at all.
pub(crate) fn is_empty(conn: &Connection) -> Result<bool> {
    conn.pragma_query_value(None, "page_count", |r| r.get::<_, i64>(0))
        .map(|pages| pages == 0)
        .map_err(sql_error("reading the store header"))
}

/// Marks a brand-new database as ours. Runs before WAL is enabled so the id lands in the main
/// file's header.
pub(crate) fn stamp_new(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(sql_error("initialising a new store"))
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction. Safe to race: the version is
/// re-read under the write lock, so concurrent openers apply each migration once.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error("migrating the store schema"))?;
    let (app, version) = read_ids(&tx)?;
    check_version(path, app, version)?;
    if version == SCHEMA_VERSION && app == APPLICATION_ID {
        return Ok(());
    }
    if app == 0 {
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(sql_error("migrating the store schema"))?;
    }
    // `version` is within 0..=SCHEMA_VERSION, checked above.
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(|e| match e {
            // The SQL does not fit the tables: the file is not at the version its header
            // claims (a header edited by hand, say). Say so, without quoting the whole file.
            rusqlite::Error::SqlInputError { msg, .. } => StateStoreError::corrupt(
                format!("store file {}", path.display()),
                format!(
                    "its header says schema version {version}, but its tables do not fit \
                     migration {} ({msg}); nothing was changed",
                    from + 1
                ),
            ),
            other => super::map_sqlite_error("migrating the store schema", other),
        })?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql_error("migrating the store schema"))?;
    tx.commit().map_err(sql_error("migrating the store schema"))
}

#[cfg(test)]
mod tests {
    use super::{wal_checksum, wal_header};

    /// A log header as SQLite writes it: magic (little-endian checksums), version, page
    /// size, checkpoint sequence, salts, checksum.
    fn header(page_size: u32) -> Vec<u8> {
        let mut h = Vec::new();
        for word in [
            0x377f_0682u32,
            3_007_000,
            page_size,
            7,
            0x1234_5678,
            0x9abc_def0,
        ] {
            h.extend(word.to_be_bytes());
        }
        let (s0, s1) = wal_checksum(false, (0, 0), &h);
        h.extend(s0.to_be_bytes());
        h.extend(s1.to_be_bytes());
        h
    }

    #[test]
    fn a_log_header_records_its_page_size_as_it_is() {
        for size in [512, 4096, 32768, 65536] {
            let parsed = wal_header(&header(size)).expect("accepted");
            assert_eq!(parsed.page_size, size as usize);
        }
        // 1 stands for 65536 in the database header, not in a log's: SQLite ignores the log.
        for size in [0, 1, 256, 3000, 131_072] {
            assert!(wal_header(&header(size)).is_none(), "{size}");
        }
        let mut damaged = header(4096);
        damaged[14] ^= 1;
        assert!(wal_header(&damaged).is_none());
    }
}
