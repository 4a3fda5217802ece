//! `snapshot`, `snapshots` and `restore`: restore points.

use std::io::Write;

use serde::Serialize;
use stategraph::{
    History as _, IdPrefix, LogOptions, SnapshotId, SnapshotInfo, SqliteStateStore, StateNodeId,
    StateStore, StateStoreError,
};

use crate::Ctx;
use crate::args::{ExportArgs, RestoreArgs, SnapshotArgs, SnapshotsArgs};
use crate::commands::refs::{Kind, check_new_branch, check_ref_name};
use crate::error::{CliError, CliResult, describe_node, explain, report};
use crate::output::{
    Paint, Theme, note, printable, progress, rfc3339, rfc3339_seconds, write_json,
};
use crate::revs::{resolve, resolve_plain};

/// `snapshot REV`: prints the new snapshot's id. `snapshot -d SNAPSHOT` deletes one.
pub fn snapshot(ctx: &Ctx, args: &SnapshotArgs) -> CliResult {
    let store = ctx.open_write()?;
    if args.delete {
        return delete(ctx, &store, &args.rev);
    }
    let id = resolve(&store, &args.rev)?;
    let snapshot = store.snapshot(&id)?;
    writeln!(std::io::stdout().lock(), "{snapshot}")?;
    Ok(())
}

/// `snapshot -d SNAPSHOT`: deletes the restore point, not its node or state.
fn delete(ctx: &Ctx, store: &SqliteStateStore, text: &str) -> CliResult {
    // A snapshot whose record is damaged, named in full, is deleted all the same: that is
    // the way past the damage.
    if let Ok(id) = text.parse::<SnapshotId>()
        && let Err(e) = store.snapshot_info(&id)
        && e.is_corrupt()
    {
        store.delete_snapshot(&id)?;
        writeln!(
            std::io::stdout().lock(),
            "deleted snapshot {} (its record was damaged: {e})",
            ctx.theme.paint(Paint::Snapshot, &id.to_short_hex(12)),
        )?;
        return Ok(());
    }
    let SnapshotInfo { id, node_id, .. } = find_snapshot_info(store, text)?;
    store.delete_snapshot(&id).map_err(|e| match e {
        StateStoreError::MissingSnapshot { .. } => CliError::new(format!(
            "snapshot {} was deleted by another writer meanwhile",
            id.to_short_hex(12)
        )),
        e => e.into(),
    })?;
    let t = ctx.theme;
    writeln!(
        std::io::stdout().lock(),
        "deleted snapshot {} (node {})",
        t.paint(Paint::Snapshot, &id.to_short_hex(12)),
        describe_node(store, t, &node_id)
    )?;
    Ok(())
}

#[derive(Serialize)]
struct SnapshotJson {
    id: String,
    node_id: String,
    created_at: String,
    label: Option<String>,
}

