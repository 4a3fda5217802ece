//! The command line: every subcommand, its flags, and its `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Inspect and edit a stategraph state store from the terminal";

const LONG_ABOUT: &str = "\
Inspect and edit a stategraph state store from the terminal.

A store is one SQLite file holding a history of states: content-hashed nodes with parents,
state bytes stored once, snapshots (restore points) and refs (branches and tags) moved by
compare-and-swap. Read commands open the file read-only, so they are safe to run while a
program is writing to it.

The store is --db PATH, else $STATEGRAPH_DB, else ./stategraph.db.

A REV is a ref name (main, agents/7/main, tags/v1, or v1 for that tag when no branch is
named v1), a node id (blake3:<hex> or bare hex), a
unique id prefix of at least 4 hex digits, or NAME@{N} (where the ref was N moves ago, as
`reflog` numbers them), optionally followed by git's ~N (N-th first parent) and ^N (N-th
parent), e.g. main~2, 3fa9c0^2 or main@{1}.

Exit status: 0 on success, 1 for a false answer (is-ancestor, merge-base without a base)
or for problems fsck or backup --verify found, 2 for any error.";

const AFTER_HELP: &str = "\
Examples:
  stategraph demo                         # build ./stategraph-demo.db and draw its history
  stategraph --db state.db log --graph --oneline --all
  stategraph --db state.db show main~2
  echo '{\"tick\":1}' | stategraph commit -m 'tick 1' --branch main";

/// `stategraph`: a git-like command line for a stategraph store.
#[derive(Debug, Parser)]
#[command(name = "stategraph", version, about = ABOUT, long_about = LONG_ABOUT,
    after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// The store file [default: $STATEGRAPH_DB, else ./stategraph.db]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub db: Option<PathBuf>,

    /// Colour the output: auto (only on a terminal, never with NO_COLOR set), always, never
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto,
        hide_possible_values = true, hide_default_value = true, help_heading = "Global options")]
    pub color: ColorChoice,

    /// Never send output through a pager ($STATEGRAPH_PAGER, $PAGER or `less -FRX`)
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_pager: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and NO_COLOR is not set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the whole store: indexes, hashes, ids, links, snapshots, refs
    #[command(after_help = "\
Reads everything once, on a read-only connection (safe while a program writes). Every problem
is listed, one line each; the exit code is 0 for a healthy store, 1 when problems were found.
A progress bar shows on a terminal.

--json prints one object: blobs, nodes, snapshots, refs, shallow_edges (counts) and problems
(an array of strings).

Example:
  stategraph fsck")]
    Fsck(JsonArgs),

    /// Counts and sizes of the store
    #[command(after_help = "\
--json prints one object: nodes, states, blobs, blob_bytes, snapshots, refs, shallow_edges,
schema_version, file_bytes, wal_bytes, free_bytes (the part of the file SQLite keeps free
for reuse; `gc --vacuum` gives it back).

Example:
  stategraph stats")]
    Stats(JsonArgs),

    /// Write a consistent copy of the store to a new file, safe while programs write to it
    #[command(after_help = "\
The copy is the store at one moment, read in one read transaction, so writers carry on (copying
the file with cp while a program writes can catch it half way through a checkpoint, and leaves
out the write-ahead log). It is a store of its own, without free pages, written to a temporary
file beside FILE, synced, then renamed: an interrupted backup leaves nothing under FILE. FILE
must not exist. The copy's pages are read as stored; `stategraph --db FILE fsck` checks them.

To go back to a backup: stop every program using the store, delete STORE-wal and STORE-shm
(a write-ahead log left there belongs to the old file, and SQLite would apply it to the copy),
then copy the backup over STORE.

--verify then checks the copy as `fsck` does (every hash, id and link): exit 1 when it finds
problems, which the store itself has too (the copy holds its bytes as they are).

--json prints one object: path, bytes, nodes, snapshots; with --verify also problems (an array
of strings).

Example:
  stategraph backup --verify /backups/agent-$(date +%F).db")]
    Backup(BackupArgs),

    /// Remove nodes, states and bytes that nothing refers to any more
    #[command(after_help = "\
