//! Snapshot packages: a snapshot handed from one store to another, verifiable on arrival.
//!
//! A package carries one node (its parent ids, content type, metadata and generation), the
//! node's state bytes, and the node and snapshot ids. The receiver recomputes both ids from
//! the content before writing anything. The receiver may lack the node's ancestors; their ids
//! are then recorded as a *shallow boundary*, as git does for shallow clones.
//!
//! # Wire format (version 1)
//!
//! One CBOR array, deterministic as in [`codec`](crate::codec):
//!
//! ```text
//! [ "stategraph/snapshot-package", 1,
//!   node_id: bstr .size 32, snapshot_id: bstr .size 32,
//!   parents: [* bstr .size 32], content_type: tstr / null,
//!   metadata: [seconds: int, nanos: uint, label: tstr / null],
//!   generation: uint, bytes: bstr ]
//! ```

use ciborium::Value;

use crate::codec;
use crate::error::{Result, StateStoreError};
use crate::id::{ContentHash, SnapshotId, StateNodeId};
use crate::model::StateMetadata;

const MAGIC: &str = "stategraph/snapshot-package";
const VERSION: u64 = 1;

/// A snapshot with everything needed to recreate it in another store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPackage {
    /// The id of the packaged node, as the sender computed it.
    pub node_id: StateNodeId,
    /// The id of the snapshot, as the sender computed it.
    pub snapshot_id: SnapshotId,
    /// The node's parents in commit order (the receiver may not have them).
    pub parent_ids: Vec<StateNodeId>,
    /// The state's content type.
    pub content_type: Option<String>,
    /// The node's metadata.
    pub metadata: StateMetadata,
    /// The node's generation in the sender's store (not covered by the id).
    pub generation: u64,
    /// The state bytes.
    pub bytes: Vec<u8>,
}

fn malformed(detail: impl Into<String>) -> StateStoreError {
    StateStoreError::invalid("snapshot package", detail)
}

impl SnapshotPackage {
    /// Recomputes the data hash, node id and snapshot id from the content and checks them
    /// against the ids the package claims. Returns the data hash.
    ///
    /// # Errors
    /// [`StateStoreError::InvalidInput`] naming the id that does not match.
    pub fn verify(&self) -> Result<ContentHash> {
        codec::check_parents(&self.parent_ids)?;
        let data_hash = ContentHash::of(&self.bytes);
        let node_id = codec::node_id(
            &self.parent_ids,
            &data_hash,
            self.content_type.as_deref(),
            &self.metadata,
        );
        if node_id != self.node_id {
            return Err(malformed(format!(
                "its content hashes to node {node_id}, but it claims {}",
                self.node_id
            )));
        }
        if codec::snapshot_id(&node_id) != self.snapshot_id {
            return Err(malformed(format!(
                "snapshot id {} does not belong to node {node_id}",
                self.snapshot_id
            )));
        }
        // The generation is not covered by the ids (a receiver recomputes it when it holds
        // the parents), but it must at least be possible.
        if self.parent_ids.is_empty() && self.generation != 1 {
            return Err(malformed(format!(
                "generation {} for a node without parents (a root is generation 1)",
                self.generation
            )));
        }
        if !self.parent_ids.is_empty() && self.generation < 2 {
            return Err(malformed(format!(
                "generation {} for a node with parents (at least 2)",
                self.generation
            )));
        }
        if self.generation > codec::MAX_GENERATION {
            return Err(codec::generation_too_large(
                "snapshot package",
                self.generation,
            ));
        }
        Ok(data_hash)
    }

