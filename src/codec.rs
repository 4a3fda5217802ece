//! The canonical node encoding and the hashes derived from it (hash encoding version 1).
//!
//! This is the part of stategraph that makes ids portable: anyone holding a node's parents,
//! state bytes, content type and metadata can recompute its id with a CBOR writer and BLAKE3.
//! Changing anything here changes every id, so it is versioned and pinned by golden vectors.
//!
//! # Data hash
//!
//! `data_hash = BLAKE3(state bytes)`, the plain 32-byte hash (what `b3sum` prints).
//!
//! # Node id (version 1)
//!
//! ```text
//! node_id = BLAKE3( "stategraph/node/v1" ‖ 0x00 ‖ CBOR(node) )
//!
//! node     = [ parents, data_hash, content_type, metadata ]      ; array of 4
//! parents  = [ * bstr .size 32 ]          ; parent node ids, in commit order (may be empty)
//! data_hash = bstr .size 32
//! content_type = tstr / null
//! metadata = [ seconds, nanos, label ]                           ; array of 3
//! seconds  = int                          ; created_at, whole seconds since the Unix epoch
//!                                         ; (floor; negative before 1970)
//! nanos    = uint                         ; 0 ..= 999_999_999, added to `seconds`
//! label    = tstr / null
//! ```
//!
//! The CBOR is *deterministic* in the sense of RFC 8949 §4.2.1: definite lengths only, every
//! integer and length in its shortest form, and arrays (never maps) so there is no key order to
//! agree on. Text is UTF-8 as given (no normalisation). The domain tag is the 18 ASCII bytes
//! `stategraph/node/v1` followed by one zero byte, so no other BLAKE3 input of this crate can
//! produce a node id.
//!
//! The UTC offset of `created_at` is not encoded: two metadata values for the same instant
//! give the same id, matching [`StateMetadata`]'s equality.
//!
//! # Snapshot id (version 1)
//!
//! ```text
//! snapshot_id = BLAKE3( "stategraph/snapshot/v1" ‖ 0x00 ‖ node_id )   ; node_id as 32 raw bytes
//! ```
//!
//! so two nodes holding identical bytes never share a snapshot, and snapshotting the same node
//! twice gives the same id.

use time::OffsetDateTime;

use crate::error::{Result, StateStoreError};
use crate::id::{ContentHash, SnapshotId, StateNodeId};
use crate::model::StateMetadata;

/// The version of the hash encoding described in this module.
pub const HASH_ENCODING_VERSION: u32 = 1;

const NODE_DOMAIN: &[u8] = b"stategraph/node/v1\0";
const SNAPSHOT_DOMAIN: &[u8] = b"stategraph/snapshot/v1\0";

/// Splits a timestamp into (whole seconds since the epoch, nanoseconds) as the encoding does.
pub(crate) fn split_time(at: OffsetDateTime) -> (i64, u32) {
    (at.unix_timestamp(), at.nanosecond())
}

/// `at` as the same instant in UTC, which is how every store keeps and reads it back.
///
/// # Errors
/// [`StateStoreError::InvalidInput`] when that instant is outside the years -9999..=9999 in
/// UTC (a time near either end, at an offset that pushes it over).
pub(crate) fn utc_time(at: OffsetDateTime) -> Result<OffsetDateTime> {
    at.checked_to_offset(time::UtcOffset::UTC).ok_or_else(|| {
        StateStoreError::invalid(
            "created_at",
            format!("{at} is outside the years -9999 to 9999 once converted to UTC"),
        )
    })
}

/// The inverse of [`split_time`]; the result is in UTC.
pub(crate) fn join_time(seconds: i64, nanos: i64) -> Result<OffsetDateTime> {
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(StateStoreError::corrupt(
            "timestamp",
            format!("nanoseconds {nanos} out of range"),
        ));
    }
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    OffsetDateTime::from_unix_timestamp_nanos(total)
        .map_err(|e| StateStoreError::corrupt("timestamp", e.to_string()))
}

/// The canonical CBOR encoding of a node (without the domain tag).
///
/// Written directly rather than through a CBOR library's value tree: the structure is fixed,
/// and this runs on every commit and every verified read. The tests check it byte for byte
/// against the spec and against `ciborium` on random inputs.
pub fn encode_node(
    parents: &[StateNodeId],
    data_hash: &ContentHash,
    content_type: Option<&str>,
    metadata: &StateMetadata,
) -> Vec<u8> {
    let text_len =
        content_type.map_or(0, str::len) + metadata.label.as_ref().map_or(0, String::len);
    let mut out = Vec::with_capacity(64 + 34 * parents.len() + text_len);
    head(&mut out, MAJOR_ARRAY, 4);
    head(&mut out, MAJOR_ARRAY, parents.len() as u64);
    for p in parents {
        bytes(&mut out, p.as_bytes());
    }
    bytes(&mut out, data_hash.as_bytes());
    opt_text(&mut out, content_type);
    encode_metadata(&mut out, metadata);
    out
}

