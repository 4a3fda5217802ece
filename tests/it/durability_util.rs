//! Helpers shared by the durability tests: child processes re-invoked from this test binary,
//! a seeded RNG, and checks on a store file.
//!
//! A child process is this very binary run as `<exe> --exact <test> --include-ignored`, where
//! `<test>` is an `#[ignore]`d test that does its work only when [`CHILD_ENV`] is set. This
//! works under both `cargo test` and `cargo nextest` (each runs this binary with libtest's
//! arguments). Children report to the parent through stdout lines that start with [`MARK`];
//! everything else on stdout (libtest's own chatter) is ignored.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stategraph::{ContentHash, History, LogOptions, StateNodeId, StateStore};

/// The variable that turns an ignored child test into a child process; its value is the role.
pub const CHILD_ENV: &str = "STATEGRAPH_TEST_CHILD";
/// Prefix of every line a child reports to its parent.
pub const MARK: &str = "@@stategraph ";
/// Suffix of every report: a line cut short by a kill (long lines take several writes) lacks
/// it and is ignored, as a report that was never made.
pub const END: &str = " $";
/// Set to a number to replay a randomized test with that seed.
pub const SEED_ENV: &str = "STATEGRAPH_TEST_SEED";

/// A small seeded RNG (xorshift64*), so a failing run can be replayed from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// An RNG starting from `seed` (any value, including 0).
    pub fn new(seed: u64) -> Self {
        Self((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo < hi);
        lo + self.next_u64() % (hi - lo)
    }
}

/// The seed of a randomized test: [`SEED_ENV`] if set, else fresh. It is printed, so libtest
/// shows it with the output of a failing test.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var(SEED_ENV) {
        Ok(s) => s.parse().expect("STATEGRAPH_TEST_SEED must be a u64"),
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        }
    };
    eprintln!("{test}: seed {seed} (replay with {SEED_ENV}={seed})");
    seed
}

/// The role this process was started for, if it is a child process.
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// A required variable of a child process.
pub fn child_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child process without {name}"))
}

/// Reports one line to the parent, flushed at once: once this returns, the parent will see
/// the line even if this process is killed the next instant.
pub fn report(line: &str) {
    let text = format!("{MARK}{line}{END}\n");
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .expect("writing to the parent");
    out.flush().expect("flushing to the parent");
}

/// How a child reports an error's kind to its parent: `storage-full`, `backend` or `other`.
pub fn error_kind(e: &stategraph::StateStoreError) -> &'static str {
    match e {
        stategraph::StateStoreError::StorageFull(_) => "storage-full",
        stategraph::StateStoreError::Backend(_) => "backend",
        _ => "other",
    }
}

/// A command that runs the ignored test `test` of this binary as a child process in `role`.
pub fn child_command(test: &str, role: &str) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(child_args(test)).env(CHILD_ENV, role);
    cmd
}

/// The libtest arguments that run exactly the ignored test `test`.
pub fn child_args(test: &str) -> [&str; 6] {
    [
        "--exact",
        test,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ]
}

/// Runs the child test `test` of this binary in role `role` on the store at `db`, under a
/// file-size limit of `blocks` 512-byte blocks (`ulimit -f` in dash and POSIX sh), with
/// `SIGXFSZ` ignored so that a write past the limit fails with `EFBIG`, as on a full disk;
/// `env` adds variables. Asserts that the child exited successfully (it must get errors,
/// not crash) and returns its reports and stderr.
pub fn run_child_with_file_limit(
    test: &str,
    role: &str,
    db: &Path,
    blocks: u64,
    env: &[(&str, &Path)],
) -> (Vec<String>, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks} && exec \"$0\" \"$@\""
        ))
        .arg(exe)
        .args(child_args(test))
        .env(CHILD_ENV, role)
        .env("STATEGRAPH_TEST_DB", db);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut child = ChildProc::spawn(cmd);
    let status = child.wait(Duration::from_secs(60));
    let (reports, stderr) = child.finish();
    assert!(
        status.success(),
        "the child {test} failed ({status}) instead of getting an error; reports \
         {reports:?}; stderr:\n{stderr}"
    );
    (reports, stderr)
}

/// A running child process whose reports are collected by a thread.
pub struct ChildProc {
    child: Child,
    reports: Receiver<String>,
    stdout: Option<JoinHandle<Vec<String>>>,
    stderr: Option<JoinHandle<String>>,
}

fn collect_reports(stdout: ChildStdout, tx: std::sync::mpsc::Sender<String>) -> Vec<String> {
    let mut all = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // libtest may print "test name ... " on the same line before the first report.
        if let Some(at) = line.find(MARK)
            && let Some(report) = line[at + MARK.len()..].strip_suffix(END)
        {
            let report = report.to_owned();
            let _ = tx.send(report.clone());
            all.push(report);
        }
    }
    all
}

impl ChildProc {
    /// Spawns `cmd` with piped stdout and stderr.
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning a child process");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, reports) = channel();
        let stdout = std::thread::spawn(move || collect_reports(stdout, tx));
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self {
            child,
            reports,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Waits up to `timeout` for the next report; `None` on timeout or when the child
    /// closed its stdout.
    pub fn next_report(&self, timeout: Duration) -> Option<String> {
        self.reports.recv_timeout(timeout).ok()
    }

    /// Whether the child has exited already.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// SIGKILLs the child (on Unix, `Child::kill` sends SIGKILL) and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        // An error here means it has exited already; `wait` reports how.
        let _ = self.child.kill();
        self.child.wait().expect("wait")
    }