    /// Encodes the package in its wire format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::Text);
        let (seconds, nanos) = codec::split_time(self.metadata.created_at);
        let value = Value::Array(vec![
            Value::Text(MAGIC.to_owned()),
            Value::Integer(VERSION.into()),
            Value::Bytes(self.node_id.as_bytes().to_vec()),
            Value::Bytes(self.snapshot_id.as_bytes().to_vec()),
            Value::Array(
                self.parent_ids
                    .iter()
                    .map(|p| Value::Bytes(p.as_bytes().to_vec()))
                    .collect(),
            ),
            text(&self.content_type),
            Value::Array(vec![
                Value::Integer(seconds.into()),
                Value::Integer(nanos.into()),
                text(&self.metadata.label),
            ]),
            Value::Integer(self.generation.into()),
            Value::Bytes(self.bytes.clone()),
        ]);
        let mut out = Vec::with_capacity(self.bytes.len() + 256);
        // Serialising a `Value` into a Vec performs no I/O and has no failure case.
        if let Err(e) = ciborium::into_writer(&value, &mut out) {
            unreachable!("CBOR encoding into memory failed: {e}");
        }
        out
    }

    /// Decodes a package from its wire format and [verifies](Self::verify) it.
    ///
    /// # Errors
    /// [`StateStoreError::InvalidInput`] for anything that is not a well-formed, matching
    /// version-1 package (truncated, tampered, of another version, or not in the deterministic
    /// encoding [`to_bytes`](Self::to_bytes) writes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut rest = bytes;
        let value: Value = ciborium::from_reader(&mut rest).map_err(|e| {
            malformed(match e {
                ciborium::de::Error::Io(_) => "it is truncated (the CBOR ends early)".to_owned(),
                ciborium::de::Error::Syntax(at) => format!("it is not valid CBOR (at byte {at})"),
                ciborium::de::Error::Semantic(_, why) => format!("it is not valid CBOR ({why})"),
                ciborium::de::Error::RecursionLimitExceeded => "it nests too deeply".to_owned(),
            })
        })?;
        if !rest.is_empty() {
            return Err(malformed(format!(
                "{} byte(s) follow the package (two packages in one file, or a damaged one)",
                rest.len()
            )));
        }
        let Value::Array(items) = value else {
            return Err(malformed("not a CBOR array"));
        };
        let mut items = items.into_iter();
        let mut next = |what: &str| {
            items
                .next()
                .ok_or_else(|| malformed(format!("missing {what}")))
        };
        match next("magic")? {
            Value::Text(t) if t == MAGIC => {}
            _ => return Err(malformed("not a stategraph snapshot package")),
        }
        let version = uint(next("version")?, "version")?;
        if version != VERSION {
            return Err(malformed(format!(
                "package format version {version}; this build reads version {VERSION}"
            )));
        }
        let node_id = StateNodeId::from_bytes(hash(next("node id")?, "node id")?);
        let snapshot_id = SnapshotId::from_bytes(hash(next("snapshot id")?, "snapshot id")?);
        let Value::Array(parents) = next("parents")? else {
            return Err(malformed("parents is not an array"));
        };
        let parent_ids = parents
            .into_iter()
            .map(|p| hash(p, "parent id").map(StateNodeId::from_bytes))
            .collect::<Result<Vec<_>>>()?;
        let content_type = opt_text(next("content type")?, "content type")?;
        let Value::Array(meta) = next("metadata")? else {
            return Err(malformed("metadata is not an array"));
        };
        let [seconds, nanos, label]: [Value; 3] = meta
            .try_into()
            .map_err(|_| malformed("metadata is not [seconds, nanos, label]"))?;
        let seconds = seconds
            .as_integer()
            .and_then(|i| i64::try_from(i).ok())
            .ok_or_else(|| malformed("metadata seconds is not an integer"))?;
        let nanos = i64::try_from(uint(nanos, "metadata nanos")?)
            .map_err(|_| malformed("metadata nanos out of range"))?;
        let created_at = codec::join_time(seconds, nanos).map_err(|e| malformed(e.to_string()))?;
        let label = opt_text(label, "label")?;
        let generation = uint(next("generation")?, "generation")?;
        let Value::Bytes(state) = next("bytes")? else {
            return Err(malformed("state bytes are not a byte string"));
        };
        if items.next().is_some() {
            return Err(malformed("unexpected trailing fields"));
        }
        let package = Self {
            node_id,
            snapshot_id,
            parent_ids,
            content_type,
            metadata: StateMetadata { created_at, label },
            generation,
            bytes: state,
        };
        package.verify()?;
        // The format is deterministic CBOR: one package, one byte string. A decoder accepts
        // longer integer or length forms and indefinite lengths too; refuse them, so that
        // whatever re-encodes, compares or hashes package files sees the bytes we would write.
        if package.to_bytes() != bytes {
            return Err(malformed(
                "it is not in deterministic CBOR form (an integer or length is written longer \
                 than needed, or a string or array has an indefinite length)",
            ));
        }
        Ok(package)
    }
}

