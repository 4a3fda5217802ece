//! `import`: snapshot packages from files, directories and stdin, many per transaction.
//!
//! Each package is all or nothing, as with one `import_snapshot` call: it is verified when
//! read, before anything is written, and a package that fails is reported and leaves nothing
//! behind. Packages are written in batches (one transaction, one fsync, per batch); when a
//! batch fails because of one of its packages, its packages are imported one by one, so the
//! good ones are kept and the bad one is named (a damaged row that a package meets, such as
//! its parent's, fails that package the same way). A failure of the store itself
//! (read-only, disk full, a file SQLite finds malformed) stops the import.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use stategraph::{
    History as _, SnapshotId, SnapshotPackage, SqliteStateStore, StateNodeId, StateStore,
    StateStoreError,
};

use crate::Ctx;
use crate::args::ImportArgs;
use crate::error::{CliError, CliResult, report};
use crate::output::{note, progress};

/// Packages per transaction: enough that the fsync per commit stops mattering.
const BATCH_PACKAGES: usize = 1000;
/// State bytes per transaction, so that a batch of large packages does not hold them all
/// in memory at once.
const BATCH_BYTES: usize = 64 << 20;
/// What `export --out` names its files; in a directory, only these are imported.
const EXTENSION: &str = "sgpkg";

/// More than any package holds: the largest state plus a node row at SQLite's limit.
const MAX_PACKAGE_BYTES: u64 = 2_000_000_000;
/// How many skipped names a note lists before it only counts the rest.
const NAMES_SHOWN: usize = 3;

/// Where one package comes from.
enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::Stdin => "-".to_owned(),
            Source::File(path) => path.display().to_string(),
        }
    }

    /// The whole package, once its first bytes show it is one: another kind of file (or
    /// `/dev/zero`) is refused before it is read whole.
    fn read(&self) -> CliResult<Vec<u8>> {
        let failed = |e: std::io::Error| CliError::new(format!("cannot read {}: {e}", self.name()));
        let mut reader: Box<dyn Read> = match self {
            Source::Stdin => Box::new(std::io::stdin().lock()),
            Source::File(path) => {
                let file = std::fs::File::open(path).map_err(failed)?;
                if let Ok(meta) = file.metadata()
                    && meta.is_file()
                    && meta.len() > MAX_PACKAGE_BYTES
                {
                    return Err(CliError::new(format!(
                        "{} is {} bytes, more than any snapshot package can be",
                        self.name(),
                        meta.len()
                    )));
                }
                Box::new(file)
            }
        };
        let mut buf = Vec::new();
        (&mut reader)
            .take(SnapshotPackage::START_LEN as u64)
            .read_to_end(&mut buf)
            .map_err(failed)?;
        if !SnapshotPackage::could_start_package(&buf) {
            return Err(CliError::new(format!(
                "{}: invalid snapshot package: {}",
                self.name(),
                if buf.is_empty() {
                    "the file is empty"
                } else {
                    "it does not start as one (another kind of file?)"
                }
            ))
            .hint("packages are the files `stategraph export` writes"));
        }
        // One byte past the largest package tells a stream that is too long from one that
        // just fits.
        reader
            .take(MAX_PACKAGE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(failed)?;
        if buf.len() as u64 > MAX_PACKAGE_BYTES {
            return Err(CliError::new(format!(
                "{} holds more than {MAX_PACKAGE_BYTES} bytes, more than any snapshot package \
                 can be",
                self.name()
            )));
        }
        Ok(buf)
    }
}

/// A package read and verified, waiting for its batch.
struct Pending {
    name: String,
    package: SnapshotPackage,
}

/// What the import has done so far.
#[derive(Default)]
struct Tally {
    imported: usize,
    already: usize,
    /// Already stored but damaged, and whole again after the import.
    repaired: usize,
    /// Snapshots whose import was written but left them damaged (a failure each).
    unrepaired: HashSet<SnapshotId>,
    /// Transactions that stored them.
    transactions: usize,
    /// The names of the inputs that failed, in order.
    failed: Vec<String>,
}