Kept: every node a branch, tag, snapshot or ref log entry reaches (with all its ancestors), and
whatever was made within the grace period (--grace, two weeks by default), so a program between
two writes does not lose the first. Removed: other nodes, states no kept node holds, and bytes no
state holds. Ref log entries are kept unless --expire-reflog says how old they may get; while
they are kept, every node a branch ever pointed at stays. One transaction: all or nothing, and
writers wait while it runs. The file does not shrink (SQLite reuses the freed space) unless
--vacuum then rewrites it without its free pages: that reads and writes the whole file, needs
free space of about twice what it keeps, and makes writers wait until it is done.

AGE is a number with a unit: s, m, h, d or w (e.g. 90m, 36h, 2w); 0 means no grace.

--prune-history AGE also removes reachable nodes older than AGE (but not those a ref or
snapshot points at, nor those between a ref and the newest snapshot in its history, so that
`restore --branch` still finds it: a branch that takes snapshots as it goes stops growing),
with the ref log entries naming them; `log` then stops at the nodes kept
above them and says so, as after importing a snapshot without its ancestors.

--json prints one object: nodes_removed, nodes_kept, states_removed, blobs_removed,
bytes_removed, ref_log_entries_removed, boundary_nodes and dry_run; with --vacuum also
vacuum: {bytes_before, bytes_after, wal_truncated, rewritten} (file plus write-ahead log, in
bytes; rewritten is false when the file had no free pages, and then nothing is rewritten).

Examples:
  stategraph gc --dry-run
  stategraph gc --grace 1d --expire-reflog 30d
  stategraph gc --prune-history 90d      # also forget history older than 90 days
  stategraph gc --vacuum                 # and give the freed space back to the disk")]
    Gc(GcArgs),

    /// Write snapshots as self-verifying package files, for another store
    #[command(after_help = "\
A package holds the snapshot's node (parent ids, metadata), its state bytes and both ids; `import`
recomputes every hash before writing anything. With one SNAPSHOT and no --out the package goes
to stdout (not to a terminal). With --out DIR every named snapshot (or every snapshot, with
--all) is written to DIR/<snapshot id>.sgpkg.

Examples:
  stategraph export 3fa9c0 > restore-point.sgpkg
  stategraph export --all --out packages/")]
    Export(ExportArgs),

    /// Import snapshot package files into this store
    #[command(after_help = "\
Every package is verified (bytes, node id and snapshot id recomputed) before anything is written;
a bad package is reported and nothing of it is stored. Parents this store lacks become its
shallow boundary: `log` stops there and says so. Importing a package twice changes nothing,
unless this store's copy of that snapshot was damaged: the import writes its node and state
back and says \"repaired\" (if the damage is elsewhere, say in the link from the node to its
state, it says it could not repair it, and fails; `fsck` checks the whole store).

A directory stands for the *.sgpkg files in it (what `export --out` writes), in name order;
other files and subdirectories are skipped, with a note. Packages are written up to 1000 per
transaction. With several packages, one that fails (unreadable, not a package, damaged) is
reported and the others are still imported; a summary goes to stderr (with a progress bar on a
terminal), and the exit code is 2 if any failed. A failure of the store itself (read-only,
disk full) stops the import; what was reported as imported before it stays.

Examples:
  stategraph --db replica.db import restore-point.sgpkg
  stategraph --db replica.db import packages/")]
    Import(ImportArgs),

    /// Create an empty store
    #[command(after_help = "Example:\n  stategraph --db state.db init")]
    Init,

    /// Store state bytes and print their data ref
    #[command(after_help = "\
Prints the new data ref (a UUID); `stategraph cat REF` prints the bytes back.

Examples:
  stategraph put state.json --content-type application/json
  head -c 1024 /dev/urandom | stategraph put")]
    Put(PutArgs),

    /// Print the state bytes of a data ref or a node, exactly as stored
    #[command(after_help = "\
The bytes go to stdout unchanged (binary-safe). Given a node, cat checks them against the
node's data hash first and prints nothing if they do not match (a damaged store; see fsck).

Examples:
  stategraph cat main > state.json
  stategraph cat main~3 | jq .
  stategraph cat 0190b4b8-7c1e-7a3c-9f4e-2b1d5c6e7f80")]
    Cat(CatArgs),

    /// Show how two states differ, line by line (JSON pretty-printed first)
    #[command(after_help = "\
