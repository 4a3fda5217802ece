//! Maintenance of a SQLite store: statistics, a full integrity sweep (`fsck`) and `VACUUM`.

use rusqlite::Connection;

use super::SqliteStateStore;
use super::ops::{self, ABSENT_SEQ};
use super::schema::{self, sql_error};
use crate::codec;
use crate::error::Result;
use crate::id::{ContentHash, SnapshotId, StateNodeId};
use crate::store;

/// Sizes and counts of a store, as `stategraph stats` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Nodes in the graph.
    pub nodes: u64,
    /// State data refs (one per `put_state`).
    pub states: u64,
    /// Distinct state contents stored.
    pub blobs: u64,
    /// Bytes of distinct state content.
    pub blob_bytes: u64,
    /// Snapshots.
    pub snapshots: u64,
    /// Refs.
    pub refs: u64,
    /// Edges to parents this store does not hold (its shallow boundary).
    pub shallow_edges: u64,
    /// The schema version of the file.
    pub schema_version: i64,
    /// Size of the database file in bytes.
    pub file_bytes: u64,
    /// Size of its write-ahead log in bytes (0 when there is none).
    pub wal_bytes: u64,
    /// Bytes of the file on SQLite's free list: space `gc` (or deleted snapshots and refs)
    /// freed, reused by later writes, given back to the filesystem by
    /// [`SqliteStateStore::vacuum`].
    pub free_bytes: u64,
}

/// What [`SqliteStateStore::vacuum`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VacuumReport {
    /// The store file and its write-ahead log before, in bytes...
    pub bytes_before: u64,
    /// ...and after.
    pub bytes_after: u64,
    /// Whether the write-ahead log, which `VACUUM` fills with the whole rewritten file, was
    /// copied back and cut to nothing. When readers held it, or copying it back failed (a
    /// full disk), the file shrinks later, once a checkpoint gets through; `bytes_after`
    /// then still counts the log. The store holds the rewrite either way.
    pub wal_truncated: bool,
    /// Whether the file was rewritten: not when it had no free pages to give back.
    pub rewritten: bool,
}

/// What [`SqliteStateStore::backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// The backup file, as given.
    pub path: std::path::PathBuf,
    /// Its size in bytes (free pages left out: it can be smaller than the store).
    pub bytes: u64,
    /// Nodes in it.
    pub nodes: u64,
    /// Snapshots in it.
    pub snapshots: u64,
}

/// Which part of the store [`SqliteStateStore::verify`] is checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyPhase {
    /// SQLite's own structural check of the file.
    File,
    /// State bytes against their hashes.
    Blobs,
    /// Nodes against their ids, parents and generations.
    Nodes,
    /// Snapshots and refs against the nodes they name.
    Pointers,
}

/// Progress of a [`SqliteStateStore::verify`] sweep: `done` of `total` items of `phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    /// What is being checked.
    pub phase: VerifyPhase,
    /// Items checked so far in this phase.
    pub done: u64,
    /// Items in this phase.
    pub total: u64,
}

/// What a [`SqliteStateStore::verify`] sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Blobs whose bytes were hashed.
    pub blobs: u64,
    /// Nodes checked.
    pub nodes: u64,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Refs checked.
    pub refs: u64,
    /// Edges to parents not stored here that are recorded as a shallow boundary.
    pub shallow_edges: u64,
    /// Every problem found, one readable line each. Empty for a healthy store.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when nothing was wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How often progress is reported, in items.
const PROGRESS_EVERY: u64 = 1024;

