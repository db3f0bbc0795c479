//! The file backend: an flock(2) lock on one file per lock name, in a checked directory.
//!
//! It takes a [`Spec`] and returns a [`Hold`]; it never sees `Lock` or `LockGuard`. Inside,
//! from the top down:
//!
//! - `fair`: who goes next: the writers' gate (a waiting exclusive acquirer holds it, so new
//!   readers wait behind it) and the N slot files of `Lock::slots`, composed of acquisitions of
//!   this module;
//! - this module: one acquisition (admission among this process's threads, the kernel lock,
//!   the identity check, the PID), the release, and `holder`;
//! - `future`: the same acquisition as a future;
//! - `slot`: one lock file's state inside this process (the kept descriptor, the admission,
//!   the proxy thread for timed and async waits, what became of the file while held);
//! - `watch`: the inotify thread that notices a held file removed or replaced;
//! - `dir`: where lock files live and the rules a directory must meet; `fstype`: filesystems
//!   where flock does not work; `name`: lock name to file name;
//! - `state`: the fencing counter and last start kept beside the lock file, when asked for;
//! - `inspect`: the public listing of a directory's lock files, their names and holders;
//! - `fork`: lock descriptors a forked child must not keep; `os`: the system calls on one file.

mod dir;
pub(crate) mod fair;
mod fork;
mod fstype;
pub(crate) mod future;
mod inspect;
mod name;
mod os;
mod slot;
mod state;
mod watch;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

pub use dir::{default_dir, system_dir, DIR_ENV};
pub use fstype::ALLOW_NETWORK_FS_ENV;
pub use inspect::{inspect, Entry};

use crate::chain::Keyed;
use crate::deadline::Deadline;
use crate::error::{Error, Location};
use crate::lost::OnLost;
use crate::notice::{self, Notice};
use crate::once::OnceArc;
use crate::request::{Announce, Request, Share};
use crate::trace;
use dir::Place;
use fork::LockFile;
use os::Stamped;
use slot::{Admission, Proxied, Slot};
use watch::Verdict;

/// Whether the lock file is removed when the lock is released (`Lock::cleanup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cleanup {
    Keep,
    Remove,
}

/// A file lock as asked for: the request, and where its file is.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) request: Request,
    dir: PathBuf,
    kind: dir::Kind,
    path: Arc<PathBuf>,
    pub(crate) cleanup: Cleanup,
    /// This process's state for the lock file, shared by every `Lock` of the same path (in the
    /// process that made it; a forked child looks its own up).
    slot: OnceArc<Slot>,
    /// The lock file's path with the directory canonicalized, so that `/var/lock/x` and
    /// `/run/lock/x` (a symlink), or `a/../b`, are recognised as the same lock by the nested-call
    /// check (the call chain).
    key: OnceArc<Location>,
    /// The lock's own file, or one of its internal files (see `fair`).
    role: Role,
    /// The gate and slot files' specs, made once (see `fair`).
    companions: Companions,
}

/// The specs of a lock's internal files (see `fair`): the gate, taken shared to pass it and
/// exclusive to wait at it, and the slot files of `Lock::slots`.
#[derive(Debug)]
pub(crate) struct Files {
    pub(crate) gate_shared: Arc<Spec>,
    pub(crate) gate_exclusive: Arc<Spec>,
    pub(crate) slots: Vec<Arc<Spec>>,
}

/// What a lock file is to its lock. Internal files emit no events and no waiting notice (the
/// lock's own acquisition does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The lock file.
    Lock,
    /// A slot file of `Lock::slots`: the lock itself for its holder (watched, kept open).
    Slot,
    /// The gate, passed shared: kept open, so that passing is a lock cycle on a kept
    /// descriptor; never watched (a gate removed while held only lets a reader through).
    PassGate,
    /// The gate, held by a waiter: closed again on release (a process that waits only now and
    /// then keeps no second descriptor); never watched.
    WaitGate,
}

impl Role {
    fn quiet(self) -> bool {
        self != Role::Lock
    }

    fn watched(self) -> bool {
        matches!(self, Role::Lock | Role::Slot)
    }
}

