//! `--flush-delay-us N`: a VFS that wraps SQLite's default one and makes every `xSync` of a
//! database or WAL file wait `N` µs more, to show how the group-commit ratio depends on how
//! long the disk takes to flush. It times every sync it forwards (the real one plus the
//! added wait), so the report gives the flush latency the run actually had, whatever the
//! sleep's precision.
//!
//! Registered as the process's default VFS, so stategraph and the raw SQLite column both go
//! through it; git runs in its own processes and is not slowed.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::ffi;

struct Hooks {
    default_vfs: *mut ffi::sqlite3_vfs,
    delay: Duration,
    /// Each method table the default VFS handed out, and our copy of it.
    tables: Mutex<Vec<(usize, usize)>>,
    /// Every sync's time (real sync plus the added wait), in µs.
    samples: Mutex<Vec<u32>>,
}

// SAFETY: the pointer names the default VFS, which SQLite never frees; the method tables
// are stored as addresses and are never written after creation.
unsafe impl Send for Hooks {}
unsafe impl Sync for Hooks {}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// Makes every later connection of this process sync through the slowed VFS.
pub fn install(delay: Duration) {
    // SAFETY: looking up SQLite's default VFS, which lives as long as the process.
    let default_vfs = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    assert!(!default_vfs.is_null(), "SQLite has no default VFS");
    let hooks = Hooks {
        default_vfs,
        delay,
        tables: Mutex::new(Vec::new()),
        samples: Mutex::new(Vec::new()),
    };
    // Set before the VFS is registered: a connection opened through it at once (on another
    // thread) finds the hooks.
    if HOOKS.set(hooks).is_err() {
        return;
    }
    // SAFETY: SQLite's documented VFS registration; the new VFS is a copy of the default one
    // with another name and `xOpen`, leaked so it outlives every connection.
    unsafe {
        let mut ours = *default_vfs;
        ours.zName = c"stategraph-bench-slow-flush".as_ptr();
        ours.pNext = std::ptr::null_mut();
        ours.xOpen = Some(open);
        let ours = Box::leak(Box::new(ours));
        assert_eq!(ffi::sqlite3_vfs_register(ours, 1), ffi::SQLITE_OK);
    }
}

/// The syncs timed since the last call: their count, and the median, 10th and 90th
/// percentile in µs. `None` when the VFS is not installed or nothing synced.
pub fn take_latencies() -> Option<(usize, u32, u32, u32)> {
    let hooks = HOOKS.get()?;
    let mut samples = std::mem::take(&mut *hooks.samples.lock().expect("samples"));
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |q: usize| samples[(samples.len() - 1) * q / 100];
    Some((samples.len(), at(50), at(10), at(90)))
}

/// The added wait, when the VFS is installed.
pub fn delay() -> Option<Duration> {
    HOOKS.get().map(|h| h.delay)
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let hooks = HOOKS.get().expect("installed before use");
    // SAFETY: forwarding SQLite's own arguments to the VFS this one wraps, whose file object
    // has the same size (`szOsFile` was copied).
    unsafe {
        let vfs = hooks.default_vfs;
        let rc = ((*vfs).xOpen.expect("xOpen"))(vfs, name, file, flags, out_flags);
        let synced = ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL;
        if rc != ffi::SQLITE_OK || flags & synced == 0 || (*file).pMethods.is_null() {
            return rc;
        }
        let theirs = (*file).pMethods as usize;
        let mut tables = hooks.tables.lock().expect("tables");
        let ours = match tables.iter().find(|(t, _)| *t == theirs) {
            Some(&(_, ours)) => ours,
            None => {
                let mut copy = *(*file).pMethods;
                copy.xSync = Some(sync);
                let ours = Box::leak(Box::new(copy)) as *const ffi::sqlite3_io_methods as usize;
                tables.push((theirs, ours));
                ours
            }
        };
        (*file).pMethods = ours as *const ffi::sqlite3_io_methods;
        rc
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let hooks = HOOKS.get().expect("installed before use");
    let ours = unsafe { (*file).pMethods } as usize;
    let theirs = hooks
        .tables
        .lock()
        .expect("tables")
        .iter()
        .find(|(_, o)| *o == ours)
        .map(|&(t, _)| t)
        .expect("a file opened through this VFS");
    let start = Instant::now();
    // SAFETY: the file was opened by the wrapped VFS with the table `theirs`.
    let rc = unsafe {
        let theirs = theirs as *const ffi::sqlite3_io_methods;
        ((*theirs).xSync.expect("xSync"))(file, flags)
    };
    if rc == ffi::SQLITE_OK && !hooks.delay.is_zero() {
        std::thread::sleep(hooks.delay);
    }
    let took = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
    hooks.samples.lock().expect("samples").push(took);
    rc
}