With one REV, compares it with its first parent: what that tick changed. With two, compares
the first with the second. States that both parse as JSON are pretty-printed with sorted
keys before they are compared, so a one-line state still diffs by field. Control characters are escaped, as in `show`. Identical states print nothing; states
that are not text print their sizes. Exit status 0 either way.

Examples:
  stategraph diff main
  stategraph diff main~5 main
  stategraph diff tags/before-restore main -U 10")]
    Diff(DiffArgs),

    /// Store state and commit it as a node in one step, optionally advancing a branch
    #[command(after_help = "\
With --branch B and no --parent, the new node's parent is B's current head (none if B does not
exist yet). B is then moved to the new node by compare-and-swap from the head read before
committing: if another writer moved B in between, the command fails and nothing is written
(state, node and branch move are one transaction). Prints the new node's full id; a note on
stderr says when the commit created B, moved B to a node whose history leaves its old head
out (with --parent), or left the node on no branch. B must be a branch (not under tags/); a
new B follows `branch`'s naming rules.

Examples:
  echo '{\"tick\":1}' | stategraph commit -m 'tick 1' --branch main
  stategraph commit merged.json -m merge --parent main --parent agents/explorer --branch main")]
    Commit(CommitArgs),

    /// Show the history, children before parents (by generation, not by time)
    #[command(after_help = "\
Revisions: REV includes REV and its ancestors; A..B shows what B has and A has not; ^A leaves
out A and its ancestors. With no REV (or only ^A exclusions) the log starts at `main` if it
exists, otherwise at every ref. --all starts at every ref.

--since and --until keep the nodes made in that span (by their created time; the walk still
goes by generation, so a node's older parents can be listed after it); -n then counts those.
They cannot be combined with --graph, whose lines need every node.

--json prints one array of objects with the fields id, parents, generation, created_at
(RFC 3339), label, data_ref, data_hash, content_type, refs (names pointing at the node) and
snapshots (snapshot ids of the node). Ids are full (blake3:<64 hex>).

Examples:
  stategraph log --graph --oneline --all
  stategraph log main~10..main
  stategraph log --since 2h --oneline
  stategraph log --until 2026-11-23T01:30:00Z -n 1 main
  stategraph log -n 5 --json agents/explorer")]
    Log(LogArgs),

    /// Show one node: parents, children, metadata, state, snapshots and refs
    #[command(after_help = "\
--json prints one object with the fields of `log --json` plus children, size (bytes; null when
the state cannot be read) and state_check: \"ok\" or \"damaged\" for a state of up to 4 KiB,
which show reads whole and checks against the node's data hash, \"unchecked\" for a larger one
(`cat` of the node and `fsck` check any size), \"damaged\" too for a state that cannot be read.
A damaged state is not previewed, and show exits 2 after printing the rest.

Examples:
  stategraph show main
  stategraph show 3fa9c0 --json")]
    Show(ShowArgs),

    /// List, create, move (-f) or delete (-d) branches
    #[command(after_help = "\
Branches are all refs outside tags/. Every change is a compare-and-swap: creating fails if the
branch exists, -f and -d fail if another writer moved the branch meanwhile. A new name may not
be all hex digits (4 or more: it would read as a node id) or start with '-'.

--json (listing) prints an array of {name, target, label}.

Examples:
  stategraph branch
  stategraph branch experiment main~2
  stategraph branch -f experiment main
  stategraph branch -d experiment")]
    Branch(RefArgs),

    /// List, create, move (-f) or delete (-d) tags (refs under tags/)
    #[command(after_help = "\
A tag NAME is the ref tags/NAME (either form is accepted). A new NAME may not be all hex
digits (4 or more: it would read as a node id) or start with '-'.

--json (listing) prints an array of {name, ref, target, label}.

Examples:
  stategraph tag
  stategraph tag before-migration main
  stategraph tag -d before-migration")]
    Tag(RefArgs),

    /// Show the moves of a ref, newest first
    #[command(after_help = "\
Entries survive the ref's deletion, so a deleted or wrongly moved ref can be found again.
Each entry's NAME@{N} is a revision: `stategraph branch -f main main@{1}` undoes the last
move of main.

--json prints an array of {name, selector, old, new, at, message}, newest first (selector:
the entry's NAME@{N}; old/new null when the ref was created/deleted).

Examples:
  stategraph reflog main
  stategraph reflog -n 5 main
  stategraph reflog tags/v1 --json")]
    Reflog(ReflogArgs),

    /// Take a snapshot (restore point) of a node and print its id, or delete one (-d)
    #[command(after_help = "\
With -d, the argument is a snapshot id, a unique prefix of one (see `stategraph snapshots`), or
a revision naming a node with exactly one snapshot, and that snapshot is deleted. Only the restore point goes: its node, the node's state and every
ref stay, and `snapshot REV` makes it again.

Examples:
  stategraph snapshot main
  stategraph snapshot -d 7d0e12")]
    Snapshot(SnapshotArgs),

    /// List snapshots, oldest first
    #[command(after_help = "\
With REV, only the snapshots of REV and its ancestors: the restore points a restart from REV
could use (newest meaning latest in that history). -n N keeps the newest N snapshots (still
listed oldest first, so the list ends at the newest, as `tail` would show it).

--json prints an array of {id, node_id, created_at, label}.

Examples:
  stategraph snapshots
  stategraph snapshots main -n 5
  stategraph snapshots -n 5 --json")]
    Snapshots(SnapshotsArgs),

    /// Move a branch to a snapshot's node
    #[command(after_help = "\
SNAPSHOT is a full snapshot id or a unique prefix of one (see `stategraph snapshots`), or a
revision naming a node with exactly one snapshot (tags/good, main~3); without it, the newest
snapshot in the branch's history (what a restarting program resumes from). The
branch is moved by compare-and-swap from where it pointed when the command started. It must
be a branch (not under tags/) and must exist: --create makes a new one (it follows `branch`'s
naming rules), so a mistyped name is an error, not a new branch. A snapshot from outside the
branch's history is allowed, with a note; the old head stays in `reflog`.

Examples:
  stategraph restore --branch main
  stategraph restore 7d0e12 --branch main
  stategraph restore 7d0e12 --branch main --create     # e.g. after importing a package")]
    Restore(RestoreArgs),

    /// Print the best common ancestor of two revisions
    #[command(
        name = "merge-base",
        after_help = "\
Exits 1 when the histories are disjoint (no output; [] with --json). --json prints an array
of ids.

Examples:
  stategraph merge-base main agents/explorer
  stategraph merge-base --all a b"
    )]
    MergeBase(MergeBaseArgs),

    /// Exit 0 if A is an ancestor of B (or the same node), 1 if not
    #[command(
        name = "is-ancestor",
        after_help = "\
Prints nothing; errors exit 2.