    /// Waits up to `timeout` for the child to exit; kills it and panics if it does not.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                let (_, stderr) = self.finish();
                panic!("child process did not exit within {timeout:?}; stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every report the child made, in order, and its stderr. Call after it exited.
    pub fn finish(&mut self) -> (Vec<String>, String) {
        let reports = self
            .stdout
            .take()
            .map(|h| h.join().expect("stdout reader"))
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().expect("stderr reader"))
            .unwrap_or_default();
        (reports, stderr)
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // Never leave a child behind when a test panics.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses a node id printed with `to_hex`.
pub fn node_id(hex: &str) -> StateNodeId {
    hex.parse()
        .unwrap_or_else(|e| panic!("bad node id {hex:?}: {e}"))
}

/// `PRAGMA integrity_check` through a separate read-only connection: must say `ok`.
pub fn assert_integrity(path: &Path) {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("opening for integrity_check");
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .expect("integrity_check");
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("integrity_check")
        .collect::<Result<_, _>>()
        .expect("integrity_check rows");
    assert_eq!(rows, ["ok"], "integrity_check of {}", path.display());
}

/// Checks a node thoroughly: it reads back (which verifies its hash), its state reads back
/// (which verifies the bytes' hash) and that state is what the node records.
pub fn assert_node_readable(store: &dyn StateStore, id: &StateNodeId) -> stategraph::StateNode {
    let node = store
        .get_node(id)
        .unwrap_or_else(|e| panic!("acknowledged node {id} unreadable: {e}"));
    let state = store
        .get_state(&node.data_ref)
        .unwrap_or_else(|e| panic!("state of acknowledged node {id} unreadable: {e}"));
    assert_eq!(
        ContentHash::of(&state.bytes),
        node.data_hash,
        "state of node {id} is not what the node records"
    );
    node
}

/// Walks the whole history from `head` and checks it is complete: it reaches a root, no
/// parent is missing (an empty boundary), every node is listed once and the walk is as long
/// as `head`'s generation (a chain's length). Returns the ids walked, newest first.
pub fn assert_chain_complete(store: &dyn StateStore, head: &StateNodeId) -> Vec<StateNodeId> {
    let generation = store.get_node(head).expect("head readable").generation;
    let mut log = store
        .log(&LogOptions::new().from(*head))
        .expect("starting the log");
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    let mut last_parents = None;
    for node in log.by_ref() {
        let node = node.unwrap_or_else(|e| panic!("walking from {head}: {e}"));
        assert!(seen.insert(node.id), "node {} walked twice", node.id);
        last_parents = Some(node.parent_ids.len());
        ids.push(node.id);
    }
    assert!(
        log.boundary().is_empty(),
        "walk from {head} hit missing parents {:?}",
        log.boundary()
    );
    assert_eq!(
        last_parents,
        Some(0),
        "walk from {head} did not end at a root"
    );
    assert_eq!(
        ids.len() as u64,
        generation,
        "walk from {head} is not as long as its generation"
    );
    ids
}

/// Checks a ref log is one unbroken sequence of moves ending where the ref points:
/// the first entry creates the ref and each entry's `old` is the previous entry's `new`.
pub fn assert_ref_log_consistent(store: &dyn StateStore, name: &str) -> usize {
    let log = store.ref_log(name).expect("ref log");
    let mut previous = None;
    for (i, entry) in log.iter().enumerate() {
        assert_eq!(
            entry.old,
            previous,
            "ref log of {name}: entry {i} does not start where entry {} ended",
            i.wrapping_sub(1)
        );
        previous = entry.new;
    }
    assert_eq!(
        store.get_ref(name).expect("get_ref"),
        previous,
        "ref {name} is not where its log ends"
    );
    log.len()
}

/// Explains a refused open of a crashed store: copies the file (with its `-wal`) aside and
/// asks SQLite itself whether it can open it, what `integrity_check` says and how many
/// nodes it holds.
pub fn diagnose_refused_open(path: &Path) -> String {
    let Ok(dir) = tempfile::tempdir() else {
        return "(no tempdir for a diagnosis)".into();
    };
    let copy = dir.path().join("copy.db");
    let mut files = Vec::new();
    for suffix in ["", "-wal"] {
        let from = format!("{}{suffix}", path.display());
        if let Ok(meta) = std::fs::metadata(&from) {
            files.push(format!("{suffix:?}: {} bytes", meta.len()));
            if std::fs::copy(&from, format!("{}{suffix}", copy.display())).is_err() {
                return format!("(could not copy {from})");
            }
        }
    }
    let probe = || -> rusqlite::Result<(String, i64)> {
        let conn = rusqlite::Connection::open(&copy)?;
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        let nodes: i64 = conn.query_row("SELECT count(*) FROM state_nodes", [], |r| r.get(0))?;
        Ok((check, nodes))
    };
    match probe() {
        Ok((check, nodes)) => format!(
            "files {files:?}; plain SQLite opens a copy fine: integrity_check {check:?}, \
             {nodes} nodes"
        ),
        Err(e) => format!("files {files:?}; plain SQLite fails too: {e}"),
    }
}