/// A cache of [`Files`] that a changed copy of the spec does not inherit: a builder method
/// changes the copy, and the companions are made again from it.
#[derive(Debug, Default)]
struct Companions(OnceArc<Files>);

impl Clone for Companions {
    fn clone(&self) -> Self {
        Companions::default()
    }
}

/// What events show as the lock's place: its path.
impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

/// Identifies the lock file whatever the spelling of its directory (see `Spec::key`).
impl Keyed for Spec {
    fn chain_key(&self) -> Arc<Location> {
        if let Some(key) = self.key.get() {
            return key;
        }
        let Ok(dir) = std::fs::canonicalize(&self.dir) else {
            // No directory yet, so nothing can hold a lock in it yet; try again next time.
            return Arc::new(Location::File(self.path.to_path_buf()));
        };
        let name = self.path.file_name().unwrap_or_default();
        self.key
            .get_or_init(|| Arc::new(Location::File(dir.join(name))))
    }
}

/// What one attempt came to.
enum Attempt {
    Got(Hold),
    Busy,
    /// The file we locked is no longer the one at the path: open again.
    Stale,
    /// Admitted in this process, but another process holds the kernel lock; we keep the
    /// admission so that a proxy can wait in the kernel for us.
    Admitted(Arc<LockFile>, u32),
}

/// When a descriptor just opened is checked against the rules for lock files (see `Spec::open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// When it is opened, before anything can wait on it.
    AtOpen,
    /// After a try that never waits: on the `fstat` made once it is locked, or before the try
    /// returns busy.
    AfterLocking,
}

/// What an attempt does when another process holds the kernel lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfTaken {
    /// Give the admission back: `Attempt::Busy`.
    GiveUp,
    /// Keep it for a proxy to wait with: `Attempt::Admitted`.
    KeepAdmission,
}

impl Spec {
    /// The file lock `request` asks for, in `dir` (made absolute now), else `LOCKMACRO_DIR`,
    /// else the default directory.
    pub(crate) fn new(request: Request, dir: Option<PathBuf>) -> Spec {
        let (dir, kind) = dir::resolve(dir);
        let file = name::file_name(&request.name);
        Spec::placed(request, dir, kind, file.as_ref())
    }

    /// The lock file at exactly `path` (made absolute now), not named after the lock.
    pub(crate) fn at(request: Request, path: &Path) -> Spec {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        // `a/b/.` is `a/b`; a path without a last name (`/`, `a/..`) keeps its spelling and
        // fails when opened (see `open`).
        let (dir, file) = match (path.parent(), path.file_name()) {
            (Some(dir), Some(file)) => (dir.to_owned(), file.to_owned()),
            _ => (path.clone(), Default::default()),
        };
        let mut spec = Spec::placed(request, dir, dir::Kind::Exact, &file);
        if file.is_empty() {
            spec.path = Arc::new(path);
        }
        spec
    }

    fn placed(request: Request, dir: PathBuf, kind: dir::Kind, file: &std::ffi::OsStr) -> Spec {
        let path = Arc::new(dir.join(file));
        Spec {
            request,
            dir,
            kind,
            path,
            cleanup: Cleanup::Keep,
            slot: OnceArc::new(),
            key: OnceArc::new(),
            role: Role::Lock,
            companions: Companions::default(),
        }
    }

    /// An internal file of this lock: the path with `suffix` appended, same directory and
    /// rules, taken as `share`.
    fn companion(
        &self,
        suffix: &str,
        role: Role,
        share: Share,
        cleanup: Cleanup,
        on_lost: OnLost,
    ) -> Spec {
        let mut path = self.path.as_os_str().to_owned();
        path.push(suffix);
        let mut request = self.request.clone();
        request.share = share;
        request.slots = 1;
        request.announce = Announce::Quiet;
        request.on_lost = on_lost;
        Spec {
            request,
            dir: self.dir.clone(),
            kind: self.kind,
            path: Arc::new(PathBuf::from(path)),
            cleanup,
            slot: OnceArc::new(),
            key: OnceArc::new(),
            role,
            companions: Companions::default(),
        }
    }