Example:
  stategraph is-ancestor tags/v1 main && echo contained"
    )]
    IsAncestor(IsAncestorArgs),

    /// Export history as a Graphviz DOT document
    #[command(after_help = "\
Revisions as for `log` (default: main, else every ref).

Example:
  stategraph graph --all --format dot | dot -Tsvg > history.svg")]
    Graph(GraphArgs),

    /// Build a demo store by simulating an agent runtime, then draw its history
    #[command(after_help = "\
Writes ./stategraph-demo.db (or --db PATH; $STATEGRAPH_DB is ignored here). An existing file is
replaced only if an earlier demo made it (it has a `tags/stategraph-demo` tag) and is writable;
anything else, your own stores included, is left alone and the demo stops. One demo runs in a
directory at a time; a second one stops at once.

The simulated runtime commits one JSON state per tick to main, forks agents/explorer and merges
it back, snapshots every 5 ticks, crashes mid-write (the store handle is dropped and the file
reopened) and restores main from the latest snapshot.

Examples:
  stategraph demo
  stategraph demo --ticks 2000 --db /tmp/big.db")]
    Demo(DemoArgs),
}

/// `put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// File to read, or - for stdin [default: stdin]
    pub file: Option<PathBuf>,
    /// Content type recorded with the bytes, e.g. application/json
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
}

/// `cat`.
#[derive(Debug, Args)]
pub struct CatArgs {
    /// A data ref (UUID) or any revision
    #[arg(value_name = "REF|REV")]
    pub target: String,
    /// Print to a terminal even a state that is not plain text (escape sequences, binary),
    /// which is refused otherwise; output to a file or pipe is always raw
    #[arg(long)]
    pub raw: bool,
}

