#!/usr/bin/env python3
"""Independent implementation of the stategraph hash encoding, version 1.

Written from the module documentation of `src/codec.rs` only (not from its code), using the
`cbor2` and `blake3` Python packages:

    pip install cbor2 blake3
    python3 tests/golden/vectors.py

It prints the golden vectors that `tests/it/golden.rs` pins as constants. If this script and
the Rust crate ever disagree, one of them does not follow the spec: investigate, do not
regenerate the constants from the crate.

Spec recap:
    data_hash   = BLAKE3(state bytes)
    node_id     = BLAKE3(b"stategraph/node/v1" + b"\\x00" + CBOR(node))
    node        = [parents, data_hash, content_type, [seconds, nanos, label]]
    snapshot_id = BLAKE3(b"stategraph/snapshot/v1" + b"\\x00" + node_id)
CBOR is deterministic (RFC 8949 section 4.2.1): definite lengths, shortest integer forms,
arrays only. `seconds` is floor(created_at) since the Unix epoch (negative before 1970),
`nanos` the remaining 0..=999_999_999.
"""

import calendar
import datetime

import blake3
import cbor2

NODE_DOMAIN = b"stategraph/node/v1\x00"
SNAPSHOT_DOMAIN = b"stategraph/snapshot/v1\x00"


def unix_seconds(year, month, day, hour, minute, second):
    """Whole seconds since the epoch of a UTC civil time (proleptic Gregorian)."""
    if year >= 1:
        return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    # Python's datetime stops at year 1; shift by whole 400-year Gregorian cycles
    # (146097 days each) so the civil date maps to the same weekday/leap pattern.
    cycles = (1 - year) // 400 + 1
    shifted = calendar.timegm((year + 400 * cycles, month, day, hour, minute, second, 0, 0, 0))
    return shifted - cycles * 146097 * 86400


def encode_node(parents, data_hash, content_type, seconds, nanos, label):
    assert 0 <= nanos <= 999_999_999
    value = [list(parents), data_hash, content_type, [seconds, nanos, label]]
    # cbor2 writes definite lengths and shortest-form integers; canonical=True additionally
    # guarantees deterministic encoding (it only matters for maps/floats, which we avoid).
    return cbor2.dumps(value, canonical=True)


def node_id(parents, data_hash, content_type, seconds, nanos, label):
    cbor = encode_node(parents, data_hash, content_type, seconds, nanos, label)
    return blake3.blake3(NODE_DOMAIN + cbor).digest(), cbor


def snapshot_id(nid):
    return blake3.blake3(SNAPSHOT_DOMAIN + nid).digest()


def main():
    vectors = {}

    def vector(name, parents, data, content_type, civil, nanos, label):
        seconds = unix_seconds(*civil)
        data_hash = blake3.blake3(data).digest()
        nid, cbor = node_id([vectors[p][0] for p in parents], data_hash, content_type,
                            seconds, nanos, label)
        vectors[name] = (nid, cbor)
        print(f"// {name}: seconds={seconds} nanos={nanos}")
        print(f"const {name}_DATA_HASH: &str = \"{data_hash.hex()}\";")
        print(f"const {name}_CBOR: &str = \"{cbor.hex()}\";")
        print(f"const {name}_NODE: &str = \"{nid.hex()}\";")
        print(f"const {name}_SNAPSHOT: &str = \"{snapshot_id(nid).hex()}\";")
        print()

    # Inputs; tests/it/golden.rs builds the same ones.
    vector("ROOT", [], b"hello", None, (2024, 1, 2, 3, 4, 5), 6, None)
    vector("TYPED", [], b'{"a":1}', "application/json", (2024, 6, 30, 12, 0, 0), 123_456_789,
           "tick 1")
    vector("MERGE", ["ROOT", "TYPED"], b"merge", None, (2025, 1, 1, 0, 0, 0), 0, "merge")
    vector("BEFORE_EPOCH", [], b"apollo", "text/plain", (1969, 7, 20, 20, 17, 40), 500_000_000,
           None)
    vector("UNICODE", ["ROOT"], b"unicode", "text/plain; charset=utf-8", (2024, 2, 29, 23, 59, 59),
           999_999_999, "\u00e9tat \u2713 \U0001F680 e\u0301")
    vector("EMPTY", [], b"", "", (1970, 1, 1, 0, 0, 0), 0, "")
    vector("FAR_FUTURE", ["EMPTY"], b"\x00\xff", None, (9999, 12, 31, 23, 59, 59), 999_999_999,
           None)
    vector("FAR_PAST", [], b"x", None, (-9999, 1, 1, 0, 0, 0), 1, "far past")

    # Sanity checks of the spec's own worked examples (src/codec.rs unit tests).
    assert blake3.blake3(b"abc").hexdigest() == (
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85")
    assert unix_seconds(2024, 1, 2, 3, 4, 5) == 1704164645
    assert unix_seconds(1969, 12, 31, 23, 59, 59) == -1
    assert datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc).timestamp() == 0


if __name__ == "__main__":
    main()
