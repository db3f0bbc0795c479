//! Listing the locks of a directory, for tools that show who holds what: each lock with the
//! name recorded in its file (see `os::PID_OFFSET`) and the processes the kernel says hold it.
//! Read-only: nothing is locked, created or written, and no rule is checked (a listing decides
//! nothing).
//!
//! A lock may have files beside its lock file (see `file::Spec::companions`): the gate
//! `<file>.gate` where waiters line up (`fair`), the state `<file>.state` of `fencing` and
//! `once_per` (`state`), and with `Lock::slots(n)` the slot files `<file>.1` to `<file>.n`,
//! which *are* the lock (the file `<file>` itself is then not used). A listing shows locks, not
//! files: companions are left out when their lock is listed, and slot files make one entry.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::fork;
use super::os;
use crate::error::Error;
use crate::request::Share;

/// One lock, as [`inspect`] saw it: a lock file, or the slot files of a
/// [`slots`](crate::Lock::slots) lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The lock file ([`Lock::path`](crate::Lock::path)); for a [`slots`](crate::Lock::slots)
    /// lock, the path its slot files are named after (`<path>.1` ...), which need not exist.
    pub path: PathBuf,
    /// The lock's name as recorded in the file by its owner (the second line), if any: files
    /// written by lockmacro 0.1, by other tools, or owned by another user than their holders
    /// (root's files in a shared directory, which others lock but never write) have none.
    pub name: Option<String>,
    /// The PID recorded in the file: the last holder that could write it, who may have exited
    /// (with slots, that of the slot file written last).
    pub recorded_pid: Option<u32>,
    /// The processes holding the lock now, from the kernel's lock table (Linux `/proc/locks`),
    /// lowest first; empty if nobody holds it (and always empty where there is no such table).
    /// With slots, one PID per held slot (a process holding two slots is listed twice), as
    /// [`Lock::holders`](crate::Lock::holders) says.
    pub holders: Vec<u32>,
    /// The holders hold it shared (readers); false when it is free or held exclusively (always
    /// false with slots, which are exclusive only).
    pub shared: bool,
    /// With [`Lock::slots`](crate::Lock::slots): the highest slot file number found
    /// (`<path>.1` to `<path>.N`), which is the lock's `n` once every slot has been taken at
    /// least once (a slot file is made when its slot is first taken); 0 for a plain lock.
    pub slots: u32,
}