    /// The gate (`<file>.gate`, kept, never lost with an exit: it only orders waiters) and,
    /// with `Lock::slots(n)`, the slot files `<file>.1` to `<file>.n`, which are this lock's
    /// files in every other respect (`cleanup`, `on_lost`).
    pub(crate) fn companions(&self) -> Arc<Files> {
        self.companions.0.get_or_init(|| {
            let gate = |role, share| {
                Arc::new(self.companion(".gate", role, share, Cleanup::Keep, OnLost::Report))
            };
            let n = if self.request.slots > 1 {
                self.request.slots
            } else {
                0
            };
            let slots = (1..=n)
                .map(|k| {
                    let suffix = format!(".{k}");
                    let spec = self.companion(
                        &suffix,
                        Role::Slot,
                        Share::Exclusive,
                        self.cleanup,
                        self.request.on_lost,
                    );
                    Arc::new(spec)
                })
                .collect();
            Arc::new(Files {
                gate_shared: gate(Role::PassGate, Share::Shared),
                gate_exclusive: gate(Role::WaitGate, Share::Exclusive),
                slots,
            })
        })
    }

    /// One attempt that never waits for another process: the hold, or `None` if the lock is
    /// taken (or another thread of this process is in the way). Quiet: no event, no notice.
    pub(crate) fn try_once(self: &Arc<Self>) -> Result<Option<Hold>, Error> {
        let slot = &self.slot();
        let mut stale = 0u32;
        loop {
            match self.attempt(slot, Deadline::Now, IfTaken::GiveUp)? {
                Attempt::Got(hold) => return Ok(Some(hold)),
                Attempt::Busy => return Ok(None),
                Attempt::Stale => stale = self.count_stale(stale)?,
                Attempt::Admitted(..) => {
                    // Not with `GiveUp`; never leave an admission taken.
                    slot.released();
                    return Ok(None);
                }
            }
        }
    }

    /// Whether this process keeps the file open, or it exists: a gate that does not exist has
    /// never been waited at, so there is nothing to pass.
    pub(crate) fn may_exist(&self) -> bool {
        self.slot().cached_file().is_some() || std::fs::symlink_metadata(&*self.path).is_ok()
    }

    /// The same lock in another directory (a lock at an exact path stays where it is).
    pub(crate) fn in_dir(&self, dir: PathBuf) -> Spec {
        if self.kind == dir::Kind::Exact {
            return self.clone();
        }
        let mut spec = Spec::new(self.request.clone(), Some(dir));
        spec.cleanup = self.cleanup;
        spec.role = self.role;
        spec
    }

    /// The same lock in the system directory (a lock at an exact path stays where it is).
    pub(crate) fn in_system(&self) -> Spec {
        if self.kind == dir::Kind::Exact {
            return self.clone();
        }
        let file = name::file_name(&self.request.name);
        let mut spec = Spec::placed(
            self.request.clone(),
            dir::system_dir(),
            dir::Kind::System,
            file.as_ref(),
        );
        spec.cleanup = self.cleanup;
        spec
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn about(&self) -> trace::About<'_> {
        trace::About {
            name: &self.request.name,
            at: self,
            share: self.request.share,
        }
    }

    fn io_error(&self, action: &'static str, source: io::Error) -> Error {
        Error::io(&self.request.name, &self.path, action, source)
    }

    fn exit_on_lost(&self) -> bool {
        self.request.on_lost == OnLost::Exit
    }

    /// The PIDs of the processes holding the lock now (see `Lock::holders`): one per held slot
    /// file with `Lock::slots`, else every holder the kernel lists (Linux), else `holder`.
    pub(crate) fn holders(&self) -> Result<Vec<u32>, Error> {
        if self.request.slots > 1 {
            let mut pids = Vec::new();
            for slot in &self.companions().slots {
                pids.extend(slot.holder()?);
            }
            return Ok(pids);
        }
        let Some(f) =
            fork::open_existing(&self.path).map_err(|e| self.io_error("open lock file", e))?
        else {
            return Ok(Vec::new());
        };
        if let Some(mut pids) = os::kernel_holders(&f) {
            pids.sort_unstable();
            pids.dedup();
            return Ok(pids);
        }
        Ok(self.holder()?.into_iter().collect())
    }

