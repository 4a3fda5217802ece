-- stategraph SQLite store, schema version 1.
--
-- Applied inside one transaction by the migration runner, which then sets
-- PRAGMA user_version = 1. Never edit a released migration: add a new file.

-- State bytes, stored once per distinct content (keyed by blake3 of the bytes).
CREATE TABLE blobs (
    id    INTEGER PRIMARY KEY,
    hash  BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    bytes BLOB NOT NULL
);

-- One row per put_state call: a UUID (v7) reference to some bytes and their content type.
CREATE TABLE state_data (
    data_ref     BLOB PRIMARY KEY CHECK (length(data_ref) = 16),
    blob_id      INTEGER NOT NULL REFERENCES blobs(id),
    content_type TEXT
) WITHOUT ROWID;
CREATE INDEX state_data_by_blob ON state_data(blob_id);

-- Nodes of the state graph. `id` is the content hash (see FORMAT.md); `seq` is this file's
-- insertion order and is never part of a node's identity. Rows are immutable once written.
--   parents      the parent ids, 32 bytes each, concatenated in commit order (the first is
--                the mainline); exactly what the id hashes, so a node verifies from its row.
--   parent_seqs  the same parents as 8-byte big-endian `seq` values, so walks up the graph
--                are rowid lookups that follow insertion order.
CREATE TABLE state_nodes (
    seq          INTEGER PRIMARY KEY,
    id           BLOB NOT NULL UNIQUE CHECK (length(id) = 32),
    parents      BLOB NOT NULL CHECK (length(parents) % 32 = 0),
    parent_seqs  BLOB NOT NULL CHECK (length(parent_seqs) * 4 = length(parents)),
    data_ref     BLOB NOT NULL REFERENCES state_data(data_ref),
    data_hash    BLOB NOT NULL CHECK (length(data_hash) = 32),
    content_type TEXT,
    created_s    INTEGER NOT NULL,
    created_ns   INTEGER NOT NULL CHECK (created_ns BETWEEN 0 AND 999999999),
    label        TEXT,
    generation   INTEGER NOT NULL CHECK (generation >= 1)
);
CREATE INDEX state_nodes_by_data ON state_nodes(data_ref);

-- The same edges indexed from the parent, so walks down the graph (children, descendants)
-- are index range scans.
CREATE TABLE node_children (
    parent INTEGER NOT NULL REFERENCES state_nodes(seq),
    child  INTEGER NOT NULL REFERENCES state_nodes(seq),
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;

-- Restore points. The id is derived from the node id, so it never collides between nodes.
CREATE TABLE snapshots (
    id         BLOB PRIMARY KEY CHECK (length(id) = 32),
    node_id    BLOB NOT NULL REFERENCES state_nodes(id),
    created_s  INTEGER NOT NULL,
    created_ns INTEGER NOT NULL CHECK (created_ns BETWEEN 0 AND 999999999)
) WITHOUT ROWID;
CREATE INDEX snapshots_by_node ON snapshots(node_id);
