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
        codec::utc_time(self.metadata.created_at)
            .map_err(|_| malformed("its created_at is outside the years -9999 to 9999 in UTC"))?;
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
        if self.generation > codec::MAX_GENERATION_CLAIM {
            return Err(malformed(format!(
                "generation {} is above 2^62: no history is that deep, and the node could \
                 not get children",
                self.generation
            )));
        }
        Ok(data_hash)
    }

    /// Encodes the package in its wire format.
    pub fn to_bytes(&self) -> Vec<u8> {
        use codec::{MAJOR_ARRAY, MAJOR_UINT, bytes, head, opt_text};
        let texts = self.content_type.as_ref().map_or(0, String::len)
            + self.metadata.label.as_ref().map_or(0, String::len);
        let mut out =
            Vec::with_capacity(self.bytes.len() + 160 + 34 * self.parent_ids.len() + texts);
        head(&mut out, MAJOR_ARRAY, 9);
        opt_text(&mut out, Some(MAGIC));
        head(&mut out, MAJOR_UINT, VERSION);
        bytes(&mut out, self.node_id.as_bytes());
        bytes(&mut out, self.snapshot_id.as_bytes());
        head(&mut out, MAJOR_ARRAY, self.parent_ids.len() as u64);
        for p in &self.parent_ids {
            bytes(&mut out, p.as_bytes());
        }
        opt_text(&mut out, self.content_type.as_deref());
        codec::encode_metadata(&mut out, &self.metadata);
        head(&mut out, MAJOR_UINT, self.generation);
        bytes(&mut out, &self.bytes);
        out
    }

    /// How many first bytes [`could_start_package`](Self::could_start_package) looks at.
    pub const START_LEN: usize = 30;

    /// Whether these first bytes of a file (up to [`START_LEN`](Self::START_LEN); fewer if
    /// the file is shorter) can begin a snapshot package: the array header and the format's
    /// magic. Lets a tool refuse another kind of file before reading all of it; a file that
    /// passes still needs [`from_bytes`](Self::from_bytes).
    pub fn could_start_package(start: &[u8]) -> bool {
        let mut expected = Vec::with_capacity(Self::START_LEN);
        codec::head(&mut expected, codec::MAJOR_ARRAY, 9);
        codec::opt_text(&mut expected, Some(MAGIC));
        let n = start.len().min(expected.len());
        start.len() >= expected.len().min(1) && start[..n] == expected[..n]
    }

    /// Decodes a package from its wire format and [verifies](Self::verify) it.
    ///
    /// # Errors
    /// [`StateStoreError::InvalidInput`] for anything that is not a well-formed, matching
    /// version-1 package (truncated, tampered, of another version, or not in the deterministic
    /// encoding [`to_bytes`](Self::to_bytes) writes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        // A strict reader for exactly this format rather than a general CBOR decoder: it
        // accepts only the deterministic encoding, and allocates nothing a short input could
        // inflate (a general decoder builds a tree of values first, and a file of a million
        // one-byte empty arrays became tens of MB of them before any check).
        let mut r = Reader { bytes, at: 0 };
        let items = r.array("the package")?;
        if items != 9 {
            return Err(malformed(format!(
                "it is an array of {items} items, not the 9 of a snapshot package"
            )));
        }
        if r.text("magic")? != MAGIC {
            return Err(malformed("not a stategraph snapshot package"));
        }
        let version = r.uint("version")?;
        if version != VERSION {
            return Err(malformed(format!(
                "package format version {version}; this build reads version {VERSION}"
            )));
        }
        let node_id = StateNodeId::from_bytes(r.hash("node id")?);
        let snapshot_id = SnapshotId::from_bytes(r.hash("snapshot id")?);
        let parents = r.array("parents")?;
        // Each parent takes 34 bytes: refuse a count the input cannot hold before allocating.
        if parents > (r.remaining() / 34) as u64 {
            return Err(malformed(format!(
                "it declares {parents} parents, more than its length can hold"
            )));
        }
        let parent_ids = (0..parents)
            .map(|_| r.hash("parent id").map(StateNodeId::from_bytes))
            .collect::<Result<Vec<_>>>()?;
        let content_type = r.text_or_null("content type")?;
        if r.array("metadata")? != 3 {
            return Err(malformed("metadata is not [seconds, nanos, label]"));
        }
        let seconds = r.int("metadata seconds")?;
        let nanos = i64::try_from(r.uint("metadata nanos")?)
            .map_err(|_| malformed("metadata nanos out of range"))?;
        let created_at = codec::join_time(seconds, nanos).map_err(|e| malformed(e.to_string()))?;
        let label = r.text_or_null("label")?;
        let generation = r.uint("generation")?;
        let state = r.byte_string("state bytes")?.to_vec();
        if r.remaining() > 0 {
            return Err(malformed(format!(
                "{} byte(s) follow the package (two packages in one file, or a damaged one)",
                r.remaining()
            )));
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
        Ok(package)
    }
}