/// `snapshots`: every snapshot (or the newest N), oldest first.
pub fn list(ctx: &Ctx, args: &SnapshotsArgs) -> CliResult {
    let store = ctx.open_read()?;
    let snapshots = match &args.rev {
        None => {
            let mut all = store.list_snapshots()?;
            if let Some(limit) = args.limit {
                all.drain(..all.len().saturating_sub(limit));
            }
            all
        }
        Some(rev) => in_history(&store, &resolve(&store, rev)?, args.limit, ctx.err_theme)?,
    };
    let label = |s: &SnapshotInfo| {
        store
            .get_node(&s.node_id)
            .ok()
            .and_then(|n| n.metadata.label)
    };
    let mut out = ctx.out(!args.json);
    if args.json {
        let list: Vec<SnapshotJson> = snapshots
            .iter()
            .map(|s| SnapshotJson {
                id: s.id.to_string(),
                node_id: s.node_id.to_string(),
                created_at: rfc3339(s.created_at),
                label: label(s),
            })
            .collect();
        write_json(&mut out, &list)?;
        out.finish()?;
        return Ok(());
    }
    let t = ctx.theme;
    for s in &snapshots {
        let line = format!(
            "{}  node {}  {}  {}",
            t.paint(Paint::Snapshot, &s.id.to_short_hex(12)),
            t.paint(Paint::Id, &s.node_id.to_short_hex(12)),
            t.paint(Paint::Dim, &rfc3339_seconds(s.created_at)),
            printable(&label(s).unwrap_or_default(), false)
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    out.finish()?;
    Ok(())
}

/// The snapshots of the nodes in `head`'s history, the newest `limit` of them (newest by
/// the walk, which goes by generation), listed oldest first as `snapshots` lists them all.
/// The walk stops once it has them, and reads snapshots a page of nodes at a time. A walk
/// that reaches the end of the stored history says on stderr where it stops short (a shallow
/// boundary: snapshots kept below it are not listed).
fn in_history(
    store: &dyn StateStore,
    head: &StateNodeId,
    limit: Option<usize>,
    err_theme: Theme,
) -> CliResult<Vec<SnapshotInfo>> {
    let mut log = store
        .log(&LogOptions::new().from(*head))
        .map_err(|e| explain(store, e))?;
    let mut paged = crate::commands::history::WithSnapshots::new(store);
    let mut found = Vec::new();
    let mut ended = false;
    while limit.is_none_or(|n| found.len() < n) {
        let Some((_, snapshots)) = paged.next(|| log.next().transpose(), |node| node.id)? else {
            ended = true;
            break;
        };
        // Several snapshots of one node: newest first, as the walk goes.
        found.extend(snapshots.into_iter().rev());
    }
    if ended {
        crate::commands::history::boundary_note(err_theme, log.boundary());
    }
    if let Some(n) = limit {
        found.truncate(n);
    }
    found.reverse();
    Ok(found)
}

/// The snapshots whose id starts with `text` (a full id, or a prefix of 4+ hex digits); none
/// when `text` is neither.
pub fn snapshots_matching(store: &dyn StateStore, text: &str) -> CliResult<Vec<SnapshotInfo>> {
    // A full id is looked up alone: a damaged record of another snapshot, which fails every
    // listing, does not stand in its way.
    if let Ok(id) = text.parse::<SnapshotId>() {
        return Ok(store.snapshot_info(&id)?.into_iter().collect());
    }
    let Ok(prefix) = IdPrefix::parse(text) else {
        return Ok(Vec::new());
    };
    let listed = store.list_snapshots().map_err(|e| {
        let damaged = e.is_corrupt();
        let err = CliError::from(e);
        if damaged {
            err.hint(
                "a damaged snapshot record stops every listing: name snapshots by their full \
                 id, and `stategraph snapshot -d FULL_ID` deletes the damaged one",
            )
        } else {
            err
        }
    })?;
    Ok(listed
        .into_iter()
        .filter(|s| prefix.matches(s.id.as_bytes()))
        .collect())
}

/// Finds a snapshot by full id or by a unique prefix of the listed ids.
fn find_snapshot(store: &dyn StateStore, text: &str) -> CliResult<SnapshotId> {
    find_snapshot_info(store, text).map(|s| s.id)
}

/// [`find_snapshot`], with the node the snapshot is of. Failing that, a revision naming a
/// node with exactly one snapshot names that snapshot (`restore tags/good --branch main`).
/// Text that names one snapshot and also a node that snapshot is not of (a short prefix of
/// both ids, or a ref named like one) is refused as ambiguous: these commands move and delete.
fn find_snapshot_info(store: &dyn StateStore, text: &str) -> CliResult<SnapshotInfo> {
    let matching = snapshots_matching(store, text)?;
    let as_node = resolve_plain(store, text);
    match (matching.as_slice(), as_node) {
        ([one], Ok(node)) if one.node_id != node => Err(CliError::new(format!(
            "ambiguous {text:?}: it names snapshot {} (of node {}) and node {}",
            one.id.to_short_hex(12),
            describe_node(store, Theme::PLAIN, &one.node_id),
            describe_node(store, Theme::PLAIN, &node),
        ))
        .hint(format!(
            "for the snapshot, give more digits of its id ({}); for the node's own \
             snapshots, `stategraph snapshots {}` lists them",
            one.id.to_short_hex(16),
            node.to_short_hex(16)
        ))),
        // A prefix of one snapshot and of several nodes names several things too.
        ([one], Err(StateStoreError::AmbiguousId { candidates, .. })) => {
            let mut err = CliError::new(format!(
                "ambiguous {text:?}: it names snapshot {} (of node {}) and {} or more nodes",
                one.id.to_short_hex(12),
                describe_node(store, Theme::PLAIN, &one.node_id),
                candidates.len()
            ))
            .hint(format!(
                "for the snapshot, give more digits of its id ({})",
                one.id.to_short_hex(16)
            ));
            for id in &candidates {
                err = err.hint(format!("  node {}", describe_node(store, Theme::PLAIN, id)));
            }
            Err(err)
        }
        // Not a node: the snapshot it names.
        (
            [one],
            Ok(_)
            | Err(
                StateStoreError::UnknownRevision { .. }
                | StateStoreError::InvalidId(_)
                | StateStoreError::MissingNode { .. }
                | StateStoreError::MissingRef { .. }
                | StateStoreError::InvalidInput { .. },
            ),
        ) => Ok(one.clone()),
        ([_], Err(e)) => Err(explain(store, e)),
        ([], Ok(node)) => of_node(store, text, &node),
        // Neither a snapshot nor a node.
        (
            [],
            Err(
                StateStoreError::UnknownRevision { .. }
                | StateStoreError::InvalidId(_)
                | StateStoreError::MissingNode { .. }
                | StateStoreError::MissingRef { .. },
            ),
        ) => Err(CliError::new(format!("no snapshot matches {text:?}"))
            .hint("list snapshots with `stategraph snapshots`")),
        // An ambiguous node prefix, or a walk that failed (`main~9` past the root): that
        // error, with its hints.
        ([], Err(e)) => Err(explain(store, e)),
        (many, _) => {
            let mut err = CliError::new(format!(
                "ambiguous snapshot prefix {text:?}: it matches {} snapshots",
                many.len()
            ))
            .hint("use more digits; the candidates are:");
            for s in many.iter().take(8) {
                err = err.hint(format!(
                    "  {} (node {})",
                    s.id.to_short_hex(12),
                    describe_node(store, Theme::PLAIN, &s.node_id)
                ));
            }
            Err(err)
        }
    }
}

/// The one snapshot of `node` (which `text` named), or why there is not one.
fn of_node(store: &dyn StateStore, text: &str, node: &StateNodeId) -> CliResult<SnapshotInfo> {
    let err = CliError::new(format!("no snapshot matches {text:?}"));
    match store.snapshots_of(node)?.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(err.hint(format!(
            "{text} is node {}, which has no snapshot (`stategraph snapshots {text}` lists \
             those in its history)",
            node.to_short_hex(12)
        ))),
        several => Err(err.hint(format!(
            "{text} is node {}, which has {} snapshots; name one: {}",
            node.to_short_hex(12),
            several.len(),
            several
                .iter()
                .map(|s| s.id.to_short_hex(12))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `restore SNAPSHOT --branch B`: moves B to the snapshot's node by compare-and-swap.
pub fn restore(ctx: &Ctx, args: &RestoreArgs) -> CliResult {
    let store = ctx.open_write()?;
    let before = store.get_ref(&args.branch)?;
    match before {
        None => check_new_branch(&store, &args.branch)?,
        Some(_) => check_ref_name(&args.branch, Kind::Branch, false)?,
    }
    match (&before, args.create) {
        (None, false) => {
            let missing = StateStoreError::MissingRef {
                name: args.branch.clone(),
            };
            let hint = if args.snapshot.is_some() {
                format!(
                    "to make a new branch {} at the snapshot, add --create",
                    args.branch
                )
            } else {
                "to make a new branch, name the snapshot and add --create".to_owned()
            };
            return Err(explain(&store, missing).hint(hint));
        }
        (Some(head), true) => {
            return Err(CliError::new(format!(
                "branch {} already exists (at {})",
                args.branch,
                head.to_short_hex(12)
            ))
            .hint("drop --create to move it"));
        }
        _ => {}
    }
    let snapshot_id = match (&args.snapshot, &before) {
        (Some(text), _) => find_snapshot(&store, text)?,
        // Refused above (a missing branch needs --create, which needs a snapshot); kept as
        // an error rather than a panic.
        (None, None) => {
            return Err(CliError::new(format!("there is no branch {}", args.branch)));
        }
        (None, Some(head)) => match store.latest_snapshot_in(
            &LogOptions::new()
                .from(*head)
                .first_parent(args.first_parent),
        ) {
            Ok(Some(latest)) => latest.id,
            Err(StateStoreError::ShallowHistory { parent, .. }) => {
                return Err(CliError::new(format!(
                    "cannot tell which snapshot is the latest in the history of {}: it stops \
                     at a shallow boundary (parent {} is not stored: pruned by `gc \
                     --prune-history`, or never imported), and a snapshot kept past it could be \
                     newer than any above it",
                    args.branch,
                    parent.to_short_hex(12)
                ))
                .hint(format!(
                    "name the snapshot: `stategraph snapshots` lists them, `stategraph restore \
                     SNAPSHOT --branch {}` restores one",
                    args.branch
                )));
            }
            Err(e) => return Err(e.into()),
            Ok(None) => {
                return Err(CliError::new(format!(
                    "no snapshot in the history of {}",
                    args.branch
                ))
                .hint(
                    "take one with `stategraph snapshot REV`, or name one from another history",
                ));
            }
        },
    };
    let snapshot = store
        .restore(&snapshot_id, &args.branch, before.as_ref())
        .map_err(|e| match e {
            StateStoreError::RefConflict { actual, .. } => CliError::new(format!(
                "branch {} was moved by another writer meanwhile (now at {}); nothing was changed",
                args.branch,
                actual.map_or_else(|| "nothing".to_owned(), |a| a.to_short_hex(12))
            ))
            .hint("look again and retry"),
            StateStoreError::MissingSnapshot { .. } => {
                CliError::new(format!("no snapshot {}", snapshot_id.to_short_hex(12)))
                    .hint("list snapshots with `stategraph snapshots`")
            }
            e => e.into(),
        })?;
    let t = ctx.theme;
    // Moving back or forward along the branch's line needs no note; anything else leaves its
    // old head reachable only through the ref log. (The move is done: a failed check only
    // skips the note.)
    let related = |a: &_, b: &_| store.is_ancestor(a, b).unwrap_or(true);
    if let Some(head) = before
        && !related(&snapshot.node_id, &head)
        && !related(&head, &snapshot.node_id)
    {
        note(
            ctx.err_theme,
            &format!(
                "snapshot {} is not in the history of {} (its old head {} is in `stategraph \
                 reflog {}`)",
                snapshot_id.to_short_hex(12),
                args.branch,
                head.to_short_hex(12),
                args.branch
            ),
        );
    }
    let from = match before {
        None => t.paint(Paint::Dim, "(new)"),
        Some(b) if b == snapshot.node_id => t.paint(Paint::Dim, "(already there)"),
        Some(b) => t.paint(Paint::Id, &b.to_short_hex(12)),
    };
    writeln!(
        std::io::stdout().lock(),
        "{}: {from} -> {} (snapshot {})",
        t.paint(Paint::Branch, &args.branch),
        describe_node(&store, t, &snapshot.node_id),
        t.paint(Paint::Snapshot, &snapshot_id.to_short_hex(12)),
    )?;
    Ok(())
}

/// `export`: snapshot packages to stdout or into a directory.
pub fn export(ctx: &Ctx, args: &ExportArgs) -> CliResult {
    if !args.all && args.snapshots.is_empty() {
        // Not an empty export: a backup script that forgot --all must not "succeed".
        return Err(CliError::new("no snapshots named")
            .hint("name the SNAPSHOTs to export, or pass --all --out DIR for every one"));
    }
    let store = ctx.open_read()?;
    let ids: Vec<SnapshotId> = if args.all {
        store
            .list_snapshots()
            .map_err(past_a_damaged_record)?
            .into_iter()
            .map(|s| s.id)
            .collect()
    } else {
        let mut seen = std::collections::HashSet::new();
        let mut ids = Vec::with_capacity(args.snapshots.len());
        for text in &args.snapshots {
            let id = find_snapshot(&store, text)?;
            // One snapshot named twice (by two prefixes, say) is one package.
            if seen.insert(id) {
                ids.push(id);
            }
        }
        ids
    };
    if ids.is_empty() {
        // Only --all (which needs --out) finds none: named snapshots match or are an error,
        // and naming none was refused above.
        let dir = args.out.as_deref().unwrap_or(std::path::Path::new("."));
        eprintln!(
            "exported 0 snapshots to {}: the store has none",
            dir.display()
        );
        return Ok(());
    }
    let Some(dir) = &args.out else {
        let [id] = ids.as_slice() else {
            return Err(CliError::new(
                "several snapshots need --out DIR (one file each)",
            ));
        };
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return Err(
                CliError::new("a package is binary; not writing it to a terminal")
                    .hint("redirect stdout to a file, or pass --out DIR"),
            );
        }
        let package = store.export_snapshot(id)?;
        let mut out = std::io::stdout().lock();
        out.write_all(&package.to_bytes())?;
        out.flush()?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        if dir.exists() && !dir.is_dir() {
            // create_dir_all says "File exists" for /dev/null or a regular file.
            CliError::new(format!("{} is not a directory", dir.display()))
                .hint("--out names a directory to write one file per snapshot into")
        } else {
            CliError::new(format!("cannot create {}: {e}", dir.display()))
        }
    })?;
    let bar = progress(ids.len() as u64, "exporting");
    let done = export_to_dir(&store, &ids, dir, args.all, || bar.inc(1))?;
    bar.finish_and_clear();
    for (id, e) in &done.damaged {
        let err = CliError::new(format!(
            "snapshot {}: {e}; its package was not written",
            id.to_short_hex(12)
        ));
        report(&err, ctx.err_theme);
    }
    eprintln!(
        "exported {} snapshot(s) to {}{}",
        ids.len() - done.deleted - done.damaged.len(),
        dir.display(),
        match done.deleted {
            0 => String::new(),
            n => format!(" ({n} deleted while exporting, skipped)"),
        }
    );
    if done.damaged.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = done
        .damaged
        .iter()
        .map(|(id, _)| id.to_short_hex(12))
        .collect();
    let mut err = CliError::new(format!(
        "{} of {} snapshot(s) could not be exported (damaged in this store): {}",
        names.len(),
        ids.len(),
        names.join(", ")
    ));
    if names.len() < ids.len() - done.deleted {
        err = err.hint("every other snapshot was exported");
    }
    Err(err.hint("`stategraph fsck` lists the damage and says what can restore it"))
}

/// The error of a listing of snapshots that a damaged snapshot record stopped (every listing
/// reads every record), saying how to get past it: `fsck` alone would send the user back to
/// `export --all`.
fn past_a_damaged_record(e: StateStoreError) -> CliError {
    let record = match &e {
        StateStoreError::Corrupt { what, .. } => what
            .strip_prefix("snapshot ")
            .and_then(|id| id.parse::<SnapshotId>().ok()),
        _ => None,
    };
    let err = CliError::from(e);
    match record {
        Some(id) => err.hint(format!(
            "a damaged snapshot record stops every listing of snapshots; `stategraph snapshot \
             -d {id}` deletes it (its node and state stay), and `export --all` then exports \
             the others"
        )),
        None => err,
    }
}

/// What [`export_to_dir`] did besides writing packages.
#[derive(Debug, Default)]
struct Exported {
    /// Snapshots deleted since they were listed, skipped.
    deleted: usize,
    /// Snapshots that could not be read back whole (damaged in this store), skipped, with
    /// what reading them said.
    damaged: Vec<(SnapshotId, StateStoreError)>,
}

/// Writes the packages of `ids` into `dir`, one file each, calling `step` after each. Skips
/// (and counts) the snapshots deleted since they were listed (only when `listed_all`: a
/// snapshot named on the command line that is missing is an error), and those damaged here,
/// so that one damaged snapshot does not keep the others from being exported: their packages
/// are what can repair a store later.
fn export_to_dir(
    store: &dyn StateStore,
    ids: &[SnapshotId],
    dir: &std::path::Path,
    listed_all: bool,
    mut step: impl FnMut(),
) -> CliResult<Exported> {
    let mut done = Exported::default();
    for id in ids {
        let package = match store.export_snapshot(id) {
            Ok(package) => package,
            // Listed, then deleted by a program rotating its restore points: nothing to
            // back up any more, and no reason to stop backing up the others.
            Err(StateStoreError::MissingSnapshot { .. }) if listed_all => {
                done.deleted += 1;
                step();
                continue;
            }
            // Still listed, but its node or state does not read back (a missing one
            // included): damage, reported once the others are written.
            Err(
                e @ (StateStoreError::Corrupt { .. }
                | StateStoreError::MissingNode { .. }
                | StateStoreError::MissingState { .. }),
            ) => {
                done.damaged.push((*id, e));
                step();
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        write_package(dir, &format!("{}.sgpkg", id.to_hex()), &package.to_bytes())?;
        step();
    }
    // The files' names are durable once their directory is.
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        return Err(CliError::new(format!("cannot sync {}: {e}", dir.display())));
    }
    Ok(done)
}

/// Writes one package file whole or not at all: into a temporary file beside it, synced,
/// then renamed over `name`. A full disk or a killed export leaves no truncated package
/// under a package's name (a leftover `.*.tmp` file is not one `import DIR` reads).
///
/// The temporary file is made new, under a name of this export's own: another export of the
/// same snapshot into the same directory (an overlapping backup run) keeps writing to its
/// own file, not to the one this export renames into place, and a file or link already at
/// the name is neither truncated nor written through.
fn write_package(dir: &std::path::Path, name: &str, bytes: &[u8]) -> CliResult {
    let path = dir.join(name);
    let failed = |e: std::io::Error| CliError::new(format!("cannot write {}: {e}", path.display()));
    let (temp, mut file) = create_temp(dir, name).map_err(failed)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, &path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        failed(e)
    })
}

/// How many names [`create_temp`] tries before it gives up.
const TEMP_ATTEMPTS: u32 = 100;

/// The name of the temporary file for the package `name`: hidden, with this process's id and
/// an attempt number, so that concurrent exports never pick the same one.
fn temp_name(name: &str, attempt: u32) -> String {
    format!(".{name}.{}-{attempt}.tmp", std::process::id())
}

/// Creates a new temporary file for the package `name` in `dir`: the first of its names
/// ([`temp_name`]) that nothing holds yet.
fn create_temp(
    dir: &std::path::Path,
    name: &str,
) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let mut attempt = 0;
    loop {
        let temp = dir.join(temp_name(name, attempt));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < TEMP_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use stategraph::{InMemoryStateStore, StateData, StateMetadata};

    use super::*;

    /// `export --all` lists the snapshots, then reads each: one deleted in between is
    /// skipped and counted, the others are written; a named one that is missing fails.
    #[test]
    fn a_snapshot_deleted_after_listing_is_skipped() {
        let store = InMemoryStateStore::new();
        let mut ids = Vec::new();
        for label in ["a", "b", "c"] {
            let data = store
                .put_state(StateData::new(label.as_bytes().to_vec()))
                .unwrap();
            let node = store
                .commit_node(vec![], data, StateMetadata::now(Some(label.into())))
                .unwrap();
            ids.push(store.snapshot(&node).unwrap());
        }
        store.delete_snapshot(&ids[1]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut steps = 0;
        let done = export_to_dir(&store, &ids, dir.path(), true, || steps += 1).unwrap();
        assert_eq!((done.deleted, done.damaged.len(), steps), (1, 0, 3));
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut expected = vec![
            format!("{}.sgpkg", ids[0].to_hex()),
            format!("{}.sgpkg", ids[2].to_hex()),
        ];
        expected.sort();
        assert_eq!(names, expected);
        let err = export_to_dir(&store, &ids, dir.path(), false, || {}).unwrap_err();
        assert!(err.message.contains("no snapshot"), "{}", err.message);
    }

    /// Another export of the same snapshot into the same directory (an overlapping backup
    /// run), still writing the temporary file it made, does not share it: what it writes
    /// after this export finished does not change the package this export put in place.
    #[test]
    fn an_export_does_not_adopt_a_temporary_file_it_did_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let name = "x.sgpkg";
        let mut other = std::fs::File::create(dir.path().join(temp_name(name, 0))).unwrap();
        other.write_all(b"the other export, half way").unwrap();
        write_package(dir.path(), name, b"the whole package").unwrap();
        other.write_all(b" and on").unwrap();
        drop(other);
        assert_eq!(
            std::fs::read(dir.path().join(name)).unwrap(),
            b"the whole package"
        );
    }

    /// A link planted at the name of an export's temporary file is not followed: the file it
    /// points to is left as it was, and the package is still written.
    #[test]
    fn an_export_does_not_write_through_a_link_at_its_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let name = "x.sgpkg";
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"not yours").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(temp_name(name, 0))).unwrap();
        write_package(dir.path(), name, b"the whole package").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"not yours");
        let path = dir.path().join(name);
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read(&path).unwrap(), b"the whole package");
    }
}
