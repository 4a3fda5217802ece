//! `--flush-delay-us N`: every `xSync` of a database or WAL file waits `N` µs more, to show
//! how the group-commit ratio depends on how long the disk takes to flush. Every sync is
//! timed (the real one plus the added wait), so the report gives the flush latency the run
//! actually had, whatever the sleep's precision.
//!
//! Installed as the process's default VFS (see `sync_hook`), so stategraph and the raw
//! SQLite column both go through it; git runs in its own processes and is not slowed.

use std::ffi::c_int;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::ffi;

#[path = "sync_hook.rs"]
mod sync_hook;

/// The added wait, once installed.
static DELAY: OnceLock<Duration> = OnceLock::new();
/// Every sync's time (real sync plus the added wait), in µs.
static SAMPLES: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Makes every later connection of this process sync through the slowed VFS.
pub fn install(delay: Duration) {
    if DELAY.set(delay).is_ok() {
        sync_hook::install(
            c"stategraph-bench-slow-flush",
            ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL,
            slow_sync,
        );
    }
}

/// The syncs timed since the last call: their count, and the median, 10th and 90th
/// percentile in µs. `None` when the VFS is not installed or nothing synced.
pub fn take_latencies() -> Option<(usize, u32, u32, u32)> {
    DELAY.get()?;
    let mut samples = std::mem::take(&mut *SAMPLES.lock().expect("samples"));
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |q: usize| samples[(samples.len() - 1) * q / 100];
    Some((samples.len(), at(50), at(10), at(90)))
}

/// The added wait, when the VFS is installed.
pub fn delay() -> Option<Duration> {
    DELAY.get().copied()
}

fn slow_sync(real: &dyn Fn() -> c_int) -> c_int {
    let start = Instant::now();
    let rc = real();
    let delay = DELAY.get().copied().unwrap_or_default();
    if rc == ffi::SQLITE_OK && !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let took = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
    SAMPLES.lock().expect("samples").push(took);
    rc
}