/// The locks in `dir`: every regular file there that this process can open for reading (a
/// symbolic link is not followed), sorted by path, each with its recorded name and PID and its
/// holders now. Meant for lockmacro's directories ([`default_dir`](crate::default_dir),
/// [`system_dir`](crate::system_dir), a `dir`), but any directory of lock files will do (files
/// of other tools just have no name).
///
/// One entry per lock, not per file. A lock's own files beside its lock file are recognised by
/// their names and shown through it:
///
/// - `<file>.gate` (where waiters line up) and `<file>.state` (the state of
///   [`fencing`](crate::Lock::fencing) and [`once_per`](crate::Lock::once_per)) are left out
///   when `<file>` is listed too, or is a slots lock (below). Without their lock (its file was
///   removed by `cleanup`, say) they are listed as they are, as files of their own.
/// - `<file>.1`, `<file>.2`, ... (`<file>.` and a number without leading zeros), when
///   `<file>.1` is there, are the slots of a [`slots`](crate::Lock::slots) lock: one entry
///   whose `path` is `<file>`, with [`slots`](Entry::slots) set and every holder of every
///   slot. `<file>` itself, if it exists, is another lock (a plain lock of the same name) and
///   has an entry of its own, with the same path and `slots` 0, just before.
///
/// So a file of another kind named like a companion (`data.gate` next to `data`, `data.1`) is
/// taken for one.
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
///
/// // A slots lock is one entry, whatever its files.
/// let pool = Lock::new("renderers").dir(&dir).slots(3);
/// let (_a, _b) = (pool.try_acquire()?, pool.try_acquire()?);
/// let entries = inspect(&dir)?;
/// let entry = entries.iter().find(|e| e.path == pool.path()).expect("listed");
/// assert_eq!(entry.holders, [std::process::id(); 2]); // one per held slot
/// assert!(entry.slots >= 2);
/// assert!(!entries.iter().any(|e| e.path.to_string_lossy().ends_with(".gate")));
/// # Ok::<(), lockmacro_runtime::Error>(())
/// ```
pub fn inspect(dir: &Path) -> Result<Vec<Entry>, Error> {
    let list_error = |e| Error::io("*", dir, "list lock directory", e);
    let mut names = Vec::new();
    for item in std::fs::read_dir(dir).map_err(list_error)? {
        let item = item.map_err(list_error)?;
        // Skips what is not a regular file without opening it (a FIFO, a directory, a link).
        if item.file_type().is_ok_and(|t| t.is_file()) {
            names.push(item.file_name());
        }
    }
    let present: HashSet<&OsString> = names.iter().collect();
    let has =
        |base: &str, suffix: &str| present.contains(&OsString::from(format!("{base}{suffix}")));
    // A slots lock's base name: `<base>.1` is there.
    let slots_of = |base: &str| has(base, ".1");
    let mut entries = Vec::new();
    // Slot files per base name: (number, entry of the file, its modification time).
    let mut slots: BTreeMap<String, Vec<(u32, Entry, Option<SystemTime>)>> = BTreeMap::new();
    for name in &names {
        let path = dir.join(name);
        match kind(name, has, slots_of) {
            Kind::Companion => {}
            Kind::Slot(base, k) => {
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                if let Ok(Some(entry)) = look_at(path) {
                    slots.entry(base).or_default().push((k, entry, modified));
                }
            }
            Kind::Lock => {
                if let Ok(Some(entry)) = look_at(path) {
                    entries.push(entry);
                }
            }
        }
    }
    for (base, mut files) in slots {
        files.sort_by_key(|(k, ..)| *k);
        let name = files.iter().find_map(|(_, e, _)| e.name.clone());
        let recorded_pid = files
            .iter()
            .filter(|(_, e, _)| e.recorded_pid.is_some())
            .max_by_key(|(_, _, modified)| *modified)
            .and_then(|(_, e, _)| e.recorded_pid);
        let mut holders: Vec<u32> = files
            .iter()
            .flat_map(|(_, e, _)| e.holders.iter().copied())
            .collect();
        holders.sort_unstable();
        entries.push(Entry {
            path: dir.join(base),
            name,
            recorded_pid,
            holders,
            shared: false,
            slots: files.iter().map(|(k, ..)| *k).max().unwrap_or(0),
        });
    }
    entries.sort_by(|a, b| (&a.path, a.slots).cmp(&(&b.path, b.slots)));
    Ok(entries)
}

/// What a file in the listing is to `inspect`.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// A lock file (or a file of unknown use, which is listed the same way).
    Lock,
    /// The gate or state of a lock that is listed.
    Companion,
    /// Slot `k` of the slots lock `<base>`.
    Slot(String, u32),
}

/// `has(base, suffix)`: the file `<base><suffix>` is in the listing; `slots_of(base)`: `<base>`
/// is a slots lock. A name that is not UTF-8 is a lock file (lockmacro's names are ASCII).
fn kind(
    name: &OsString,
    has: impl Fn(&str, &str) -> bool,
    slots_of: impl Fn(&str) -> bool,
) -> Kind {
    let Some((base, suffix)) = name.to_str().and_then(|n| n.rsplit_once('.')) else {
        return Kind::Lock;
    };
    if base.is_empty() {
        return Kind::Lock;
    }
    match suffix {
        "gate" | "state" if has(base, "") || slots_of(base) => Kind::Companion,
        _ => match slot_number(suffix) {
            Some(k) if slots_of(base) => Kind::Slot(base.to_owned(), k),
            _ => Kind::Lock,
        },
    }
}