/// Reads the deterministic CBOR of a package, item by item.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

// CBOR major types used by the format, and its one simple value, null.
use codec::{
    MAJOR_ARRAY as ARRAY, MAJOR_BYTES as BYTES, MAJOR_NINT as NEGATIVE, MAJOR_TEXT as TEXT,
    MAJOR_UINT as UINT, NULL,
};

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(malformed("it is truncated (the CBOR ends early)"));
        }
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(taken)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// An item's head: its major type and argument, which must use the shortest form.
    fn head(&mut self, what: &str) -> Result<(u8, u64)> {
        let first = self.take(1)?[0];
        let (major, info) = (first >> 5, first & 0x1f);
        let (arg, least) = match info {
            0..=23 => (u64::from(info), 0),
            24 => (u64::from(self.take(1)?[0]), 24),
            25 => {
                let b = self.take(2)?;
                (u64::from(u16::from_be_bytes([b[0], b[1]])), 1 << 8)
            }
            26 => {
                let b = self.take(4)?;
                (
                    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                    1 << 16,
                )
            }
            27 => {
                let b = self.take(8)?;
                let mut be = [0; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 1 << 32)
            }
            31 => return Err(not_deterministic()),
            _ => {
                return Err(malformed(format!(
                    "it is not valid CBOR ({what} at byte {})",
                    self.at - 1
                )));
            }
        };
        if arg < least {
            return Err(not_deterministic());
        }
        Ok((major, arg))
    }

    fn expect(&mut self, what: &str, want: u8, kind: &str) -> Result<u64> {
        match self.head(what)? {
            (major, arg) if major == want => Ok(arg),
            _ => Err(malformed(format!("{what} is not {kind}"))),
        }
    }

    fn array(&mut self, what: &str) -> Result<u64> {
        self.expect(what, ARRAY, "an array")
    }

    fn uint(&mut self, what: &str) -> Result<u64> {
        self.expect(what, UINT, "an unsigned integer")
    }

    fn int(&mut self, what: &str) -> Result<i64> {
        let out_of_range = || malformed(format!("{what} is out of range"));
        match self.head(what)? {
            (UINT, n) => i64::try_from(n).map_err(|_| out_of_range()),
            (NEGATIVE, n) => i64::try_from(n).map(|n| -1 - n).map_err(|_| out_of_range()),
            _ => Err(malformed(format!("{what} is not an integer"))),
        }
    }

    fn sized(&mut self, what: &str, major: u8, kind: &str) -> Result<&'a [u8]> {
        let len = self.expect(what, major, kind)?;
        let len =
            usize::try_from(len).map_err(|_| malformed("it is truncated (the CBOR ends early)"))?;
        self.take(len)
    }

    fn byte_string(&mut self, what: &str) -> Result<&'a [u8]> {
        self.sized(what, BYTES, "a byte string")
    }

    fn hash(&mut self, what: &str) -> Result<[u8; 32]> {
        <[u8; 32]>::try_from(self.byte_string(what)?)
            .map_err(|_| malformed(format!("{what} is not 32 bytes")))
    }

    fn text(&mut self, what: &str) -> Result<String> {
        let bytes = self.sized(what, TEXT, "text")?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed(format!("{what} is not UTF-8")))
    }

    fn text_or_null(&mut self, what: &str) -> Result<Option<String>> {
        if self.peek() == Some(NULL) {
            self.at += 1;
            return Ok(None);
        }
        match self.peek().map(|b| b >> 5) {
            Some(TEXT) => self.text(what).map(Some),
            _ => Err(malformed(format!("{what} is neither text nor null"))),
        }
    }
}

