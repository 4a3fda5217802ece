//! The one error type of the crate.

use std::fmt;
use std::path::PathBuf;

use crate::id::{ParseIdError, SnapshotId, StateDataRef, StateNodeId};

/// Result type of every fallible operation in this crate.
pub type Result<T, E = StateStoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in a state store.
///
/// Every message is one readable line. Backend errors are wrapped in an opaque
/// [`BackendError`] so that adding a backend never changes this enum's shape.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateStoreError {
    /// No state data is stored under this ref.
    #[error("no state data with ref {data_ref}")]
    MissingState {
        /// The ref that was looked up.
        data_ref: StateDataRef,
    },

    /// No node with this id exists in the store.
    #[error("no node {id}")]
    MissingNode {
        /// The id that was looked up.
        id: StateNodeId,
    },

    /// No snapshot with this id exists in the store.
    #[error("no snapshot {id}")]
    MissingSnapshot {
        /// The id that was looked up.
        id: SnapshotId,
    },

    /// The caller passed something the store cannot accept; nothing was written.
    #[error("invalid {what}: {detail}")]
    InvalidInput {
        /// What was invalid, e.g. `parents`.
        what: &'static str,
        /// Why, in words.
        detail: String,
    },

    /// A ref's current value was not what the caller expected; nothing was changed.
    #[error("{}", ref_conflict(name, expected, actual))]
    RefConflict {
        /// The ref that was being updated.
        name: String,
        /// What the caller expected it to point at (`None`: that it did not exist).
        expected: Option<StateNodeId>,
        /// What it actually points at (`None`: it does not exist).
        actual: Option<StateNodeId>,
    },

    /// No ref with this name exists.
    #[error("no ref named {name:?}")]
    MissingRef {
        /// The name that was looked up.
        name: String,
    },

    /// A ref name broke the naming rules; nothing was changed.
    #[error("invalid ref name {name:?}: {reason}")]
    InvalidRefName {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// Text given as a revision matched nothing: not a ref, not a node id or id prefix.
    #[error("unknown revision {text:?}: not a ref name, node id or id prefix in this store")]
    UnknownRevision {
        /// The text that was given.
        text: String,
    },

    /// A short id prefix matched more than one node.
    #[error("ambiguous id prefix {prefix:?}: it matches {}", list(candidates))]
    AmbiguousId {
        /// The prefix that was given.
        prefix: String,
        /// Some of the nodes it matches (at most a handful).
        candidates: Vec<StateNodeId>,
    },

    /// An id given as text did not parse.
    #[error(transparent)]
    InvalidId(#[from] ParseIdError),

    /// Stored data failed an integrity check (a hash mismatch or an undecodable row).
    /// The store returned an error instead of wrong data.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was found corrupt, e.g. `state data 0190…`.
        what: String,
        /// What the check found.
        detail: String,
    },

    /// An ancestry question whose answer depends on history this store does not hold: the
    /// walk met a parent beyond a shallow boundary (ancestors never imported, or cut by
    /// history pruning) where the answer could lie. Importing that history answers it.
    #[error(
        "cannot answer {question}: the answer depends on history past parent {parent}, which is not stored here (a shallow boundary: never imported, or pruned)"
    )]
    ShallowHistory {
        /// The question asked, e.g. `is_ancestor`.
        question: &'static str,
        /// The first parent met that is not stored.
        parent: StateNodeId,
    },

    /// A history walk (a log, an ancestry question, a `~N` revision) read node `id`, and a
    /// `gc` running meanwhile removed it and the history below it before the walk got there:
    /// a walk holds no snapshot of the store between its reads. Nothing is damaged: the gc
    /// removed history nothing kept, or history pruning cut it; walking again sees the
    /// history as it is now (where `id` is gone).
    #[error(
        "node {id} was removed by a gc running while this walk read its history; walk again (the history it was on is no longer stored)"
    )]
    RemovedDuringWalk {
        /// The node the walk had read, which is no longer stored.
        id: StateNodeId,
    },

    /// The file is not a stategraph store; it was left untouched.
    #[error("{path} is not a stategraph store: {detail}")]
    NotAStore {
        /// The file that was opened.
        path: PathBuf,
        /// Why it was refused.
        detail: String,
    },

    /// The store was written in an on-disk format this version does not know; it was left
    /// untouched.
    #[error(
        "{path} uses store format version {found}, but this build of stategraph reads versions up to {supported}; upgrade stategraph to open it{}",
        far_ahead(*.found, *.supported)
    )]
    UnsupportedFormat {
        /// The file that was opened.
        path: PathBuf,
        /// The format version recorded in the file.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },

    /// A write was attempted on a store opened read-only.
    #[error("the store is open read-only; reopen it writable to {operation}")]
    ReadOnly {
        /// The operation that was refused.
        operation: &'static str,
    },

    /// The disk (or the database's size limit) is full; the operation was rolled back
    /// (unless [`is_in_doubt`](StateStoreError::is_in_doubt) says it may still appear).
    #[error(
        "storage full: {0}; free some space and retry{nothing}",
        nothing = if .0.in_doubt { "" } else { " (nothing was written)" }
    )]
    StorageFull(BackendError),

    /// The storage backend failed (I/O, locking, or an engine error).
    #[error("storage backend error: {0}")]
    Backend(#[from] BackendError),
}

