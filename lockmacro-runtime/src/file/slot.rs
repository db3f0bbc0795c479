//! One lock file's state inside this process: a descriptor kept open between acquisitions, an
//! admission that decides which thread may use it, and what became of the file while held.
//!
//! Opening is the costly part of a lock cycle (a path walk, and a create for a new file), so
//! the process keeps the lock file open and only locks and unlocks it. But flock locks belong to
//! the open file: two threads locking one descriptor would both "hold" it. So threads are
//! admitted first: one at a time for an exclusive lock, or any number of shared holders sharing
//! the descriptor's one shared kernel lock. The kernel lock still decides between processes.
//!
//! A slot belongs to one spelling of the lock file's path, made absolute (`/srv/current/locks/x`
//! and `/srv/v1/locks/x` are two slots even while `current` points to `v1`): whatever a slot
//! remembers about its file was learnt by looking up *that* path, so it never vouches for another
//! spelling that may name another file later. Two slots of one file exclude each other through
//! the kernel, like two processes.
//!
//! Slots are shared by every [`Lock`](crate::Lock) of the same path and live as long as one of
//! them does, and the slots of the [`RECENT`] `Lock`s most recently used for the first time live on after
//! their last `Lock` (first use, not every use: marking every acquisition would cost the hot
//! path a lock): a program that
//! makes a new `Lock` for each call (a name worked out per call) finds the descriptor, and what
//! it learnt about the file, still there, and a program that makes many short-lived locks keeps
//! at most that many descriptors open. They belong to the process that made them: a forked child
//! gets slots of its own (see `fork`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::Waker;
use std::time::Instant;

use super::dir::Place;
use super::fork::LockFile;
use super::os::{self, Memo, Seen};
use super::watch::{self, SlotWatch, Verdict, Watched, Watching};
use crate::deadline::Deadline;
use crate::request::Share;

/// The lock file's descriptor as [`Slot::file`] hands it out.
#[derive(Debug)]
pub(crate) struct Descriptor {
    pub(crate) file: Arc<LockFile>,
    /// What the previous acquisition established, if it may be used (see `os::Memo`).
    pub(crate) memo: Option<Memo>,
    /// Opened just now (by path), rather than kept from an earlier acquisition.
    pub(crate) fresh: bool,
}

/// A freshly opened lock file, and what the open learnt about its directory.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) file: LockFile,
    /// `fstat` of the file can be trusted to show every change (see `os::Memo`).
    pub(crate) memos: bool,
}

#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) place: Place,
    /// The process this slot belongs to.
    pub(crate) pid: u32,
    state: Mutex<State>,
    changed: Condvar,
    /// What the watcher saw happen to the file and its name (see `watch`).
    pub(crate) watch: SlotWatch,
}

#[derive(Debug, Default)]
struct State {
    file: Option<Arc<LockFile>>,
    /// Whether memos may be used for `file` (see `os::Memo`).
    memos: bool,
    /// What the last full check of `file` established (see `os::Memo`).
    memo: Option<Memo>,
    admitted: Admitted,
    /// Threads blocked in `admit`: only then is a wake-up (a futex syscall) worth making.
    waiting: usize,
    /// A thread blocked in the kernel on behalf of the admitted timed or async waiter.
    proxy: Option<Proxy>,
    /// The kernel lock is held by guards of this process (not being taken or released), and
    /// how.
    held: Option<Share>,
    /// Why the lock was lost during the current hold, if it was.
    lost: Option<String>,
    /// Whether a loss ends the process (a current holder asked for `OnLost::Exit`).
    exit_on_lost: bool,
    /// Tasks waiting in `LockGuard::lost`.
    lost_wakers: Vec<Waker>,
    /// The watch on `file` (Linux).
    watching: Option<Watching>,
    /// The watch is due to start (see `watch::ARM_AFTER`).
    arming: bool,
}

/// Timed and async waiters cannot block in flock (it has no timeout, and would stall an
/// executor), and polling is slow to notice a release or burns CPU. So the admitted waiter lets
/// a proxy thread block in the kernel for it and waits for the outcome with its own deadline
/// (a condvar) or waker. A waiter that gives up leaves the proxy in charge of the admission: the
/// proxy releases whatever it gets. There is at most one proxy per lock file at a time.
#[derive(Debug)]
struct Proxy {
    /// Set when the blocking call returned.
    outcome: Option<io::Result<()>>,
    /// False once the waiter gave up.
    wanted: bool,
    waker: Option<Waker>,
}