/// `1`, `2`, ... as the slot files are numbered (no sign, no leading zero).
fn slot_number(suffix: &str) -> Option<u32> {
    let plain = !suffix.is_empty()
        && !suffix.starts_with('0')
        && suffix.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| suffix.parse().ok()).flatten()
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
        slots: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lock;

    fn fresh_dir(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lockmacro-inspect-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn file_names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                let name = e.path.file_name().unwrap().to_string_lossy().into_owned();
                format!("{name}/{}", e.slots)
            })
            .collect()
    }

    #[test]
    fn names_of_companions() {
        let listed = [
            "a", "a.gate", "a.state", "p.1", "p.2", "p.gate", "o.gate", "o.7", "z.01",
        ];
        let has = |base: &str, suffix: &str| listed.contains(&format!("{base}{suffix}").as_str());
        let slots_of = |base: &str| has(base, ".1");
        let kind_of = |name: &str| kind(&OsString::from(name), has, slots_of);
        assert_eq!(kind_of("a"), Kind::Lock);
        assert_eq!(kind_of("a.gate"), Kind::Companion);
        assert_eq!(kind_of("a.state"), Kind::Companion);
        assert_eq!(kind_of("p.1"), Kind::Slot("p".into(), 1));
        assert_eq!(kind_of("p.2"), Kind::Slot("p".into(), 2));
        assert_eq!(kind_of("p.gate"), Kind::Companion); // a slots lock's gate
        assert_eq!(kind_of("o.gate"), Kind::Lock); // its lock is gone
        assert_eq!(kind_of("o.7"), Kind::Lock); // no `o.1`: not slots
        assert_eq!(kind_of("z.01"), Kind::Lock);
        assert_eq!(kind_of(".gate"), Kind::Lock);
        assert_eq!(slot_number("12"), Some(12));
        for bad in ["", "0", "01", "+1", "1a", "99999999999"] {
            assert_eq!(slot_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_lock_hides_its_gate_and_state() {
        let dir = fresh_dir("companions");
        let lock = Lock::new("fenced").dir(&dir).fencing();
        let guard = lock.try_acquire().unwrap();
        let state = PathBuf::from(format!("{}.state", lock.path().display()));
        assert!(
            state.exists(),
            "fencing keeps its state beside the lock file"
        );
        let gate = PathBuf::from(format!("{}.gate", lock.path().display()));
        std::fs::write(&gate, "").unwrap(); // as a waiter would have left it
        let entries = inspect(&dir).unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].path, lock.path());
        assert_eq!(entries[0].name.as_deref(), Some("fenced"));
        assert_eq!(entries[0].holders, [std::process::id()]);
        assert_eq!((entries[0].shared, entries[0].slots), (false, 0));
        drop(guard);

        // Without their lock file, they are files of their own.
        std::fs::remove_file(lock.path()).unwrap();
        let entries = inspect(&dir).unwrap();
        let mut paths: Vec<&Path> = entries.iter().map(|e| e.path.as_path()).collect();
        paths.sort();
        let mut expected = [gate.as_path(), state.as_path()];
        expected.sort();
        assert_eq!(paths, expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_slots_lock_is_one_entry_with_every_holder() {
        let dir = fresh_dir("slots");
        let pool = Lock::new("pool").dir(&dir).slots(3);
        let first = pool.try_acquire().unwrap();
        let second = pool.try_acquire().unwrap();
        std::fs::write(format!("{}.gate", pool.path().display()), "").unwrap();
        // A plain lock of the same name is another lock, listed apart; and a shared one.
        let plain = Lock::new("pool").dir(&dir).shared();
        let plain_guard = plain.try_acquire().unwrap();
        assert_eq!(plain.path(), pool.path());
        let entries = inspect(&dir).unwrap();
        assert_eq!(
            file_names(&entries),
            [
                format!("{}/0", pool.path().file_name().unwrap().to_string_lossy()),
                // Slot files are made as slots are first taken: two so far, of three.
                format!("{}/2", pool.path().file_name().unwrap().to_string_lossy()),
            ],
            "{entries:?}"
        );
        let me = std::process::id();
        assert_eq!(entries[0].holders, [me]);
        assert!(entries[0].shared);
        let slots = &entries[1];
        assert_eq!(slots.path, pool.path());
        assert_eq!(slots.name.as_deref(), Some("pool"));
        assert_eq!(slots.holders, [me, me]);
        assert_eq!(slots.holders, pool.holders().unwrap());
        assert_eq!(slots.recorded_pid, Some(me));
        assert!(!slots.shared);
        drop((first, second, plain_guard));
        let entries = inspect(&dir).unwrap();
        assert!(entries.iter().all(|e| e.holders.is_empty()), "{entries:?}");
        assert_eq!(entries.len(), 2, "{entries:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