/// `import`: verifies and stores snapshot packages.
pub fn import(ctx: &Ctx, args: &ImportArgs) -> CliResult {
    if args.paths.iter().filter(|p| is_stdin(p)).count() > 1 {
        return Err(CliError::new("`-` (standard input) can be given only once"));
    }
    let store = ctx.open_write()?;
    let mut tally = Tally::default();
    let (sources, dirs) = expand(ctx, &args.paths, &mut tally);
    // One file named on its own reads as before: its failure is the command's error.
    let single = sources.len() == 1 && dirs == 0 && tally.failed.is_empty();
    let mut run = Run {
        ctx,
        store: &store,
        single,
        bar: progress(sources.len() as u64, "importing"),
        stdout: std::io::stdout().lock(),
        printing: true,
        tally,
        batch: Vec::new(),
        batch_bytes: 0,
    };
    for source in &sources {
        let name = source.name();
        let read = source.read().and_then(|bytes| {
            SnapshotPackage::from_bytes(&bytes).map_err(|e| {
                CliError::new(format!("{name}: {e}"))
                    .hint("packages are the files `stategraph export` writes")
            })
        });
        run.bar.inc(1);
        match read {
            Ok(package) if single => {
                run.batch.push(Pending { name, package });
                run.import_alone()?;
            }
            Ok(package) => {
                run.batch_bytes += package.bytes.len();
                run.batch.push(Pending { name, package });
                if run.batch.len() >= BATCH_PACKAGES || run.batch_bytes >= BATCH_BYTES {
                    run.flush()?;
                }
            }
            Err(e) if single => return Err(e),
            Err(e) => run.fail(name, &e),
        }
    }
    run.flush()?;
    run.bar.finish_and_clear();
    let Run { tally, .. } = run;
    let stored = tally.imported + tally.already + tally.repaired;
    if !single {
        let repaired = if tally.repaired > 0 {
            format!("{} repaired, ", tally.repaired)
        } else {
            String::new()
        };
        eprintln!(
            "{} input(s): {} imported, {repaired}{} already here, {} failed; {} transaction(s)",
            stored + tally.failed.len(),
            tally.imported,
            tally.already,
            tally.failed.len(),
            tally.transactions,
        );
    }
    if stored > 0 && store.list_refs("")?.is_empty() {
        note(
            ctx.err_theme,
            "no branch points at anything in this store yet; make one at an imported snapshot \
             with `stategraph restore SNAPSHOT --branch main --create`",
        );
    }
    if tally.failed.is_empty() {
        return Ok(());
    }
    let mut names = tally
        .failed
        .iter()
        .take(NAMES_SHOWN)
        .cloned()
        .collect::<Vec<_>>();
    if tally.failed.len() > NAMES_SHOWN {
        names.push(format!("and {} more", tally.failed.len() - NAMES_SHOWN));
    }
    Err(CliError::new(format!(
        "{} of {} input(s) failed: {}",
        tally.failed.len(),
        stored + tally.failed.len(),
        names.join(", ")
    ))
    .hint(if tally.unrepaired.is_empty() {
        "each is reported above; nothing of them was stored, and every other package was"
    } else {
        "each is reported above; every other package was stored, and of these only those that \
         could not repair a damaged snapshot were written"
    }))
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The packages named on the command line, in order: a directory stands for its
/// `*.sgpkg` files, sorted by name. What a directory holds besides is skipped, with a note;
/// a directory that cannot be listed counts as a failure. Returns the sources and how many
/// directories were named.
fn expand(ctx: &Ctx, paths: &[PathBuf], tally: &mut Tally) -> (Vec<Source>, usize) {
    let mut sources = Vec::new();
    let mut dirs = 0;
    for path in paths {
        if is_stdin(path) {
            sources.push(Source::Stdin);
            continue;
        }
        if !std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            // Read (and its error reported) in turn, like every file.
            sources.push(Source::File(path.clone()));
            continue;
        }
        dirs += 1;
        match list_packages(path) {
            Ok(listing) => {
                if listing.packages.is_empty() {
                    note(
                        ctx.err_theme,
                        &format!("{} holds no .{EXTENSION} files", path.display()),
                    );
                }
                listing.note_skipped(ctx, path);
                sources.extend(listing.packages.into_iter().map(Source::File));
            }
            Err(e) => {
                let name = path.display().to_string();
                let err = CliError::new(format!("cannot read the directory {name}: {e}"));
                report(&err, ctx.err_theme);
                tally.failed.push(name);
            }
        }
    }
    (sources, dirs)
}