/// What became of a proxied wait.
#[derive(Debug)]
pub(crate) enum Proxied {
    /// The kernel lock is ours (or the blocking call failed).
    Done(io::Result<()>),
    /// Still blocked in the kernel.
    Pending,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Admitted {
    #[default]
    Nobody,
    /// One thread is taking the kernel lock (exclusive, or shared after a failed quick try),
    /// holds it exclusively, or a proxy waits for it.
    One,
    /// One thread is taking a shared kernel lock without blocking: other shared requests wait
    /// a moment to join it rather than report the lock as taken.
    TakingShared,
    /// This many holders share the descriptor's shared kernel lock.
    Shared(usize),
    /// The last holder is releasing the kernel lock: everyone waits a moment for it, since the
    /// lock is about to be free.
    Releasing,
}

/// The outcome of asking to be admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Admitted alone: take the kernel lock, then call [`Slot::locked`] or [`Slot::released`].
    First,
    /// Joined shared holders that already hold the kernel lock: nothing more to do.
    Joined,
    /// Another thread of this process is in the way (only without waiting, or past a deadline).
    Busy,
}

/// What a holder leaving a slot finds (see [`Slot::leave`]).
pub(crate) enum Leave {
    /// Other shared holders of this process keep the kernel lock.
    Others,
    /// The last holder: the cached descriptor, if any, and what was seen of it at its last
    /// acquisition (on any filesystem), for its release.
    Last(Option<(Arc<LockFile>, Option<Seen>)>),
}

/// This process's slots by path. Per process: a forked child makes its own registry rather than
/// lock a mutex another parent thread may have held at the fork.
struct Registry {
    pid: u32,
    slots: Mutex<Slots>,
}

/// How many slots stay open after their last `Lock` is dropped (see the module docs).
pub(crate) const RECENT: usize = 8;

#[derive(Default)]
struct Slots {
    by_path: BTreeMap<PathBuf, Weak<Slot>>,
    /// The slots of the `Lock`s most recently used for the first time, most recent last, kept alive.
    recent: Vec<Arc<Slot>>,
}

impl Slots {
    /// Marks `slot` as the one most recently taken up (a `Lock` uses it for the first time);
    /// returns the slot that no longer counts as recent, if any (to be dropped outside the
    /// registry's lock: dropping a slot closes its file).
    fn used(&mut self, slot: &Arc<Slot>) -> Option<Arc<Slot>> {
        if let Some(at) = self.recent.iter().position(|s| Arc::ptr_eq(s, slot)) {
            let slot = self.recent.remove(at);
            self.recent.push(slot);
            return None;
        }
        self.recent.push(Arc::clone(slot));
        (self.recent.len() > RECENT).then(|| self.recent.remove(0))
    }
}

fn registry(pid: u32) -> &'static Registry {
    static CURRENT: AtomicPtr<Registry> = AtomicPtr::new(std::ptr::null_mut());
    loop {
        let current = CURRENT.load(Ordering::Acquire);
        // SAFETY: published registries are leaked, never freed.
        if let Some(registry) = unsafe { current.as_ref() } {
            if registry.pid == pid {
                return registry;
            }
        }
        let fresh: *mut Registry = Box::leak(Box::new(Registry {
            pid,
            slots: Mutex::default(),
        }));
        match CURRENT.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: just leaked.
            Ok(_) => return unsafe { &*fresh },
            // SAFETY: ours lost the race and was never published.
            Err(_) => drop(unsafe { Box::from_raw(fresh) }),
        }
    }
}

fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these; if something did, the state is still consistent.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Slot {
    /// This process's slot for `place.path`, shared with every live `Lock` of that path.
    pub(crate) fn for_place(place: impl FnOnce() -> Place, path: &Path, pid: u32) -> Arc<Slot> {
        let registry = registry(pid);
        let mut slots = lock_ignoring_poison(&registry.slots);
        let slot = match slots.by_path.get(path).and_then(Weak::upgrade) {
            Some(slot) => slot,
            None => {
                slots.by_path.retain(|_, slot| slot.strong_count() > 0);
                let slot = Arc::new(Slot {
                    place: place(),
                    pid,
                    state: Mutex::default(),
                    changed: Condvar::new(),
                    watch: SlotWatch::default(),
                });
                slots.by_path.insert(path.to_owned(), Arc::downgrade(&slot));
                slot
            }
        };
        let old = slots.used(&slot);
        drop(slots);
        drop(old);
        slot
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock_ignoring_poison(&self.state)
    }

    /// Asks to use the descriptor.
    pub(crate) fn admit(&self, share: Share, deadline: Deadline) -> Admission {
        let shared = share.is_shared();
        let mut state = self.state();
        loop {
            match state.admitted {
                Admitted::Nobody => {
                    // A shared request first tries without blocking, so that other shared
                    // requests can join it rather than find the lock taken.
                    state.admitted = if shared {
                        Admitted::TakingShared
                    } else {
                        Admitted::One
                    };
                    return Admission::First;
                }
                Admitted::Shared(n) if shared => {
                    state.admitted = Admitted::Shared(n + 1);
                    return Admission::Joined;
                }
                _ => {}
            }
            // Both resolve at once: wait for them even without patience, or a request would
            // find the lock "taken" by nothing but this process's own bookkeeping.
            let passing = state.admitted == Admitted::Releasing
                || (shared && state.admitted == Admitted::TakingShared);
            let timeout = match deadline {
                _ if passing => None,
                Deadline::Now => return Admission::Busy,
                Deadline::Never => None,
                Deadline::At { at, .. } => match at.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Admission::Busy,
                },
            };
            state.waiting += 1;
            state = match timeout {
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(left) => {
                    self.changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
            state.waiting -= 1;
        }
    }

    /// The admitted shared request's quick try failed and it is going to block: other shared
    /// requests decide for themselves again (the lock is held elsewhere).
    pub(crate) fn blocking(&self) {
        let mut state = self.state();
        if state.admitted == Admitted::TakingShared {
            state.admitted = Admitted::One;
            self.changed.notify_all();
        }
    }

    /// The cached descriptor, opening it with `open` if there is none. Only for the admitted
    /// thread.
    pub(crate) fn file<E>(
        self: &Arc<Self>,
        open: impl FnOnce() -> Result<Opened, E>,
    ) -> Result<Descriptor, E> {
        let mut state = self.state();
        if let Some(file) = &state.file {
            return Ok(Descriptor {
                file: Arc::clone(file),
                memo: state.memo.filter(|_| state.memos),
                fresh: false,
            });
        }
        let opened = open()?;
        let file = Arc::new(opened.file);
        state.memos = opened.memos;
        state.file = Some(Arc::clone(&file));
        Ok(Descriptor {
            file,
            memo: None,
            fresh: true,
        })
    }

    /// The cached descriptor, if any.
    pub(crate) fn cached_file(&self) -> Option<Arc<LockFile>> {
        self.state().file.clone()
    }

    /// The memo of the cached descriptor. Only for the admitted thread.
    pub(crate) fn memo(&self) -> Option<Memo> {
        let state = self.state();
        state.memo.filter(|_| state.memos)
    }

    /// Keeps what a check of the cached descriptor established (on any filesystem: a release
    /// uses it too). Only for the admitted thread.
    pub(crate) fn remember(&self, memo: Option<Memo>) {
        self.state().memo = memo;
    }

    /// Forgets the cached descriptor (stale, or removed by `cleanup`); it closes once the
    /// caller drops its own reference.
    pub(crate) fn discard_file(&self) {
        let mut state = self.state();
        forget_file(&mut state);
    }

    /// Lets a proxy thread take the kernel lock on `file` for the admitted caller, blocking.
    /// Fails only if no thread can be started.
    pub(crate) fn start_proxy(
        self: &Arc<Self>,
        file: Arc<LockFile>,
        share: Share,
    ) -> io::Result<()> {
        let mut state = self.state();
        state.proxy = Some(Proxy {
            outcome: None,
            wanted: true,
            waker: None,
        });
        if state.admitted == Admitted::TakingShared {
            // No longer quick: shared requests waiting to join decide for themselves again.
            state.admitted = Admitted::One;
            self.changed.notify_all();
        }
        drop(state);
        let slot = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name("lockmacro-wait".into())
            .spawn(move || {
                let outcome = os::lock_blocking(&file, share);
                slot.proxy_done(&file, outcome);
            });
        if let Err(e) = started {
            self.state().proxy = None;
            return Err(e);
        }
        Ok(())
    }

    fn proxy_done(&self, file: &LockFile, outcome: io::Result<()>) {
        let mut state = self.state();
        match &mut state.proxy {
            Some(proxy) if proxy.wanted => {
                proxy.outcome = Some(outcome);
                if let Some(waker) = proxy.waker.take() {
                    waker.wake();
                }
            }
            _ => {
                // Nobody wants it any more: give it straight back, and the admission with it.
                if outcome.is_ok() && !os::unlock(file) {
                    forget_file(&mut state);
                }
                state.proxy = None;
                state.admitted = Admitted::Nobody;
            }
        }
        self.changed.notify_all();
    }

    /// Checks on the proxy for an async waiter, leaving `waker` to be woken when it is done.
    pub(crate) fn poll_proxy(&self, waker: &Waker) -> Proxied {
        let mut state = self.state();
        if let Some(done) = take_outcome(&mut state) {
            return done;
        }
        if let Some(proxy) = &mut state.proxy {
            proxy.waker = Some(waker.clone());
        }
        Proxied::Pending
    }

    /// Waits for the proxy until `deadline` (a synchronous timed waiter); gives up after it.
    pub(crate) fn wait_proxy(&self, deadline: Instant) -> Proxied {
        let mut state = self.state();
        loop {
            if let Some(done) = take_outcome(&mut state) {
                return done;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                drop(state);
                return self.abandon_proxy();
            };
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// The waiter gives up. If the proxy already succeeded the lock is ours after all
    /// (`Done(Ok)`, to be used or released by the caller); otherwise the proxy takes over the
    /// admission and releases whatever it gets.
    pub(crate) fn abandon_proxy(&self) -> Proxied {
        let mut state = self.state();
        if let Some(done) = take_outcome(&mut state) {
            return done;
        }
        if let Some(proxy) = &mut state.proxy {
            proxy.wanted = false;
            proxy.waker = None;
        }
        Proxied::Pending
    }

    /// The admitted thread now holds the kernel lock. `exit_on_lost`: this holder wants the
    /// process to exit if the lock is lost while held. The file is watched from its first hold
    /// on, for as long as it stays open (see `watch`).
    /// `watch`: false for a file whose loss does not matter (a gate, see `fair`).
    pub(crate) fn locked(self: &Arc<Self>, share: Share, exit_on_lost: bool, watch: bool) {
        let mut state = self.state();
        if watch && state.watching.is_none() && !state.arming && state.file.is_some() {
            state.arming = true;
            watch::arm(&self.watched());
        }
        state.held = Some(share);
        state.lost = None;
        state.exit_on_lost = exit_on_lost;
        if share.is_shared() {
            state.admitted = Admitted::Shared(1);
            if state.waiting > 0 {
                self.changed.notify_all(); // shared requests waiting for us may join now
            }
        }
    }

    /// Another shared holder joined: it may want the process to exit on a loss too.
    pub(crate) fn joined(&self, exit_on_lost: bool) {
        if exit_on_lost {
            self.state().exit_on_lost = true;
        }
    }

    /// A holder leaves. `Leave::Last` if it was the last one, which must then release the
    /// kernel lock (on the descriptor given with it, if any) and call [`Slot::released`].
    pub(crate) fn leave(&self) -> Leave {
        let mut state = self.state();
        match state.admitted {
            Admitted::Shared(n) if n > 1 => {
                state.admitted = Admitted::Shared(n - 1);
                Leave::Others
            }
            _ => {
                // Releasing until the kernel lock is released, so nobody joins a lock that is
                // going away, and nobody takes the release for a holder.
                state.admitted = Admitted::Releasing;
                state.held = None;
                let file = state.file.clone();
                Leave::Last(file.map(|file| (file, state.memo.map(|memo| memo.seen))))
            }
        }
    }

    /// The kernel lock is released (or was never taken): let the next thread in.
    pub(crate) fn released(&self) {
        let mut state = self.state();
        state.admitted = Admitted::Nobody;
        if state.waiting > 0 {
            self.changed.notify_all();
        }
    }

    /// This slot as the watch sees it.
    pub(crate) fn watched(self: &Arc<Self>) -> Arc<dyn Watched> {
        Arc::clone(self) as Arc<dyn Watched>
    }

    /// Starts watching the held file, if it is still held and not watched yet; true if it did.
    fn start_watching(self: &Arc<Self>) -> bool {
        let mut state = self.state();
        state.arming = false;
        if state.held.is_none() || state.watching.is_some() {
            return false;
        }
        let Some(file) = state.file.clone() else {
            return false;
        };
        state.watching = watch::watch(&self.watched(), &file, &self.place.dir);
        state.watching.is_some()
    }

    /// Registers `waker` to be woken when the current hold is lost; the reason if it is.
    pub(crate) fn watch_lost(&self, waker: &Waker) -> Option<String> {
        let mut state = self.state();
        if state.lost.is_none()
            && state.held.is_some()
            && !state.lost_wakers.iter().any(|w| w.will_wake(waker))
        {
            state.lost_wakers.push(waker.clone());
        }
        state.lost.clone()
    }

    /// Checks that the held lock file is still the one at the path. If it is not, the lock is
    /// re-established on a new file at the path when that is provably safe (`reestablish`),
    /// else it is lost. `drain` lets the watcher read the events that happened so far.
    fn check_held(self: &Arc<Self>, drain: &mut dyn FnMut()) -> Verdict {
        let mut state = self.state();
        let (Some(share), Some(file)) = (state.held, state.file.clone()) else {
            return Verdict::Fine;
        };
        if let Some(reason) = &state.lost {
            return Verdict::Lost {
                reason: reason.clone(),
                exit: false, // already dealt with when it was lost
            };
        }
        drain();
        let reason = match os::still_named(&file, &self.place.path) {
            // Named again, but another file was at the path meanwhile (moved away and back
            // while this process could not react, say stopped): someone may have held it.
            Ok(true) if self.watch.away_and_back() => "the lock file was moved away while held \
                 and another file was at its path meanwhile"
                .to_owned(),
            // Still ours; or the path cannot be looked up now, which says nothing of the file.
            Ok(true) | Err(_) => {
                self.watch.settled();
                return Verdict::Fine;
            }
            Ok(false) => match watch::reestablish(&self.watched(), share, drain) {
                Ok(new) => {
                    forget_file(&mut state);
                    state.watching = new.watching;
                    state.file = Some(Arc::new(new.file));
                    state.memos = new.memos;
                    self.watch.settled();
                    crate::trace::reestablished(&self.place.name, &self.place.path.display());
                    return Verdict::Fine;
                }
                Err(reason) => reason,
            },
        };
        crate::trace::lost_held(&self.place.name, &self.place.path.display(), &reason);
        state.lost = Some(reason.clone());
        for waker in state.lost_wakers.drain(..) {
            waker.wake();
        }
        Verdict::Lost {
            reason,
            exit: state.exit_on_lost,
        }
    }
}

impl Watched for Slot {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn place(&self) -> &Place {
        &self.place
    }

    fn seen(&self) -> &SlotWatch {
        &self.watch
    }

    fn verify(self: Arc<Self>, drain: &mut dyn FnMut()) -> Verdict {
        self.check_held(drain)
    }

    fn start_watch(self: Arc<Self>) -> bool {
        self.start_watching()
    }

    fn is_watched(&self) -> bool {
        self.state().watching.is_some()
    }
}

/// Drops the state's descriptor and its watch.
fn forget_file(state: &mut State) {
    state.file = None;
    state.memo = None;
    if let Some(watching) = state.watching.take() {
        watch::unwatch(watching);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.pid == crate::pid::current() {
            forget_file(state);
        } else {
            // A forked child dropping its copy of the parent's slot: the watches are the
            // parent's (its descriptors are closed by their own `Drop`).
            std::mem::forget(state.watching.take());
        }
    }
}

/// The proxy's outcome if it is done (taking it, which ends the proxy), or an error if there is
/// no proxy at all; `None` while it is still waiting in the kernel.
fn take_outcome(state: &mut State) -> Option<Proxied> {
    let Some(proxy) = &mut state.proxy else {
        return Some(Proxied::Done(Err(io::Error::other("lock proxy vanished"))));
    };
    let outcome = proxy.outcome.take()?;
    state.proxy = None;
    Some(Proxied::Done(outcome))
}
