//! Noticing, while a lock is held, that its file was removed or replaced.
//!
//! A holder keeps its kernel lock on the file it opened. If that file is removed (a temp
//! cleaner, `rm -rf /run/lock/*`, an operator) or another file is renamed over it, the next
//! process creates or opens whatever is at the path now and gets in: two holders. Only the
//! holder can notice, and it must notice promptly.
//!
//! On Linux one thread per process (`lockmacro-watch`) blocks on an inotify descriptor that
//! watches every lock file this process keeps open (`IN_ATTRIB`: its link count dropped, by an
//! unlink or a rename over it; `IN_MOVE_SELF`: renamed away) and their directories (names
//! created, removed or moved; the directory itself moved or removed). The watches are set once
//! per open file, not per acquisition, once the file's first hold has lasted [`ARM_AFTER`]
//! (then the file is checked at once: a removal before that is lost, never put back). On an
//! event it checks each held lock as `LockGuard::check` does (the path still names the held
//! file, and did all along: a file moved away and back while another was at the path is lost)
//! and, if not:
//!
//! - **Re-established, nothing lost**, when that is provably safe: nothing is at the path, and
//!   the watch saw no other file created under the name since ours left it. The holder makes an
//!   unnamed file in the directory (`O_TMPFILE`), locks it, writes its PID, and only then gives
//!   it the name (`linkat`, which fails if the name exists). At no instant is an unlocked file
//!   at the path, so nobody can have held it; had anyone created one in between, the `linkat`
//!   or the watch would show it.
//! - **Lost** otherwise: the lock's `OnLost` policy applies (by default one line on stderr and
//!   exit status [`LOST_EXIT_CODE`](crate::LOST_EXIT_CODE); with `OnLost::Report` the guard
//!   reports it).
//!
//! The bound: events are delivered as the change happens, so the holder reacts as soon as its
//! watch thread is scheduled (microseconds on an idle machine). A second process that gets in
//! within that window is caught: the holder then finds the path taken and declares the lock
//! lost. Not watched: renames of directories *above* the lock directory, and changes made while
//! the inotify queue overflowed (then a loss is declared, never re-established).
//!
//! Elsewhere (other systems, or no inotify) nothing watches: `LockGuard::check` still looks at
//! every call, and a loss it finds is lost (never re-established).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::dir::Place;
use crate::request::Share;

/// What a check of a held lock found.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Still ours (or not held at all).
    Fine,
    /// Lost, for this reason; `exit`: a holder asked for the process to exit.
    Lost { reason: String, exit: bool },
}

/// What the watch needs of a lock file's slot. The slot (`super::slot`) starts and stops
/// watches, so the watch knows it only through this trait and stays below it.
pub(crate) trait Watched: Send + Sync + 'static {
    /// The process the slot belongs to.
    fn pid(&self) -> u32;
    fn place(&self) -> &Place;
    /// What the watcher saw of the slot's file.
    fn seen(&self) -> &SlotWatch;
    /// Checks the held file (see `Slot::verify`); `drain` reads the events queued so far.
    fn verify(self: Arc<Self>, drain: &mut dyn FnMut()) -> Verdict;
    /// Starts watching the held file, if still held and not watched yet; true if it did.
    fn start_watch(self: Arc<Self>) -> bool;
    /// Whether its file is watched now.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn is_watched(&self) -> bool;
}

type Slot = dyn Watched;

/// A lock taken again on a new file at the path (see `reestablish`).
#[derive(Debug)]
pub(crate) struct Reestablished {
    pub(crate) file: super::fork::LockFile,
    pub(crate) memos: bool,
    pub(crate) watching: Option<Watching>,
}

/// What the watcher saw of one slot's current file and its name, in the order the kernel
/// reported it.
#[derive(Debug)]
pub(crate) struct SlotWatch {
    /// Files created (or moved) under the lock file's name.
    creations: AtomicU64,
    /// `creations` when the current file was first seen to (perhaps) leave the path.
    at_loss: AtomicU64,
    /// Since the current file is watched, the event queue overflowed, or the directory itself
    /// was moved or removed: a loss cannot be proven harmless.
    unsure: AtomicBool,
    /// The watched directory's device and inode.
    dir: (AtomicU64, AtomicU64),
}