    /// The PID of a process holding the lock now (see `Lock::holder`); with `Lock::slots`, of
    /// one of them.
    pub(crate) fn holder(&self) -> Result<Option<u32>, Error> {
        if self.request.slots > 1 {
            return Ok(self.holders()?.first().copied());
        }
        let Some(f) =
            fork::open_existing(&self.path).map_err(|e| self.io_error("open lock file", e))?
        else {
            return Ok(None);
        };
        if let Some(pids) = os::kernel_holders(&f) {
            return Ok(if pids.is_empty() {
                None
            } else {
                os::holder_pid(&f)
            });
        }
        // A shared probe: taken (and released on close) only if nobody holds it exclusively.
        let free =
            os::try_lock(&f, Share::Shared).map_err(|e| self.io_error("probe lock file", e))?;
        Ok(if free { None } else { os::read_pid(&f) })
    }

    /// This process's slot for the lock file (see `slot`).
    fn slot(&self) -> Arc<Slot> {
        let pid = crate::pid::current();
        let slot = self.slot.get_or_init(|| self.find_slot(pid));
        if slot.pid == pid {
            slot
        } else {
            self.find_slot(pid) // a forked child: the cached slot is the parent's
        }
    }

    fn find_slot(&self, pid: u32) -> Arc<Slot> {
        let place = || Place {
            name: self.request.name.clone(),
            dir: self.dir.clone(),
            kind: self.kind,
            path: self.path.to_path_buf(),
        };
        Slot::for_place(place, &self.path, pid)
    }

    /// The synchronous acquisition (the nested-call check is the caller's).
    pub(crate) fn acquire(self: &Arc<Self>, deadline: Deadline) -> Result<Hold, Error> {
        let since = trace::Since::now();
        let result = self.acquire_loop(deadline, false);
        if result.is_ok() {
            self.acquired(since);
        }
        result
    }

    /// A new hold, with its start recorded if asked (`Lock::fencing`, `Lock::once_per`); a start
    /// that is refused releases it.
    pub(crate) fn recorded(&self, mut hold: Hold) -> Result<Hold, Error> {
        let record = self.request.record;
        if !record.wanted() {
            return Ok(hold);
        }
        if self.request.share == Share::Shared || self.request.slots > 1 {
            let why = "fencing tokens and once_per are for exclusive locks of one holder (no shared, no slots)";
            return Err(self.io_error("record a start of", io::Error::other(why)));
        }
        let place = state::Place {
            name: &self.request.name,
            dir: &self.dir,
            kind: self.kind,
            path: &self.path,
        };
        hold.token = Some(state::record(&place, record)?);
        Ok(hold)
    }

    /// The `acquired` event (not for a quiet spec).
    fn acquired(&self, since: trace::Since) {
        if !self.role.quiet() {
            trace::acquired(self.about(), since);
        }
    }

    /// The first time an acquisition finds the lock taken: the `contended` event.
    fn contended(&self) {
        if !self.role.quiet() && trace::wants_contended() {
            trace::contended(self.about(), self.holder_info().pid);
        }
    }

    /// The `contended` event, and the waiting notice if asked for (cancelled when dropped).
    fn contended_waiting(self: &Arc<Self>) -> Option<Notice> {
        self.contended();
        if self.role.quiet() || self.request.announce != Announce::LongWaits {
            return None;
        }
        let spec = Arc::clone(self);
        Some(Notice::arm(
            &self.request.name,
            Location::File(self.path.to_path_buf()),
            move || spec.notice_holder(),
        ))
    }

    /// Who holds the lock, for the waiting notice.
    fn notice_holder(&self) -> notice::Holder {
        let holder = self.holder_info();
        // `cleanup` is not safe with a locker that does not re-check the file (see
        // `Lock::cleanup`): one that did not record its PID is most likely such a locker.
        let warning = if self.cleanup == Cleanup::Remove && holder.foreign {
            "; the holder did not record its PID, so it is probably not lockmacro (flock(1), a \
             script): `cleanup` is not safe with such lockers, keep the lock file instead"
        } else {
            ""
        };
        notice::Holder {
            pid: holder.pid,
            warning,
        }
    }

