//! Golden vectors: node and snapshot ids pinned to an independent implementation.
//!
//! The constants below were printed by `tests/golden/vectors.py`, a Python implementation
//! of the encoding in the `stategraph::codec` module documentation (packages `cbor2` and
//! `blake3`), NOT by stategraph itself. If these tests fail, stategraph's ids changed or
//! never matched the spec: do not regenerate the constants from the crate.

use stategraph::codec;
use stategraph::{
    ContentHash, InMemoryStateStore, SnapshotId, StateData, StateMetadata, StateNodeId, StateStore,
};
use time::OffsetDateTime;
use time::macros::{datetime, offset};

use crate::util::TempSqlite;

// ---- Output of `python3 tests/golden/vectors.py` (pasted verbatim) -------------------------

// ROOT: seconds=1704164645 nanos=6
const ROOT_DATA_HASH: &str = "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f";
const ROOT_CBOR: &str =
    "84805820ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200ff6831a65937d2506f6";
const ROOT_NODE: &str = "e7014b64f9f980007ea5b20d95d57f0b90566b6a626076c36d3064f654ae40cb";
const ROOT_SNAPSHOT: &str = "e82619ceb562bdf67eb829beed8981310fa67e21ec51ac319acf7793d07f1390";

// TYPED: seconds=1719748800 nanos=123456789
const TYPED_DATA_HASH: &str = "d59b6562d7c9b121bc9760873d787890ef4d429aad33a70b405baa0fa08a1f53";
const TYPED_CBOR: &str = "84805820d59b6562d7c9b121bc9760873d787890ef4d429aad33a70b405baa0fa08a1f53706170706c69636174696f6e2f6a736f6e831a668148c01a075bcd15667469636b2031";
const TYPED_NODE: &str = "464945846c93582cce849ef8b9200c115542743cc8991751ac93c376631cf29f";
const TYPED_SNAPSHOT: &str = "65909c05862e749086607252f1e615b0a84838598a8c03224ef7dd57d13ea605";

// MERGE: seconds=1735689600 nanos=0
const MERGE_DATA_HASH: &str = "18aa4baf95441d4aed8189d9ad1c5688dcd61fda51cb2c7958d91d1e80cb1189";
const MERGE_CBOR: &str = "84825820e7014b64f9f980007ea5b20d95d57f0b90566b6a626076c36d3064f654ae40cb5820464945846c93582cce849ef8b9200c115542743cc8991751ac93c376631cf29f582018aa4baf95441d4aed8189d9ad1c5688dcd61fda51cb2c7958d91d1e80cb1189f6831a6774858000656d65726765";
const MERGE_NODE: &str = "80aec856a5dd06c3f01bc870d2b2e05b87aea2e9c555be3032eefe0223cc5297";
const MERGE_SNAPSHOT: &str = "8f9683ac59522ce12a574cf782d3792f34df144a54d8387e466f745a786ceade";

// BEFORE_EPOCH: seconds=-14182940 nanos=500000000
const BEFORE_EPOCH_DATA_HASH: &str =
    "2591f3ed120e210278b5e2602e0825a6e9589660d87fc96cc5c050d86596d3ed";
const BEFORE_EPOCH_CBOR: &str = "848058202591f3ed120e210278b5e2602e0825a6e9589660d87fc96cc5c050d86596d3ed6a746578742f706c61696e833a00d86a1b1a1dcd6500f6";
const BEFORE_EPOCH_NODE: &str = "1f46b5de59762632af79289ae9c327e8db7a66b54ce0aa2822e7027f7d7c4bfe";
const BEFORE_EPOCH_SNAPSHOT: &str =
    "b675d7f0aadf19a57cc7fe4def90be82854639d4201710040da4984fc77d612f";

// UNICODE: seconds=1709251199 nanos=999999999
const UNICODE_DATA_HASH: &str = "300dcd23f11d800f79b65d4d50af5190bfc1c812ccb450640b9e241c55534d5e";
const UNICODE_CBOR: &str = "84815820e7014b64f9f980007ea5b20d95d57f0b90566b6a626076c36d3064f654ae40cb5820300dcd23f11d800f79b65d4d50af5190bfc1c812ccb450640b9e241c55534d5e7819746578742f706c61696e3b20636861727365743d7574662d38831a65e11a7f1a3b9ac9ff72c3a974617420e29c9320f09f9a802065cc81";
const UNICODE_NODE: &str = "5918220261206ce43a27af5b6d31aadd4a72d6b869d0af6d7735b3e9fafa2bfc";
const UNICODE_SNAPSHOT: &str = "1e39396c615c1da34aa0b15cd8c68b3aca5cfb9a85a4b1669a0cd8f20e423c94";

// EMPTY: seconds=0 nanos=0
const EMPTY_DATA_HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
const EMPTY_CBOR: &str =
    "84805820af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f32626083000060";
