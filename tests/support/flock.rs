//! The kernel's view of a lock file, asked without going through lockmacro: an independent open
//! of the file and `flock(2)`, which the kernel answers as it would for any other process, and
//! the waiters `/proc/locks` lists. Shared by the tests (through `support`) and by `lm-child`
//! (included with `#[path]`), so both ask the same way.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// What an independent open of a lock file and `flock(LOCK_EX|LOCK_NB)` say about it now.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Seen {
    /// Nobody holds it (the probe got it, and released it by closing).
    Free,
    /// Somebody holds it.
    Held,
    /// There is no file at the path.
    Missing,
}

/// Probes the file at `path` with its own open file description (so even this process's own
/// locks count as somebody else's).
pub fn probe(path: &Path) -> Seen {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Seen::Missing,
        Err(e) => panic!("open {}: {e}", path.display()),
    };
    if flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        return Seen::Free;
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Seen::Held,
        _ => panic!("flock {}: {err}", path.display()),
    }
}

/// `flock(2)` on `file` with `operation`: true if it succeeded.
pub fn flock(file: &File, operation: libc::c_int) -> bool {
    // SAFETY: flock only uses the descriptor number, which `file` keeps open for the call.
    unsafe { libc::flock(file.as_raw_fd(), operation) == 0 }
}

/// The file at `path` (created if missing, never truncated) locked exclusively with a bare
/// `flock(2)`, without waiting: "another locker" that lockmacro does not know about. Panics if
/// the file is held already.
pub fn locked_by_us(path: &Path) -> File {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    assert!(
        flock(&file, libc::LOCK_EX | libc::LOCK_NB),
        "flock {}: the file should be free",
        path.display()
    );
    file
}

/// Whether `/proc/locks` lists process `pid` as blocked waiting for a flock (a `->` line), on
/// the file with inode `ino` if one is given.
pub fn blocked_in_flock(pid: u32, ino: Option<u64>) -> bool {
    let table = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
    let pid = pid.to_string();
    let suffix = ino.map(|ino| format!(":{ino}"));
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        matches!(
            fields.as_slice(),
            [_, "->", "FLOCK", _, _, p, id, ..]
                if *p == pid && suffix.as_ref().is_none_or(|s| id.ends_with(s.as_str()))
        )
    })
}
