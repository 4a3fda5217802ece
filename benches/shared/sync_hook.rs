//! A VFS that wraps SQLite's default one and passes every `xSync` of chosen kinds of file
//! (`SQLITE_OPEN_MAIN_DB`, `SQLITE_OPEN_WAL`, ...) through a hook, which decides whether
//! and when the real sync runs. Registered as the process's default, so every connection
//! opened afterwards goes through it. Shared by the comparison benchmark (a slower disk)
//! and the integration tests (a failing fsync); one hook per process.
//!
//! SQLite's VFS interface is C, hence the unsafe code.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int};
use std::sync::{Mutex, OnceLock};

use rusqlite::ffi;

/// What a hooked `xSync` does; `real` runs the wrapped VFS's sync and returns its code.
pub type SyncHook = fn(real: &dyn Fn() -> c_int) -> c_int;

struct Hooks {
    default_vfs: *mut ffi::sqlite3_vfs,
    kinds: c_int,
    hook: SyncHook,
    /// Each method table the default VFS handed out, and our copy of it (as addresses).
    tables: Mutex<Vec<(usize, usize)>>,
}

// SAFETY: the pointer names the default VFS, which SQLite never frees; the method tables
// are leaked and never written after creation.
unsafe impl Send for Hooks {}
unsafe impl Sync for Hooks {}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// Makes every later connection of this process sync files of `kinds` through `hook`.
/// Returns false (and changes nothing) when a hook was installed already.
pub fn install(name: &'static CStr, kinds: c_int, hook: SyncHook) -> bool {
    // SAFETY: looking up SQLite's default VFS, which lives as long as the process.
    let default_vfs = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    assert!(!default_vfs.is_null(), "SQLite has no default VFS");
    let hooks = Hooks {
        default_vfs,
        kinds,
        hook,
        tables: Mutex::new(Vec::new()),
    };
    // Set before the VFS is registered: a connection opened through it at once (on another
    // thread) finds the hooks.
    if HOOKS.set(hooks).is_err() {
        return false;
    }
    // SAFETY: SQLite's documented VFS registration; the new VFS is a copy of the default one
    // with another name and `xOpen`, leaked so it outlives every connection.
    unsafe {
        let mut ours = *default_vfs;
        ours.zName = name.as_ptr();
        ours.pNext = std::ptr::null_mut();
        ours.xOpen = Some(open);
        let ours = Box::leak(Box::new(ours));
        assert_eq!(ffi::sqlite3_vfs_register(ours, 1), ffi::SQLITE_OK);
    }
    true
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
        if rc != ffi::SQLITE_OK || flags & hooks.kinds == 0 || (*file).pMethods.is_null() {
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
    // SAFETY: SQLite calls this with a file it opened through `open`, which set its methods.
    let ours = unsafe { (*file).pMethods } as usize;
    let theirs = hooks
        .tables
        .lock()
        .expect("tables")
        .iter()
        .find(|(_, o)| *o == ours)
        .map(|&(t, _)| t as *const ffi::sqlite3_io_methods)
        .expect("a file opened through this VFS");
    // SAFETY: the file was opened by the wrapped VFS with the table `theirs`.
    let real = || unsafe { ((*theirs).xSync.expect("xSync"))(file, flags) };
    (hooks.hook)(&real)
}