    /// `contended`: the caller already found the lock taken, sent the event and armed the
    /// notice (see `fair`).
    fn acquire_loop(self: &Arc<Self>, deadline: Deadline, contended: bool) -> Result<Hold, Error> {
        // Held for the whole acquisition, and by the hold after it (in a forked child nothing
        // else keeps the child's own slot alive).
        let slot = &self.slot();
        let mut stale = 0u32;
        let mut contended = contended;
        // Armed for the whole wait, however many rounds it takes; cancelled on return.
        let mut _notice = None;
        let announce = self.request.announce == Announce::LongWaits;
        if !contended && deadline == Deadline::Never && (announce || trace::wants_contended()) {
            // A blocking wait contends inside the kernel call, out of sight: look first.
            match self.attempt(slot, Deadline::Now, IfTaken::GiveUp)? {
                Attempt::Got(hold) => return Ok(hold),
                Attempt::Busy => {
                    contended = true;
                    _notice = self.contended_waiting();
                }
                _ => {}
            }
        }
        let if_taken = match deadline {
            Deadline::At { .. } => IfTaken::KeepAdmission,
            Deadline::Now | Deadline::Never => IfTaken::GiveUp,
        };
        loop {
            match self.attempt(slot, deadline, if_taken)? {
                Attempt::Got(hold) => return Ok(hold),
                // A blocking or timed wait goes round until it succeeds or its deadline passes;
                // only a plain try bounds how often the file may be replaced under it.
                Attempt::Stale => match deadline {
                    Deadline::Now => stale = self.count_stale(stale)?,
                    Deadline::At { timeout, .. } if deadline.passed() => {
                        return Err(self.timeout_error(timeout))
                    }
                    _ => {}
                },
                Attempt::Admitted(f, pid) => {
                    if !std::mem::replace(&mut contended, true) {
                        _notice = self.contended_waiting();
                    }
                    let Deadline::At { at, timeout } = deadline else {
                        // Only timed waits keep the admission; never leave it taken.
                        slot.released();
                        return Err(self.held_error());
                    };
                    let outcome = match slot.start_proxy(f.clone(), self.request.share) {
                        Ok(()) => slot.wait_proxy(at),
                        Err(e) => Proxied::Done(Err(e)),
                    };
                    match self.proxied(slot, outcome, &f, pid)? {
                        Some(Attempt::Got(hold)) => return Ok(hold),
                        Some(_) => {} // stale: go round
                        None => return Err(self.timeout_error(timeout)),
                    }
                }
                Attempt::Busy => {
                    if !contended {
                        self.contended();
                    }
                    return Err(match deadline {
                        // Busy without admission: another thread of this process held on past
                        // the deadline.
                        Deadline::At { timeout, .. } => self.timeout_error(timeout),
                        _ => self.held_error(),
                    });
                }
            }
        }
    }

    /// Finishes a proxied wait: `Some(Got | Stale)` once the proxy is done, `None` if the
    /// waiter gave up and the proxy keeps the admission.
    fn proxied(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        outcome: Proxied,
        f: &LockFile,
        pid: u32,
    ) -> Result<Option<Attempt>, Error> {
        match outcome {
            Proxied::Pending => Ok(None),
            Proxied::Done(Ok(())) => {
                let attempt = self.finish(slot, f, pid, slot.memo());
                if !matches!(attempt, Ok(Attempt::Got(_))) {
                    slot.released();
                }
                attempt.map(Some)
            }
            Proxied::Done(Err(e)) => {
                slot.released();
                Err(self.io_error("lock", e))
            }
        }
    }

    /// Bounds how often a plain try may find the file replaced under it (files churned by
    /// `cleanup` holders): after that many, the lock is plainly busy.
    fn count_stale(&self, stale: u32) -> Result<u32, Error> {
        if stale >= 1000 {
            return Err(self.held_error());
        }
        Ok(stale + 1)
    }

