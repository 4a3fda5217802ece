//! The public data types: state bytes, metadata, nodes and snapshots.

use time::OffsetDateTime;

use crate::id::{ContentHash, SnapshotId, StateDataRef, StateNodeId};

/// Serialized state bytes with an optional content type.
///
/// The engine never interprets the bytes; the content type is recorded and hashed into every
/// node that holds this state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StateData {
    /// The serialized state.
    pub bytes: Vec<u8>,
    /// What the bytes are, e.g. `application/json` (free text; `None` if unknown).
    pub content_type: Option<String>,
}

impl StateData {
    /// State bytes without a content type.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            content_type: None,
        }
    }

    /// Sets the content type.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// `blake3(bytes)`: the hash every node holding this state records as its `data_hash`.
    pub fn hash(&self) -> ContentHash {
        ContentHash::of(&self.bytes)
    }
}

/// The who/when/why of a version. Both fields are part of the node's id.
///
/// Equality compares `created_at` as an instant (nanosecond precision); the UTC offset it was
/// written with is not part of the id and reads back as UTC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateMetadata {
    /// When this version was made.
    pub created_at: OffsetDateTime,
    /// A free-text label, e.g. `tick 42` or `before migration`.
    pub label: Option<String>,
}

impl StateMetadata {
    /// Metadata with the given time and label.
    pub fn new(created_at: OffsetDateTime, label: Option<String>) -> Self {
        Self { created_at, label }
    }

    /// Metadata stamped with the current UTC time: `StateMetadata::now("tick 7")`,
    /// `now(format!("tick {n}"))`, `now(Some(label))`, or `now(None)` for no label.
    ///
    /// ```
    /// use stategraph::StateMetadata;
    ///
    /// assert_eq!(StateMetadata::now("tick 7").label.as_deref(), Some("tick 7"));
    /// assert_eq!(StateMetadata::now(format!("tick {}", 8)).label.as_deref(), Some("tick 8"));
    /// assert_eq!(StateMetadata::now(Some("x".to_owned())).label.as_deref(), Some("x"));
    /// assert_eq!(StateMetadata::now(None).label, None);
    /// ```
    pub fn now(label: impl IntoLabel) -> Self {
        Self {
            created_at: OffsetDateTime::now_utc(),
            label: label.into_label(),
        }
    }
}

/// What [`StateMetadata::now`] takes as a label: text (`&str`, `String`) or an
/// `Option<String>` (`None`: no label).
pub trait IntoLabel {
    /// The label, if any.
    fn into_label(self) -> Option<String>;
}

impl IntoLabel for &str {
    fn into_label(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl IntoLabel for String {
    fn into_label(self) -> Option<String> {
        Some(self)
    }
}

impl IntoLabel for &String {
    fn into_label(self) -> Option<String> {
        Some(self.clone())
    }
}

impl IntoLabel for Option<String> {
    fn into_label(self) -> Option<String> {
        self
    }
}

/// A version in the state graph: its parents, the state it holds, and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateNode {
    /// The node's content-derived id.
    pub id: StateNodeId,
    /// Parent node ids in commit order; the first parent is the mainline. Empty for a root.
    pub parent_ids: Vec<StateNodeId>,
    /// The stored state this node holds.
    pub data_ref: StateDataRef,
    /// `blake3` of the state bytes.
    pub data_hash: ContentHash,
    /// The content type of the state, as hashed into the id.
    pub content_type: Option<String>,
    /// When and why this version was made.
    pub metadata: StateMetadata,
    /// 1 for a root, otherwise 1 + the largest parent generation.
    pub generation: u64,
}

/// A restore point: a node id and the state it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSnapshot {
    /// The node the snapshot points at.
    pub node_id: StateNodeId,
    /// The node's state.
    pub state: StateData,
}

/// A named pointer to a node: a branch such as `main` or `agents/7/main`, or a tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ref {
    /// The ref's full name.
    pub name: String,
    /// The node it points at.
    pub target: StateNodeId,
}

/// One move of a ref, as recorded in its ref log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefLogEntry {
    /// Where the ref pointed before (`None`: it was created by this move).
    pub old: Option<StateNodeId>,
    /// Where it pointed after (`None`: it was deleted by this move).
    pub new: Option<StateNodeId>,
    /// When the move happened.
    pub at: OffsetDateTime,
    /// Why, if the caller said.
    pub message: Option<String>,
}

/// A snapshot as listed: its id, its node and when it was first taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot's id.
    pub id: SnapshotId,
    /// The node it points at.
    pub node_id: StateNodeId,
    /// When the snapshot was first taken; for one imported from a package, when its node
    /// was created (a package does not record the snapshot's own time).
    pub created_at: OffsetDateTime,
}

/// What is stored under a [`StateDataRef`], without the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    /// The ref.
    pub data_ref: StateDataRef,
    /// `blake3` of the bytes.
    pub hash: ContentHash,
    /// The content type given to `put_state`.
    pub content_type: Option<String>,
    /// The length of the bytes.
    pub len: u64,
}
