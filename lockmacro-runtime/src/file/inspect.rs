//! Listing the lock files of a directory, for tools that show who holds what: each file with
//! the name recorded in it (see `os::PID_OFFSET`) and the processes the kernel says hold it.
//! Read-only: nothing is locked, created or written, and no rule is checked (a listing decides
//! nothing).

use std::io;
use std::path::{Path, PathBuf};

use super::fork;
use super::os;
use crate::error::Error;
use crate::request::Share;

/// One lock file, as [`inspect`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The lock file.
    pub path: PathBuf,
    /// The lock's name as recorded in the file by its owner (the second line), if any: files
    /// written by lockmacro 0.1, by other tools, or owned by another user than their holders
    /// (root's files in a shared directory, which others lock but never write) have none.
    pub name: Option<String>,
    /// The PID recorded in the file: the last holder that could write it, who may have exited.
    pub recorded_pid: Option<u32>,
    /// The processes holding the lock now, from the kernel's lock table (Linux `/proc/locks`),
    /// lowest first; empty if nobody holds it (and always empty where there is no such table).
    pub holders: Vec<u32>,
    /// The holders hold it shared (readers); false when it is free or held exclusively.
    pub shared: bool,
}

/// The lock files in `dir`: every regular file there that this process can open for reading
/// (a symbolic link is not followed), sorted by path, each with its recorded name and PID and
/// its holders now. Meant for lockmacro's directories ([`default_dir`](crate::default_dir),
/// [`system_dir`](crate::system_dir), a `dir`), but any directory of lock files will do (files
/// of other tools just have no name).
///
/// Nothing is locked, so the listing never disturbs a holder or a waiter, and is a snapshot:
/// a lock may be taken or released just after. The errors are about the directory itself
/// ([`Error::Io`], named after the lock `*`); a file that disappears meanwhile or cannot be
/// opened is left out.
///
/// ```
/// use lockmacro_runtime::{inspect, Lock};
///
/// let dir = std::env::temp_dir().join("lockmacro-doc-inspect");
/// let lock = Lock::new("nightly-backup").dir(&dir);
/// let guard = lock.try_acquire()?;
/// let entries = inspect(&dir)?;
/// let entry = entries.iter().find(|e| e.path == lock.path()).expect("listed");
/// assert_eq!(entry.name.as_deref(), Some("nightly-backup"));
/// assert_eq!(entry.holders, [std::process::id()]);
/// drop(guard);
/// let entries = inspect(&dir)?;
/// let entry = entries.iter().find(|e| e.path == lock.path()).expect("still listed");
/// assert!(entry.holders.is_empty()); // free; the file stays (`cleanup` would remove it)
/// assert_eq!(entry.recorded_pid, Some(std::process::id())); // the last holder
/// # Ok::<(), lockmacro_runtime::Error>(())
/// ```
pub fn inspect(dir: &Path) -> Result<Vec<Entry>, Error> {
    let list_error = |e| Error::io("*", dir, "list lock directory", e);
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(list_error)? {
        let item = item.map_err(list_error)?;
        // Skips what is not a regular file without opening it (a FIFO, a directory, a link).
        if !item.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Ok(Some(entry)) = look_at(item.path()) {
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// One file: `None` if it is gone or not a regular file any more.
fn look_at(path: PathBuf) -> io::Result<Option<Entry>> {
    let Some(file) = fork::open_existing(&path)? else {
        return Ok(None);
    };
    let (recorded_pid, name) = os::read_record(&file);
    let holds = os::kernel_holds(&file).unwrap_or_default();
    let mut holders: Vec<u32> = holds.iter().map(|(pid, _)| *pid).collect();
    holders.sort_unstable();
    holders.dedup();
    let shared = !holds.is_empty() && holds.iter().all(|(_, share)| *share == Share::Shared);
    Ok(Some(Entry {
        path,
        name,
        recorded_pid,
        holders,
        shared,
    }))
}