const NONE: u64 = u64::MAX;

impl Default for SlotWatch {
    fn default() -> Self {
        SlotWatch {
            creations: AtomicU64::new(0),
            at_loss: AtomicU64::new(NONE),
            unsure: AtomicBool::new(false),
            dir: (AtomicU64::new(NONE), AtomicU64::new(NONE)),
        }
    }
}

impl SlotWatch {
    /// A new file is watched: what was seen of the previous one no longer matters.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn new_file(&self) {
        self.at_loss.store(NONE, Ordering::SeqCst);
        self.unsure.store(false, Ordering::SeqCst);
    }

    /// A suspected loss turned out not to be one.
    pub(crate) fn settled(&self) {
        self.at_loss.store(NONE, Ordering::SeqCst);
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn suspect(&self) {
        let now = self.creations.load(Ordering::SeqCst);
        let _ = self
            .at_loss
            .compare_exchange(NONE, now, Ordering::SeqCst, Ordering::SeqCst);
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn created(&self) {
        self.creations.fetch_add(1, Ordering::SeqCst);
    }

    /// True if, while the file was (perhaps) away from its path, the watch saw another file
    /// created under the name, or could not see everything: then someone may have held the lock
    /// meanwhile, even if the path names the file again now (moved away and back).
    pub(crate) fn away_and_back(&self) -> bool {
        let at = self.at_loss.load(Ordering::SeqCst);
        at != NONE
            && (self.unsure.load(Ordering::SeqCst) || self.creations.load(Ordering::SeqCst) > at)
    }

    /// Files created under the name since the file left it, if that moment was seen.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn created_since_loss(&self) -> Option<u64> {
        let at = self.at_loss.load(Ordering::SeqCst);
        if at == NONE || self.unsure.load(Ordering::SeqCst) {
            return None;
        }
        Some(self.creations.load(Ordering::SeqCst) - at)
    }
}

/// Checks the held lock of `slot` now (see `LockGuard::check`).
pub(crate) fn check(slot: &Arc<Slot>) -> Verdict {
    imp::check(slot)
}

/// Ends the process for a lost lock (the `OnLost::Exit` policy).
pub(crate) fn exit_lost(slot: &Slot, reason: String) -> ! {
    let err = crate::error::Error::Lost {
        name: slot.place().name.clone(),
        at: crate::error::Location::File(slot.place().path.clone()),
        reason,
    };
    eprintln!(
        "{}: {}",
        crate::error::program_name(),
        crate::error::one_line(&err)
    );
    std::process::exit(crate::lost::LOST_EXIT_CODE)
}

pub(crate) use imp::{arm, hold_begins, reestablish, unwatch, watch, Watching};

