//! Records a short state history in a SQLite file and prints it back.
//!
//! Run with `cargo run --example quickstart [PATH]` (default `quickstart.db` in a fresh
//! temporary directory). Running it twice on the same path shows that commits are idempotent
//! and that the history survives reopening.

use std::error::Error;
use std::path::PathBuf;

use stategraph::{SqliteStateStore, StateData, StateMetadata, StateNodeId, StateStore};
use time::OffsetDateTime;
use time::macros::datetime;

fn main() -> Result<(), Box<dyn Error>> {
    let temp;
    let path = match std::env::args_os().nth(1) {
        Some(p) => PathBuf::from(p),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("quickstart.db")
        }
    };
    let store = SqliteStateStore::open(&path)?;
    println!("store: {}", path.display());

    // A fixed clock makes the ids reproducible from run to run.
    let start: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);
    let mut head: Option<StateNodeId> = None;
    let mut history = Vec::new();
    for tick in 1..=5u32 {
        let state = format!("{{\"tick\":{tick},\"counter\":{}}}", tick * tick);
        let data_ref = store
            .put_state(StateData::new(state.into_bytes()).with_content_type("application/json"))?;
        let metadata = StateMetadata::new(
            start + time::Duration::seconds(i64::from(tick)),
            Some(format!("tick {tick}")),
        );
        let node = store.commit_node(head.into_iter().collect(), data_ref, metadata)?;
        history.push(node);
        head = Some(node);
    }
    let Some(head) = head else { return Ok(()) };
    let snapshot = store.snapshot(&history[2])?;
    drop(store);

    // Reopen read-only, as a debugging session would, and walk the first-parent chain.
    let store = SqliteStateStore::open_read_only(&path)?;
    println!("\nhistory (newest first):");
    let mut cursor = Some(head);
    while let Some(id) = cursor {
        let node = store.get_node(&id)?;
        let state = store.get_state(&node.data_ref)?;
        println!(
            "  {}  gen {}  {}  {:<8} {}",
            id.to_short_hex(12),
            node.generation,
            node.metadata
                .created_at
                .format(&time::format_description::well_known::Rfc3339)?,
            node.metadata.label.as_deref().unwrap_or(""),
            String::from_utf8_lossy(&state.bytes),
        );
        cursor = node.parent_ids.first().copied();
    }
    let restored = store.load_snapshot(&snapshot)?;
    println!(
        "\nsnapshot {} -> node {}: {}",
        snapshot.to_short_hex(12),
        restored.node_id.to_short_hex(12),
        String::from_utf8_lossy(&restored.state.bytes)
    );
    Ok(())
}