    /// One attempt: be admitted among this process's threads, then take the kernel lock on the
    /// (cached) descriptor, check the file is still the one at the path, record our PID. Only
    /// `Deadline::Never` blocks in the kernel.
    fn attempt(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        deadline: Deadline,
        if_taken: IfTaken,
    ) -> Result<Attempt, Error> {
        let pid = slot.pid;
        match slot.admit(self.request.share, deadline) {
            Admission::Busy => return Ok(Attempt::Busy),
            Admission::Joined => {
                slot.joined(self.exit_on_lost());
                return Ok(Attempt::Got(Hold::new(self, slot, pid)));
            }
            Admission::First => {}
        }
        let outcome = self.take_kernel_lock(slot, deadline, pid, if_taken);
        if !matches!(outcome, Ok(Attempt::Got(_) | Attempt::Admitted(..))) {
            slot.released();
        }
        outcome
    }

    fn take_kernel_lock(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        deadline: Deadline,
        pid: u32,
        if_taken: IfTaken,
    ) -> Result<Attempt, Error> {
        let share = self.request.share;
        let block = deadline == Deadline::Never;
        // A try that never waits checks the file's rules after locking, on the `fstat` the
        // identity check makes anyway (see `open`); it checks them before returning busy.
        let rules = if deadline == Deadline::Now && self.kind != dir::Kind::System {
            Rules::AfterLocking
        } else {
            Rules::AtOpen
        };
        let slot::Descriptor {
            file: f,
            memo,
            fresh,
        } = slot.file(|| self.open(rules))?;
        let unchecked = fresh && rules == Rules::AfterLocking;
        let lock_error = |e| {
            if unchecked {
                slot.discard_file();
            }
            self.io_error("lock", e)
        };
        if block && fresh && share == Share::Exclusive {
            // Just opened by path, so live: wait in one call (`finish` checks the file). (A
            // shared request tries first, see `Slot::admit`.)
            os::lock_blocking(&f, share).map_err(lock_error)?;
            return self.finish(slot, &f, pid, memo);
        }
        if os::try_lock(&f, share).map_err(lock_error)? {
            // A descriptor just opened has no memo, so `finish` checks the rules.
            return self.finish(slot, &f, pid, memo);
        }
        if unchecked {
            // Not ours now, and nothing waits on it: kept only if it keeps the rules.
            if let Err(e) = self.keeps_rules(&f, None) {
                slot.discard_file();
                return Err(e);
            }
        }
        // Taken. Before waiting on this descriptor, make sure it is still a live file: a cached
        // descriptor of a deleted file could be held by someone forever. (Exclusion does not
        // rest on this: `finish` checks the file's identity once the lock is ours.) A blocking
        // wait checks the link count only, the costly path lookup is for the slower modes.
        let check_error = |e| self.io_error("check lock file", e);
        let live = if block {
            os::linked(&f).map_err(check_error)?
        } else {
            os::still_named(&f, &self.path).map_err(check_error)?
        };
        if !live {
            slot.discard_file();
            return Ok(Attempt::Stale);
        }
        if block {
            slot.blocking();
            os::lock_blocking(&f, share).map_err(lock_error)?;
            return self.finish(slot, &f, pid, memo);
        }
        Ok(match if_taken {
            IfTaken::KeepAdmission => Attempt::Admitted(f, pid),
            IfTaken::GiveUp => Attempt::Busy,
        })
    }

    /// With the kernel lock held: check the file is still the one at the path, record our PID.
    /// `memo` is the slot's memo of `f` (see `os::Memo`).
    fn finish(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        f: &LockFile,
        pid: u32,
        memo: Option<os::Memo>,
    ) -> Result<Attempt, Error> {
        let check = if crate::hooks::broken("no-identity-check") {
            os::Identity::Trust
        } else {
            os::Identity::Check
        };
        if self.role.watched() && !memo.is_some_and(|memo| memo.may_vouch()) {
            // A full lookup follows: only what the watch sees from now on concerns this hold.
            watch::hold_begins(&**slot);
        }
        let outcome = os::stamp(f, &self.path, check, pid, &self.request.name, memo);
        if !matches!(outcome, Ok(Stamped::Held(_))) {
            // Not ours to keep: unlock now rather than when the last reference closes it.
            os::unlock(f);
            slot.discard_file();
        }
        match outcome {
            Ok(Stamped::Held(now)) => {
                if now != memo {
                    slot.remember(now);
                }
                slot.locked(self.request.share, self.exit_on_lost(), self.role.watched());
                Ok(Attempt::Got(Hold::new(self, slot, pid)))
            }
            Ok(Stamped::Stale) => Ok(Attempt::Stale),
            Ok(Stamped::Untrusted(reason)) => Err(self.unsafe_file(reason)),
            Err(e) => Err(self.io_error("check and stamp lock file", e)),
        }
    }

