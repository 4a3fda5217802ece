//! `stategraph`: a git-like command line for stategraph stores.
//!
//! A thin layer over the library: parse the command line, call [`stategraph`], print. Read
//! commands open the store read-only, so they are safe next to a running writer. Run
//! `stategraph --help` for the commands.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod args;
mod commands;
mod demo;
mod error;
mod output;
mod render;
mod revs;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use stategraph::SqliteStateStore;

use crate::args::{Cli, Command};
pub use crate::error::{CliError, CliResult};
use crate::output::{Out, Theme};

/// The store file used when neither `--db` nor `STATEGRAPH_DB` names one.
const DEFAULT_DB: &str = "stategraph.db";

/// What every command needs: the store path and how to print.
pub struct Ctx {
    /// The store file.
    pub db: PathBuf,
    /// Whether `--db` was given on the command line.
    pub db_given: bool,
    /// Colours for stdout.
    pub theme: Theme,
    /// Colours for stderr.
    pub err_theme: Theme,
    /// `--no-pager`.
    pub no_pager: bool,
}

impl Ctx {
    /// Opens the store read-only, for commands that only look.
    pub fn open_read(&self) -> CliResult<SqliteStateStore> {
        self.check_exists()?;
        Ok(SqliteStateStore::open_read_only(&self.db)?)
    }

    /// Fails unless the store file exists (and can be looked at: a symlink loop or a
    /// directory without permission is reported as what it is).
    pub fn check_exists(&self) -> CliResult<std::fs::Metadata> {
        std::fs::metadata(&self.db).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                self.no_store()
            } else {
                CliError::new(format!("cannot open {}: {e}", self.db.display()))
            }
        })
    }

    /// Opens an existing store for writing. Never creates one: that is `init`'s job, so a
    /// mistyped path fails instead of starting an empty store.
    pub fn open_write(&self) -> CliResult<SqliteStateStore> {
        let meta = self.check_exists()?;
        // `create_if_missing(false)` closes the race with the check above. An empty file is
        // no store, unless the library finds it is a damaged one (a log beside it).
        match SqliteStateStore::builder()
            .create_if_missing(false)
            .open(&self.db)
        {
            Err(e) if meta.is_file() && meta.len() == 0 && !e.is_corrupt() => {
                Err(self.no_store_because("the file is empty"))
            }
            opened => Ok(opened?),
        }
    }

    fn no_store(&self) -> CliError {
        match self.db.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => CliError::new(format!(
                "no store at {}: the directory {} does not exist",
                self.db.display(),
                dir.display()
            ))
            .hint("choose the store with --db PATH or STATEGRAPH_DB"),
            _ => self.no_store_because("the file does not exist"),
        }
    }

    fn no_store_because(&self, why: &str) -> CliError {
        let err = CliError::new(format!("no store at {}: {why}", self.db.display()));
        // Right after `stategraph demo`, the store to look at is the demo's.
        let demo = self
            .db
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join(demo::DEMO_DB);
        if demo.is_file() && self.db.file_name() != Some(std::ffi::OsStr::new(demo::DEMO_DB)) {
            let demo = shell_word(&demo.display().to_string());
            return err.hint(format!(
                "the demo's store is {demo}: pass --db={demo}, or `export STATEGRAPH_DB={demo}`"
            ));
        }
        err.hint(format!(
            // `--db=PATH`: a path starting with '-' must not read as an option.
            "create one with `stategraph --db={} init`, or choose another with --db PATH or STATEGRAPH_DB",
            shell_word(&self.db.display().to_string())
        ))
    }

    /// Standard output; paged when `page` is set, stdout is a terminal and `--no-pager` is not.
    pub fn out(&self, page: bool) -> Out {
        Out::new(page && !self.no_pager)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (db, db_given) = match (&cli.db, std::env::var_os("STATEGRAPH_DB")) {
        (Some(db), _) => (db.clone(), true),
        (None, Some(env)) if !env.is_empty() => (PathBuf::from(env), false),
        _ => (PathBuf::from(DEFAULT_DB), false),
    };
    let ctx = Ctx {
        db,
        db_given,
        theme: Theme::new(cli.color, std::io::stdout().is_terminal()),
        err_theme: Theme::new(cli.color, std::io::stderr().is_terminal()),
        no_pager: cli.no_pager,
    };
    match run(&ctx, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.silent {
                error::report(&e, ctx.err_theme);
            }
            ExitCode::from(e.code)
        }
    }
}

fn run(ctx: &Ctx, command: Command) -> CliResult {
    use crate::commands::{ancestry, data, diff, history, import, maintenance, refs, snapshots};
    match command {
        Command::Init => data::init(ctx),
        Command::Put(a) => data::put(ctx, &a),
        Command::Cat(a) => data::cat(ctx, &a),
        Command::Diff(a) => diff::diff(ctx, &a),
        Command::Commit(a) => data::commit(ctx, &a),
        Command::Log(a) => history::log(ctx, &a),
        Command::Show(a) => history::show(ctx, &a),
        Command::Graph(a) => history::graph(ctx, &a),
        Command::Branch(a) => refs::branch(ctx, &a, refs::Kind::Branch),
        Command::Tag(a) => refs::branch(ctx, &a, refs::Kind::Tag),
        Command::Reflog(a) => refs::reflog(ctx, &a),
        Command::Snapshot(a) => snapshots::snapshot(ctx, &a),
        Command::Snapshots(a) => snapshots::list(ctx, &a),
        Command::Restore(a) => snapshots::restore(ctx, &a),
        Command::Export(a) => snapshots::export(ctx, &a),
        Command::Fsck(a) => maintenance::fsck(ctx, &a),
        Command::Stats(a) => maintenance::stats(ctx, &a),
        Command::Backup(a) => maintenance::backup(ctx, &a),
        Command::Gc(a) => maintenance::gc(ctx, &a),
        Command::Import(a) => import::import(ctx, &a),
        Command::MergeBase(a) => ancestry::merge_base(ctx, &a),
        Command::IsAncestor(a) => ancestry::is_ancestor(ctx, &a),
        Command::Demo(a) => demo::run(ctx, &a),
    }
}

/// `word` as a shell reads it back: as it is when it has nothing the shell would split or
/// expand, otherwise in single quotes (a hint's command must work when pasted).
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_paste_back_as_one_argument() {
        assert_eq!(shell_word("state.db"), "state.db");
        assert_eq!(shell_word("/var/lib/agent/s-1.db"), "/var/lib/agent/s-1.db");
        assert_eq!(shell_word("my store.db"), "'my store.db'");
        assert_eq!(shell_word("it's.db"), r"'it'\''s.db'");
        assert_eq!(shell_word("$HOME/x"), "'$HOME/x'");
        assert_eq!(shell_word(""), "''");
    }
}
