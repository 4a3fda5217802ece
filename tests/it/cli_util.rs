//! Helpers for the CLI tests: running the real binary against a store in a temp directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// A temporary directory holding one store file.
pub struct Env {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The store file (`state.db` in `dir`, not created yet).
    pub db: PathBuf,
}

impl Env {
    /// Damages the store behind the library's back: runs one SQL statement that must change
    /// exactly one row, with foreign keys off (the library keeps them on) and the tables'
    /// CHECK constraints ignored.
    pub fn damage(&self, statement: &str) {
        let conn = rusqlite::Connection::open(&self.db).expect("raw connection");
        conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON")
            .expect("pragma");
        assert_eq!(
            conn.execute(statement, []).expect("damage"),
            1,
            "{statement}"
        );
    }

    /// A fresh directory; the store is not created.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("state.db");
        Self { dir, db }
    }

    /// A fresh directory with an initialised store.
    pub fn init() -> Self {
        let env = Self::new();
        env.sg(&["init"]).assert().success();
        env
    }

    /// The binary, run in the directory against the store, with a clean environment.
    pub fn sg(&self, args: &[&str]) -> Command {
        Command::from_std(self.sg_std(args))
    }

    /// [`Env::sg`] as a plain `std::process::Command`, to spawn.
    pub fn sg_std(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = bare_std(self.dir.path());
        cmd.arg("--db").arg(&self.db).args(args);
        cmd
    }

    /// Runs the binary and returns stdout, failing the test on a non-zero exit.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.sg(args).output().expect("run");
        assert!(
            out.status.success(),
            "stategraph {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `commit -m LABEL` with `data` on stdin plus extra args; returns the new node id.
    pub fn commit(&self, data: &str, label: &str, extra: &[&str]) -> String {
        let mut args = vec!["commit", "-m", label];
        args.extend_from_slice(extra);
        let out = self.sg(&args).write_stdin(data).output().expect("run");
        assert!(
            out.status.success(),
            "commit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        assert!(id.starts_with("blake3:") && id.len() == 71, "{id}");
        id
    }
}

/// The binary with no store argument, run in `dir`, with an environment that cannot leak
/// in: no STATEGRAPH_DB, no colour, a pager that would fail if it were ever used.
pub fn bare(dir: &Path) -> Command {
    Command::from_std(bare_std(dir))
}

/// [`bare`] as a plain `std::process::Command`, for tests that spawn it and handle its pipes.
pub fn bare_std(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stategraph"));
    cmd.current_dir(dir)
        .env_remove("STATEGRAPH_DB")
        .env_remove("STATEGRAPH_PAGER")
        .env("PAGER", "false")
        .env("NO_COLOR", "1");
    cmd
}

/// Asserts the shape of a failure: exit code 2, one `error:` line then only `hint:` lines,
/// no panic and no debug dump. Returns stderr.
pub fn assert_error(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code; stderr: {}",
        stderr(out)
    );
    let text = stderr(out);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with("error: "), "first line: {text}");
    for line in lines {
        assert!(
            line.starts_with("hint: "),
            "extra stderr line {line:?} in {text}"
        );
    }
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "Error {",
        "StateStoreError",
        "Some(",
    ] {
        assert!(!text.contains(bad), "debug output {bad:?} in {text}");
    }
    text
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Replaces every 12-digit short id with `<id>`.
pub fn redact(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() == 12 {
            out.push_str("<id>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() && c.is_ascii_digit() | c.is_ascii_lowercase() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}