/// What a directory holds, sorted by name.
struct Listing {
    packages: Vec<PathBuf>,
    /// Subdirectories: not searched, so that a directory of packages is read alike
    /// wherever it sits.
    dirs: Vec<OsString>,
    /// Anything else (not named `*.sgpkg`).
    others: Vec<OsString>,
}

fn list_packages(dir: &Path) -> std::io::Result<Listing> {
    let mut listing = Listing {
        packages: Vec::new(),
        dirs: Vec::new(),
        others: Vec::new(),
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        // Follows links: a link to a package is a package. A name that says package but
        // cannot be looked at is kept, and its read error reported.
        let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            listing.dirs.push(name);
        } else if path.extension().is_some_and(|e| e == EXTENSION) {
            listing.packages.push(path);
        } else {
            listing.others.push(name);
        }
    }
    // Byte order of the names (what `export` wrote: snapshot ids), the same on every run.
    listing
        .packages
        .sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    listing.dirs.sort();
    listing.others.sort();
    Ok(listing)
}

impl Listing {
    fn note_skipped(&self, ctx: &Ctx, dir: &Path) {
        let names = |list: &[OsString]| {
            let mut shown: Vec<String> = list
                .iter()
                .take(NAMES_SHOWN)
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            if list.len() > NAMES_SHOWN {
                shown.push(format!("and {} more", list.len() - NAMES_SHOWN));
            }
            shown.join(", ")
        };
        if !self.others.is_empty() {
            note(
                ctx.err_theme,
                &format!(
                    "{}: skipped {} file(s) not named *.{EXTENSION}: {}",
                    dir.display(),
                    self.others.len(),
                    names(&self.others)
                ),
            );
        }
        if !self.dirs.is_empty() {
            note(
                ctx.err_theme,
                &format!(
                    "{}: skipped {} {} (subdirectories are not searched): {}",
                    dir.display(),
                    self.dirs.len(),
                    if self.dirs.len() == 1 {
                        "subdirectory"
                    } else {
                        "subdirectories"
                    },
                    names(&self.dirs)
                ),
            );
        }
    }
}

/// An import in progress: the store, the batch being filled, and what was printed.
struct Run<'a> {
    ctx: &'a Ctx,
    store: &'a SqliteStateStore,
    /// One file named on its own: its failure is the command's error, as it always was.
    single: bool,
    bar: indicatif::ProgressBar,
    stdout: std::io::StdoutLock<'static>,
    /// Once stdout is gone (`| head -1`), the imports still run, just without their lines.
    printing: bool,
    tally: Tally,
    batch: Vec<Pending>,
    batch_bytes: usize,
}