/// `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older revision; alone, the newer one, compared with its first parent
    #[arg(value_name = "REV")]
    pub from: String,
    /// The newer revision
    #[arg(value_name = "REV")]
    pub to: Option<String>,
    /// Lines of context around each change
    #[arg(short = 'U', long = "unified", value_name = "N", default_value_t = 3)]
    pub context: usize,
}

/// `commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// File to read, or - for stdin [default: stdin]
    pub file: Option<PathBuf>,
    /// A parent revision (repeat for a merge; first = mainline) [default: the branch head]
    #[arg(long = "parent", short = 'p', value_name = "REV")]
    pub parents: Vec<String>,
    /// The node's label
    #[arg(short = 'm', long = "message", value_name = "LABEL")]
    pub label: Option<String>,
    /// Branch to advance to the new node (compare-and-swap)
    #[arg(short = 'b', long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Content type recorded with the bytes, e.g. application/json
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
}

/// `log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Where to start: REV, A..B or ^A [default: main, else every ref]
    #[arg(value_name = "REV")]
    pub revs: Vec<String>,
    /// Start from every ref
    #[arg(long)]
    pub all: bool,
    /// Draw the history graph on the left
    #[arg(long)]
    pub graph: bool,
    /// One line per node: short id, refs, label
    #[arg(long)]
    pub oneline: bool,
    /// Follow only the first parent of merges
    #[arg(long)]
    pub first_parent: bool,
    /// Show at most N nodes
    #[arg(short = 'n', long = "max-count", value_name = "N")]
    pub limit: Option<usize>,
    /// Only nodes made at or after WHEN: an RFC 3339 time (2026-11-23T01:30:00Z) or an age
    /// (36h: that long ago)
    #[arg(long, value_name = "WHEN", value_parser = parse_when, conflicts_with = "graph")]
    pub since: Option<time::OffsetDateTime>,
    /// Only nodes made at or before WHEN (as for --since)
    #[arg(long, value_name = "WHEN", value_parser = parse_when, conflicts_with = "graph")]
    pub until: Option<time::OffsetDateTime>,
    /// Print JSON (an array of nodes) instead of text
    #[arg(long, conflicts_with_all = ["graph", "oneline"])]
    pub json: bool,
}

/// A point in time as `--since`/`--until` take it: RFC 3339, or an age (`parse_age`) back
/// from now.
fn parse_when(text: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    let age = parse_age(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time (2026-11-23T01:30:00Z) nor an age (36h, 2w)")
    })?;
    time::OffsetDateTime::now_utc()
        .checked_sub(
            time::Duration::try_from(age).map_err(|_| format!("{text:?} is too long an age"))?,
        )
        .ok_or_else(|| format!("{text:?} is too long an age"))
}

/// `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The node to show
    #[arg(value_name = "REV")]
    pub rev: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `branch` and `tag`.
#[derive(Debug, Args)]
pub struct RefArgs {
    /// Name to create, move (-f) or delete (-d); omit to list
    pub name: Option<String>,
    /// Where it should point [default: main]
    #[arg(value_name = "REV")]
    pub rev: Option<String>,
    /// Move it if it exists (compare-and-swap from where it points now)
    #[arg(short, long, requires = "name")]
    pub force: bool,
    /// Delete it (compare-and-swap from where it points now)
    #[arg(short, long, requires = "name", conflicts_with_all = ["force", "rev"])]
    pub delete: bool,
    /// List as JSON
    #[arg(long, conflicts_with = "name")]
    pub json: bool,
}

