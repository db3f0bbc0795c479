//! The critical-section checker: an oracle that does not trust the lock. Every critical section
//! of every test child (the stress runs, the readers and writers, PostgreSQL, the torture workers
//! and the foreign `flock(1)` lockers they run) enters and leaves it; the tests create it and
//! read its counter. Shared by the tests (through `support`) and by `lm-child` (included with
//! `#[path]`).
//!
//! An oracle is a directory holding a directory `S` and a file `counter`. An exclusive holder
//! removes `S` on entry (`rmdir`, atomic: it fails if `S` has entries, that is shared holders
//! inside, or is gone, that is another exclusive holder inside) and creates it again on leaving
//! (which fails if somebody else already did). A shared holder creates `S/<unique>` on entry
//! (which fails if `S` is gone: an exclusive holder inside) and removes it on leaving. `S`
//! missing and `S` non-empty exclude each other, so whichever of two overlapping critical
//! sections starts second fails at its start: every overlap is seen, and nothing else is.
//! Exclusive holders also increment the counter with a read, a yield and a write in place
//! ([`Oracle::bump`]): two holders at once lose an increment, so the final count is a second,
//! independent witness.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes shared marks unique within a process (threads, and children forked from it, which
/// also differ by PID).
static MARKS: AtomicU64 = AtomicU64::new(0);

/// An oracle directory.
#[derive(Debug, Clone)]
pub struct Oracle {
    dir: PathBuf,
}

/// One critical section inside an oracle, from entry to [`Inside::leave`].
#[derive(Debug)]
pub struct Inside {
    dir: PathBuf,
    /// `Some(mark)` for a shared holder.
    mark: Option<PathBuf>,
}

impl Oracle {
    /// Creates the oracle in `dir` (made if missing): nobody inside, counter 0.
    pub fn create(dir: &Path) -> Oracle {
        fs::create_dir_all(dir.join("S"))
            .unwrap_or_else(|e| panic!("oracle: create {}/S: {e}", dir.display()));
        fs::write(dir.join("counter"), format!("{:020}\n", 0))
            .unwrap_or_else(|e| panic!("oracle: create {}/counter: {e}", dir.display()));
        Oracle::at(dir)
    }

    /// The oracle someone created in `dir`.
    pub fn at(dir: &Path) -> Oracle {
        Oracle {
            dir: dir.to_owned(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Enters a critical section as `who` (a name for the messages); `Err` describes the
    /// overlap it saw.
    pub fn enter(&self, shared: bool, who: &str) -> Result<Inside, String> {
        let s = self.dir.join("S");
        if shared {
            let n = MARKS.fetch_add(1, Ordering::Relaxed);
            let mark = s.join(format!("{who}-{n}"));
            match OpenOptions::new().write(true).create_new(true).open(&mark) {
                Ok(_) => Ok(Inside {
                    dir: self.dir.clone(),
                    mark: Some(mark),
                }),
                Err(e) if e.kind() == ErrorKind::NotFound => Err(format!(
                    "shared {who} entered while an exclusive holder is inside ({})",
                    self.last_exclusive()
                )),
                Err(e) => panic!("oracle: create {}: {e}", mark.display()),
            }
        } else {
            match fs::remove_dir(&s) {
                Ok(()) => {
                    self.note_exclusive(who);
                    Ok(Inside {
                        dir: self.dir.clone(),
                        mark: None,
                    })
                }
                Err(e) if e.kind() == ErrorKind::NotFound => Err(format!(
                    "exclusive {who} entered while another exclusive holder is inside ({})",
                    self.last_exclusive()
                )),
                Err(_) => Err(format!(
                    "exclusive {who} entered while shared holders are inside: {:?}",
                    self.marks()
                )),
            }
        }
    }

    /// The counter's value (`None` if it is not a number: torn by concurrent writers).
    pub fn count(&self) -> Option<u64> {
        let path = self.dir.join("counter");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("oracle: read {}: {e}", path.display()));
        text.trim().parse().ok()
    }

    /// Exclusive holders: increments the counter with a read, a yield (so that without a lock
    /// another process gets to run in the middle) and a write in place (20 digits; never
    /// truncated, see [`Oracle::note_exclusive`]). False if the counter was not a number (a torn
    /// read of a concurrent write); it then starts again from 0.
    pub fn bump(&self) -> bool {
        let path = self.dir.join("counter");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("oracle: read {}: {e}", path.display()));
        let read = text.trim().parse::<u64>();
        std::thread::yield_now();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(format!("{:020}\n", read.as_ref().map_or(0, |v| v + 1)).as_bytes())
            })
            .unwrap_or_else(|e| panic!("oracle: write {}: {e}", path.display()));
        read.is_ok()
    }

    /// The shared holders' marks in `S` now (empty if `S` is gone).
    pub fn marks(&self) -> Vec<String> {
        fs::read_dir(self.dir.join("S"))
            .map(|entries| {
                entries
                    .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when nobody is inside and nobody left a mark behind (`S` exists and is empty).
    pub fn is_idle(&self) -> bool {
        self.dir.join("S").is_dir() && self.marks().is_empty()
    }

    /// Records the exclusive holder for the messages (written in place: truncating a file and
    /// writing it again makes ext4 flush it on close, which would slow every section down).
    fn note_exclusive(&self, who: &str) {
        let path = self.dir.join("who");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap_or_else(|e| panic!("oracle: open {}: {e}", path.display()));
        let _ = file.write_all_at(format!("{who:<40}\n").as_bytes(), 0);
    }

    fn last_exclusive(&self) -> String {
        let who = fs::read_to_string(self.dir.join("who")).unwrap_or_default();
        format!("last exclusive: {}", who.trim())
    }
}

impl Inside {
    /// Shared holders: how many other shared holders are inside now.
    pub fn others(&self) -> usize {
        Oracle::at(&self.dir).marks().len().saturating_sub(1)
    }

    /// Leaves the critical section; `Err` describes the overlap it saw (its mark removed, or `S`
    /// re-created, by somebody else).
    pub fn leave(self, who: &str) -> Result<(), String> {
        match self.mark {
            Some(mark) => fs::remove_file(&mark)
                .map_err(|e| format!("shared {who}: own mark {} vanished: {e}", mark.display())),
            None => fs::create_dir(self.dir.join("S"))
                .map_err(|e| format!("exclusive {who}: S re-created by someone else: {e}")),
        }
    }
}