impl Run<'_> {
    /// Writes the batch in one transaction; if one of its packages makes that fail, writes
    /// them one by one instead.
    fn flush(&mut self) -> CliResult {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        // What each package adds, from the store before the batch and the packages before
        // it in the batch: what importing them one by one would say.
        let mut nodes = HashSet::new();
        let mut snapshots = HashSet::new();
        let mut lines = Vec::with_capacity(batch.len());
        let mut writes = self.store.batch();
        for item in &batch {
            let line = describe(self.store, &item.package, &nodes, &snapshots)
                .map_err(|e| self.stopped(e))?;
            lines.push((item, line));
            nodes.insert(item.package.node_id);
            snapshots.insert(item.package.snapshot_id);
            // Verified when read; a package refused here is retried alone below.
            if writes.import_snapshot(&item.package).is_err() {
                return self.one_by_one(batch);
            }
        }
        match writes.commit() {
            Ok(()) => {
                self.tally.transactions += 1;
                for (item, (line, found)) in lines {
                    self.done(item, &line, found)?;
                }
                Ok(())
            }
            Err(e) if is_about_the_package(&e) => self.one_by_one(batch),
            Err(e) => Err(self.stopped(e)),
        }
    }

    fn one_by_one(&mut self, batch: Vec<Pending>) -> CliResult {
        for item in batch {
            self.batch.push(item);
            self.import_alone()?;
        }
        Ok(())
    }

    /// Imports the one package waiting, in a transaction of its own.
    fn import_alone(&mut self) -> CliResult {
        let Some(item) = self.batch.pop() else {
            return Ok(());
        };
        let (line, found) = describe(self.store, &item.package, &HashSet::new(), &HashSet::new())
            .map_err(|e| self.stopped(e))?;
        match self.store.import_snapshot(&item.package) {
            Ok(_) => {
                self.tally.transactions += 1;
                self.done(&item, &line, found)
            }
            Err(e) if is_about_the_package(&e) => {
                let err = CliError::from(e).hint(format!("while importing {}", item.name));
                if self.single {
                    return Err(err);
                }
                self.fail(item.name, &err);
                Ok(())
            }
            Err(e) => Err(self
                .stopped(e)
                .hint(format!("while importing {}", item.name))),
        }
    }

    /// Counts and prints a package that was stored. One whose snapshot or node was already
    /// stored is read back, with its snapshot's record: the import writes the node and its
    /// state again, which repairs damage there but not elsewhere (the snapshot record, the
    /// link to the bytes).
    fn done(&mut self, item: &Pending, line: &str, found: Found) -> CliResult {
        let id = item.package.snapshot_id;
        let unrepaired = match found {
            Found::New { node_stored: true } | Found::Damaged => self
                .store
                .load_snapshot(&id)
                .and_then(|_| self.store.snapshot_info(&id))
                .err()
                .map(CliError::from),
            Found::Again if self.tally.unrepaired.contains(&id) => Some(CliError::new(format!(
                "snapshot {} is still damaged (see above)",
                id.to_short_hex(12)
            ))),
            Found::New { node_stored: false } | Found::Whole | Found::Again => None,
        };
        if let Some(err) = unrepaired {
            self.tally.unrepaired.insert(id);
            let err = err.hint(format!(
                "{} was written, but it could not repair this snapshot here",
                item.name
            ));
            if self.single {
                return Err(err);
            }
            self.fail(item.name.clone(), &err);
            return Ok(());
        }
        match found {
            Found::New { .. } => self.tally.imported += 1,
            Found::Whole | Found::Again => self.tally.already += 1,
            Found::Damaged => self.tally.repaired += 1,
        }
        if self.printing {
            match self.bar.suspend(|| writeln!(self.stdout, "{line}")) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => self.printing = false,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn fail(&mut self, name: String, err: &CliError) {
        self.bar.suspend(|| report(err, self.ctx.err_theme));
        self.tally.failed.push(name);
    }

    /// The store itself failed: stop, saying what is in and what is not.
    fn stopped(&self, e: impl Into<CliError>) -> CliError {
        let done = self.tally.imported + self.tally.already + self.tally.repaired;
        e.into().hint(format!(
            "the {done} package(s) reported before this are stored; the rest were not imported"
        ))
    }
}

/// Whether a failed import concerns this package only (it could not be stored here, or a
/// damaged row that it touches, such as its parent's, stopped it), rather than the whole
/// store (read-only, full, locked, a file SQLite finds malformed). Damage confined to a row
/// fails the packages that meet it, as a package that cannot repair its snapshot does; the
/// others are still imported.
fn is_about_the_package(e: &StateStoreError) -> bool {
    match e {
        StateStoreError::InvalidInput { .. } => true,
        // SQLite's own "database disk image is malformed" is the file's, not a row's.
        StateStoreError::Corrupt { what, .. } => what != "store file",
        _ => false,
    }
}

/// What the store held of a package's snapshot before importing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Not stored; its node may be (then possibly damaged: it is read back after).
    New { node_stored: bool },
    /// Stored, and it loads.
    Whole,
    /// Stored, but loading it finds damage (which the import may repair).
    Damaged,
    /// Imported earlier in the same batch: as that import ended.
    Again,
}