    /// Opens the lock file by name in its checked directory (see `dir`). A file that breaks the
    /// rules for lock files (another user's, several links) is refused before anything waits on
    /// it (its owner could hold it forever): here, or with `Rules::AfterLocking` by the caller,
    /// which then neither waits nor keeps the descriptor before checking.
    fn open(&self, rules: Rules) -> Result<slot::Opened, Error> {
        let Some(name) = self.path.file_name() else {
            return Err(self.io_error(
                "open lock file",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the path names no file (it is a root or ends in `..`)",
                ),
            ));
        };
        let dir = dir::open(&self.request.name, &self.dir, self.kind)?;
        #[cfg(unix)]
        let opened = LockFile::open_with(|| os::open_at(&dir.fd, name, dir.file_mode));
        #[cfg(not(unix))]
        let opened = {
            let _ = name;
            LockFile::open_with(|| os::open(&self.path))
        };
        let file = opened.map_err(|e| self.io_error("open lock file", e))?;
        if rules == Rules::AtOpen {
            let fix_mode = (self.kind == dir::Kind::System).then_some(dir.file_mode);
            self.keeps_rules(&file, fix_mode)?;
        }
        Ok(slot::Opened {
            file,
            memos: dir.memos,
        })
    }

    /// The rules for lock files (see `os::trusted`); `fix_mode`: the mode a new file of ours
    /// must have (the system directory's).
    fn keeps_rules(&self, file: &std::fs::File, fix_mode: Option<u32>) -> Result<(), Error> {
        match os::trusted(file, fix_mode) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(self.unsafe_file(reason)),
            Err(e) => Err(self.io_error("check lock file", e)),
        }
    }

    fn unsafe_file(&self, reason: String) -> Error {
        Error::UnsafeFile {
            name: self.request.name.clone(),
            path: self.path.to_path_buf(),
            reason,
        }
    }

    /// Who holds the lock, best effort: the PID, and whether it is a foreign locker.
    fn holder_info(&self) -> os::Holder {
        if self.request.slots > 1 {
            return os::Holder {
                pid: self.holder().ok().flatten(),
                ..os::Holder::default()
            };
        }
        let f = match self.slot().cached_file() {
            Some(f) => f,
            None => match fork::open_existing(&self.path) {
                Ok(Some(f)) => Arc::new(f),
                _ => return os::Holder::default(),
            },
        };
        os::holder(&f)
    }

    fn held_error(&self) -> Error {
        Error::Held {
            name: self.request.name.clone(),
            at: Location::File(self.path.to_path_buf()),
            pid: self.holder_info().pid,
        }
    }

    fn timeout_error(&self, timeout: Duration) -> Error {
        let holder = self.holder_info();
        if !self.role.quiet() {
            trace::timed_out(self.about(), timeout, holder.pid);
        }
        Error::Timeout {
            name: self.request.name.clone(),
            at: Location::File(self.path.to_path_buf()),
            timeout,
            pid: holder.pid,
        }
    }
}

/// A held file lock; dropping it releases the lock (in the process that took it only).
#[derive(Debug)]
pub(crate) struct Hold {
    spec: Arc<Spec>,
    /// This process's state of the lock file, which the hold keeps alive.
    slot: Arc<Slot>,
    /// The process that acquired the lock; only it may release (or unlink) anything.
    pid: u32,
    released: bool,
    /// The fencing token of this acquisition, if asked for.
    token: Option<u64>,
}