/// `reflog`.
#[derive(Debug, Args)]
pub struct ReflogArgs {
    /// A ref name, e.g. main or tags/v1 (a tag may be named without tags/)
    pub name: String,
    /// Show only the newest N moves
    #[arg(short = 'n', long = "max-count", value_name = "N")]
    pub limit: Option<usize>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Snapshots to export (full ids or unique prefixes, or revisions of nodes with one
    /// snapshot); name at least one, or pass --all
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Export every snapshot in the store (needs --out)
    #[arg(long, requires = "out", conflicts_with = "snapshots")]
    pub all: bool,
    /// Write one file per snapshot into this directory (created if missing)
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Package files written by `export`, directories of them, or - for stdin
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

/// `snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The node to snapshot (with -d: the snapshot to delete: id, unique prefix, or a revision
    /// naming a node with one snapshot)
    #[arg(value_name = "REV|SNAPSHOT")]
    pub rev: String,
    /// Delete the snapshot SNAPSHOT (its node and state stay)
    #[arg(short, long)]
    pub delete: bool,
}

/// `snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only the snapshots in REV's history (REV and its ancestors): the restore points a
    /// restart from REV could use
    #[arg(value_name = "REV")]
    pub rev: Option<String>,
    /// Show only the newest N snapshots
    #[arg(short = 'n', long = "max-count", value_name = "N")]
    pub limit: Option<usize>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep unreachable nodes and unused states younger than AGE
    #[arg(long, value_name = "AGE", default_value = "2w", value_parser = parse_age)]
    pub grace: std::time::Duration,
    /// Remove ref log entries older than AGE first (default: keep them all)
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub expire_reflog: Option<std::time::Duration>,
    /// Also remove reachable history older than AGE, except what refs and snapshots point
    /// at; the nodes kept above it mark a shallow boundary
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub prune_history: Option<std::time::Duration>,
    /// Count what would be removed; remove nothing (it only reads: writers carry on, and the
    /// store need not be writable; damage that would stop gc at its deletes shows in fsck, not
    /// here)
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Then rewrite the file without its free pages, so that it shrinks
    #[arg(long, conflicts_with = "dry_run")]
    pub vacuum: bool,
    /// Remove at most N rows (nodes, states, contents) per write transaction, so writers
    /// wait for one step at a time; 0: everything in one transaction, writers waiting
    /// throughout
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub rows_per_step: usize,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Reads an AGE: a whole number and one of s, m, h, d, w.
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not an age: give a number and a unit (s, m, h, d or w), e.g. 36h or 2w"
            ));
        }
    };
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not an age: it needs a whole number before the unit"
        ));
    }
    // Only digits are left, so a number that does not parse is too large.
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is too long an age"))?;
    number
        .checked_mul(unit_secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long an age"))
}

/// Commands whose only option is `--json`.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A snapshot id or unique prefix, or a revision of a node with one snapshot [default: the
    /// newest in the branch's history]
    pub snapshot: Option<String>,
    /// The branch to move
    #[arg(short, long, value_name = "BRANCH")]
    pub branch: String,
    /// Create BRANCH at the snapshot instead (it must not exist yet)
    #[arg(long, requires = "snapshot")]
    pub create: bool,
    /// Without SNAPSHOT: the newest snapshot on BRANCH's own line (first parents only),
    /// leaving out branches merged into it
    #[arg(long, conflicts_with = "snapshot")]
    pub first_parent: bool,
}

/// `backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The new file to write (it must not exist)
    pub file: PathBuf,
    /// Then check the copy as `fsck` does (exit 1 if it finds problems)
    #[arg(long)]
    pub verify: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `merge-base`.
#[derive(Debug, Args)]
pub struct MergeBaseArgs {
    /// First revision
    #[arg(value_name = "A")]
    pub a: String,
    /// Second revision
    #[arg(value_name = "B")]
    pub b: String,
    /// Print every best common ancestor, not just the best one
    #[arg(long)]
    pub all: bool,
    /// Print JSON (an array of ids) instead of text
    #[arg(long)]
    pub json: bool,
}

/// `is-ancestor`.
#[derive(Debug, Args)]
pub struct IsAncestorArgs {
    /// The possible ancestor
    #[arg(value_name = "A")]
    pub ancestor: String,
    /// The possible descendant
    #[arg(value_name = "B")]
    pub descendant: String,
}

/// `graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Where to start: REV, A..B or ^A [default: main, else every ref]
    #[arg(value_name = "REV")]
    pub revs: Vec<String>,
    /// Start from every ref
    #[arg(long)]
    pub all: bool,
    /// Follow only the first parent of merges
    #[arg(long)]
    pub first_parent: bool,
    /// Export at most N nodes
    #[arg(short = 'n', long = "max-count", value_name = "N")]
    pub limit: Option<usize>,
    /// Output format
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

/// Formats of `graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many ticks the simulated runtime runs (at least 12)
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(12..))]
    pub ticks: u32,
}