fn ref_conflict(
    name: &str,
    expected: &Option<StateNodeId>,
    actual: &Option<StateNodeId>,
) -> String {
    match (expected, actual) {
        (Some(e), Some(a)) => format!("ref {name} moved: expected {e}, found {a}"),
        (None, Some(a)) => format!("ref {name} already exists (at {a}); expected no ref"),
        (Some(e), None) => format!("ref {name} does not exist (expected it at {e})"),
        (None, None) => format!("ref {name}: expected no ref, and there is none"),
    }
}

fn list(ids: &[StateNodeId]) -> String {
    let shown: Vec<String> = ids.iter().map(|id| id.to_short_hex(12)).collect();
    shown.join(", ")
}

impl StateStoreError {
    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Self::InvalidInput {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// True for the errors that mean "the thing asked for does not exist".
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            Self::MissingState { .. }
                | Self::MissingNode { .. }
                | Self::MissingSnapshot { .. }
                | Self::MissingRef { .. }
        )
    }

    /// True when stored data failed an integrity check.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }

    /// True when another connection or process held the store's lock for longer than the
    /// busy timeout: nothing was written, and the same call may succeed when retried later.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Backend(b) if b.busy)
    }

    /// True when a write failed while SQLite was committing it, after it may have written
    /// the write to its log: the write was not applied (this handle and others do not see
    /// it), but if this handle is closed before another write on it succeeds, the store may
    /// hold it when it is next opened. Such failures are I/O errors (a full disk, a failed
    /// `fsync`); a write that succeeds on the same handle afterwards settles it (the write
    /// that failed is then gone for good). The SQLite store tries such a write at once, so
    /// this is true only when that failed too. After reopening, look before redoing anything
    /// that must not happen twice; a compare-and-swap (`commit_on`, `set_ref` with the
    /// expected target) is safe to retry as it is.
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, Self::Backend(b) | Self::StorageFull(b) if b.in_doubt)
    }
}

/// An error from a storage backend, kept opaque so backends can change without breaking
/// callers. Its message is the backend's own, prefixed with what the store was doing.
pub struct BackendError {
    context: &'static str,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
    /// A lock another connection held past the busy timeout (see
    /// [`StateStoreError::is_busy`]).
    busy: bool,
    /// A commit that failed after it may have reached the log (see
    /// [`StateStoreError::is_in_doubt`]).
    in_doubt: bool,
}

impl BackendError {
    pub(crate) fn new(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            context,
            source: source.into(),
            busy: false,
            in_doubt: false,
        }
    }

    /// Marks the error as a commit whose write may still appear (see
    /// [`StateStoreError::is_in_doubt`]).
    pub(crate) fn in_doubt(mut self) -> Self {
        self.in_doubt = true;
        self
    }

    /// Marks the error as a lock held past the busy timeout.
    pub(crate) fn busy(mut self) -> Self {
        self.busy = true;
        self
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackendError({self})")
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// For a format version far past any release (versions go up by one a format change): the
/// likelier cause, said beside the usual advice.
fn far_ahead(found: i64, supported: i64) -> &'static str {
    if found > supported.saturating_add(100) {
        " (a version this far ahead more likely means the file's header is damaged)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk says "nothing was written" only when that is known.
    #[test]
    fn storage_full_in_doubt_does_not_promise_nothing_was_written() {
        let sure = StateStoreError::StorageFull(BackendError::new("committing", "disk full"));
        assert!(!sure.is_in_doubt());
        assert!(
            sure.to_string().ends_with("(nothing was written)"),
            "{sure}"
        );
        let unsure =
            StateStoreError::StorageFull(BackendError::new("committing", "disk full").in_doubt());
        assert!(unsure.is_in_doubt());
        assert_eq!(
            unsure.to_string(),
            "storage full: committing: disk full; free some space and retry"
        );
        let backend = StateStoreError::Backend(BackendError::new("committing", "I/O").in_doubt());
        assert!(backend.is_in_doubt() && !backend.is_busy());
    }
}
