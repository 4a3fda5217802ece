//! The one connection that writes, and group commit.
//!
//! Every write of every handle to a store is a request (a list of [`Op`]s) queued here. A
//! caller that finds the connection free becomes the *leader*: it takes every queued request
//! (its own and any that arrived while the previous leader was committing), applies them in
//! one `BEGIN IMMEDIATE` transaction — each, when there are several, inside its own savepoint,
//! so one request's error does not undo another's — and, before committing, takes in the
//! requests that arrived meanwhile too. Then it commits once, frees the connection and wakes
//! each caller with its result. Callers that found the connection busy wait on their own
//! request, not on the connection; when a leader finishes and requests are still queued, it
//! wakes the oldest one's caller to lead the next group. With `Durability::Immediate` that is
//! one fsync for a whole group of concurrent writers, and a lone writer pays no thread
//! hand-off at all.
//!
//! Writers that were just answered usually come straight back with their next request; a
//! group about to commit waits a moment for them (see [`Writer::late_joiners`]), because one
//! more request in this commit saves a whole commit of its own.
//!
//! When another process holds the write lock, the transaction is retried with backoff until
//! the busy timeout; callers never see `SQLITE_BUSY` before that.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

use super::map_sqlite_error;
use super::ops::{self, TxCache};
use crate::error::{BackendError, Result, StateStoreError};
use crate::store::{Op, Outcome};

/// Where a request stands, as its caller sees it.
enum State {
    /// Queued; wait.
    Waiting,
    /// The previous leader asks this caller to lead the next group.
    Lead,
    /// Committed or failed.
    Done(Result<Vec<Outcome>>),
}

/// A request's state and the condition its caller waits on.
struct Slot {
    state: Mutex<State>,
    wake: Condvar,
}

impl Slot {
    fn set(&self, state: State) {
        *lock(&self.state) = state;
        self.wake.notify_one();
    }
}

struct Request {
    ops: Vec<Op>,
    slot: Arc<Slot>,
}

/// The write connection and the queue of requests waiting for it.
pub(crate) struct Writer {
    conn: Mutex<Connection>,
    queue: Mutex<Vec<Request>>,
    /// Callers inside [`Writer::apply`]: queued, in the group being committed, or answered
    /// and on their way out.
    callers: AtomicUsize,
    /// How long the last `COMMIT` took, in nanoseconds (at most [`MAX_JOIN_WAIT`]).
    last_commit_ns: AtomicU64,
    /// Requests committed (not those that failed inside a group)...
    committed_writes: AtomicU64,
    /// ...and the transactions that committed them.
    committed_transactions: AtomicU64,
    busy_timeout: Duration,
    /// The store's WAL file, whose size [`Writer::keep_wal_bounded`] watches.
    wal: PathBuf,
    /// The store file as opened, to notice its path naming another file later.
    file: OpenedFile,
    /// When to look at the WAL again; only the leader touches it.
    wal_watch: Mutex<WalWatch>,
}

/// [`Writer::keep_wal_bounded`]'s schedule.
struct WalWatch {
    /// Groups to commit before the WAL's size is looked at again.
    countdown: u32,
    /// After a restart that readers outlasted: no new attempt before this time...
    not_before: Option<Instant>,
    /// ...and the pause after the next failure (doubling up to [`WAL_RETRY_MAX`]),...
    pause: Duration,
    /// ...unless the WAL grows past this size first: a pause measured in time alone lets a
    /// busy writer grow the file without bound while slow readers keep outlasting attempts.
    retry_at_bytes: u64,
    /// After a failed attempt: the WAL's frames then and how far it could be copied back,
    /// when a reader's snapshot stopped the copy short of the end. While the copy still
    /// stops there (in the same WAL: it has not started over, so it has not fewer frames),
    /// that reader is still reading, and waiting for it again would hold writers back for
    /// nothing (a `fsck` of a large store reads for seconds; one stopped with Ctrl-Z, for as
    /// long as it stays stopped).
    stuck_at: Option<(i64, i64)>,
}

impl WalWatch {
    fn new() -> Self {
        Self {
            countdown: WAL_CHECK_EVERY,
            not_before: None,
            pause: WAL_RETRY_FIRST,
            retry_at_bytes: 0,
            stuck_at: None,
        }
    }

    /// Whether a restart is worth waiting for, given what a passive checkpoint just copied
    /// (`Some((frames in the WAL, frames copied back))`): not while the reader that stopped
    /// the copy at the last failed attempt still stops it at the same frame.
    fn worth_waiting(&self, copied: Option<(i64, i64)>) -> bool {
        match (copied, self.stuck_at) {
            (Some((frames, copied)), Some((then, stuck))) if copied < frames => {
                copied != stuck || frames < then
            }
            _ => true,
        }
    }

    /// Whether a WAL of `size` bytes should be restarted now.
    fn due(&self, size: u64, now: Instant) -> bool {
        let paused = self.not_before.is_some_and(|at| now < at);
        size > WAL_RESTART_BYTES && (!paused || size >= self.retry_at_bytes)
    }

