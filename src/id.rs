//! Typed identifiers: content hashes, node and snapshot ids, and state data refs.
//!
//! Hash-based ids print as `blake3:<64 lowercase hex digits>` and parse from that form or from
//! the bare hex. [`StateDataRef`] is a UUID (v7 for new refs) printed in hyphenated form.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Length in bytes of every hash-based id.
pub const HASH_LEN: usize = 32;

/// The prefix every hash-based id carries in its text form.
const TEXT_PREFIX: &str = "blake3:";

/// Why a piece of text is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The hex part has the wrong number of digits.
    #[error("invalid {kind} {text:?}: expected 64 hex digits, found {found}")]
    WrongLength {
        /// Which kind of id was being parsed.
        kind: &'static str,
        /// The text that was given (shortened if very long).
        text: String,
        /// How many characters the hex part had.
        found: usize,
    },
    /// The text contains a character that is not a hex digit.
    #[error("invalid {kind} {text:?}: {ch:?} is not a hex digit")]
    NotHex {
        /// Which kind of id was being parsed.
        kind: &'static str,
        /// The text that was given (shortened if very long).
        text: String,
        /// The first offending character.
        ch: char,
    },
    /// The text is not a UUID.
    #[error(
        "invalid state data ref {text:?}: expected a UUID such as 0190b4b8-7c1e-7a3c-9f4e-2b1d5c6e7f80"
    )]
    NotUuid {
        /// The text that was given (shortened if very long).
        text: String,
    },
}

/// Shortens user text for inclusion in an error message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Parses 64 hex digits (either case, optionally behind `blake3:`) into 32 bytes.
fn parse_hash(kind: &'static str, text: &str) -> Result<[u8; HASH_LEN], ParseIdError> {
    let hex = text.strip_prefix(TEXT_PREFIX).unwrap_or(text);
    if let Some(ch) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(ParseIdError::NotHex {
            kind,
            text: excerpt(text),
            ch,
        });
    }
    if hex.len() != HASH_LEN * 2 {
        return Err(ParseIdError::WrongLength {
            kind,
            text: excerpt(text),
            found: hex.len(),
        });
    }
    let mut out = [0u8; HASH_LEN];
    for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
        out[i] = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
    }
    Ok(out)
}

/// The value of one ASCII hex digit; callers have checked that it is one.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// Writes bytes as lowercase hex.
pub(crate) fn write_hex(f: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        f.write_char(DIGITS[usize::from(b >> 4)] as char)?;
        f.write_char(DIGITS[usize::from(b & 0xf)] as char)?;
    }
    Ok(())
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; HASH_LEN]);

        impl $name {
            /// Wraps 32 raw bytes.
            pub const fn from_bytes(bytes: [u8; HASH_LEN]) -> Self {
                Self(bytes)
            }

            /// The 32 raw bytes.
            pub const fn as_bytes(&self) -> &[u8; HASH_LEN] {
                &self.0
            }

            /// Wraps a byte slice, or `None` if it is not exactly 32 bytes long.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; HASH_LEN]>::try_from(bytes).ok().map(Self)
            }

            /// The lowercase hex form, without the `blake3:` prefix.
            pub fn to_hex(&self) -> String {
                let mut s = String::with_capacity(HASH_LEN * 2);
                // Writing to a String cannot fail.
                let _ = write_hex(&mut s, &self.0);
                s
            }

            /// The first `len` hex digits (at most 64), as people abbreviate ids.
            pub fn to_short_hex(&self, len: usize) -> String {
                let mut s = self.to_hex();
                s.truncate(len);
                s
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(TEXT_PREFIX)?;
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hash($kind, s).map(Self)
            }
        }

        impl From<[u8; HASH_LEN]> for $name {
            fn from(bytes: [u8; HASH_LEN]) -> Self {
                Self(bytes)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
    };
}

hash_id!(
    /// A 32-byte BLAKE3 hash of some content: `data_hash = blake3(state bytes)`.
    ContentHash,
    "content hash"
);

hash_id!(
    /// The id of a [`StateNode`](crate::StateNode): the BLAKE3 hash of its canonical encoding,
    /// so the id proves the node's parents, data and metadata (see the [`codec`](crate::codec)
    /// module for the encoding).
    StateNodeId,
    "node id"
);

hash_id!(
    /// The id of a snapshot, derived from the id of the node it points at.
    SnapshotId,
    "snapshot id"
);

impl ContentHash {
    /// Hashes `bytes` with plain BLAKE3, as any `b3sum` would.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

/// A reference to stored state bytes, returned by
/// [`StateStore::put_state`](crate::StateStore::put_state).
///
/// It is a UUID; new refs are version 7 (time-ordered, so they append to the store's index).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateDataRef(Uuid);

impl StateDataRef {
    /// A fresh, time-ordered (UUID v7) reference.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    /// The UUID behind this reference.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The 16 raw bytes of the UUID.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Wraps 16 raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }
}

impl From<Uuid> for StateDataRef {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl From<StateDataRef> for Uuid {
    fn from(data_ref: StateDataRef) -> Self {
        data_ref.0
    }
}

impl fmt::Display for StateDataRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for StateDataRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateDataRef({})", self.0.hyphenated())
    }
}