/// How long a lock file's first hold lasts before it is watched. A process that has set an
/// inotify watch waits at its exit for the kernel to free it (a grace period: milliseconds,
/// longer than the whole run of a small program), so a program that holds its lock for less
/// than this never pays it. A removal within this time of the first hold is found when the watch starts,
/// and the lock is then lost, never put back (nothing proves the gap empty).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) const ARM_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::BTreeMap;
    use std::fs::File;
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;
    use std::path::Path;
    use std::sync::atomic::{AtomicPtr, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard, Weak};
    use std::time::Instant;

    use rustix::fd::OwnedFd;
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

    use super::Verdict;
    use super::{Share, Slot};
    use crate::file::fork::LockFile;
    use crate::file::os;

    /// One process's inotify descriptor, and which slots each watch serves.
    struct Watcher {
        pid: u32,
        fd: OwnedFd,
        table: Mutex<Table>,
        /// Wakes the thread when a slot is to be watched (an eventfd).
        wake: OwnedFd,
        /// Slots to watch once their hold has lasted [`super::ARM_AFTER`].
        arming: Mutex<Vec<(Instant, Weak<Slot>)>>,
    }

    #[derive(Default)]
    struct Table {
        files: BTreeMap<i32, Vec<Weak<Slot>>>,
        dirs: BTreeMap<i32, Vec<Weak<Slot>>>,
        /// Slots an event concerned that are still to be checked.
        pending: Vec<Weak<Slot>>,
    }

    /// A slot's watches, to be removed with [`unwatch`].
    #[derive(Debug)]
    pub(crate) struct Watching {
        slot: Weak<Slot>,
        file: i32,
        dir: i32,
    }

    const FILE_EVENTS: WatchFlags = WatchFlags::ATTRIB
        .union(WatchFlags::MOVE_SELF)
        .union(WatchFlags::DELETE_SELF);
    const DIR_EVENTS: WatchFlags = WatchFlags::CREATE
        .union(WatchFlags::MOVED_TO)
        .union(WatchFlags::DELETE)
        .union(WatchFlags::MOVED_FROM)
        .union(WatchFlags::MOVE_SELF)
        .union(WatchFlags::DELETE_SELF)
        .union(WatchFlags::ONLYDIR);

    fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
        table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    static CURRENT: AtomicPtr<Watcher> = AtomicPtr::new(std::ptr::null_mut());

    /// This process's watcher if it has one already (none in a process that has not yet held
    /// a lock for [`super::ARM_AFTER`]).
    fn started() -> Option<&'static Watcher> {
        // SAFETY: published watchers are leaked, never freed.
        let watcher = unsafe { CURRENT.load(Ordering::Acquire).as_ref() }?;
        (watcher.pid == crate::pid::current()).then_some(watcher)
    }

    /// This process's watcher, started on first use; `None` if inotify is unavailable.
    fn watcher() -> Option<&'static Watcher> {
        let pid = crate::pid::current();
        let current = CURRENT.load(Ordering::Acquire);
        // SAFETY: published watchers are leaked, never freed.
        if let Some(watcher) = unsafe { current.as_ref() } {
            if watcher.pid == pid {
                return Some(watcher);
            }
        }
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok()?;
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .ok()?;
        let fresh: *mut Watcher = Box::leak(Box::new(Watcher {
            pid,
            fd,
            table: Mutex::default(),
            wake,
            arming: Mutex::default(),
        }));
        match CURRENT.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // SAFETY: just published, never freed.
                let watcher: &'static Watcher = unsafe { &*fresh };
                // A small stack: the thread only reads events and checks files.
                let _ = std::thread::Builder::new()
                    .name("lockmacro-watch".into())
                    .stack_size(128 * 1024)
                    .spawn(move || watcher.run());
                Some(watcher)
            }
            Err(theirs) => {
                // SAFETY: ours was never published (its descriptor closes with it).
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: as above.
                unsafe { theirs.as_ref() }.filter(|w| w.pid == pid)
            }
        }
    }

    /// Has `slot` watched once its hold has lasted [`super::ARM_AFTER`] (see the module docs).
    pub(crate) fn arm(slot: &Arc<Slot>) {
        let Some(watcher) = watcher() else { return };
        let due = Instant::now() + super::ARM_AFTER;
        let mut arming = watcher
            .arming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = arming.is_empty();
        arming.push((due, Arc::downgrade(slot)));
        drop(arming);
        // The thread sleeps until the earliest watch due, which is before this one (due times
        // grow; two threads arming at once may push theirs in either order, which delays the
        // earlier-due one by that instant at most) unless there was none: then it sleeps
        // without end and must be woken. Not waking it otherwise spares a cycle that opens a new
        // file each time (`cleanup`) a system call and a wake-up of the thread.
        if first {
            let _ = rustix::io::write(&watcher.wake, &1u64.to_ne_bytes());
        }
    }

    /// Watches `file` (open in `slot`, just found at its path) and its directory `dir`.
    pub(crate) fn watch(slot: &Arc<Slot>, file: &File, dir: &Path) -> Option<Watching> {
        use rustix::fs::{Mode, OFlags};
        let watcher = watcher()?;
        let dir = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        #[allow(clippy::unnecessary_cast)]
        let dir_id = rustix::fs::fstat(&dir)
            .ok()
            .map(|st| (st.st_dev as u64, st.st_ino as u64))?;
        let mut table = lock(&watcher.table);
        let file_wd = add(
            watcher,
            format!("/proc/self/fd/{}", file.as_raw_fd()),
            FILE_EVENTS,
        )?;
        let dir_wd = match add(
            watcher,
            format!("/proc/self/fd/{}", dir.as_raw_fd()),
            DIR_EVENTS,
        ) {
            Some(wd) => wd,
            None => {
                remove(watcher, &mut table.files, file_wd, None);
                return None;
            }
        };
        slot.seen().dir.0.store(dir_id.0, Ordering::SeqCst);
        slot.seen().dir.1.store(dir_id.1, Ordering::SeqCst);
        // What happened before this watch (a previous file's events) is noted first, so that
        // none of it counts for this file.
        let seen = watcher.drain(&mut table);
        table
            .files
            .entry(file_wd)
            .or_default()
            .push(Arc::downgrade(slot));
        table
            .dirs
            .entry(dir_wd)
            .or_default()
            .push(Arc::downgrade(slot));
        slot.seen().new_file();
        drop(table);
        drop(seen);
        Some(Watching {
            slot: Arc::downgrade(slot),
            file: file_wd,
            dir: dir_wd,
        })
    }

    /// Adds a watch on `path` (for an open file, `/proc/self/fd/N`: exactly that file).
    fn add(watcher: &Watcher, path: impl rustix::path::Arg, events: WatchFlags) -> Option<i32> {
        inotify::add_watch(&watcher.fd, path, events).ok()
    }

    /// Removes one use of the watch `wd` by `slot` (a slot can use a directory's watch twice
    /// for a moment, while it replaces its file), and the watch itself once nobody uses it.
    fn remove(
        watcher: &Watcher,
        map: &mut BTreeMap<i32, Vec<Weak<Slot>>>,
        wd: i32,
        slot: Option<&Weak<Slot>>,
    ) {
        let users = map.entry(wd).or_default();
        if let Some(at) = slot.and_then(|slot| users.iter().position(|s| s.ptr_eq(slot))) {
            users.swap_remove(at);
        }
        users.retain(|s| s.strong_count() > 0);
        if users.is_empty() {
            map.remove(&wd);
            // Fails harmlessly if the kernel already dropped it (the file is gone).
            let _ = inotify::remove_watch(&watcher.fd, wd);
        }
    }

    pub(crate) fn unwatch(watching: Watching) {
        let Some(watcher) = watcher() else { return };
        // A slot's watches are its process's; a forked child's copy of them is not ours.
        if watching
            .slot
            .upgrade()
            .is_some_and(|slot| slot.pid() != watcher.pid)
        {
            return;
        }
        let mut table = lock(&watcher.table);
        let table = &mut *table;
        remove(
            watcher,
            &mut table.files,
            watching.file,
            Some(&watching.slot),
        );
        remove(watcher, &mut table.dirs, watching.dir, Some(&watching.slot));
    }

    impl Watcher {
        fn run(&self) {
            loop {
                let next = self.arm_due();
                let mut poll = [
                    rustix::event::PollFd::new(&self.fd, rustix::event::PollFlags::IN),
                    rustix::event::PollFd::new(&self.wake, rustix::event::PollFlags::IN),
                ];
                let timeout = next.map(|at| {
                    let left = at.saturating_duration_since(Instant::now());
                    rustix::event::Timespec {
                        tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                        tv_nsec: i64::from(left.subsec_nanos()),
                    }
                });
                match rustix::event::poll(&mut poll, timeout.as_ref()) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(_) => return,
                }
                let mut count = [0u8; 8];
                let _ = rustix::io::read(&self.wake, &mut count);
                let (mut todo, seen) = {
                    let mut table = lock(&self.table);
                    let seen = self.drain(&mut table);
                    (std::mem::take(&mut table.pending), seen)
                };
                drop(seen);
                while let Some(slot) = todo.pop() {
                    if let Some(slot) = slot.upgrade() {
                        self.verify(&slot);
                    }
                    if todo.is_empty() {
                        todo = std::mem::take(&mut lock(&self.table).pending);
                    }
                }
            }
        }

        /// Starts the watches that are due (checking each slot at once: what happened before
        /// its watch cannot be proven harmless, so a file already gone is lost); returns when
        /// the next one is due.
        fn arm_due(&self) -> Option<Instant> {
            let now = Instant::now();
            let due: Vec<Weak<Slot>> = {
                let mut arming = self
                    .arming
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let (due, later): (Vec<_>, Vec<_>) =
                    arming.drain(..).partition(|(at, _)| *at <= now);
                *arming = later;
                due.into_iter().map(|(_, slot)| slot).collect()
            };
            for slot in due {
                if let Some(slot) = slot.upgrade() {
                    if Arc::clone(&slot).start_watch() {
                        self.verify(&slot);
                    }
                }
            }
            self.arming
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(at, _)| *at)
                .min()
        }

        /// Verifies `slot`, applying the exit policy if it is lost and a holder asked for it.
        fn verify(&self, slot: &Arc<Slot>) -> Verdict {
            let verdict = Arc::clone(slot).verify(&mut || self.drain_now());
            if let Verdict::Lost { reason, exit: true } = verdict {
                super::exit_lost(&**slot, reason);
            }
            verdict
        }

        /// [`drain`](Watcher::drain), with the table locked only for it.
        fn drain_now(&self) {
            let seen = self.drain(&mut lock(&self.table));
            drop(seen);
        }

        /// Reads every event queued so far and notes what it says (in order) on the slots
        /// concerned, which it adds to `pending`. Returns the slots it looked at: the caller
        /// drops them once the table is unlocked (dropping the last one runs `Slot::drop`,
        /// which takes the table's lock).
        #[must_use]
        fn drain(&self, table: &mut Table) -> Vec<Arc<Slot>> {
            let mut keep = Vec::new();
            let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
            let mut reader = inotify::Reader::new(&self.fd, &mut buf);
            loop {
                let event = match reader.next() {
                    Ok(event) => event,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => return keep, // EAGAIN: nothing more queued
                };
                let (wd, flags) = (event.wd(), event.events());
                let name = event.file_name().map(|n| n.to_bytes().to_vec());
                if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                    for slot in table
                        .files
                        .values()
                        .flatten()
                        .chain(table.dirs.values().flatten())
                    {
                        if let Some(s) = slot.upgrade() {
                            s.seen().unsure.store(true, Ordering::SeqCst);
                            keep.push(s);
                        }
                        table.pending.push(slot.clone());
                    }
                    continue;
                }
                if let Some(slots) = table.files.get(&wd) {
                    for slot in slots {
                        if let Some(s) = slot.upgrade() {
                            s.seen().suspect();
                            keep.push(s);
                        }
                    }
                    table.pending.extend(slots.iter().cloned());
                    if flags.contains(ReadFlags::IGNORED) {
                        table.files.remove(&wd);
                    }
                    continue;
                }
                let Some(slots) = table.dirs.get(&wd) else {
                    continue;
                };
                let whole_dir = flags.intersects(ReadFlags::MOVE_SELF | ReadFlags::DELETE_SELF);
                for slot in slots {
                    let Some(s) = slot.upgrade() else { continue };
                    let ours = name.as_deref().is_some_and(|name| {
                        s.place().path.file_name().map(|n| n.as_encoded_bytes()) == Some(name)
                    });
                    if !ours && !whole_dir {
                        continue;
                    }
                    if whole_dir {
                        s.seen().unsure.store(true, Ordering::SeqCst);
                        s.seen().suspect();
                    } else if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                        s.seen().created();
                    } else {
                        s.seen().suspect();
                    }
                    keep.push(s);
                    table.pending.push(slot.clone());
                }
                if flags.contains(ReadFlags::IGNORED) {
                    table.dirs.remove(&wd);
                }
            }
        }
    }

    /// A hold begins with a full path lookup about to be made: what the watch saw before it
    /// (between holds) is noted and then forgotten, so that only what happens from here on can
    /// make this hold lost.
    pub(crate) fn hold_begins(slot: &Slot) {
        // Events concern only watched files; a file not watched now cannot become watched
        // before this hold is recorded (a watch starts only on a held file).
        if slot.is_watched() {
            if let Some(watcher) = started() {
                watcher.drain_now();
            }
        }
        slot.seen().settled();
    }

    pub(crate) fn check(slot: &Arc<Slot>) -> Verdict {
        match watcher() {
            Some(watcher) => watcher.verify(slot), // which reads the events first
            None => Arc::clone(slot).verify(&mut || {}),
        }
    }

    /// A new file at the path, locked like the one that was lost (see the module docs).
    pub(crate) fn reestablish(
        slot: &Arc<Slot>,
        share: Share,
        drain: &mut dyn FnMut(),
    ) -> Result<super::Reestablished, String> {
        use rustix::fs::{AtFlags, Mode, OFlags, CWD};

        let place = slot.place();
        let lost = |why: &str| format!("the lock file was removed or replaced while held{why}");
        drain();
        let Some(created) = slot.seen().created_since_loss() else {
            return Err(lost(""));
        };
        if created > 0 {
            return Err(lost(", and another file was created at its path"));
        }
        match rustix::fs::statat(CWD, &place.path, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => {}
            Ok(_) => return Err(lost(" by another file")),
            Err(e) => return Err(lost(&format!(" (its path cannot be looked up: {e})"))),
        }
        let dir = crate::file::dir::open(&place.name, &place.dir, place.kind)
            .map_err(|e| lost(&format!(" and its directory cannot be used again: {e}")))?;
        // Only in the very directory watched: what the watch saw is about that one.
        #[allow(clippy::unnecessary_cast)]
        let same = rustix::fs::fstat(&dir.fd).is_ok_and(|st| {
            (st.st_dev as u64, st.st_ino as u64)
                == (
                    slot.seen().dir.0.load(Ordering::SeqCst),
                    slot.seen().dir.1.load(Ordering::SeqCst),
                )
        });
        if !same {
            return Err(lost(", and its directory is not the one it was in"));
        }
        let file = LockFile::open_with(|| {
            rustix::fs::openat(
                &dir.fd,
                ".",
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(dir.file_mode),
            )
            .map(File::from)
        })
        .map_err(|e| lost(&format!(", and no new one can be made there ({e})")))?;
        if !os::try_lock(&file, share).unwrap_or(false) {
            return Err(lost(", and the new file could not be locked"));
        }
        os::write_record(&file, crate::pid::current(), &place.name);
        let name = place.path.file_name().unwrap_or_default();
        let source = format!("/proc/self/fd/{}", file.as_raw_fd());
        match rustix::fs::linkat(CWD, &source, &dir.fd, name, AtFlags::SYMLINK_FOLLOW) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                return Err(lost(", and another process created a new one first"))
            }
            Err(e) => return Err(lost(&format!(", and no new one can be linked there ({e})"))),
        }
        drain();
        // Ours is one creation; any other means someone made (and perhaps held) a file there.
        if slot.seen().created_since_loss() != Some(1) {
            return Err(lost(
                ", and another process used a new one at its path meanwhile",
            ));
        }
        let watching = watch(slot, &file, &place.dir);
        Ok(super::Reestablished {
            file,
            memos: dir.memos,
            watching,
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::fs::File;
    use std::sync::Arc;

    use super::{Share, Slot, Verdict};

    #[derive(Debug)]
    pub(crate) struct Watching;

    pub(crate) fn watch(
        _slot: &Arc<Slot>,
        _file: &File,
        _dir: &std::path::Path,
    ) -> Option<Watching> {
        None
    }

    pub(crate) fn unwatch(_watching: Watching) {}

    pub(crate) fn arm(_slot: &Arc<Slot>) {}

    pub(crate) fn hold_begins(_slot: &Slot) {}

    pub(crate) fn check(slot: &Arc<Slot>) -> Verdict {
        Arc::clone(slot).verify(&mut || {})
    }

    pub(crate) fn reestablish(
        _slot: &Arc<Slot>,
        _share: Share,
        _drain: &mut dyn FnMut(),
    ) -> Result<super::Reestablished, String> {
        Err("the lock file was removed or replaced while held".to_owned())
    }
}
