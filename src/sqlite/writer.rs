//! The writer thread: the one connection that writes, and group commit.
//!
//! Every write of every handle to a store goes to this thread as a request (a list of
//! [`Op`]s and a reply callback). The thread takes the first waiting request and every other
//! request already queued behind it, applies them in one `BEGIN IMMEDIATE` transaction —
//! each inside its own savepoint, so one request's error does not undo another's — commits
//! once, and only then answers each caller. With `Durability::Immediate` that is one fsync
//! for the whole group instead of one per caller.
//!
//! When another process holds the write lock, the transaction is retried with backoff until
//! the busy timeout; callers never see `SQLITE_BUSY` before that.

use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::map_sqlite_error;
use super::ops;
use crate::error::{BackendError, Result, StateStoreError};
use crate::store::{Op, Outcome};

/// How many requests one transaction takes at most, so a flood of writers cannot hold
/// replies back for long.
const MAX_GROUP: usize = 256;

type Reply = Box<dyn FnOnce(Result<Vec<Outcome>>) + Send>;

struct Request {
    ops: Vec<Op>,
    reply: Reply,
}

/// The handle to the writer thread; dropping it lets the thread finish and joins it.
pub(crate) struct Writer {
    requests: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> StateStoreError {
    StateStoreError::Backend(BackendError::new(
        "writing",
        "the store's writer thread has stopped (an earlier write panicked)",
    ))
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn start(conn: Connection, busy_timeout: Duration) -> Result<Self> {
        let (requests, queue) = channel();
        let thread = std::thread::Builder::new()
            .name("stategraph-writer".into())
            .spawn(move || run(conn, &queue, busy_timeout))
            .map_err(|e| StateStoreError::Backend(BackendError::new("starting the writer", e)))?;
        Ok(Self {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// Queues `ops` as one all-or-nothing request; `reply` is called once it is durable or
    /// has failed.
    pub(crate) fn submit(&self, ops: Vec<Op>, reply: Reply) {
        let request = Request { ops, reply };
        let Some(requests) = &self.requests else {
            return (request.reply)(Err(stopped()));
        };
        if let Err(unsent) = requests.send(request) {
            (unsent.0.reply)(Err(stopped()));
        }
    }

    /// Applies `ops` and waits for the answer.
    pub(crate) fn apply(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        let (tx, rx) = sync_channel(1);
        self.submit(
            ops,
            Box::new(move |result| {
                // The caller is blocked on `rx`; it cannot have gone away.
                let _ = tx.send(result);
            }),
        );
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after it has answered everything queued; joining
        // closes the connection (and checkpoints the WAL) before the store counts as closed.
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(mut conn: Connection, queue: &Receiver<Request>, busy_timeout: Duration) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let results = commit_group(&mut conn, &group, busy_timeout);
        for (request, result) in group.into_iter().zip(results) {
            (request.reply)(result);
        }
    }
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
    /// Beginning or committing the transaction failed: every request fails with this.
    Fatal(rusqlite::Error),
}

fn commit_group(
    conn: &mut Connection,
    group: &[Request],
    busy_timeout: Duration,
) -> Vec<Result<Vec<Outcome>>> {
    let deadline = Instant::now() + busy_timeout;
    let mut backoff = Duration::from_millis(1);
    loop {
        match try_group(conn, group) {
            Ok(results) => return results,
            Err(GroupFailure::Busy) if Instant::now() < deadline => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Err(GroupFailure::Busy) => {
                return group
                    .iter()
                    .map(|_| {
                        Err(StateStoreError::Backend(BackendError::new(
                            "writing",
                            format!(
                                "another connection held the store's write lock for longer than \
                                 the busy timeout ({busy_timeout:?})"
                            ),
                        )))
                    })
                    .collect();
            }
            Err(GroupFailure::Fatal(e)) => {
                let message = e.to_string();
                let code = e.sqlite_error_code();
                return group
                    .iter()
                    .map(|_| {
                        let again = rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error {
                                code: code.unwrap_or(ErrorCode::Unknown),
                                extended_code: 0,
                            },
                            Some(message.clone()),
                        );
                        Err(map_sqlite_error("committing", again))
                    })
                    .collect();
            }
        }
    }
}

fn try_group(
    conn: &mut Connection,
    group: &[Request],
) -> std::result::Result<Vec<Result<Vec<Outcome>>>, GroupFailure> {
    let classify = |e: rusqlite::Error| {
        if is_busy_sqlite(&e) {
            GroupFailure::Busy
        } else {
            GroupFailure::Fatal(e)
        }
    };
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    let mut results = Vec::with_capacity(group.len());
    if let [only] = group {
        // One request: the transaction itself is its all-or-nothing boundary.
        let result = apply_ops(&tx, &only.ops);
        if let Err(e) = &result {
            if super::is_busy(e) {
                return Err(GroupFailure::Busy);
            }
            // Dropping the transaction rolls it back.
            return Ok(vec![result]);
        }
        results.push(result);
    } else {
        for request in group {
            let sp = tx.savepoint().map_err(classify)?;
            let result = apply_ops(&sp, &request.ops);
            match &result {
                Ok(_) => sp.commit().map_err(classify)?,
                Err(e) if super::is_busy(e) => return Err(GroupFailure::Busy),
                // Dropping the savepoint rolls back just this request.
                Err(_) => drop(sp),
            }
            results.push(result);
        }
    }
    tx.commit().map_err(classify)?;
    Ok(results)
}

fn apply_ops(tx: &Connection, ops: &[Op]) -> Result<Vec<Outcome>> {
    ops.iter().map(|op| apply_op(tx, op)).collect()
}

fn apply_op(tx: &Connection, op: &Op) -> Result<Outcome> {
    Ok(match op {
        Op::PutState {
            data_ref,
            hash,
            data,
        } => {
            ops::put_state(
                tx,
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
        } => Outcome::Node(ops::commit_node(tx, parent_ids, data_ref, metadata)?),
        Op::Snapshot { node_id, at } => Outcome::Snapshot(ops::snapshot(tx, node_id, *at)?),
        Op::DeleteSnapshot { id } => {
            ops::delete_snapshot(tx, id)?;
            Outcome::Done
        }
        Op::SetRef {
            name,
            expected,
            new,
            message,
            at,
        } => {
            ops::set_ref(tx, name, expected.as_ref(), new, message.as_deref(), *at)?;
            Outcome::Done
        }
        Op::DeleteRef { name, expected, at } => {
            ops::delete_ref(tx, name, expected, *at)?;
            Outcome::Done
        }
        Op::Import {
            package,
            data_hash,
            at,
        } => Outcome::Snapshot(ops::import_snapshot(tx, package, data_hash, *at)?),
    })
}
