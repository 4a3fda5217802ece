-- stategraph SQLite store, schema version 2: refs, their log, and the shallow boundary.

-- Named pointers to nodes (branches, tags). Moved only by compare-and-swap in the library.
CREATE TABLE refs (
    name    TEXT PRIMARY KEY,
    node_id BLOB NOT NULL REFERENCES state_nodes(id)
) WITHOUT ROWID;

-- Every move of every ref, append-only. old_node is NULL when the move created the ref,
-- new_node is NULL when it deleted it. Entries outlive the ref so a deletion can be undone.
CREATE TABLE ref_log (
    seq        INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    old_node   BLOB CHECK (old_node IS NULL OR length(old_node) = 32),
    new_node   BLOB CHECK (new_node IS NULL OR length(new_node) = 32),
    created_s  INTEGER NOT NULL,
    created_ns INTEGER NOT NULL CHECK (created_ns BETWEEN 0 AND 999999999),
    message    TEXT
);
CREATE INDEX ref_log_by_name ON ref_log(name, seq);

-- Edges to parents that are not stored here: the shallow boundary left by importing a
-- snapshot without its ancestors. When such a parent is imported later, its rows move to
-- node_children.
CREATE TABLE shallow_edges (
    parent_id BLOB NOT NULL CHECK (length(parent_id) = 32),
    child     INTEGER NOT NULL REFERENCES state_nodes(seq),
    PRIMARY KEY (parent_id, child)
) WITHOUT ROWID;