impl Hold {
    fn new(spec: &Arc<Spec>, slot: &Arc<Slot>, pid: u32) -> Hold {
        Hold {
            spec: Arc::clone(spec),
            slot: Arc::clone(slot),
            pid,
            released: false,
            token: None,
        }
    }

    /// The fencing token of this acquisition (`Lock::fencing`).
    pub(crate) fn token(&self) -> Option<u64> {
        self.token
    }

    /// Still to be released by this process.
    pub(crate) fn is_live(&self) -> bool {
        !self.released && crate::pid::current() == self.pid
    }

    /// Why the lock is not held by this hold now, looking again (see `LockGuard::check`).
    pub(crate) fn lost_reason(&self) -> Option<String> {
        if crate::pid::current() != self.pid {
            return Some(format!(
                "this guard was inherited through fork: the lock belongs to process {}",
                self.pid
            ));
        }
        if self.released {
            return None;
        }
        match watch::check(&self.slot.watched()) {
            Verdict::Fine => None,
            Verdict::Lost { reason, exit: true } => watch::exit_lost(&*self.slot, reason),
            Verdict::Lost { reason, .. } => Some(reason),
        }
    }

    /// The reason if the lock is lost, else registers `waker` to be woken when it is.
    pub(crate) fn poll_lost(&self, waker: &Waker) -> Option<String> {
        if crate::pid::current() != self.pid {
            return None; // the parent's lock: nothing to watch here
        }
        self.slot.watch_lost(waker)
    }

    /// Releases the lock (once, and only in the process that took it).
    pub(crate) fn release(&mut self) -> Result<(), Error> {
        if !self.is_live() {
            return Ok(());
        }
        self.released = true;
        let slot = Arc::clone(&self.slot);
        let slot::Leave::Last(held) = slot.leave() else {
            return Ok(()); // other shared holders of this process keep the kernel lock
        };
        let result = match held {
            Some((f, seen)) => self.release_kernel_lock(&slot, f, seen),
            None => Ok(()),
        };
        slot.released();
        result
    }

    /// `seen`: the file as its acquisition saw it, if known.
    fn release_kernel_lock(
        &self,
        slot: &Slot,
        f: Arc<LockFile>,
        seen: Option<os::Seen>,
    ) -> Result<(), Error> {
        let spec = &*self.spec;
        let cleanup = spec.cleanup == Cleanup::Remove;
        if cleanup && crate::hooks::broken("unlock-before-unlink") {
            slot.discard_file();
            drop(f);
            let _ = std::fs::remove_file(spec.path.as_path());
            return Ok(());
        }
        if trace::wants_lost() && !os::still_named(&f, &spec.path).unwrap_or(true) {
            trace::lost(
                spec.about(),
                "the lock file was removed or replaced while held",
            );
        }
        if cleanup {
            let result = unlink_if_last(&f, seen, spec.request.share, &spec.path);
            // Unlocked explicitly, after the unlink: closing would not release it if another
            // process still had the open file (see `fork`).
            os::unlock(&f);
            slot.discard_file();
            drop(f);
            return result.map_err(|e| spec.io_error("remove lock file", e));
        }
        if !os::unlock(&f) || spec.role == Role::WaitGate {
            slot.discard_file(); // closing releases it instead (or closes the waiter's gate)
        }
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Removes the lock file while we still hold its lock, so no one can lock the old inode and
/// believe they hold the lock at the path. A shared holder removes it only if it can convert to
/// exclusive without waiting, that is when it is the last holder; if two leave at the same
/// instant, neither may, and the file stays behind, which is harmless.
fn unlink_if_last(
    f: &LockFile,
    seen: Option<os::Seen>,
    share: Share,
    path: &Path,
) -> io::Result<()> {
    if share == Share::Shared && !os::try_lock(f, Share::Exclusive)? {
        return Ok(()); // others still hold it shared
    }
    // Somebody outside the protocol may have replaced the file; never remove theirs. (Which
    // file is ours, its device and inode, was seen when we acquired it.)
    let ours = match seen {
        Some(seen) => seen.named_by(path)?,
        None => os::still_named(f, path)?,
    };
    if ours {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