/// Whether the store lists the package's snapshot.
fn stored(store: &SqliteStateStore, package: &SnapshotPackage) -> stategraph::Result<bool> {
    Ok(store
        .snapshots_of(&package.node_id)?
        .iter()
        .any(|s| s.id == package.snapshot_id))
}

/// A snapshot not stored: whether its node is (or is being imported before it).
fn found_new(
    store: &SqliteStateStore,
    package: &SnapshotPackage,
    nodes: &HashSet<StateNodeId>,
) -> Found {
    let node_stored = nodes.contains(&package.node_id)
        || !matches!(
            store.get_node(&package.node_id),
            Err(StateStoreError::MissingNode { .. })
        );
    Found::New { node_stored }
}

/// A snapshot the store listed: whole if it loads, damaged if not, and new after all when
/// it is no longer listed (a program deleted it meanwhile: there is nothing to repair, and
/// calling the import a repair would be wrong).
fn found_stored(
    store: &SqliteStateStore,
    package: &SnapshotPackage,
    nodes: &HashSet<StateNodeId>,
) -> CliResult<Found> {
    Ok(match store.load_snapshot(&package.snapshot_id) {
        Ok(_) => Found::Whole,
        Err(StateStoreError::MissingSnapshot { .. }) if !stored(store, package)? => {
            found_new(store, package, nodes)
        }
        Err(e) if e.is_corrupt() || e.is_missing() => Found::Damaged,
        Err(e) => return Err(e.into()),
    })
}

/// The line `import` prints for a package, and what the store held of its snapshot.
/// `nodes` and `snapshots` are what is being imported before it, not yet in the store.
fn describe(
    store: &SqliteStateStore,
    package: &SnapshotPackage,
    nodes: &HashSet<StateNodeId>,
    snapshots: &HashSet<SnapshotId>,
) -> CliResult<(String, Found)> {
    let found = if snapshots.contains(&package.snapshot_id) {
        Found::Again
    } else {
        match stored(store, package) {
            Ok(true) => found_stored(store, package, nodes)?,
            Ok(false) => found_new(store, package, nodes),
            // A record of the node's snapshot that does not read back: damage of this
            // snapshot, which the import may not mend (`done` reads it back), not a failure
            // of the store that should stop the other packages.
            Err(e) if e.is_corrupt() => Found::Damaged,
            Err(e) => return Err(e.into()),
        }
    };
    let missing = package
        .parent_ids
        .iter()
        .filter(|p| {
            !nodes.contains(p)
                && matches!(store.get_node(p), Err(StateStoreError::MissingNode { .. }))
        })
        .count();
    let boundary = if missing > 0 {
        format!(" ({missing} parent(s) not in this store: shallow boundary)")
    } else {
        String::new()
    };
    let line = format!(
        "{} snapshot {} -> node {}{boundary}",
        match found {
            Found::New { .. } => "imported",
            Found::Whole | Found::Again => "already had",
            Found::Damaged => "repaired",
        },
        package.snapshot_id.to_short_hex(12),
        package.node_id.to_short_hex(12)
    );
    Ok((line, found))
}

#[cfg(test)]
mod tests {
    use stategraph::{StateData, StateMetadata};

    use super::*;

    /// A snapshot listed, then deleted by a program before the import loads it, is new
    /// (its node still stored), not damaged: the import would have said it repaired it.
    #[test]
    fn a_snapshot_deleted_after_it_was_listed_is_new_not_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::open(dir.path().join("s.db")).unwrap();
        let data = store.put_state(StateData::new(b"x".to_vec())).unwrap();
        let node = store
            .commit_node(vec![], data, StateMetadata::now(None))
            .unwrap();
        let snapshot = store.snapshot(&node).unwrap();
        let package = store.export_snapshot(&snapshot).unwrap();
        let none = HashSet::new();
        assert_eq!(found_stored(&store, &package, &none).unwrap(), Found::Whole);
        store.delete_snapshot(&snapshot).unwrap();
        assert_eq!(
            found_stored(&store, &package, &none).unwrap(),
            Found::New { node_stored: true }
        );
    }
}