fn count_with(conn: &Connection, sql: &str, param: i64) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row([param], |r| r.get(0)))
        .map_err(sql_error("verifying the store"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A file system error while finishing a backup: a full disk is `StorageFull`.
fn backup_io_error(dest: &std::path::Path, e: std::io::Error) -> crate::StateStoreError {
    let full = matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    );
    let error = crate::error::BackendError::new(
        "backing up the store",
        format!("cannot write {}: {e}", dest.display()),
    );
    if full {
        crate::StateStoreError::StorageFull(error)
    } else {
        crate::StateStoreError::Backend(error)
    }
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn count(conn: &Connection, sql: &str) -> Result<u64> {
    let n: i64 = conn
        .query_row(sql, [], |r| r.get(0))
        .map_err(sql_error("reading store statistics"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

impl SqliteStateStore {
    /// Rewrites the store file without its free pages, so that space [`StateStore::gc`]
    /// freed goes back to the filesystem (SQLite otherwise keeps freed pages for reuse, and
    /// the file never shrinks). Every id, ref, snapshot and ref log entry stays as it is.
    ///
    /// It rewrites the whole file: it needs free space of about twice the store's live size
    /// (SQLite builds the new copy in its temporary directory, then writes it back through
    /// the write-ahead log), reads and writes every page, and holds the write lock
    /// throughout. This handle's writers wait for the rewrite (not for readers that delay
    /// the final truncation of the log); readers carry on. If it fails (a full disk,
    /// another process holding the write lock past the busy timeout), nothing changed; once
    /// the rewrite is committed, a failure to copy the log back into the file is no error
    /// (see [`VacuumReport::wal_truncated`]). A
    /// file without free pages is left as it is (`rewritten` is then false), so running it
    /// after every `gc` costs nothing when `gc` removed nothing.
    ///
    /// [`StateStore::gc`]: crate::StateStore::gc
    ///
    /// # Errors
    /// [`StateStoreError::ReadOnly`](crate::StateStoreError::ReadOnly) on a read-only
    /// handle; [`StateStoreError::StorageFull`](crate::StateStoreError::StorageFull) when
    /// the disk fills up; backend errors.
    pub fn vacuum(&self) -> Result<VacuumReport> {
        let Some(writer) = &self.shared.writer else {
            return Err(crate::StateStoreError::ReadOnly {
                operation: "vacuum",
            });
        };
        let wal = schema::wal_path(self.path());
        let size = || file_len(self.path()) + file_len(&wal);
        let bytes_before = size();
        let timeout = self.shared.config.busy_timeout;
        // One TRUNCATE checkpoint attempt, which does not wait: readers in the WAL make it
        // report busy.
        let truncate = |conn: &mut rusqlite::Connection| -> Result<bool> {
            match conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(|e| super::map_sqlite_error("checkpointing after VACUUM", e))
            {
                Ok(busy) => Ok(busy == 0),
                Err(e) if e.is_busy() => Ok(false),
                Err(e) => Err(e),
            }
        };
        let (rewritten, mut truncated) = writer.exclusive(|conn| {
            let free: i64 = conn
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .map_err(|e| super::map_sqlite_error("vacuuming the store", e))?;
            let rewrite = free > 0;
            if rewrite {
                Self::rewrite(conn, timeout)?;
            }
            // VACUUM wrote the whole file into the WAL; copy it back and cut the WAL, which
            // is also when the main file shrinks (also when an earlier vacuum could not:
            // then there is nothing to rewrite, but the WAL may still hold the rewrite).
            // Once the rewrite is committed, a copy that fails (a full disk, an I/O error)
            // changes nothing the store holds: the WAL keeps the rewrite, and a later
            // checkpoint copies it back, so the vacuum is done with the log not yet cut.
            let truncated = match truncate(conn) {
                Err(_) if rewrite => false,
                other => other?,
            };
            Ok::<_, crate::StateStoreError>((rewrite, truncated))
        })?;
        // Readers in the WAL make the truncation wait (up to the busy timeout; it is not an
        // error if they outlast it). The write connection is free between attempts, so this
        // handle's writers go on meanwhile. A copy that fails stops the attempts.
        let deadline = std::time::Instant::now() + timeout;
        let mut backoff = super::Backoff::new();
        while !truncated && std::time::Instant::now() < deadline {
            backoff.pause();
            match writer.exclusive(|conn| truncate(conn)) {
                Ok(done) => truncated = done,
                Err(_) if rewritten => break,
                Err(e) => return Err(e),
            }
        }
        Ok(VacuumReport {
            bytes_before,
            bytes_after: size(),
            wal_truncated: truncated,
            rewritten,
        })
    }

    /// Writes a consistent copy of the store, as it is at one moment, to a new file `dest`:
    /// a store of its own that [`open`](Self::open) accepts, with no write-ahead log beside
    /// it. Safe while other handles and processes write: it reads on its own connection in
    /// one read transaction, so writers carry on (copying the database file by hand while
    /// the store is open can catch it half way through a checkpoint, and leaves the
    /// write-ahead log out). Works on a read-only handle too.
    ///
    /// The copy is written to a temporary file beside `dest`, synced, then renamed to
    /// `dest`, so a full disk or a killed process never leaves a partial backup under that
    /// name. A killed backup leaves that temporary file (`.NAME.PID-N.tmp`); the next
    /// backup to the same name removes it once nothing has written it for 15 minutes and
    /// process PID no longer runs (where `/proc` tells). It is not checked beyond SQLite's
    /// own copy (its pages are read as they are stored): [`verify`](Self::verify) on it, or `stategraph fsck`, checks every hash.
    ///
    /// To go back to a backup, stop every program using the store, delete the store's
    /// `-wal` and `-shm` files, and copy the backup over the store file: a write-ahead log
    /// left beside it belongs to the old file, and SQLite would apply it to the copy.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use stategraph::{SqliteStateStore, StateData, StateMetadata, StateStore};
    ///
    /// let store = SqliteStateStore::open(dir.path().join("agent.db"))?;
    /// store.commit_on("main", None, StateData::new(b"tick 1".to_vec()), StateMetadata::now("tick 1"))?;
    /// let report = store.backup(dir.path().join("agent-backup.db"))?;
    /// assert_eq!(report.nodes, 1);
    /// let copy = SqliteStateStore::open_read_only(&report.path)?;
    /// assert!(copy.get_ref("main")?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`StateStoreError::InvalidInput`](crate::StateStoreError::InvalidInput) when `dest`
    /// exists already (a backup never replaces a file), names this store, is not valid
    /// UTF-8, or its directory does not exist;
    /// [`StateStoreError::StorageFull`](crate::StateStoreError::StorageFull) when the disk
    /// fills up; backend errors. On error no file is left at `dest`, except when the copy
    /// is in place and reading it back for the report fails.
    pub fn backup(&self, dest: impl AsRef<std::path::Path>) -> Result<BackupReport> {
        use crate::StateStoreError;
        let given = dest.as_ref();
        let refuse = |detail: String| StateStoreError::invalid("backup file", detail);
        // Absolute, so that SQLite never reads a relative name such as `file:x.db` as a URI,
        // and a process that changed directory since opening the store compares the right
        // directories.
        let dest =
            &std::path::absolute(given).map_err(|e| refuse(format!("{}: {e}", given.display())))?;
        if dest.symlink_metadata().is_ok() {
            return Err(refuse(format!(
                "{} exists already; a backup never replaces a file: name a new one",
                dest.display()
            )));
        }
        let file_name = dest
            .file_name()
            .ok_or_else(|| refuse(format!("{} names no file", dest.display())))?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(refuse(format!(
                "its directory {} does not exist",
                dir.display()
            )));
        }
        let store = &self.shared.absolute;
        let same_dir = std::fs::canonicalize(&dir).ok()
            == store.parent().and_then(|p| std::fs::canonicalize(p).ok());
        let store_name = store.file_name();
        // SQLite's names beside the store: a `-journal` there would be taken for a hot
        // rollback journal and deleted at the next open.
        let store_files = |name: &std::ffi::OsStr| {
            ["", "-wal", "-shm", "-journal"].iter().any(|suffix| {
                let mut own = store_name.unwrap_or_default().to_owned();
                own.push(suffix);
                own == name
            })
        };
        if same_dir && store_files(file_name) {
            return Err(refuse(format!(
                "{} is this store's own file",
                dest.display()
            )));
        }
        // What killed backups to this name left (see `remove_dead_temps`).
        remove_dead_temps(&dir, file_name);
        let temp = new_temp(&dir, file_name).map_err(|e| backup_io_error(dest, e))?;
        let temp_text = temp.to_str().ok_or_else(|| {
            let _ = std::fs::remove_file(&temp);
            refuse(format!(
                "{} is not valid UTF-8, which SQLite needs",
                dest.display()
            ))
        })?;
        let written = self.read(|conn| {
            // One statement, so one read transaction: the copy is the store at one moment.
            conn.execute("VACUUM INTO ?1", [temp_text]).map_err(|e| {
                let full = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
                super::map_sqlite_error(
                    if full {
                        "backing up the store (the copy needs free space of about the size of \
                         what the store keeps)"
                    } else {
                        "backing up the store"
                    },
                    e,
                )
            })?;
            Ok(())
        });
        let finished = written.and_then(|()| {
            let io = |e: std::io::Error| backup_io_error(dest, e);
            std::fs::File::open(&temp)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
            // A second name that cannot replace a file created meanwhile; a rename where
            // the file system has no hard links.
            match std::fs::hard_link(&temp, dest) {
                // The backup is in place: a temporary name left behind is no reason to fail.
                Ok(()) => drop(std::fs::remove_file(&temp)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(refuse(format!(
                        "{} was created while the backup ran; the backup was not written",
                        dest.display()
                    )));
                }
                Err(_) => std::fs::rename(&temp, dest).map_err(io)?,
            }
            // The new name is durable once its directory is.
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io)
        });
        if let Err(e) = finished {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        let copy = super::SqliteStateStore::open_read_only(dest)?;
        let stats = copy.stats()?;
        Ok(BackupReport {
            path: given.to_path_buf(),
            bytes: stats.file_bytes,
            nodes: stats.nodes,
            snapshots: stats.snapshots,
        })
    }

    /// `VACUUM`, retried while another connection holds the write lock.
    fn rewrite(conn: &rusqlite::Connection, timeout: std::time::Duration) -> Result<()> {
        super::retry_busy(timeout, || {
            conn.execute_batch("VACUUM").map_err(|e| {
                super::map_sqlite_error(
                    "vacuuming the store (which needs free space of about twice what it keeps)",
                    e,
                )
            })
        })
        .map_err(|e| {
            if e.is_busy() {
                crate::StateStoreError::Backend(
                    crate::error::BackendError::new(
                        "vacuuming the store",
                        format!(
                            "another connection held the store's write lock for longer than \
                             the busy timeout ({timeout:?}); nothing was changed"
                        ),
                    )
                    .busy(),
                )
            } else {
                e
            }
        })
    }

    /// Counts and sizes of the store.
    ///
    /// # Errors
    /// Backend errors only.
    pub fn stats(&self) -> Result<StoreStats> {
        let wal = schema::wal_path(self.path());
        self.read(|conn| {
            Ok(StoreStats {
                nodes: count(conn, "SELECT count(*) FROM state_nodes")?,
                states: count(conn, "SELECT count(*) FROM state_data")?,
                blobs: count(conn, "SELECT count(*) FROM blobs")?,
                blob_bytes: count(conn, "SELECT coalesce(sum(length(bytes)), 0) FROM blobs")?,
                snapshots: count(conn, "SELECT count(*) FROM snapshots")?,
                refs: count(conn, "SELECT count(*) FROM refs")?,
                shallow_edges: count(conn, "SELECT count(*) FROM shallow_edges")?,
                schema_version: schema::read_ids(conn)?.1,
                file_bytes: file_len(self.path()),
                wal_bytes: file_len(&wal),
                free_bytes: count(conn, "PRAGMA freelist_count")?
                    * count(conn, "PRAGMA page_size")?,
            })
        })
    }

    /// Checks the whole store, reading everything once: SQLite's full structural check
    /// (`integrity_check`: pages, and every index against its table), every blob against its
    /// hash, every node against its id, its parents (stored, or recorded as a shallow
    /// boundary), its child edges and its generation, every state ref against its bytes and
    /// its node, every snapshot and ref against the node it names, and every ref log entry. Problems are collected, not fatal, so one
    /// sweep reports all of them. Runs on its own read connection, so writers carry on.
    ///
    /// # Errors
    /// Only if the store cannot be read at all; damage is reported in the
    /// [`VerifyReport`].
    pub fn verify(&self, mut progress: impl FnMut(VerifyProgress)) -> Result<VerifyReport> {
        self.read(|conn| {
            // One read transaction: the sweep sees one consistent state of the store.
            conn.execute_batch("BEGIN")
                .map_err(sql_error("verifying the store"))?;
            let report = sweep(conn, &mut progress);
            let _ = conn.execute_batch("COMMIT");
            report
        })
    }
}

fn sweep(conn: &Connection, progress: &mut dyn FnMut(VerifyProgress)) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut tick = |phase, done, total| {
        if done % PROGRESS_EVERY == 0 || done == total {
            progress(VerifyProgress { phase, done, total });
        }
    };

    tick(VerifyPhase::File, 0, 1);
    part(&mut report, "SQLite's structural check", |report| {
        check_file(conn, report)
    })?;
    tick(VerifyPhase::File, 1, 1);
    part(&mut report, "the state bytes check", |report| {
        check_blobs(conn, report, &mut tick)
    })?;
    // Parent links to stored nodes, to compare with the child index.
    let mut links = Links::default();
    let nodes_done = part(&mut report, "the node check", |report| {
        check_nodes(conn, report, &mut links, &mut tick)
    })?;
    part(&mut report, "the snapshot and ref check", |report| {
        check_pointers(conn, report, &mut tick)
    })?;
    part(&mut report, "the ref log check", |report| {
        check_ref_logs(conn, report)
    })?;
    part(&mut report, "the state ref check", |report| {
        check_state_refs(conn, report)
    })?;
    // Against a partial count of links the comparison would only add a false problem.
    if nodes_done {
        part(&mut report, "the child index check", |report| {
            check_child_edges(conn, &links, report)
        })?;
    }
    Ok(report)
}

/// Runs one part of the sweep. Damage that stops it (SQLite finds the file malformed while
/// reading) becomes one more problem and the sweep goes on with the next part, so one bad
/// page neither hides what the other parts find nor loses what this one found before it.
/// Whether the part ran to its end.
fn part(
    report: &mut VerifyReport,
    what: &str,
    run: impl FnOnce(&mut VerifyReport) -> Result<()>,
) -> Result<bool> {
    match run(report) {
        Ok(()) => Ok(true),
        Err(e) if e.is_corrupt() => {
            report
                .problems
                .push(format!("{what} stopped at data it could not read: {e}"));
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

type Tick<'t> = dyn FnMut(VerifyPhase, u64, u64) + 't;

/// SQLite's `integrity_check`: each line it reports (up to the point it stops, when it
/// cannot go on) is a problem.
fn check_file(conn: &Connection, report: &mut VerifyReport) -> Result<()> {
    let ctx = sql_error("verifying the store");
    // Not `quick_check`: only the full check compares every index with its table, and the id
    // and hash indexes are what lookups trust.
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(&ctx)?;
    let mut rows = stmt.query([]).map_err(&ctx)?;
    while let Some(row) = rows.next().map_err(&ctx)? {
        let line: String = row.get(0).map_err(&ctx)?;
        if line == "ok" {
            continue;
        }
        // One problem a line (a row can hold several, under a "*** in database main ***"
        // heading), so that each is one line of `fsck`.
        for part in line.lines().map(str::trim) {
            let heading = part.starts_with("*** ") && part.ends_with(" ***");
            if !part.is_empty() && !heading {
                report.problems.push(format!("SQLite: {part}"));
            }
        }
    }
    Ok(())
}

/// Every blob's bytes against its hash.
fn check_blobs(conn: &Connection, report: &mut VerifyReport, tick: &mut Tick<'_>) -> Result<()> {
    let ctx = sql_error("verifying the store");
    let total = count(conn, "SELECT count(*) FROM blobs")?;
    let mut stmt = conn
        .prepare("SELECT id, hash, bytes FROM blobs")
        .map_err(&ctx)?;
    let mut rows = stmt.query([]).map_err(&ctx)?;
    let mut damaged = 0;
    while let Some(row) = rows.next().map_err(&ctx)? {
        let id: i64 = row.get(0).map_err(&ctx)?;
        // Read whatever type a damaged row holds: a value of the wrong type is this blob's
        // problem, not a reason to stop checking the others.
        use rusqlite::types::ValueRef;
        let raw = |i| -> Result<Option<Vec<u8>>> {
            Ok(match row.get_ref(i).map_err(&ctx)? {
                ValueRef::Blob(b) => Some(b.to_vec()),
                _ => None,
            })
        };
        let damage = match (raw(1)?, raw(2)?) {
            (Some(hash), Some(bytes)) => (ContentHash::of(&bytes).as_bytes().as_slice()
                != hash.as_slice())
            .then_some("its bytes do not match its hash"),
            _ => Some("its hash or bytes are not stored as bytes"),
        };
        if let Some(what) = damage {
            damaged += 1;
            let holders = if damaged <= NAMED_DAMAGED_BLOBS {
                holders_of(conn, id)
            } else {
                String::new()
            };
            report.problems.push(format!("blob {id}: {what}{holders}"));
        }
        report.blobs += 1;
        tick(VerifyPhase::Blobs, report.blobs, total);
    }
    Ok(())
}

/// How many damaged blobs [`check_blobs`] names the nodes of: finding them reads every
/// node (there is no index from a state to its nodes), so a store damaged throughout is
/// not read once per blob.
const NAMED_DAMAGED_BLOBS: usize = 16;

/// What a damaged blob's bytes are, for a person reading `fsck`: the nodes whose state they
/// are (at most three named, with their labels), or that no node holds them.
/// Reads nothing it cannot: a damaged node row (an id or label of another type) is named as
/// such, and any other failure leaves the holders unnamed, so the blob sweep goes on.
fn holders_of(conn: &Connection, blob: i64) -> String {
    use rusqlite::types::ValueRef;
    let named = || -> rusqlite::Result<(Vec<String>, usize)> {
        let mut stmt = conn.prepare(
            "SELECT n.id, n.label FROM state_data d JOIN state_nodes n ON n.data_ref = d.data_ref
             WHERE d.blob_id = ?1 ORDER BY n.seq",
        )?;
        let mut rows = stmt.query([blob])?;
        let (mut named, mut more) = (Vec::new(), 0);
        while let Some(row) = rows.next()? {
            if named.len() == 3 {
                more += 1;
                continue;
            }
            let id = match row.get_ref(0)? {
                ValueRef::Blob(b) => <[u8; 32]>::try_from(b)
                    .map(|b| crate::id::StateNodeId::from_bytes(b).to_short_hex(12))
                    .ok(),
                _ => None,
            }
            .unwrap_or_else(|| "(a node with a damaged id)".to_owned());
            named.push(match row.get_ref(1)? {
                ValueRef::Text(label) => format!("{id} {:?}", String::from_utf8_lossy(label)),
                _ => id,
            });
        }
        Ok((named, more))
    };
    match named() {
        Err(_) => " (which nodes hold them could not be read)".to_owned(),
        Ok((named, _)) if named.is_empty() => " (no node holds them)".to_owned(),
        Ok((named, 0)) => format!(" (the state of node {})", named.join(", ")),
        Ok((named, n)) => format!(" (the state of node {} and {n} more)", named.join(", ")),
    }
}

/// Every node against its id, parents and generation.
fn check_nodes(
    conn: &Connection,
    report: &mut VerifyReport,
    links: &mut Links,
    tick: &mut Tick<'_>,
) -> Result<()> {
    let total = count(conn, "SELECT count(*) FROM state_nodes")?;
    for seq in seqs(conn)? {
        check_node(conn, seq, report, links)?;
        report.nodes += 1;
        tick(VerifyPhase::Nodes, report.nodes, total);
    }
    Ok(())
}

/// Every snapshot and ref against the node it names.
fn check_pointers(conn: &Connection, report: &mut VerifyReport, tick: &mut Tick<'_>) -> Result<()> {
    let ctx = sql_error("verifying the store");
    let total =
        count(conn, "SELECT count(*) FROM snapshots")? + count(conn, "SELECT count(*) FROM refs")?;
    let mut stmt = conn
        .prepare("SELECT id, node_id, created_s, created_ns FROM snapshots")
        .map_err(&ctx)?;
    type SnapshotRow = (
        Vec<u8>,
        Vec<u8>,
        rusqlite::types::Value,
        rusqlite::types::Value,
    );
    let snapshots: Vec<SnapshotRow> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .and_then(Iterator::collect)
        .map_err(&ctx)?;
    for (id, node, seconds, nanos) in snapshots {
        let (Some(id), Some(node)) = (SnapshotId::from_slice(&id), StateNodeId::from_slice(&node))
        else {
            report.problems.push(match SnapshotId::from_slice(&id) {
                Some(id) => format!("snapshot {id}: its node id is malformed"),
                None => "a snapshot row has a malformed id".to_owned(),
            });
            continue;
        };
        if codec::snapshot_id(&node) != id {
            report
                .problems
                .push(format!("snapshot {id}: not the snapshot id of node {node}"));
        }
        // Its time orders the listing (and finds the latest): one that does not read fails
        // every listing.
        use rusqlite::types::Value::Integer;
        match (seconds, nanos) {
            (Integer(s), Integer(ns)) => {
                if let Err(e) = codec::join_time(s, ns) {
                    report.problems.push(format!("snapshot {id}: {e}"));
                }
            }
            _ => report
                .problems
                .push(format!("snapshot {id}: its time is not stored as integers")),
        }
        check_target(conn, &format!("snapshot {id}"), &node, report)?;
        report.snapshots += 1;
        tick(VerifyPhase::Pointers, report.snapshots, total);
    }
    // Names read as bytes: text that is not UTF-8 must be reported, not fail the sweep.
    let mut stmt = conn
        .prepare("SELECT CAST(name AS BLOB), typeof(name), node_id FROM refs ORDER BY name")
        .map_err(&ctx)?;
    let refs: Vec<(Option<Vec<u8>>, String, rusqlite::types::Value)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(Iterator::collect)
        .map_err(&ctx)?;
    for (name, kind, target) in refs {
        let target = match target {
            rusqlite::types::Value::Blob(b) => StateNodeId::from_slice(&b),
            _ => None,
        };
        match (ref_name(name, &kind), target) {
            (Ok(name), Some(target)) => {
                check_target(conn, &format!("ref {name}"), &target, report)?;
            }
            (Ok(name), None) => report
                .problems
                .push(format!("ref {name}: its target is not a node id")),
            (Err(Some(lossy)), _) => report
                .problems
                .push(format!("ref {lossy}: its name is not UTF-8")),
            (Err(None), _) => report
                .problems
                .push("a ref row has a name that is not text".to_owned()),
        }
        report.refs += 1;
        tick(VerifyPhase::Pointers, report.snapshots + report.refs, total);
    }
    Ok(())
}

/// A ref name read as `CAST(name AS BLOB), typeof(name)` (so that text which is not UTF-8
/// is reported rather than failing the sweep): the name, or `Err(Some(lossy))` for text that
/// is not UTF-8, `Err(None)` for a value that is not text.
fn ref_name(bytes: Option<Vec<u8>>, kind: &str) -> std::result::Result<String, Option<String>> {
    match (kind, bytes.map(String::from_utf8)) {
        ("text", Some(Ok(name))) => Ok(name),
        ("text", Some(Err(e))) => Err(Some(String::from_utf8_lossy(e.as_bytes()).into_owned())),
        _ => Err(None),
    }
}

/// Reports `who`'s node if it is missing or does not decode.
fn check_target(
    conn: &Connection,
    who: &str,
    node: &StateNodeId,
    report: &mut VerifyReport,
) -> Result<()> {
    match readable_node(conn, node)? {
        Some(true) => {}
        Some(false) => report
            .problems
            .push(format!("{who}: its node {node} is missing")),
        None => report
            .problems
            .push(format!("{who}: its node {node} cannot be read")),
    }
    Ok(())
}

/// Every ref log entry decodes and names stored nodes (the log is how a bad ref move is
/// undone, and gc keeps every node it names, or drops the entry with pruned history).
fn check_ref_logs(conn: &Connection, report: &mut VerifyReport) -> Result<()> {
    let ctx = sql_error("verifying the store");
    let mut stmt = conn
        .prepare("SELECT DISTINCT CAST(name AS BLOB), typeof(name) FROM ref_log")
        .map_err(&ctx)?;
    let names: Vec<(Option<Vec<u8>>, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(Iterator::collect)
        .map_err(&ctx)?;
    for (name, kind) in names {
        let name = match ref_name(name, &kind) {
            Ok(name) => name,
            Err(Some(lossy)) => {
                report
                    .problems
                    .push(format!("ref log of {lossy}: its name is not UTF-8"));
                continue;
            }
            Err(None) => {
                report
                    .problems
                    .push("a ref log entry has a name that is not text".to_owned());
                continue;
            }
        };
        match ops::ref_log(conn, &name, None) {
            Ok(_) => {}
            Err(e) if e.is_corrupt() || matches!(e, crate::StateStoreError::Backend(_)) => {
                report.problems.push(format!("ref log of {name}: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    // Ids that do not decode were reported above; here, well-formed ids of no stored node.
    let mut stmt = conn
        .prepare(
            "SELECT CAST(l.name AS BLOB), l.node FROM (
                 SELECT seq, name, old_node AS node FROM ref_log
                 UNION ALL SELECT seq, name, new_node FROM ref_log
             ) l
             WHERE typeof(l.node) = 'blob' AND length(l.node) = 32
               AND NOT EXISTS (SELECT 1 FROM state_nodes s WHERE s.id = l.node)
             ORDER BY l.seq",
        )
        .map_err(&ctx)?;
    let dangling: Vec<(Option<Vec<u8>>, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(Iterator::collect)
        .map_err(&ctx)?;
    for (name, node) in dangling {
        let name = String::from_utf8_lossy(name.as_deref().unwrap_or_default()).into_owned();
        if let Some(node) = StateNodeId::from_slice(&node) {
            report.problems.push(format!(
                "ref log of {name}: an entry names node {node}, which is missing"
            ));
        }
    }
    Ok(())
}

/// Every state ref (including those no node uses yet) still has its bytes.
fn check_state_refs(conn: &Connection, report: &mut VerifyReport) -> Result<()> {
    let ctx = sql_error("verifying the store");
    let mut stmt = conn
        .prepare(
            "SELECT s.data_ref FROM state_data s LEFT JOIN blobs b ON b.id = s.blob_id
             WHERE b.id IS NULL",
        )
        .map_err(&ctx)?;
    let orphans: Vec<rusqlite::types::Value> = stmt
        .query_map([], |r| r.get(0))
        .and_then(Iterator::collect)
        .map_err(&ctx)?;
    for data_ref in orphans {
        let which = match &data_ref {
            rusqlite::types::Value::Blob(b) => uuid::Uuid::from_slice(b)
                .map_or_else(|_| "a state ref".to_owned(), |u| format!("state {u}")),
            _ => "a state ref".to_owned(),
        };
        report
            .problems
            .push(format!("{which}: its bytes are missing"));
    }
    let malformed = count(
        conn,
        "SELECT count(*) FROM state_data WHERE typeof(data_ref) != 'blob' OR length(data_ref) != 16",
    )?;
    if malformed > 0 {
        report
            .problems
            .push(format!("{malformed} state ref(s) not stored as 16 bytes"));
    }
    Ok(())
}

/// The child edges (what `show` lists as children and descendant walks follow) are exactly
/// the stored parent links: each node's links were checked to have their edge in
/// [`check_node`], so here the counts must agree.
fn check_child_edges(conn: &Connection, links: &Links, report: &mut VerifyReport) -> Result<()> {
    let edges = count(conn, "SELECT count(*) FROM node_children")?;
    if edges != links.edges {
        report.problems.push(format!(
            "the child index holds {edges} edges where the nodes' parent lists have {}",
            links.edges
        ));
    }
    // The same for the boundary: each parent not stored here was checked to have its row
    // (rows of nodes that could not be read are left out, as for the child index).
    let rows =
        count(conn, "SELECT count(*) FROM shallow_edges")?.saturating_sub(links.unread_boundary);
    if rows != report.shallow_edges {
        report.problems.push(format!(
            "the shallow boundary table holds {rows} rows where the nodes' parent lists have {} \
             parents not stored here",
            report.shallow_edges
        ));
    }
    // A parent that arrives takes its boundary rows back (its children's edges move to the
    // child index), and a prune removes the parent it records: a row naming a stored parent
    // hides an edge from `children` and from walks.
    let stored = count(
        conn,
        "SELECT count(*) FROM shallow_edges s JOIN state_nodes n ON n.id = s.parent_id",
    )?;
    if stored > 0 {
        report.problems.push(format!(
            "the shallow boundary table holds {stored} row(s) whose parent is stored here"
        ));
    }
    Ok(())
}

/// Whether a node is stored: `None` when its row is there but cannot be decoded (its own
/// check reports why).
fn readable_node(conn: &Connection, id: &StateNodeId) -> Result<Option<bool>> {
    match ops::find_node(conn, id) {
        Ok(found) => Ok(Some(found.is_some())),
        Err(e) if e.is_corrupt() => Ok(None),
        Err(e) => Err(e),
    }
}

fn seqs(conn: &Connection) -> Result<Vec<i64>> {
    let ctx = sql_error("verifying the store");
    let mut stmt = conn
        .prepare("SELECT seq FROM state_nodes ORDER BY seq")
        .map_err(&ctx)?;
    stmt.query_map([], |r| r.get(0))
        .and_then(Iterator::collect)
        .map_err(&ctx)
}

/// What [`check_node`] counts, to compare with the edge tables.
#[derive(Default)]
struct Links {
    /// Links to stored parents (each has its child-index edge).
    edges: u64,
    /// Boundary rows of nodes whose row could not be read.
    unread_boundary: u64,
}

/// Checks one node; problems go into the report. Counts its links to stored parents in
/// `links`.
fn check_node(
    conn: &Connection,
    seq: i64,
    report: &mut VerifyReport,
    links: &mut Links,
) -> Result<()> {
    let row = match ops::find_nodes_by_seq_range(conn, seq, seq) {
        Ok(mut rows) => match rows.pop() {
            Some((_, row)) => row,
            None => return Ok(()),
        },
        Err(e) => {
            // Name the node when at least its id column reads.
            let id: Option<Vec<u8>> = conn
                .prepare_cached("SELECT id FROM state_nodes WHERE seq = ?1")
                .and_then(|mut s| s.query_row([seq], |r| r.get(0)))
                .ok();
            let which = match id.as_deref().and_then(StateNodeId::from_slice) {
                Some(id) => format!("node {id} (row {seq})"),
                None => format!("node row {seq}"),
            };
            report.problems.push(format!("{which}: {e}"));
            // Its parent links cannot be read: leave its edges out of the comparisons
            // rather than blame the edge tables for them.
            links.edges += count_with(
                conn,
                "SELECT count(*) FROM node_children WHERE child = ?1",
                seq,
            )?;
            links.unread_boundary += count_with(
                conn,
                "SELECT count(*) FROM shallow_edges WHERE child = ?1",
                seq,
            )?;
            return Ok(());
        }
    };
    let node = &row.node;
    if let Err(e) = store::verify_node(node) {
        report.problems.push(e.to_string());
    }
    let mut parent_generations = Vec::with_capacity(node.parent_ids.len());
    for (parent, &parent_seq) in node.parent_ids.iter().zip(&row.parent_seqs) {
        if parent_seq == ABSENT_SEQ {
            let recorded = conn
                .prepare_cached("SELECT 1 FROM shallow_edges WHERE parent_id = ?1 AND child = ?2")
                .and_then(|mut s| s.exists(rusqlite::params![parent.as_bytes(), seq]))
                .map_err(sql_error("verifying the store"))?;
            if recorded {
                report.shallow_edges += 1;
            } else {
                report
                    .problems
                    .push(format!("node {}: parent {parent} is missing", node.id));
            }
            continue;
        }
        links.edges += 1;
        let edge = conn
            .prepare_cached("SELECT 1 FROM node_children WHERE parent = ?1 AND child = ?2")
            .and_then(|mut s| s.exists([parent_seq, seq]))
            .map_err(sql_error("verifying the store"))?;
        if !edge {
            report.problems.push(format!(
                "node {}: the child index lacks its edge from parent {parent}",
                node.id
            ));
        }
        match ops::find_nodes_by_seq_range(conn, parent_seq, parent_seq).map(|mut r| r.pop()) {
            Ok(Some((_, p))) if p.node.id == *parent => parent_generations.push(p.node.generation),
            Ok(_) => report.problems.push(format!(
                "node {}: its parent link to {parent} points at the wrong row",
                node.id
            )),
            // The parent's own check reports what is wrong with its row.
            Err(e) if e.is_corrupt() => report.problems.push(format!(
                "node {}: its parent {parent} cannot be read",
                node.id
            )),
            Err(e) => return Err(e),
        }
    }
    let all_present = parent_generations.len() == node.parent_ids.len();
    let expected = parent_generations.iter().max().map_or(1, |g| g + 1);
    if (all_present && node.generation != expected) || node.generation < expected {
        report.problems.push(format!(
            "node {}: generation {} where its parents give {expected}",
            node.id, node.generation
        ));
    }
    match ops::state_info(conn, &node.data_ref) {
        Ok(info) if info.hash == node.data_hash && info.content_type == node.content_type => {}
        // The node hashed its content type with the state's hash; `get_state` serves the
        // state's own, and `load_snapshot` refuses them when they differ.
        Ok(info) if info.hash == node.data_hash => report.problems.push(format!(
            "node {}: its state {} has content type {:?} where the node hashed {:?}",
            node.id, node.data_ref, info.content_type, node.content_type
        )),
        Ok(_) => report.problems.push(format!(
            "node {}: its state {} is not the state it hashed",
            node.id, node.data_ref
        )),
        Err(e) => report.problems.push(format!("node {}: {e}", node.id)),
    }
    Ok(())
}

/// A backup's temporary file: `.NAME.PID-N.tmp` beside the backup, created empty (which
/// `VACUUM INTO` accepts, and so that a directory this process cannot write to is reported
/// as such). Process ids repeat across PID namespaces (containers sharing a directory), so
/// a name can be taken by a running backup elsewhere: then the next N is tried.
fn new_temp(dir: &std::path::Path, name: &std::ffi::OsStr) -> std::io::Result<std::path::PathBuf> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut tries = 0;
    loop {
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}-{call}.tmp", std::process::id()));
        let temp = dir.join(temp_name);
        // Left by a killed process that had this id (here or in another namespace).
        if abandoned(&temp) {
            remove_temp(&temp);
        }
        tries += 1;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(_) => return Ok(temp),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 100 => {}
            Err(e) => return Err(e),
        }
    }
}

/// How long a backup's temporary file must have gone unwritten before another backup takes
/// it for a killed one's. A running backup writes its copy all along (`VACUUM INTO`).
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Whether `path` is a regular file (its `-journal` too, if there is one) that has not been
/// written for [`ABANDONED_AFTER`].
fn abandoned(path: &std::path::Path) -> bool {
    let idle = |p: &std::path::Path| match std::fs::symlink_metadata(p) {
        Ok(m) => {
            m.is_file()
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|idle| idle >= ABANDONED_AFTER)
        }
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    std::fs::symlink_metadata(path).is_ok() && idle(path) && idle(&journal_of(path))
}

/// SQLite's rollback journal beside a temporary file.
fn journal_of(path: &std::path::Path) -> std::path::PathBuf {
    let mut journal = path.as_os_str().to_owned();
    journal.push("-journal");
    journal.into()
}

/// Removes a temporary file and its journal.
fn remove_temp(path: &std::path::Path) {
    let _ = std::fs::remove_file(journal_of(path));
    let _ = std::fs::remove_file(path);
}

/// Removes what backups to `name` in `dir` left when they were killed: their temporary
/// files (`.NAME.PID-N.tmp`, and SQLite's `-journal` beside one) that nothing has written
/// for [`ABANDONED_AFTER`] and whose process no longer runs (as `/proc` tells; nothing is
/// removed where it cannot tell). No lock is taken on the file SQLite writes: on NFS and the
/// BSDs a `flock` there conflicts with SQLite's own locks.
fn remove_dead_temps(dir: &std::path::Path, name: &std::ffi::OsStr) {
    let proc = std::path::Path::new("/proc");
    let (Some(name), true) = (name.to_str(), proc.join("self").exists()) else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let rest = rest.strip_suffix("-journal").unwrap_or(rest);
        let Some((pid, call)) = rest.strip_suffix(".tmp").and_then(|r| r.split_once('-')) else {
            continue;
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(pid) || !digits(call) || pid == std::process::id().to_string() {
            continue;
        }
        let temp = dir.join(format!("{prefix}{pid}-{call}.tmp"));
        let orphan_journal = !temp.exists();
        if proc.join(pid).exists() {
            continue;
        }
        if orphan_journal {
            // A journal without its file: its backup is over.
            let journal = journal_of(&temp);
            if abandoned(&journal) {
                let _ = std::fs::remove_file(journal);
            }
        } else if abandoned(&temp) {
            remove_temp(&temp);
        }
    }
}