/// `[seconds, nanos, label]`, as nodes and snapshot packages both write metadata.
pub(crate) fn encode_metadata(out: &mut Vec<u8>, metadata: &StateMetadata) {
    let (seconds, nanos) = split_time(metadata.created_at);
    head(out, MAJOR_ARRAY, 3);
    if seconds >= 0 {
        head(out, MAJOR_UINT, seconds.unsigned_abs());
    } else {
        // CBOR stores a negative integer n as -1 - n.
        head(out, MAJOR_NINT, (-1 - seconds).unsigned_abs());
    }
    head(out, MAJOR_UINT, u64::from(nanos));
    opt_text(out, metadata.label.as_deref());
}

pub(crate) const MAJOR_UINT: u8 = 0;
pub(crate) const MAJOR_NINT: u8 = 1;
pub(crate) const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;
pub(crate) const NULL: u8 = 0xf6;

/// A CBOR head (major type and argument) in its shortest form (RFC 8949 §4.2.1).
pub(crate) fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let major = major << 5;
    match arg {
        0..=23 => out.push(major | arg as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

pub(crate) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, MAJOR_BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

pub(crate) fn opt_text(out: &mut Vec<u8>, t: Option<&str>) {
    match t {
        Some(t) => {
            head(out, MAJOR_TEXT, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        None => out.push(NULL),
    }
}

/// Computes a node id from everything the id covers.
pub fn node_id(
    parents: &[StateNodeId],
    data_hash: &ContentHash,
    content_type: Option<&str>,
    metadata: &StateMetadata,
) -> StateNodeId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(NODE_DOMAIN);
    hasher.update(&encode_node(parents, data_hash, content_type, metadata));
    StateNodeId::from_bytes(*hasher.finalize().as_bytes())
}

/// The id of the snapshot of `node`.
pub fn snapshot_id(node: &StateNodeId) -> SnapshotId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(SNAPSHOT_DOMAIN);
    hasher.update(node.as_bytes());
    SnapshotId::from_bytes(*hasher.finalize().as_bytes())
}

/// Rejects parent lists the graph cannot hold: duplicates (invariant 3). Linear in the number
/// of parents (a package from elsewhere may list any number).
pub(crate) fn check_parents(parents: &[StateNodeId]) -> Result<()> {
    let twice = |p: &StateNodeId| {
        Err(StateStoreError::invalid(
            "parents",
            format!("{p} is listed more than once"),
        ))
    };
    // The usual one or two parents: compare directly.
    if parents.len() <= 8 {
        for (i, p) in parents.iter().enumerate() {
            if parents[..i].contains(p) {
                return twice(p);
            }
        }
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(parents.len());
    for p in parents {
        if !seen.insert(p) {
            return twice(p);
        }
    }
    Ok(())
}

/// The largest generation a node may have: what every backend can store (SQLite integers are
/// signed 64-bit). Far beyond any real history; reaching it means a damaged or forged package.
pub(crate) const MAX_GENERATION: u64 = i64::MAX as u64;

/// The largest generation a snapshot package may claim: far beyond any real history, and far
/// enough below [`MAX_GENERATION`] that a node claiming it can still get descendants.
pub(crate) const MAX_GENERATION_CLAIM: u64 = 1 << 62;

/// The error for a generation above [`MAX_GENERATION`].
pub(crate) fn generation_too_large(what: &'static str, generation: u64) -> StateStoreError {
    StateStoreError::invalid(
        what,
        format!("generation {generation} is above the largest a store holds ({MAX_GENERATION})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn meta(label: Option<&str>) -> StateMetadata {
        StateMetadata::new(
            datetime!(2024-01-02 03:04:05.000000006 UTC),
            label.map(Into::into),
        )
    }

    /// The encoding written out by hand from the spec above, byte by byte, so the test does not
    /// trust the encoder it checks.
    #[test]
    fn encoding_matches_the_spec_byte_for_byte() {
        let parent = StateNodeId::from_bytes([0x11; 32]);
        let hash = ContentHash::from_bytes([0x22; 32]);
        let got = encode_node(&[parent], &hash, Some("a/b"), &meta(Some("t")));

        let mut want = vec![0x84, 0x81, 0x58, 0x20];
        want.extend([0x11; 32]);
        want.extend([0x58, 0x20]);
        want.extend([0x22; 32]);
        want.extend([0x63, b'a', b'/', b'b']);
        // 2024-01-02T03:04:05Z = 1704164645 = 0x6593_7D25 -> uint32 form.
        want.extend([0x83, 0x1a, 0x65, 0x93, 0x7d, 0x25, 0x06, 0x61, b't']);
        assert_eq!(got, want);
    }

    #[test]
    fn encoding_uses_null_and_negative_forms() {
        let hash = ContentHash::from_bytes([0; 32]);
        let before_epoch = StateMetadata::new(datetime!(1969-12-31 23:59:59.5 UTC), None);
        let got = encode_node(&[], &hash, None, &before_epoch);
        let mut want = vec![0x84, 0x80, 0x58, 0x20];
        want.extend([0; 32]);
        want.push(0xf6);
        // seconds = -1 -> 0x20; nanos = 500_000_000 = 0x1DCD6500 -> uint32 form.
        want.extend([0x83, 0x20, 0x1a, 0x1d, 0xcd, 0x65, 0x00, 0xf6]);
        assert_eq!(got, want);
    }

    /// The hand-written encoder against ciborium's encoding of the same value tree.
    fn via_ciborium(
        parents: &[StateNodeId],
        data_hash: &ContentHash,
        content_type: Option<&str>,
        metadata: &StateMetadata,
    ) -> Vec<u8> {
        use ciborium::Value;
        let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::Text(s.to_owned()));
        let (seconds, nanos) = split_time(metadata.created_at);
        let value = Value::Array(vec![
            Value::Array(
                parents
                    .iter()
                    .map(|p| Value::Bytes(p.as_bytes().to_vec()))
                    .collect(),
            ),
            Value::Bytes(data_hash.as_bytes().to_vec()),
            text(content_type),
            Value::Array(vec![
                Value::Integer(seconds.into()),
                Value::Integer(nanos.into()),
                text(metadata.label.as_deref()),
            ]),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&value, &mut out).unwrap();
        out
    }

    proptest::proptest! {
        #[test]
        fn matches_ciborium(
            parents in proptest::collection::vec(proptest::array::uniform32(0u8..), 0..30),
            hash in proptest::array::uniform32(0u8..),
            content_type in proptest::option::of(".{0,300}"),
            label in proptest::option::of(".{0,300}"),
            seconds in -377_705_116_800i64..253_402_300_799,
            nanos in 0u32..1_000_000_000,
        ) {
            let parents: Vec<StateNodeId> = parents.into_iter().map(StateNodeId::from_bytes).collect();
            let hash = ContentHash::from_bytes(hash);
            let at = OffsetDateTime::from_unix_timestamp(seconds).unwrap()
                + time::Duration::nanoseconds(i64::from(nanos));
            let meta = StateMetadata::new(at, label);
            proptest::prop_assert_eq!(
                encode_node(&parents, &hash, content_type.as_deref(), &meta),
                via_ciborium(&parents, &hash, content_type.as_deref(), &meta)
            );
        }
    }

    #[test]
    fn every_length_form_matches_ciborium() {
        let hash = ContentHash::of(b"x");
        for len in [0, 23, 24, 255, 256, 65_535, 65_536] {
            let meta = StateMetadata::new(OffsetDateTime::UNIX_EPOCH, Some("a".repeat(len)));
            let parents = vec![StateNodeId::from_bytes([1; 32]); len.min(300)];
            assert_eq!(
                encode_node(&parents, &hash, None, &meta),
                via_ciborium(&parents, &hash, None, &meta),
                "{len}"
            );
        }
    }

    #[test]
    fn offset_does_not_change_the_id() {
        let hash = ContentHash::of(b"x");
        let utc = meta(None);
        let shifted = StateMetadata::new(
            utc.created_at
                .to_offset(time::UtcOffset::from_hms(5, 30, 0).unwrap()),
            None,
        );
        assert_eq!(utc, shifted);
        assert_eq!(
            node_id(&[], &hash, None, &utc),
            node_id(&[], &hash, None, &shifted)
        );
    }

    #[test]
    fn time_round_trips() {
        for at in [
            datetime!(2024-01-02 03:04:05.000000006 UTC),
            datetime!(1969-12-31 23:59:59.999999999 UTC),
            datetime!(-9999-01-01 00:00:00 UTC),
            datetime!(9999-12-31 23:59:59.999999999 UTC),
        ] {
            let (s, n) = split_time(at);
            assert_eq!(join_time(s, i64::from(n)).unwrap(), at);
        }
        assert!(join_time(0, 1_000_000_000).unwrap_err().is_corrupt());
        assert!(join_time(i64::MAX, 0).unwrap_err().is_corrupt());
    }

    #[test]
    fn duplicate_parents_are_rejected() {
        let a = StateNodeId::from_bytes([1; 32]);
        let b = StateNodeId::from_bytes([2; 32]);
        assert!(check_parents(&[a, b]).is_ok());
        assert!(matches!(
            check_parents(&[a, b, a]),
            Err(StateStoreError::InvalidInput {
                what: "parents",
                ..
            })
        ));
        // Long lists (the other path): distinct, and with one repeat at the far end.
        let many: Vec<_> = (0..10_000u32)
            .map(|i| {
                let mut id = [0; 32];
                id[..4].copy_from_slice(&i.to_be_bytes());
                StateNodeId::from_bytes(id)
            })
            .collect();
        assert!(check_parents(&many).is_ok());
        let repeated = [&many[..], &many[..1]].concat();
        let err = check_parents(&repeated).unwrap_err();
        assert!(err.to_string().contains(&many[0].to_string()), "{err}");
    }

    #[test]
    fn snapshot_id_depends_on_node_id() {
        let a = StateNodeId::from_bytes([1; 32]);
        let b = StateNodeId::from_bytes([2; 32]);
        assert_ne!(snapshot_id(&a), snapshot_id(&b));
        assert_eq!(snapshot_id(&a), snapshot_id(&a));
        assert_ne!(snapshot_id(&a).as_bytes(), a.as_bytes());
    }
}