impl FromStr for StateDataRef {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| ParseIdError::NotUuid { text: excerpt(s) })
    }
}

/// The leading hex digits of a hash id, as people abbreviate ids (`3fa9c0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdPrefix {
    /// The prefix's digits packed into bytes; an odd last digit sits in the high nibble.
    bytes: Vec<u8>,
    /// How many hex digits the prefix has.
    digits: usize,
}

impl IdPrefix {
    /// The fewest digits accepted, so that a prefix is unlikely to be ambiguous by accident.
    pub const MIN_DIGITS: usize = 4;

    /// Parses `4..=64` hex digits, optionally behind `blake3:`.
    ///
    /// # Errors
    /// [`ParseIdError`] if the text is not hex or has too few or too many digits.
    pub fn parse(text: &str) -> Result<Self, ParseIdError> {
        let hex = text.strip_prefix(TEXT_PREFIX).unwrap_or(text);
        if let Some(ch) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(ParseIdError::NotHex {
                kind: "id prefix",
                text: excerpt(text),
                ch,
            });
        }
        if hex.len() < Self::MIN_DIGITS || hex.len() > HASH_LEN * 2 {
            return Err(ParseIdError::WrongLength {
                kind: "id prefix",
                text: excerpt(text),
                found: hex.len(),
            });
        }
        let digits = hex.as_bytes();
        let bytes = digits
            .chunks(2)
            .map(|pair| {
                let low = pair.get(1).map_or(0, |&d| hex_value(d));
                (hex_value(pair[0]) << 4) | low
            })
            .collect();
        Ok(Self {
            bytes,
            digits: digits.len(),
        })
    }

    /// How many hex digits the prefix has.
    pub fn len(&self) -> usize {
        self.digits
    }

    /// Always false: a prefix has at least [`MIN_DIGITS`](Self::MIN_DIGITS) digits.
    pub fn is_empty(&self) -> bool {
        self.digits == 0
    }

    /// Whether `id`'s bytes start with this prefix.
    pub fn matches(&self, id: &[u8; HASH_LEN]) -> bool {
        let whole = self.digits / 2;
        id[..whole] == self.bytes[..whole]
            && (self.digits.is_multiple_of(2) || id[whole] >> 4 == self.bytes[whole] >> 4)
    }

    /// The smallest id with this prefix, and the smallest id above all ids with it (`None`
    /// when the prefix is all `f`s and nothing is above it).
    pub fn range(&self) -> ([u8; HASH_LEN], Option<[u8; HASH_LEN]>) {
        let mut low = [0u8; HASH_LEN];
        low[..self.bytes.len()].copy_from_slice(&self.bytes);
        // Increment the prefix as a number of `digits` nibbles.
        let mut high = low;
        let unit: u8 = if self.digits % 2 == 1 { 0x10 } else { 0x01 };
        let mut i = self.bytes.len();
        let mut carry = unit;
        while i > 0 {
            i -= 1;
            let (sum, overflow) = high[i].overflowing_add(carry);
            high[i] = sum;
            if !overflow {
                return (low, Some(high));
            }
            carry = 1;
        }
        (low, None)
    }
}

impl fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = String::with_capacity(self.bytes.len() * 2);
        write_hex(&mut hex, &self.bytes)?;
        f.write_str(&hex[..self.digits])
    }
}

impl FromStr for IdPrefix {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A hasher for maps keyed by hash ids. The ids are already uniformly distributed, so
/// hashing them again (SipHash, the default) is wasted work on every step of a graph walk;
/// this takes 8 of their bytes, mixed with a per-map random key so that ids chosen to collide
/// (parent ids in an imported package need not exist) cannot degrade a map.
#[derive(Clone)]
pub(crate) struct IdHashState(u64);

impl Default for IdHashState {
    fn default() -> Self {
        use std::hash::BuildHasher;
        Self(std::collections::hash_map::RandomState::new().hash_one(0u8) | 1)
    }
}

impl std::hash::BuildHasher for IdHashState {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            key: self.0,
            state: 0,
        }
    }
}