fn uint(v: Value, what: &str) -> Result<u64> {
    v.as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| malformed(format!("{what} is not an unsigned integer")))
}

fn hash(v: Value, what: &str) -> Result<[u8; 32]> {
    match v {
        Value::Bytes(b) => <[u8; 32]>::try_from(b.as_slice())
            .map_err(|_| malformed(format!("{what} is not 32 bytes"))),
        _ => Err(malformed(format!("{what} is not a byte string"))),
    }
}

fn opt_text(v: Value, what: &str) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::Text(t) => Ok(Some(t)),
        _ => Err(malformed(format!("{what} is neither text nor null"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn package() -> SnapshotPackage {
        let parent = StateNodeId::from_bytes([7; 32]);
        let metadata = StateMetadata::new(datetime!(2026-03-04 05:06:07.123456789 UTC), None);
        let bytes = b"state".to_vec();
        let node_id = codec::node_id(
            &[parent],
            &ContentHash::of(&bytes),
            Some("text/plain"),
            &metadata,
        );
        SnapshotPackage {
            node_id,
            snapshot_id: codec::snapshot_id(&node_id),
            parent_ids: vec![parent],
            content_type: Some("text/plain".into()),
            metadata,
            generation: 5,
            bytes,
        }
    }

    #[test]
    fn round_trips() {
        let p = package();
        assert_eq!(SnapshotPackage::from_bytes(&p.to_bytes()).unwrap(), p);
    }

    #[test]
    fn rejects_tampering_and_truncation() {
        let p = package();
        let mut bad = p.clone();
        bad.bytes.push(b'!');
        assert!(SnapshotPackage::from_bytes(&bad.to_bytes()).is_err());
        let mut bad = p.clone();
        bad.metadata.label = Some("forged".into());
        assert!(bad.verify().is_err());
        let mut bad = p.clone();
        bad.snapshot_id = SnapshotId::from_bytes([1; 32]);
        assert!(bad.verify().is_err());
        let mut bad = p.clone();
        bad.generation = 0;
        assert!(bad.verify().is_err());
        let wire = p.to_bytes();
        for len in [0, 1, 10, wire.len() / 2, wire.len() - 1] {
            let err = SnapshotPackage::from_bytes(&wire[..len]).unwrap_err();
            assert!(
                matches!(err, StateStoreError::InvalidInput { .. }),
                "{len}: {err}"
            );
        }
        assert!(SnapshotPackage::from_bytes(b"random bytes that are not cbor").is_err());
        // The version (1) written as a one-byte-follows integer, and the state bytes as an
        // indefinite-length byte string: the same values, not the deterministic encoding.
        let magic_end = 1 + 2 + MAGIC.len();
        assert_eq!(wire[magic_end], 0x01);
        let long_int = [&wire[..magic_end], &[0x18, 0x01], &wire[magic_end + 1..]].concat();
        let state_at = wire.len() - 1 - p.bytes.len();
        assert_eq!(wire[state_at], 0x40 | p.bytes.len() as u8);
        let chunked = [
            &wire[..state_at],
            &[0x5f, 0x40 | p.bytes.len() as u8],
            &wire[state_at + 1..],
            &[0xff],
        ]
        .concat();
        for non_canonical in [long_int, chunked] {
            let err = SnapshotPackage::from_bytes(&non_canonical).unwrap_err();
            assert!(err.to_string().contains("deterministic CBOR"), "{err}");
        }
        for tail in [&b"\0"[..], b"GARBAGE", &wire] {
            let err = SnapshotPackage::from_bytes(&[&wire[..], tail].concat()).unwrap_err();
            assert!(err.to_string().contains("follow the package"), "{err}");
        }
    }
}