const EMPTY_NODE: &str = "dfe5733642fb53bc427249c9f531ad72ded2437b8e4213e36340829d0afae009";
const EMPTY_SNAPSHOT: &str = "b171ca0f4bd1b0e2cb61762479a67829cc31e6f61bc38ec16fda055ac5d69b07";

// FAR_FUTURE: seconds=253402300799 nanos=999999999
const FAR_FUTURE_DATA_HASH: &str =
    "1878e767f1a09c64a9e3b73ffc1af306482097367e3809bbc800350d2b255dc0";
const FAR_FUTURE_CBOR: &str = "84815820dfe5733642fb53bc427249c9f531ad72ded2437b8e4213e36340829d0afae00958201878e767f1a09c64a9e3b73ffc1af306482097367e3809bbc800350d2b255dc0f6831b0000003afff4417f1a3b9ac9fff6";
const FAR_FUTURE_NODE: &str = "c288e737179679779e45826fdb4228e1b25e6313530e800890dc2af4592c5584";
const FAR_FUTURE_SNAPSHOT: &str =
    "040ac504bd2f1865753be0c79e26787ce9417a39b9fe749990ee23f0e3c392c9";

// FAR_PAST: seconds=-377705116800 nanos=1
const FAR_PAST_DATA_HASH: &str = "3ae7d805f6789a6402acb70ad4096a85a56bf6804eaf25c0493ac697548d30b5";
const FAR_PAST_CBOR: &str = "848058203ae7d805f6789a6402acb70ad4096a85a56bf6804eaf25c0493ac697548d30b5f6833b00000057f0fab47f01686661722070617374";
const FAR_PAST_NODE: &str = "4183eccfbcc8971cbc71d375a50778652fc79f66bfe214c7c745eb91a29544c8";
const FAR_PAST_SNAPSHOT: &str = "ff1218ad82125b5525b44a1f4e16571f480788e5cbd46fd98e0a50f5b9c460a4";

// ---- End of pasted output ----------------------------------------------------------------

/// One golden input, mirroring the `vector(...)` calls in `tests/golden/vectors.py`.
struct Vector {
    name: &'static str,
    /// Indexes of earlier vectors whose nodes are the parents, in order.
    parents: &'static [usize],
    bytes: &'static [u8],
    content_type: Option<&'static str>,
    created_at: OffsetDateTime,
    label: Option<&'static str>,
    data_hash: &'static str,
    cbor: &'static str,
    node: &'static str,
    snapshot: &'static str,
}

const ROOT: usize = 0;
const TYPED: usize = 1;
const EMPTY: usize = 5;