/// See [`IdHashState`].
pub(crate) struct IdHasher {
    key: u64,
    state: u64,
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.state = self.state.rotate_left(5) ^ u64::from_le_bytes(word);
    }

    fn write_usize(&mut self, n: usize) {
        // The length prefix of an id's byte array: the same for every key.
        self.state ^= n as u64;
    }

    fn finish(&self) -> u64 {
        (self.state ^ self.key).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// A hash map keyed by hash ids, with [`IdHashState`].
pub(crate) type IdMap<K, V> = std::collections::HashMap<K, V, IdHashState>;

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn display_and_parse_round_trip() {
        let id: StateNodeId = HEX.parse().unwrap();
        assert_eq!(id.to_string(), format!("blake3:{HEX}"));
        assert_eq!(id.to_string().parse::<StateNodeId>().unwrap(), id);
        assert_eq!(id.to_hex(), HEX);
        assert_eq!(id.to_short_hex(12), &HEX[..12]);
        assert_eq!(id.as_bytes()[0], 0xaf);
        assert_eq!(id.as_bytes()[31], 0x62);
    }

    #[test]
    fn parse_accepts_uppercase_and_prints_lowercase() {
        let id: SnapshotId = HEX.to_uppercase().parse().unwrap();
        assert_eq!(id.to_hex(), HEX);
    }

    #[test]
    fn parse_rejects_bad_text_with_typed_errors() {
        assert!(matches!(
            "abc".parse::<StateNodeId>(),
            Err(ParseIdError::WrongLength { found: 3, .. })
        ));
        assert!(matches!(
            format!("{HEX}00").parse::<ContentHash>(),
            Err(ParseIdError::WrongLength { found: 66, .. })
        ));
        assert!(matches!(
            format!("blake3:{}", &HEX[..63]).parse::<StateNodeId>(),
            Err(ParseIdError::WrongLength { found: 63, .. })
        ));
        let bad = format!("{}g", &HEX[..63]);
        assert!(matches!(
            bad.parse::<StateNodeId>(),
            Err(ParseIdError::NotHex { ch: 'g', .. })
        ));
        assert!(matches!(
            format!("sha1:{HEX}").parse::<StateNodeId>(),
            Err(ParseIdError::NotHex { ch: 's', .. })
        ));
        // Non-ASCII text must not panic on slicing.
        assert!("é".repeat(40).parse::<StateNodeId>().is_err());
        assert!("".parse::<StateNodeId>().is_err());
    }

    #[test]
    fn error_messages_are_one_readable_line() {
        let err = "xyz".parse::<StateNodeId>().unwrap_err().to_string();
        assert!(err.starts_with("invalid node id \"xyz\""), "{err}");
        assert!(!err.contains('\n'));
        let long = "z".repeat(500);
        let err = long.parse::<SnapshotId>().unwrap_err().to_string();
        assert!(err.len() < 200, "long input is shortened: {err}");
    }

    #[test]
    fn content_hash_is_plain_blake3() {
        // blake3("abc") from the BLAKE3 reference test vectors.
        assert_eq!(
            ContentHash::of(b"abc").to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn data_ref_round_trips_and_is_v7() {
        let r = StateDataRef::new_v7();
        assert_eq!(r.as_uuid().get_version_num(), 7);
        let text = r.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<StateDataRef>().unwrap(), r);
        assert_eq!(StateDataRef::from(*r.as_uuid()), r);
        assert!(matches!(
            "nope".parse::<StateDataRef>(),
            Err(ParseIdError::NotUuid { .. })
        ));
    }

    #[test]
    fn prefix_matches_and_ranges() {
        let id: StateNodeId = HEX.parse().unwrap();
        for len in [4, 5, 12, 63, 64] {
            let p = IdPrefix::parse(&HEX[..len]).unwrap();
            assert_eq!(p.len(), len);
            assert_eq!(p.to_string(), &HEX[..len]);
            assert!(p.matches(id.as_bytes()), "{len}");
            let (low, high) = p.range();
            assert!(low.as_slice() <= id.as_bytes().as_slice());
            assert!(id.as_bytes().as_slice() < high.unwrap().as_slice());
        }
        let odd = IdPrefix::parse("af134").unwrap();
        assert!(!odd.matches(StateNodeId::from_bytes([0xaf; 32]).as_bytes()));
        let (low, high) = odd.range();
        assert_eq!(&low[..3], &[0xaf, 0x13, 0x40]);
        assert_eq!(&high.unwrap()[..3], &[0xaf, 0x13, 0x50]);
        let (_, high) = IdPrefix::parse("ffff").unwrap().range();
        assert_eq!(high, None);
        let (_, high) = IdPrefix::parse("0fff").unwrap().range();
        assert_eq!(&high.unwrap()[..2], &[0x10, 0x00]);
        assert!(IdPrefix::parse("abc").is_err());
        assert!(IdPrefix::parse("abcx").is_err());
        assert!(IdPrefix::parse(&"a".repeat(65)).is_err());
        assert_eq!(IdPrefix::parse("blake3:ABCD").unwrap().to_string(), "abcd");
    }

    #[test]
    fn ids_are_ordered_by_bytes() {
        let a = StateNodeId::from_bytes([0; 32]);
        let b = StateNodeId::from_bytes([1; 32]);
        assert!(a < b);
    }
}