fn not_deterministic() -> StateStoreError {
    malformed(
        "it is not in deterministic CBOR form (an integer or length is written longer than \
         needed, or a string or array has an indefinite length)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn package() -> SnapshotPackage {
        package_of(b"state".to_vec())
    }

    fn package_of(bytes: Vec<u8>) -> SnapshotPackage {
        let metadata = StateMetadata::new(datetime!(2026-03-04 05:06:07.123456789 UTC), None);
        let parents = vec![StateNodeId::from_bytes([7; 32])];
        package_with(parents, Some("text/plain"), metadata, 5, bytes)
    }

    fn package_with(
        parent_ids: Vec<StateNodeId>,
        content_type: Option<&str>,
        metadata: StateMetadata,
        generation: u64,
        bytes: Vec<u8>,
    ) -> SnapshotPackage {
        let hash = ContentHash::of(&bytes);
        let node_id = codec::node_id(&parent_ids, &hash, content_type, &metadata);
        SnapshotPackage {
            node_id,
            snapshot_id: codec::snapshot_id(&node_id),
            parent_ids,
            content_type: content_type.map(str::to_owned),
            metadata,
            generation,
            bytes,
        }
    }

    /// Every beginning of a real package passes `could_start_package`, other files' do not,
    /// and `START_LEN` is exactly the fixed start it looks at.
    #[test]
    fn the_start_of_a_package_is_recognised() {
        let bytes = package().to_bytes();
        for n in 1..=bytes.len() {
            assert!(SnapshotPackage::could_start_package(&bytes[..n]), "{n}");
        }
        // The last byte it checks is the magic's last; the next (the version) it leaves to
        // `from_bytes`.
        let mut other = bytes.clone();
        other[SnapshotPackage::START_LEN - 1] ^= 1;
        assert!(!SnapshotPackage::could_start_package(&other));
        let mut after = bytes;
        after[SnapshotPackage::START_LEN] ^= 0xff;
        assert!(SnapshotPackage::could_start_package(&after));
        for not in [
            &b""[..],
            b"\0\0\0\0",
            b"{\"json\": true}",
            b"SQLite format 3\0",
        ] {
            assert!(!SnapshotPackage::could_start_package(not), "{not:?}");
        }
    }

    /// Whatever the bytes, decoding returns an error or a package that encodes back to
    /// exactly those bytes (so one package has one encoding), and never panics.
    #[test]
    fn every_flip_and_cut_is_refused_or_round_trips() {
        let wire = package().to_bytes();
        let check = |bytes: &[u8]| match SnapshotPackage::from_bytes(bytes) {
            Ok(p) => assert_eq!(p.to_bytes(), bytes, "accepted a second encoding"),
            Err(e) => assert!(matches!(e, StateStoreError::InvalidInput { .. }), "{e}"),
        };
        for at in 0..wire.len() {
            check(&wire[..at]);
            for bit in 0..8 {
                let mut flipped = wire.clone();
                flipped[at] ^= 1 << bit;
                check(&flipped);
            }
        }
    }

    /// Lengths and counts are checked against the input before anything is allocated for
    /// them, and indefinite lengths are refused at once.
    #[test]
    fn refuses_counts_the_input_cannot_hold() {
        let mut wire = package().to_bytes();
        let parents_at = 1 + 2 + MAGIC.len() + 1 + 2 * 34;
        assert_eq!(wire[parents_at], 0x81, "one parent");
        // Four billion parents in a few hundred bytes.
        wire.splice(parents_at..=parents_at, [0x9a, 0xff, 0xff, 0xff, 0xff]);
        let err = SnapshotPackage::from_bytes(&wire).unwrap_err();
        assert!(
            err.to_string().contains("more than its length can hold"),
            "{err}"
        );
        // A state of 2^64 - 1 bytes.
        let mut wire = package().to_bytes();
        let state_at = wire.len() - 1 - package().bytes.len();
        wire.splice(
            state_at..,
            [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        );
        let err = SnapshotPackage::from_bytes(&wire).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // An indefinite array of a million empty arrays.
        let mut flood = vec![0x9f];
        flood.extend(std::iter::repeat_n(0x80, 1 << 20));
        flood.push(0xff);
        let err = SnapshotPackage::from_bytes(&flood).unwrap_err();
        assert!(err.to_string().contains("deterministic CBOR"), "{err}");
    }

    /// The hand-written encoder against ciborium's encoding of the same value tree.
    #[test]
    fn encodes_as_ciborium_does() {
        use ciborium::Value;
        let old = StateMetadata::new(datetime!(1960-01-02 03:04:05.5 UTC), Some("é".into()));
        let parents = vec![
            StateNodeId::from_bytes([1; 32]),
            StateNodeId::from_bytes([2; 32]),
        ];
        for p in [
            package_of(vec![0x5a; 70_000]),
            package_with(vec![], None, old.clone(), 1, vec![]),
            package_with(parents, Some("text/plain"), old, 1 << 40, b"x".to_vec()),
        ] {
            let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::Text);
            let (seconds, nanos) = codec::split_time(p.metadata.created_at);
            let value = Value::Array(vec![
                Value::Text(MAGIC.to_owned()),
                Value::Integer(VERSION.into()),
                Value::Bytes(p.node_id.as_bytes().to_vec()),
                Value::Bytes(p.snapshot_id.as_bytes().to_vec()),
                Value::Array(
                    p.parent_ids
                        .iter()
                        .map(|id| Value::Bytes(id.as_bytes().to_vec()))
                        .collect(),
                ),
                text(&p.content_type),
                Value::Array(vec![
                    Value::Integer(seconds.into()),
                    Value::Integer(nanos.into()),
                    text(&p.metadata.label),
                ]),
                Value::Integer(p.generation.into()),
                Value::Bytes(p.bytes.clone()),
            ]);
            let mut want = Vec::new();
            ciborium::into_writer(&value, &mut want).unwrap();
            assert_eq!(p.to_bytes(), want);
        }
    }

    #[test]
    fn round_trips() {
        // Lengths in each of CBOR's forms: inline, one, two and four bytes.
        for len in [5, 100, 1_000, 70_000] {
            let p = package_of(vec![0x5a; len]);
            assert_eq!(SnapshotPackage::from_bytes(&p.to_bytes()).unwrap(), p);
        }
        // A root, no content type, a time before 1970 (negative seconds), a label, and a
        // merge with a generation in the 8-byte form.
        let old = StateMetadata::new(datetime!(1960-01-02 03:04:05.5 UTC), Some("é ok".into()));
        let root = package_with(vec![], None, old.clone(), 1, vec![]);
        let merge = package_with(
            vec![
                StateNodeId::from_bytes([1; 32]),
                StateNodeId::from_bytes([2; 32]),
            ],
            None,
            old,
            1 << 40,
            b"merged".to_vec(),
        );
        for p in [root, merge] {
            assert_eq!(SnapshotPackage::from_bytes(&p.to_bytes()).unwrap(), p);
        }
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