fn vectors() -> Vec<Vector> {
    vec![
        Vector {
            name: "ROOT",
            parents: &[],
            bytes: b"hello",
            content_type: None,
            created_at: datetime!(2024-01-02 03:04:05.000000006 UTC),
            label: None,
            data_hash: ROOT_DATA_HASH,
            cbor: ROOT_CBOR,
            node: ROOT_NODE,
            snapshot: ROOT_SNAPSHOT,
        },
        Vector {
            name: "TYPED",
            parents: &[],
            bytes: b"{\"a\":1}",
            content_type: Some("application/json"),
            created_at: datetime!(2024-06-30 12:00:00.123456789 UTC),
            label: Some("tick 1"),
            data_hash: TYPED_DATA_HASH,
            cbor: TYPED_CBOR,
            node: TYPED_NODE,
            snapshot: TYPED_SNAPSHOT,
        },
        Vector {
            name: "MERGE",
            parents: &[ROOT, TYPED],
            bytes: b"merge",
            content_type: None,
            created_at: datetime!(2025-01-01 00:00:00 UTC),
            label: Some("merge"),
            data_hash: MERGE_DATA_HASH,
            cbor: MERGE_CBOR,
            node: MERGE_NODE,
            snapshot: MERGE_SNAPSHOT,
        },
        Vector {
            name: "BEFORE_EPOCH",
            parents: &[],
            bytes: b"apollo",
            content_type: Some("text/plain"),
            created_at: datetime!(1969-07-20 20:17:40.5 UTC),
            label: None,
            data_hash: BEFORE_EPOCH_DATA_HASH,
            cbor: BEFORE_EPOCH_CBOR,
            node: BEFORE_EPOCH_NODE,
            snapshot: BEFORE_EPOCH_SNAPSHOT,
        },
        Vector {
            name: "UNICODE",
            parents: &[ROOT],
            bytes: b"unicode",
            content_type: Some("text/plain; charset=utf-8"),
            created_at: datetime!(2024-02-29 23:59:59.999999999 UTC),
            label: Some("\u{e9}tat \u{2713} \u{1F680} e\u{301}"),
            data_hash: UNICODE_DATA_HASH,
            cbor: UNICODE_CBOR,
            node: UNICODE_NODE,
            snapshot: UNICODE_SNAPSHOT,
        },
        Vector {
            name: "EMPTY",
            parents: &[],
            bytes: b"",
            content_type: Some(""),
            created_at: datetime!(1970-01-01 00:00:00 UTC),
            label: Some(""),
            data_hash: EMPTY_DATA_HASH,
            cbor: EMPTY_CBOR,
            node: EMPTY_NODE,
            snapshot: EMPTY_SNAPSHOT,
        },
        Vector {
            name: "FAR_FUTURE",
            parents: &[EMPTY],
            bytes: b"\x00\xff",
            content_type: None,
            created_at: datetime!(9999-12-31 23:59:59.999999999 UTC),
            label: None,
            data_hash: FAR_FUTURE_DATA_HASH,
            cbor: FAR_FUTURE_CBOR,
            node: FAR_FUTURE_NODE,
            snapshot: FAR_FUTURE_SNAPSHOT,
        },
        Vector {
            name: "FAR_PAST",
            parents: &[],
            bytes: b"x",
            content_type: None,
            created_at: datetime!(-9999-01-01 00:00:00.000000001 UTC),
            label: Some("far past"),
            data_hash: FAR_PAST_DATA_HASH,
            cbor: FAR_PAST_CBOR,
            node: FAR_PAST_NODE,
            snapshot: FAR_PAST_SNAPSHOT,
        },
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn node_id(hex: &str) -> StateNodeId {
    hex.parse().expect("golden node id parses")
}

impl Vector {
    fn metadata(&self) -> StateMetadata {
        StateMetadata::new(self.created_at, self.label.map(str::to_owned))
    }

    fn parent_ids(&self, all: &[Vector]) -> Vec<StateNodeId> {
        self.parents.iter().map(|&i| node_id(all[i].node)).collect()
    }
}

#[test]
fn data_hash_is_plain_blake3() {
    for v in vectors() {
        let hash = ContentHash::of(v.bytes);
        assert_eq!(hash.to_hex(), v.data_hash, "{}", v.name);
        assert_eq!(
            hash.as_bytes(),
            blake3::hash(v.bytes).as_bytes(),
            "{}",
            v.name
        );
        assert_eq!(StateData::new(v.bytes).hash(), hash, "{}", v.name);
    }
}

#[test]
fn node_encoding_matches_python_cbor() {
    let all = vectors();
    for v in &all {
        let cbor = codec::encode_node(
            &v.parent_ids(&all),
            &ContentHash::of(v.bytes),
            v.content_type,
            &v.metadata(),
        );
        assert_eq!(hex(&cbor), v.cbor, "CBOR of {}", v.name);
    }
}

#[test]
fn node_and_snapshot_ids_match_python() {
    let all = vectors();
    for v in &all {
        let id = codec::node_id(
            &v.parent_ids(&all),
            &ContentHash::of(v.bytes),
            v.content_type,
            &v.metadata(),
        );
        assert_eq!(id.to_hex(), v.node, "node id of {}", v.name);
        assert_eq!(id.to_string(), format!("blake3:{}", v.node));
        let snap = codec::snapshot_id(&id);
        assert_eq!(snap.to_hex(), v.snapshot, "snapshot id of {}", v.name);
        assert_eq!(v.snapshot.parse::<SnapshotId>().expect("parse"), snap);
    }
}

#[test]
fn offset_of_created_at_does_not_change_golden_ids() {
    let all = vectors();
    for v in &all {
        for off in [offset!(+05:30), offset!(-11:00), offset!(+00:00:01)] {
            // The extreme vectors cannot be expressed at every offset (year 9999 + 05:30).
            let Some(at) = v.created_at.checked_to_offset(off) else {
                continue;
            };
            let m = StateMetadata::new(at, v.label.map(str::to_owned));
            let id = codec::node_id(
                &v.parent_ids(&all),
                &ContentHash::of(v.bytes),
                v.content_type,
                &m,
            );
            assert_eq!(id.to_hex(), v.node, "{} at offset {off}", v.name);
        }
    }
}

/// Commits every vector through a store (parents first) and checks ids and snapshot ids.
fn commit_vectors(store: &dyn StateStore) {
    let all = vectors();
    for v in &all {
        let data = StateData {
            bytes: v.bytes.to_vec(),
            content_type: v.content_type.map(str::to_owned),
        };
        let data_ref = store.put_state(data).expect("put_state");
        let id = store
            .commit_node(v.parent_ids(&all), data_ref, v.metadata())
            .expect("commit_node");
        assert_eq!(id.to_hex(), v.node, "stored node id of {}", v.name);
        let node = store.get_node(&id).expect("get_node");
        assert_eq!(node.data_hash.to_hex(), v.data_hash);
        let snap = store.snapshot(&id).expect("snapshot");
        assert_eq!(
            snap.to_hex(),
            v.snapshot,
            "stored snapshot id of {}",
            v.name
        );
        assert_eq!(
            store.load_snapshot(&snap).expect("load").state.bytes,
            v.bytes
        );
    }
}

#[test]
fn memory_store_produces_golden_ids() {
    commit_vectors(&InMemoryStateStore::new());
}

#[test]
fn sqlite_store_produces_golden_ids() {
    commit_vectors(&TempSqlite::new().store);
}