    /// Notes how an attempt on a WAL of `size` bytes ended (`copied`: as for
    /// [`Self::worth_waiting`], looked at before it).
    fn record(&mut self, restarted: bool, size: u64, now: Instant, copied: Option<(i64, i64)>) {
        if restarted {
            self.not_before = None;
            self.pause = WAL_RETRY_FIRST;
            self.retry_at_bytes = 0;
            self.stuck_at = None;
        } else {
            self.not_before = Some(now + self.pause);
            self.pause = (self.pause * 2).min(WAL_RETRY_MAX);
            self.retry_at_bytes = size + WAL_RESTART_BYTES;
            self.stuck_at = copied.filter(|(frames, copied)| copied < frames);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A leader that panicked mid-transaction dropped it, which rolled it back; the connection
    // and the queue are consistent, so a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long a waiting caller sleeps before checking whether it should lead after all. Only a
/// safety net: leaders wake the next caller explicitly.
const RECHECK: Duration = Duration::from_millis(20);

/// The longest a group about to commit waits for callers that are coming back, whatever the
/// last commit cost (a commit that ran a checkpoint can take far longer than a usual one).
const MAX_JOIN_WAIT: Duration = Duration::from_millis(1);

/// How often (in committed groups) the writer looks at the WAL's size.
const WAL_CHECK_EVERY: u32 = 64;
/// The first pause after a restart that readers outlasted (one held a snapshot for longer
/// than [`WAL_RESTART_WAIT`], like `verify`'s sweep), doubling while they keep doing so up to
/// [`WAL_RETRY_MAX`]; measured in time, so the next attempt after such a reader ends comes
/// soon, however many groups commit meanwhile.
const WAL_RETRY_FIRST: Duration = Duration::from_millis(100);
const WAL_RETRY_MAX: Duration = Duration::from_secs(8);
/// A WAL this large has outgrown SQLite's passive checkpoints (which run at about 4 MiB but
/// cannot start the file over while overlapping readers always hold an older snapshot).
const WAL_RESTART_BYTES: u64 = 16 << 20;
/// How long a restarting checkpoint may wait for those readers to move on (and for other
/// connections' checkpoints and writes to make way). Writers of this handle wait meanwhile;
/// readers do not.
const WAL_RESTART_WAIT: Duration = Duration::from_millis(100);
/// The longest a restarting checkpoint waits, however large the WAL has grown.
const WAL_RESTART_WAIT_MAX: Duration = Duration::from_millis(400);

/// How long a restart of a WAL of `size` bytes may wait for readers: [`WAL_RESTART_WAIT`]
/// for each [`WAL_RESTART_BYTES`] it holds, up to [`WAL_RESTART_WAIT_MAX`]. Holding this
/// handle's writers back longer is worth it when the file keeps growing: every attempt that
/// readers outlast leaves more to copy back later, and a file that never starts over grows
/// with every commit.
fn restart_wait(size: u64) -> Duration {
    let steps = u32::try_from(size / WAL_RESTART_BYTES)
        .unwrap_or(u32::MAX)
        .max(1);
    WAL_RESTART_WAIT
        .saturating_mul(steps)
        .min(WAL_RESTART_WAIT_MAX)
}

/// A checkpoint that copies what it can and waits for nothing: `Some((frames in the WAL,
/// frames copied back))`, or `None` when it could not run (another connection's checkpoint
/// held the lock) or the store is not in WAL mode.
fn passive_checkpoint(conn: &Connection) -> Option<(i64, i64)> {
    let (busy, frames, copied) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .ok()?;
    (busy == 0 && frames >= 0 && copied >= 0).then_some((frames, copied))
}

/// How often a waiting restart looks again.
const WAL_RESTART_POLL: Duration = Duration::from_micros(100);

/// A group stops taking in requests that arrive after its transaction began once it holds
/// this many, so a steady stream of writers cannot hold a commit back indefinitely. (It takes
/// the whole queue at each look, so it can end somewhat larger.)
const MAX_GROUP: usize = 64;

/// The store file a writer opened: SQLite's connection keeps writing to that file (inode)
/// whatever its path names later, so a store file moved away, replaced (a backup restored
/// over it, a symlink pointed elsewhere) or deleted under an open handle would take every
/// later commit with it, each one acknowledged, while new read connections opened the path
/// would read another file. Before each group the path is looked at again (one `stat`).
struct OpenedFile {
    /// The path as given, made absolute (not resolved: a symlink pointed elsewhere later
    /// must count as a move). A relative path would name another file once the process
    /// changes directory.
    path: PathBuf,
    /// (device, inode) at open; `None` where that cannot be known (then nothing is checked).
    id: Option<(u64, u64)>,
}

impl OpenedFile {
    fn new(path: &std::path::Path) -> Self {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Self {
            id: file_id(&path).map(|(id, _)| id),
            path,
        }
    }

    /// What happened to the file since it was opened, if it is no longer safe to write.
    fn changed(&self) -> Option<&'static str> {
        let id = self.id?;
        match file_id(&self.path) {
            Some((now, _)) if now != id => Some("was moved, replaced or deleted"),
            None => Some("was moved, replaced or deleted"),
            // A second name made after the open: writers through it would keep another
            // write-ahead log (see `schema::check_single_name`).
            Some((_, links)) if links > 1 => Some("got a second name (a hard link)"),
            Some(_) => None,
        }
    }

    /// The error for a file that [`changed`](Self::changed).
    fn error(&self, what: &str) -> StateStoreError {
        StateStoreError::Backend(BackendError::new(
            "writing",
            format!(
                "the store file {} {what} after this handle opened it, so this write would go \
                 to a file that is not the store any more; nothing was written (drop this \
                 handle and its clones, then open the store again)",
                self.path.display()
            ),
        ))
    }
}

/// (device, inode) of the file `path` names, and its number of names.
#[cfg(unix)]
fn file_id(path: &std::path::Path) -> Option<((u64, u64), u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| ((m.dev(), m.ino()), m.nlink()))
}

#[cfg(not(unix))]
fn file_id(_: &std::path::Path) -> Option<((u64, u64), u64)> {
    None
}

/// Counts a caller in [`Writer::callers`] for as long as it lives.
struct Caller<'w>(&'w AtomicUsize);

