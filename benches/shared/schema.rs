//! The store's own schema, for the raw-SQLite baselines of both benches: every migration in
//! order (the last one drops two indexes the first creates), so the raw tables have exactly
//! the shape of the store's.

use rusqlite::Connection;

const MIGRATIONS: [&str; 3] = [
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_history.sql"),
    include_str!("../../migrations/sqlite/0003_lean_indexes.sql"),
];

/// Creates the schema on `conn`. Panics if the list above lags behind the store's schema
/// version, so a new migration cannot silently leave the baselines on an older schema.
pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    assert_eq!(
        MIGRATIONS.len() as i64,
        stategraph::SCHEMA_VERSION,
        "benches/shared/schema.rs lists fewer migrations than the store applies"
    );
    for migration in MIGRATIONS {
        conn.execute_batch(migration)?;
    }
    Ok(())
}
