//! `fsck`, `stats` and `gc`: checking, sizing and cleaning a store.

use std::io::Write;

use serde::Serialize;
use stategraph::{GcOptions, SqliteStateStore, VerifyPhase, VerifyProgress, VerifyReport};

use crate::Ctx;
use crate::args::{BackupArgs, GcArgs, JsonArgs};
use crate::error::{CliError, CliResult, EXIT_FALSE};
use crate::output::{human_size, note, progress, spinner, write_json};

#[derive(Serialize)]
struct FsckJson {
    blobs: u64,
    nodes: u64,
    snapshots: u64,
    refs: u64,
    shallow_edges: u64,
    problems: Vec<String>,
}

/// `fsck`: exit code 0 when healthy, 1 when problems were found.
pub fn fsck(ctx: &Ctx, args: &JsonArgs) -> CliResult {
    ctx.check_exists()?;
    // A store too damaged to open or to walk (truncated, a broken header) is a finding like
    // any other: exit 1, not the 2 of a command that could not run.
    let report = match SqliteStateStore::open_read_only(&ctx.db)
        .and_then(|store| verify_showing_progress(&store))
    {
        Ok(report) => report,
        Err(e) if e.is_corrupt() => {
            let mut report = VerifyReport::default();
            report
                .problems
                .push(format!("the store cannot be read: {e}"));
            report
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = ctx.out(false);
    if args.json {
        let json = FsckJson {
            blobs: report.blobs,
            nodes: report.nodes,
            snapshots: report.snapshots,
            refs: report.refs,
            shallow_edges: report.shallow_edges,
            problems: report.problems.clone(),
        };
        write_json(&mut out, &json)?;
    } else {
        for problem in &report.problems {
            writeln!(out, "problem: {problem}")?;
        }
        let shallow = match report.shallow_edges {
            0 => String::new(),
            n => format!(", {n} edge(s) to parents not in this store (shallow boundary)"),
        };
        writeln!(
            out,
            "checked {} blobs, {} nodes, {} snapshots, {} refs{shallow}: {}",
            report.blobs,
            report.nodes,
            report.snapshots,
            report.refs,
            match report.problems.len() {
                0 => "ok".to_owned(),
                n => format!("{n} problem(s)"),
            }
        )?;
    }
    out.finish()?;
    if report.is_ok() {
        return Ok(());
    }
    if !args.json {
        // What a person can do about it: the store cannot repair what it no longer holds.
        note(
            ctx.err_theme,
            "reads of damaged states and nodes fail with an error rather than return them; \
             importing snapshot packages exported before the damage (`stategraph import`) \
             writes their states and nodes back, and a backup copy of the store (`stategraph backup`, \
             taken before the damage) has the rest; \
             `stategraph export --all` saves the snapshots still intact",
        );
    }
    Err(CliError::silent(EXIT_FALSE))
}

#[derive(Serialize)]
struct StatsJson {
    nodes: u64,
    states: u64,
    blobs: u64,
    blob_bytes: u64,
    snapshots: u64,
    refs: u64,
    shallow_edges: u64,
    schema_version: i64,
    file_bytes: u64,
    wal_bytes: u64,
    free_bytes: u64,
}

/// `SqliteStateStore::verify` with a progress bar on a terminal.
fn verify_showing_progress(store: &SqliteStateStore) -> stategraph::Result<VerifyReport> {
    let bar = progress(0, "checking");
    let report = store.verify(|VerifyProgress { phase, done, total }| {
        let what = match phase {
            VerifyPhase::File => "file structure",
            VerifyPhase::Blobs => "state bytes",
            VerifyPhase::Nodes => "nodes",
            _ => "snapshots and refs",
        };
        bar.set_message(what);
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    report
}

/// `backup`.
pub fn backup(ctx: &Ctx, args: &BackupArgs) -> CliResult {
    let store = ctx.open_read()?;
    let report = store.backup(&args.file)?;
    // The copy checked as `fsck` checks a store.
    let problems = if args.verify {
        let copy = SqliteStateStore::open_read_only(&report.path)?;
        Some(verify_showing_progress(&copy)?.problems)
    } else {
        None
    };
    let mut out = ctx.out(false);
    if args.json {
        #[derive(Serialize)]
        struct BackupJson<'a> {
            path: &'a std::path::Path,
            bytes: u64,
            nodes: u64,
            snapshots: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            problems: Option<&'a [String]>,
        }
        write_json(
            &mut out,
            &BackupJson {
                path: &report.path,
                bytes: report.bytes,
                nodes: report.nodes,
                snapshots: report.snapshots,
                problems: problems.as_deref(),
            },
        )?;
    } else {
        writeln!(
            out,
            "backed up {} node(s) and {} snapshot(s) to {} ({})",
            report.nodes,
            report.snapshots,
            report.path.display(),
            human_size(report.bytes)
        )?;
        if let Some(problems) = &problems {
            for problem in problems {
                writeln!(out, "problem: {problem}")?;
            }
            match problems.len() {
                0 => writeln!(out, "verified: ok")?,
                n => writeln!(out, "verified: {n} problem(s), copied from the store")?,
            }
        }
    }
    out.finish()?;
    if problems.is_some_and(|p| !p.is_empty()) {
        return Err(CliError::silent(EXIT_FALSE));
    }
    Ok(())
}

/// `stats`.
pub fn stats(ctx: &Ctx, args: &JsonArgs) -> CliResult {
    let store = ctx.open_read()?;
    let s = store.stats()?;
    let mut out = ctx.out(false);
    if args.json {
        let json = StatsJson {
            nodes: s.nodes,
            states: s.states,
            blobs: s.blobs,
            blob_bytes: s.blob_bytes,
            snapshots: s.snapshots,
            refs: s.refs,
            shallow_edges: s.shallow_edges,
            schema_version: s.schema_version,
            file_bytes: s.file_bytes,
            wal_bytes: s.wal_bytes,
            free_bytes: s.free_bytes,
        };
        write_json(&mut out, &json)?;
    } else {
        writeln!(out, "nodes          {}", s.nodes)?;
        writeln!(
            out,
            "states         {} refs to {} distinct contents ({})",
            s.states,
            s.blobs,
            human_size(s.blob_bytes)
        )?;
        writeln!(out, "snapshots      {}", s.snapshots)?;
        writeln!(out, "refs           {}", s.refs)?;
        if s.shallow_edges > 0 {
            writeln!(
                out,
                "shallow edges  {} (parents not in this store)",
                s.shallow_edges
            )?;
        }
        writeln!(
            out,
            "file           {} + write-ahead log {}",
            human_size(s.file_bytes),
            human_size(s.wal_bytes)
        )?;
        if s.free_bytes > 0 {
            writeln!(
                out,
                "free           {} of the file (reused by later writes; `gc --vacuum` gives it back)",
                human_size(s.free_bytes)
            )?;
        }
        writeln!(out, "schema version {}", s.schema_version)?;
    }
    out.finish()?;
    Ok(())
}

#[derive(Serialize)]
struct GcJson {
    nodes_removed: u64,
    nodes_kept: u64,
    states_removed: u64,
    blobs_removed: u64,
    bytes_removed: u64,
    ref_log_entries_removed: u64,
    boundary_nodes: u64,
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    vacuum: Option<VacuumJson>,
}

#[derive(Serialize)]
struct VacuumJson {
    bytes_before: u64,
    bytes_after: u64,
    wal_truncated: bool,
    rewritten: bool,
}

/// `gc`.
pub fn gc(ctx: &Ctx, args: &GcArgs) -> CliResult {
    // A dry run only reads: it works where the store cannot be written, and holds no lock.
    let store = if args.dry_run {
        ctx.open_read()?
    } else {
        ctx.open_write()?
    };
    let mut options = GcOptions::new().grace(args.grace).dry_run(args.dry_run);
    if let Some(age) = args.expire_reflog {
        options = options.expire_ref_log(age);
    }
    if let Some(age) = args.prune_history {
        options = options.prune_history(age);
    }
    options = options.rows_per_step(match args.rows_per_step {
        0 => usize::MAX,
        n => n,
    });
    // Reading every node's parents first (writers carry on), then removing in steps.
    let busy = spinner("collecting (reads every node's parents once)");
    let mut bar = None;
    let r = store.gc_with_progress(&options, |p| {
        let bar = bar.get_or_insert_with(|| {
            busy.finish_and_clear();
            progress(p.rows_planned, "removing rows")
        });
        bar.set_position(p.rows_done);
    });
    busy.finish_and_clear();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let r = r?;
    let vacuumed = if args.vacuum {
        let busy = spinner("vacuuming (rewriting the whole file)");
        let vacuumed = store.vacuum();
        busy.finish_and_clear();
        // The collection is committed by now: say so, or a failed rewrite reads as if
        // nothing had happened.
        Some(vacuumed.map_err(|e| {
            CliError::from(e).hint(format!(
                "the collection itself was committed (removed {} node(s), {}); only the \
                 rewrite failed: run `stategraph gc --vacuum` again once the cause is fixed",
                r.nodes_removed,
                human_size(r.bytes_removed)
            ))
        })?)
    } else {
        None
    };
    let mut out = ctx.out(false);
    if args.json {
        let json = GcJson {
            nodes_removed: r.nodes_removed,
            nodes_kept: r.nodes_kept,
            states_removed: r.states_removed,
            blobs_removed: r.blobs_removed,
            bytes_removed: r.bytes_removed,
            ref_log_entries_removed: r.ref_log_entries_removed,
            boundary_nodes: r.boundary_nodes,
            dry_run: r.dry_run,
            vacuum: vacuumed.as_ref().map(|v| VacuumJson {
                bytes_before: v.bytes_before,
                bytes_after: v.bytes_after,
                wal_truncated: v.wal_truncated,
                rewritten: v.rewritten,
            }),
        };
        write_json(&mut out, &json)?;
    } else {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        writeln!(
            out,
            "{verb} {} node(s), {} state(s), {} distinct content(s) ({}){}; kept {} node(s)",
            r.nodes_removed,
            r.states_removed,
            r.blobs_removed,
            human_size(r.bytes_removed),
            match r.ref_log_entries_removed {
                0 => String::new(),
                n => format!(" and {n} ref log entries"),
            },
            r.nodes_kept
        )?;
        if r.boundary_nodes > 0 {
            let (mark, gone) = if r.dry_run {
                ("would mark", "would be gone")
            } else {
                ("now mark", "are gone")
            };
            writeln!(
                out,
                "{} kept node(s) {mark} a shallow boundary (their older parents {gone})",
                r.boundary_nodes
            )?;
        }
        match &vacuumed {
            Some(v) if v.rewritten => writeln!(
                out,
                "vacuumed: file and write-ahead log {} -> {}",
                human_size(v.bytes_before),
                human_size(v.bytes_after)
            )?,
            Some(v) => writeln!(
                out,
                "vacuum: no free pages to give back; file and write-ahead log {} -> {}",
                human_size(v.bytes_before),
                human_size(v.bytes_after)
            )?,
            None => {}
        }
    }
    if vacuumed.as_ref().is_some_and(|v| !v.wal_truncated) {
        note(
            ctx.err_theme,
            "the write-ahead log still holds the rewritten file (readers were using it, or \
             copying it back failed: a full disk?); a later checkpoint copies it back and \
             cuts it, and the store is whole either way",
        );
    }
    out.finish()?;
    Ok(())
}
