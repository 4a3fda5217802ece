-- stategraph SQLite store, schema version 3: drop two indexes that no query reads.
--
-- `state_data_by_blob` and `state_nodes_by_data` index the referencing side of two foreign
-- keys. SQLite needs such an index only to check a DELETE of the referenced row (a blob, a
-- state_data row), and the store never deletes either. Every lookup goes the other way,
-- through the primary keys. Each index cost one more B-tree page written to the WAL (and
-- checkpointed) by every put_state and every commit_node: about a quarter of a tick's pages.
--
-- A garbage collector that deletes blobs or state_data rows must not pay a table scan per
-- deleted row for these checks: it deletes by set, or brings back the index it needs in its
-- own migration. (The schema already has no index from node_children.child or
-- shallow_edges.child to state_nodes, for the same reason.)

DROP INDEX IF EXISTS state_data_by_blob;
DROP INDEX IF EXISTS state_nodes_by_data;