impl<'w> Caller<'w> {
    fn enter(callers: &'w AtomicUsize) -> Self {
        callers.fetch_add(1, Ordering::SeqCst);
        Self(callers)
    }
}

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Writer {
    /// The writer over `conn` (which has no SQLite busy handler: a busy write lock is
    /// waited for by `commit_group`, with `Backoff`), the connection to the store whose WAL
    /// file is `wal`.
    pub(crate) fn new(
        conn: Connection,
        busy_timeout: Duration,
        wal: PathBuf,
        file: &std::path::Path,
    ) -> Self {
        Self {
            conn: Mutex::new(conn),
            queue: Mutex::new(Vec::new()),
            callers: AtomicUsize::new(0),
            last_commit_ns: AtomicU64::new(0),
            committed_writes: AtomicU64::new(0),
            committed_transactions: AtomicU64::new(0),
            busy_timeout,
            wal,
            file: OpenedFile::new(file),
            wal_watch: Mutex::new(WalWatch::new()),
        }
    }

    /// Keeps the WAL bounded when readers overlap without a gap. SQLite's passive checkpoints
    /// copy frames back only up to the oldest snapshot a reader holds, and start the file
    /// over only when no reader uses it; with several readers always mid-read, neither
    /// happens and the WAL grows with every commit. Every [`WAL_CHECK_EVERY`] groups the
    /// leader looks at the file's size; past [`WAL_RESTART_BYTES`] it runs a `RESTART`
    /// checkpoint, which holds new writes back (at most [`restart_wait`]) until the
    /// readers in flight finish, copies everything back and lets the next commit start the
    /// file over (`journal_size_limit` then cuts it to at most 8 MiB). If readers outlast
    /// the wait, the next attempt waits [`WAL_RETRY_FIRST`], doubling, or until the file has
    /// grown by another [`WAL_RESTART_BYTES`], whichever comes first; the larger the file, the
    /// longer an attempt may wait for readers (see [`restart_wait`]).
    fn keep_wal_bounded(&self, conn: &mut Connection) {
        let mut watch = lock(&self.wal_watch);
        watch.countdown -= 1;
        if watch.countdown > 0 {
            return;
        }
        watch.countdown = WAL_CHECK_EVERY;
        let size = std::fs::metadata(&self.wal).map_or(0, |m| m.len());
        if !watch.due(size, Instant::now()) {
            return;
        }
        let copied = passive_checkpoint(conn);
        let restarted = watch.worth_waiting(copied) && self.restart_wal(conn, restart_wait(size));
        watch.record(restarted, size, Instant::now(), copied);
    }

    /// A `RESTART` checkpoint, tried for at most `wait`; whether it got
    /// through. Its errors are not the callers' (their writes are committed): a real I/O
    /// problem shows at the next commit.
    ///
    /// SQLite waits (through the busy handler) for the write lock and for readers, but not for
    /// the checkpoint lock: while another connection runs a checkpoint, the attempt fails at
    /// once. Another handle or process committing back to back runs a passive checkpoint
    /// after nearly every commit once its WAL is large, so the attempt is repeated here until
    /// the same deadline.
    fn restart_wal(&self, conn: &mut Connection, wait: Duration) -> bool {
        thread_local! {
            static GIVE_UP: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
        }
        /// Polls often (SQLite's own busy timeout sleeps up to 100 ms at a time), so the
        /// checkpoint gets through soon after the last old reader finishes.
        fn poll(_attempt: i32) -> bool {
            if GIVE_UP.get().is_none_or(|at| Instant::now() >= at) {
                return false;
            }
            std::thread::sleep(WAL_RESTART_POLL);
            true
        }
        let give_up = Instant::now() + wait;
        GIVE_UP.set(Some(give_up));
        if conn.busy_handler(Some(poll)).is_err() {
            return false;
        }
        let restarted = loop {
            match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)) {
                Ok(0) => break true,
                // 1: the checkpoint lock was taken, or the wait ran out.
                Ok(_) if Instant::now() < give_up => std::thread::sleep(WAL_RESTART_POLL),
                Err(e) if is_busy_sqlite(&e) && Instant::now() < give_up => {
                    std::thread::sleep(WAL_RESTART_POLL);
                }
                Ok(_) | Err(_) => break false,
            }
        };
        let _ = conn.busy_timeout(Duration::ZERO);
        GIVE_UP.set(None);
        restarted
    }

    /// Applies `ops` all-or-nothing and returns once they are durable (or have failed).
    pub(crate) fn apply(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        let _caller = Caller::enter(&self.callers);
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Waiting),
            wake: Condvar::new(),
        });
        lock(&self.queue).push(Request {
            ops,
            slot: Arc::clone(&slot),
        });
        loop {
            self.lead_if_free(&slot);
            let mut state = lock(&slot.state);
            loop {
                match std::mem::replace(&mut *state, State::Waiting) {
                    State::Done(result) => return result,
                    State::Lead => break,
                    State::Waiting => {
                        let (next, timeout) = slot
                            .wake
                            .wait_timeout(state, RECHECK)
                            .unwrap_or_else(PoisonError::into_inner);
                        state = next;
                        if timeout.timed_out() {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// If no other caller holds the connection, commits everything queued as one group and
    /// hands out the results; then, if more requests arrived meanwhile, wakes the caller of
    /// the oldest to lead the next group.
    fn lead_if_free(&self, own: &Arc<Slot>) {
        let mut conn = match self.conn.try_lock() {
            Ok(conn) => conn,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let mut group = std::mem::take(&mut *lock(&self.queue));
        if group.is_empty() {
            drop(conn);
        } else {
            // The leader's own request may have been committed by an earlier group already (it
            // was told to lead, but another caller got the connection first); it is then one
            // more caller outside this group, and not one to wait for.
            let outside = usize::from(!group.iter().any(|r| Arc::ptr_eq(&r.slot, own)));
            // A panic while committing (a bug) must still answer every caller in the group;
            // the transaction's guards roll it back as the panic unwinds.
            let commit =
                std::panic::AssertUnwindSafe(|| self.commit_group(&mut conn, &mut group, outside));
            let results = std::panic::catch_unwind(commit).unwrap_or_else(|_| {
                fail_all(&group, || {
                    StateStoreError::Backend(BackendError::new(
                        "writing",
                        "internal error: committing this write panicked; it was rolled back",
                    ))
                })
            });
            // After the group is settled, so that nothing here can turn a committed write
            // into an error (and a panic here, a bug, must not leave callers unanswered).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.keep_wal_bounded(&mut conn);
            }));
            // Free the connection before answering: the first caller back with a new request
            // starts the next group while the others are still being woken, and they join it.
            drop(conn);
            for (request, result) in group.into_iter().zip(results) {
                request.slot.set(State::Done(result));
            }
        }
        if let Some(next) = lock(&self.queue).first() {
            let mut state = lock(&next.slot.state);
            if matches!(*state, State::Waiting) {
                *state = State::Lead;
                next.slot.wake.notify_one();
            }
        }
    }

    /// Requests that arrived since the group took the queue, for a group that is ready to
    /// commit; `in_group` counts the callers not to wait for (the group's, and a leader whose
    /// own request is not in it).
    ///
    /// When none has arrived but callers not in the group are still inside [`Writer::apply`]
    /// (answered a moment ago and on their way out, so often about to come back with their
    /// next write), waits for one of them to queue a request or leave, yielding the CPU to
    /// them. It waits at most as long as the last commit took: a request that joins saves a
    /// commit of its own, so the wait costs at worst what it could save. A lone writer never
    /// waits: it is the only caller.
    fn late_joiners(&self, in_group: usize) -> Vec<Request> {
        let mut deadline = None;
        loop {
            let joined = std::mem::take(&mut *lock(&self.queue));
            if !joined.is_empty() || self.callers.load(Ordering::SeqCst) <= in_group {
                return joined;
            }
            let now = Instant::now();
            let deadline = *deadline.get_or_insert_with(|| {
                now + Duration::from_nanos(self.last_commit_ns.load(Ordering::Relaxed))
            });
            if now >= deadline {
                return joined;
            }
            std::thread::yield_now();
        }
    }

    /// Runs `f` on the write connection between groups, for statements that cannot run
    /// inside a group's transaction (`VACUUM`); this handle's writers wait meanwhile. Fails
    /// without running it when the store file changed as [`OpenedFile`] watches for.
    pub(crate) fn exclusive<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.conn);
        if let Some(what) = self.file.changed() {
            return Err(self.file.error(what));
        }
        f(&mut conn)
    }

    /// Fails as a write would when the store file changed as [`OpenedFile`] watches for:
    /// for what reads instead of writing on this handle's behalf (a gc that finds nothing
    /// to remove), so that it does not report on a file that is not the store any more.
    pub(crate) fn check_file(&self) -> Result<()> {
        match self.file.changed() {
            Some(what) => Err(self.file.error(what)),
            None => Ok(()),
        }
    }

    /// Write requests committed so far, and the transactions that committed them.
    pub(crate) fn committed(&self) -> (u64, u64) {
        (
            self.committed_writes.load(Ordering::Relaxed),
            self.committed_transactions.load(Ordering::Relaxed),
        )
    }

    /// Closes the connection (checkpointing the WAL if it is the last one).
    pub(crate) fn close(self) {
        drop(
            self.conn
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    /// Commits `group`, and the requests that join it while it runs, as one transaction; retries
    /// the whole group while another connection holds the write lock. One result per request of
    /// `group` as it ends.
    fn commit_group(
        &self,
        conn: &mut Connection,
        group: &mut Vec<Request>,
        leader_outside: usize,
    ) -> Vec<Result<Vec<Outcome>>> {
        let busy_timeout = self.busy_timeout;
        let deadline = Instant::now() + busy_timeout;
        let mut backoff = super::Backoff::new();
        loop {
            match self.try_group(conn, group, leader_outside) {
                Ok(results) => return results,
                Err(GroupFailure::Busy) if Instant::now() < deadline => backoff.pause(),
                Err(GroupFailure::Moved(what)) => {
                    return fail_all(group, || self.file.error(what));
                }
                Err(GroupFailure::Busy) => {
                    let message = format!(
                        "another connection held the store's write lock for longer than the \
                         busy timeout ({busy_timeout:?})"
                    );
                    return fail_all(group, || {
                        StateStoreError::Backend(
                            BackendError::new("writing", message.clone()).busy(),
                        )
                    });
                }
                Err(GroupFailure::Lost(e)) => {
                    // The cause as SQLite reported it: a storage-full error's own text would
                    // say "free some space" twice.
                    let cause = match &e {
                        StateStoreError::StorageFull(b) | StateStoreError::Backend(b) => {
                            b.to_string()
                        }
                        other => other.to_string(),
                    };
                    let message = format!(
                        "SQLite rolled back the whole transaction of this write's group, so \
                         nothing of it was stored: {cause}"
                    );
                    let full = matches!(e, StateStoreError::StorageFull(_));
                    return fail_all(group, || {
                        let error = BackendError::new("writing", message.clone());
                        if full {
                            StateStoreError::StorageFull(error)
                        } else {
                            StateStoreError::Backend(error)
                        }
                    });
                }
                Err(GroupFailure::Fatal(e)) => {
                    return fail_all(group, || map_sqlite_error("committing", copy_of(&e)));
                }
                Err(GroupFailure::InDoubt(e)) => {
                    let context = "committing";
                    let unsettled = match settle(conn, Instant::now() + busy_timeout) {
                        // The failed group's frames can no longer be recovered: a plain
                        // failure, nothing written.
                        Ok(()) => {
                            return fail_all(group, || map_sqlite_error(context, copy_of(&e)));
                        }
                        Err(settling) => settling,
                    };
                    return fail_all(group, || {
                        let message = format!(
                            "{e}; SQLite may have written this write to its log before \
                             failing: it is not applied, but unless a later write on this \
                             handle succeeds first, the store may hold it when next opened \
                             (a write to settle it at once failed too: {unsettled})"
                        );
                        match map_sqlite_error(context, copy_of(&e)) {
                            StateStoreError::StorageFull(_) => StateStoreError::StorageFull(
                                BackendError::new(context, message).in_doubt(),
                            ),
                            _ => StateStoreError::Backend(
                                BackendError::new(context, message).in_doubt(),
                            ),
                        }
                    });
                }
            }
        }
    }

    /// One attempt at [`Writer::commit_group`]: `Err` when the whole group must be retried
    /// or has failed as one.
    fn try_group(
        &self,
        conn: &Connection,
        group: &mut Vec<Request>,
        leader_outside: usize,
    ) -> std::result::Result<Vec<Result<Vec<Outcome>>>, GroupFailure> {
        let classify = |e: rusqlite::Error| {
            if is_busy_sqlite(&e) {
                GroupFailure::Busy
            } else {
                GroupFailure::Fatal(e)
            }
        };
        if let Some(what) = self.file.changed() {
            return Err(GroupFailure::Moved(what));
        }
        let tx = Scope::begin(conn).map_err(classify)?;
        let mut results = Vec::with_capacity(group.len());
        let mut cache = TxCache::default();
        if let [only] = group.as_slice() {
            // One request: the transaction itself is its all-or-nothing boundary. Requests that
            // join later get savepoints of their own.
            let result = apply_ops(conn, &mut cache, &only.ops);
            if let Err(e) = &result {
                if e.is_busy() {
                    return Err(GroupFailure::Busy);
                }
                // Dropping the transaction rolls it back.
                return Ok(vec![result]);
            }
            results.push(result);
        }
        loop {
            for request in &group[results.len()..] {
                let sp = Scope::savepoint(conn).map_err(classify)?;
                let result = apply_ops(conn, &mut cache, &request.ops);
                match result {
                    Ok(outcomes) => {
                        sp.commit().map_err(classify)?;
                        results.push(Ok(outcomes));
                    }
                    Err(e) if e.is_busy() => return Err(GroupFailure::Busy),
                    // Some failures (a full disk, an I/O error) make SQLite roll back the whole
                    // transaction, not just the statement: every request of the group is lost,
                    // and anything run now would commit on its own, outside the group.
                    Err(e) if conn.is_autocommit() => return Err(GroupFailure::Lost(e)),
                    // Dropping the savepoint rolls back just this request, which makes what the
                    // cache learned from it untrue.
                    Err(e) => {
                        drop(sp);
                        cache.clear();
                        results.push(Err(e));
                    }
                }
            }
            if group.len() >= MAX_GROUP {
                break;
            }
            let joined = self.late_joiners(group.len() + leader_outside);
            if joined.is_empty() {
                break;
            }
            group.extend(joined);
        }
        let started = Instant::now();
        // Any failure now comes after SQLite may have appended the group's pages, commit
        // mark included, to the WAL: growing the -shm index, or the sync, can fail after
        // that. It rolls the transaction back here, but a later open of the store recovers
        // the log from the file and would find the commit, unless a later successful commit
        // overwrites it first ([`settle`]).
        tx.commit().map_err(|e| {
            if is_busy_sqlite(&e) {
                GroupFailure::Busy
            } else {
                GroupFailure::InDoubt(e)
            }
        })?;
        let took = started.elapsed().min(MAX_JOIN_WAIT);
        self.last_commit_ns
            .store(took.as_nanos() as u64, Ordering::Relaxed);
        let stored = results.iter().filter(|r| r.is_ok()).count();
        self.committed_writes
            .fetch_add(stored as u64, Ordering::Relaxed);
        self.committed_transactions.fetch_add(1, Ordering::Relaxed);
        Ok(results)
    }
}

/// Makes sure the transaction whose `COMMIT` just failed on `conn` can never be recovered
/// from the WAL, by committing one that changes nothing but still writes a page.
///
/// A failed `COMMIT` may have appended the transaction's frames, commit mark included, to the
/// WAL before failing (growing the `-shm` index, or the sync, fails after that). This handle
/// rolled it back, but recovery at the next open reads the file, not this handle's memory,
/// and would find it committed. The next transaction's frames are written where the failed
/// one's begin, and recovery stops at the first frame after its commit mark, whose checksum
/// no longer follows on. `user_version` is rewritten with the value it has, which makes
/// SQLite write the header page, so the write is never empty. It is synced whatever the
/// store's durability: the failed frames may already be on disk. Another connection holding
/// the write lock is waited for until `deadline` (its own commit would settle it too).
fn settle(conn: &Connection, deadline: Instant) -> rusqlite::Result<()> {
    let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
    // FULL is 2; EXTRA (3) syncs as much.
    let weaker = synchronous < 2;
    if weaker {
        conn.pragma_update(None, "synchronous", 2)?;
    }
    let mut backoff = super::Backoff::new();
    let settled = loop {
        let attempt = (|| {
            let tx = Scope::begin(conn)?;
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            conn.pragma_update(None, "user_version", version)?;
            tx.commit()
        })();
        match attempt {
            Err(e) if is_busy_sqlite(&e) && Instant::now() < deadline => backoff.pause(),
            other => break other,
        }
    };
    if weaker {
        // Failing to restore it costs speed, not safety: the settling write's result stands.
        let _ = conn.pragma_update(None, "synchronous", synchronous);
    }
    settled
}

/// `e` again (rusqlite errors cannot be cloned), with its codes and message: one for each
/// caller of a group that failed as one.
fn copy_of(e: &rusqlite::Error) -> rusqlite::Error {
    let code = e.sqlite_error().copied().unwrap_or(rusqlite::ffi::Error {
        code: ErrorCode::Unknown,
        extended_code: 0,
    });
    rusqlite::Error::SqliteFailure(code, Some(e.to_string()))
}

/// One result per request of `group`, every one the error `error` makes.
fn fail_all(group: &[Request], error: impl Fn() -> StateStoreError) -> Vec<Result<Vec<Outcome>>> {
    group.iter().map(|_| Err(error())).collect()
}

fn is_busy_sqlite(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Why a whole group attempt failed.
enum GroupFailure {
    /// Another connection holds the lock: retry the whole group.
    Busy,
    /// Beginning the transaction, or a savepoint, failed: every request fails with this.
    Fatal(rusqlite::Error),
    /// `COMMIT` failed, perhaps after its pages reached the WAL (see
    /// [`StateStoreError::is_in_doubt`]): every request fails with this.
    InDoubt(rusqlite::Error),
    /// A request's failure made SQLite roll back the whole transaction: every request fails.
    Lost(StateStoreError),
    /// The store's path names another file than the one opened, or the file got a second
    /// name (see [`OpenedFile`]).
    Moved(&'static str),
}

/// A transaction or savepoint driven by cached statements (rusqlite's `Transaction` parses
/// `BEGIN`/`COMMIT` text on every use, a measurable share of a small write). Rolls back on
/// drop unless finished.
struct Scope<'c> {
    conn: &'c Connection,
    rollback: &'static str,
    open: bool,
}

impl<'c> Scope<'c> {
    fn run(conn: &Connection, sql: &'static str) -> rusqlite::Result<()> {
        conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        Self::run(conn, "BEGIN IMMEDIATE")?;
        Ok(Self {
            conn,
            rollback: "ROLLBACK",
            open: true,
        })
    }

    fn savepoint(conn: &'c Connection) -> rusqlite::Result<Self> {
        Self::run(conn, "SAVEPOINT request")?;
        Ok(Self {
            conn,
            rollback: "ROLLBACK TO request",
            open: true,
        })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        let sql = if self.rollback == "ROLLBACK" {
            "COMMIT"
        } else {
            "RELEASE request"
        };
        Self::run(self.conn, sql)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = Self::run(self.conn, self.rollback);
            if self.rollback != "ROLLBACK" {
                // ROLLBACK TO leaves the savepoint open; release it (now empty).
                let _ = Self::run(self.conn, "RELEASE request");
            }
        }
    }
}

fn apply_ops(tx: &Connection, cache: &mut TxCache, ops: &[Op]) -> Result<Vec<Outcome>> {
    ops.iter().map(|op| apply_op(tx, cache, op)).collect()
}

/// Applies one op in the write transaction. Snapshots, ref moves and gc's cut-offs take the
/// time here, once the write lock is held: a request may have waited for it.
fn apply_op(tx: &Connection, cache: &mut TxCache, op: &Op) -> Result<Outcome> {
    let now = time::OffsetDateTime::now_utc;
    Ok(match op {
        Op::PutState {
            data_ref,
            hash,
            data,
        } => {
            ops::put_state(
                tx,
                cache,
                data_ref,
                hash,
                &data.bytes,
                data.content_type.as_deref(),
            )?;
            Outcome::State(*data_ref)
        }
        Op::CommitNode {
            parent_ids,
            data_ref,
            metadata,
        } => Outcome::Node(ops::commit_node(tx, cache, parent_ids, data_ref, metadata)?),
        Op::Snapshot { node_id } => Outcome::Snapshot(ops::snapshot(tx, cache, node_id, now())?),
        Op::DeleteSnapshot { id } => {
            ops::delete_snapshot(tx, id)?;
            Outcome::Done
        }
        Op::Collect(options) => {
            // See `Op::Collect`.
            let cutoffs = options.cutoffs(now());
            let report = super::gc::collect(tx, cutoffs)?;
            // Nodes it knew of may be gone.
            cache.clear();
            Outcome::Collected(report)
        }
        Op::CollectStep(step) => {
            super::gc::run_step(tx, step)?;
            // Nodes and byte strings it knew of may be gone.
            cache.clear();
            Outcome::Done
        }
        Op::SetRef {
            name,
            expected,
            new,
            message,
        } => {
            ops::set_ref(
                tx,
                cache,
                name,
                expected.as_ref(),
                new,
                message.as_deref(),
                now(),
            )?;
            Outcome::Done
        }
        Op::DeleteRef { name, expected } => {
            ops::delete_ref(tx, name, expected, now())?;
            Outcome::Done
        }
        Op::Import {
            package,
            data_hash,
            at,
        } => Outcome::Snapshot(ops::import_snapshot(tx, cache, package, data_hash, *at)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::StateDataRef;
    use crate::model::StateData;

    /// A request that puts `bytes` with `content_type`, which the test triggers act on.
    fn put(bytes: &[u8], content_type: &str) -> Request {
        let data = StateData::new(bytes.to_vec()).with_content_type(content_type);
        Request {
            ops: vec![Op::PutState {
                data_ref: StateDataRef::new_v7(),
                hash: data.hash(),
                data,
            }],
            slot: Arc::new(Slot {
                state: Mutex::new(State::Waiting),
                wake: Condvar::new(),
            }),
        }
    }

    /// A writer on a new store whose connection fails some inserts on purpose: content type
    /// `abort-all` makes SQLite roll back the whole transaction (as a full disk or an I/O
    /// error can), `fail` fails just the statement (as a broken constraint does), and
    /// `fail-at-commit` makes the group's `COMMIT` fail (a deferred foreign key it breaks;
    /// the store has none, but `COMMIT` fails there as an I/O error would).
    fn writer(dir: &std::path::Path) -> Writer {
        let path = dir.join("w.db");
        let mut conn = Connection::open(&path).unwrap();
        super::super::schema::stamp_new(&conn).unwrap();
        super::super::schema::migrate(&mut conn, &path).unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TEMP TRIGGER abort_all BEFORE INSERT ON state_data
               WHEN NEW.content_type = 'abort-all'
               BEGIN SELECT RAISE(ROLLBACK, 'the whole transaction is gone'); END;
             CREATE TEMP TRIGGER fail_one BEFORE INSERT ON state_data
               WHEN NEW.content_type = 'fail'
               BEGIN SELECT RAISE(ABORT, 'this statement failed'); END;
             CREATE TEMP TABLE target (id INTEGER PRIMARY KEY);
             CREATE TEMP TABLE dangling (
               id INTEGER REFERENCES target(id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TEMP TRIGGER fail_at_commit BEFORE INSERT ON state_data
               WHEN NEW.content_type = 'fail-at-commit'
               BEGIN INSERT INTO dangling VALUES (42); END;",
        )
        .unwrap();
        Writer::new(
            conn,
            Duration::from_secs(1),
            super::super::schema::wal_path(&path),
            &path,
        )
    }

    fn stored(w: &Writer) -> Vec<String> {
        let conn = lock(&w.conn);
        let mut stmt = conn
            .prepare("SELECT b.bytes FROM state_data d JOIN blobs b ON b.id = d.blob_id")
            .unwrap();
        let mut all: Vec<String> = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|b| String::from_utf8(b.unwrap()).unwrap())
            .collect();
        all.sort();
        all
    }

    #[test]
    fn a_wal_that_keeps_growing_is_retried_before_the_pause_ends() {
        const MIB: u64 = 1 << 20;
        let start = Instant::now();
        let mut watch = WalWatch::new();
        assert!(!watch.due(WAL_RESTART_BYTES, start), "small enough");
        assert!(watch.due(20 * MIB, start));
        // Readers outlasted the attempt at 20 MiB: no new one during the pause...
        watch.record(false, 20 * MIB, start, None);
        let soon = start + Duration::from_millis(10);
        assert!(!watch.due(30 * MIB, soon));
        // ...unless the file grows by another WAL_RESTART_BYTES meanwhile...
        assert!(watch.due(20 * MIB + WAL_RESTART_BYTES, soon));
        // ...or the pause is over.
        assert!(watch.due(21 * MIB, start + WAL_RETRY_FIRST));
        // A second failure doubles the pause and moves the size mark.
        watch.record(false, 40 * MIB, soon, None);
        let later = soon + WAL_RETRY_FIRST;
        assert!(!watch.due(50 * MIB, later));
        assert!(watch.due(40 * MIB + WAL_RESTART_BYTES, later));
        assert!(watch.due(50 * MIB, soon + 2 * WAL_RETRY_FIRST));
        // Success clears both.
        watch.record(true, 40 * MIB, later, None);
        assert!(watch.due(20 * MIB, later));

        // A reader that stopped the copy short: the first attempt waits for it...
        assert!(watch.worth_waiting(Some((9_000, 4_000))));
        watch.record(false, 40 * MIB, later, Some((9_000, 4_000)));
        // ...and no later one while the copy still stops where it did (the same reader)...
        assert!(!watch.worth_waiting(Some((12_000, 4_000))));
        // ...in the same WAL: one started over since has fewer frames, and a reader stopping
        // its copy at the same frame is another one.
        assert!(watch.worth_waiting(Some((5_000, 4_000))));
        // ...but once it moves (that reader finished), or all was copied, or nothing is
        // known, the attempt waits again.
        assert!(watch.worth_waiting(Some((12_000, 7_000))));
        assert!(watch.worth_waiting(Some((12_000, 12_000))));
        assert!(watch.worth_waiting(None));
        watch.record(true, 40 * MIB, later, Some((12_000, 12_000)));
        assert!(
            watch.worth_waiting(Some((9_000, 4_000))),
            "forgotten once restarted"
        );

        // The wait for readers grows with the file, within bounds.
        assert_eq!(restart_wait(WAL_RESTART_BYTES + 1), WAL_RESTART_WAIT);
        assert_eq!(restart_wait(3 * WAL_RESTART_BYTES), 3 * WAL_RESTART_WAIT);
        assert_eq!(restart_wait(u64::MAX), WAL_RESTART_WAIT_MAX);
    }

    /// The file is remembered by its absolute path: a relative path would name another file
    /// once the process changes directory.
    #[test]
    fn the_opened_file_is_remembered_by_its_absolute_path() {
        let opened = OpenedFile::new(std::path::Path::new("Cargo.toml"));
        assert!(opened.path.is_absolute(), "{}", opened.path.display());
        assert!(opened.id.is_some());
        assert_eq!(opened.changed(), None);
        let gone = OpenedFile {
            path: opened.path.with_file_name("no-such-file"),
            id: opened.id,
        };
        assert_eq!(gone.changed(), Some("was moved, replaced or deleted"));
    }

    /// A `COMMIT` that fails fails every request of its group, stores nothing, and leaves
    /// the writer working. The write that settles it succeeds here, so the failure is not in
    /// doubt (`tests/it/failed_sync.rs` fails the settling write too).
    #[test]
    fn a_failed_commit_fails_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let mut group = vec![put(b"a", "ok"), put(b"b", "fail-at-commit")];
        let results = w.commit_group(&mut lock(&w.conn), &mut group, 0);
        assert_eq!(results.len(), 2);
        for r in &results {
            let e = r.as_ref().expect_err("every request of the group fails");
            assert!(!e.is_in_doubt(), "{e}");
            assert!(!e.is_busy(), "{e}");
            let text = e.to_string();
            assert!(text.contains("FOREIGN KEY"), "{text}");
            assert!(!text.contains("next opened"), "{text}");
        }
        assert!(stored(&w).is_empty());
        let mut group = vec![put(b"c", "ok")];
        let results = w.commit_group(&mut lock(&w.conn), &mut group, 0);
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert_eq!(stored(&w), ["c"]);
    }

    /// The settling write waits for another connection's write lock, up to its deadline,
    /// and leaves the connection's `synchronous` as it was.
    #[test]
    fn settling_waits_for_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let conn = lock(&w.conn);
        // As the store's write connection: SQLite's busy handler off, the writer retries.
        conn.busy_timeout(Duration::ZERO).unwrap();
        conn.pragma_update(None, "synchronous", 1).unwrap();
        let other = Connection::open(dir.path().join("w.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let e = settle(&conn, Instant::now()).unwrap_err();
        assert!(is_busy_sqlite(&e), "{e}");
        let (held, released) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            held.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            other.execute_batch("COMMIT").unwrap();
        });
        released.recv().unwrap();
        settle(&conn, Instant::now() + Duration::from_secs(10)).unwrap();
        holder.join().unwrap();
        let synchronous: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 1);
    }

    #[test]
    fn a_failure_that_ends_the_transaction_fails_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let mut group = vec![put(b"a", "ok"), put(b"b", "abort-all"), put(b"c", "ok")];
        let results = w.commit_group(&mut lock(&w.conn), &mut group, 0);
        assert_eq!(results.len(), 3);
        for r in &results {
            let e = r.as_ref().expect_err("every request of the group fails");
            assert!(
                e.to_string().contains("rolled back the whole transaction"),
                "{e}"
            );
        }
        assert!(
            stored(&w).is_empty(),
            "nothing of the group is stored, and no request committed on its own"
        );

        // The writer goes on; a failure that SQLite confines to its statement costs only the
        // request it belongs to.
        let mut group = vec![put(b"d", "ok"), put(b"e", "fail"), put(b"f", "ok")];
        let results = w.commit_group(&mut lock(&w.conn), &mut group, 0);
        let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, true]);
        assert_eq!(stored(&w), ["d", "f"]);
    }
}
