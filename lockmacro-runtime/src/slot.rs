//! One lock file's state inside this process: a descriptor kept open between acquisitions, and
//! an admission that decides which thread may use it.
//!
//! Opening is the costly part of a lock cycle (a path walk, and a create for a new file), so
//! the process keeps the lock file open and only locks and unlocks it. But flock locks belong to
//! the open file: two threads locking one descriptor would both "hold" it. So threads are
//! admitted first: one at a time for an exclusive lock, or any number of shared holders sharing
//! the descriptor's one shared kernel lock. The kernel lock still decides between processes.
//!
//! Slots are shared by every [`Lock`](crate::Lock) of the same path and live as long as one of
//! them does, so a program that makes many short-lived locks keeps no descriptors open.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::task::Waker;
use std::time::Instant;

use crate::file::{Memo, Seen};

/// The lock file's descriptor as [`Slot::file`] hands it out.
#[derive(Debug)]
pub(crate) struct Descriptor {
    pub(crate) file: Arc<File>,
    /// What the previous acquisition established, if it may be used (see `file::Memo`).
    pub(crate) memo: Option<Memo>,
    /// Opened just now (by path), rather than kept from an earlier acquisition.
    pub(crate) fresh: bool,
}

#[derive(Debug)]
pub(crate) struct Slot {
    state: Mutex<State>,
    changed: Condvar,
    /// Whether `fstat` of the lock file can be trusted to show every change (a local
    /// filesystem that keeps change times), so that acquisitions may use memos (`file::Memo`).
    memos: bool,
}

#[derive(Debug, Default)]
struct State {
    /// The process this state belongs to: a forked child starts afresh.
    pid: u32,
    file: Option<Arc<File>>,
    /// What the last full check of `file` established (see `file::Memo`).
    memo: Option<Memo>,
    admitted: Admitted,
    /// Threads blocked in `admit`: only then is a wake-up (a futex syscall) worth making.
    waiting: usize,
    /// A thread blocked in the kernel on behalf of the admitted timed or async waiter.
    proxy: Option<Proxy>,
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
    /// One thread is taking the kernel lock, holds it exclusively, or is releasing it.
    One,
    /// One thread is taking a shared kernel lock without blocking: other shared requests wait
    /// a moment to join it rather than report the lock as taken.
    TakingShared,
    /// This many holders share the descriptor's shared kernel lock.
    Shared(usize),
}

/// The outcome of asking to be admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Admitted alone: take the kernel lock, then call [`Slot::locked`] or [`Slot::leave`].
    First,
    /// Joined shared holders that already hold the kernel lock: nothing more to do.
    Joined,
    /// Another thread of this process is in the way (only without waiting, or past a deadline).
    Busy,
}

/// How long admission may wait for other threads of this process.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patience {
    None,
    Forever,
    Until(Instant),
}

impl Slot {
    /// The slot for `path`, shared with every live `Lock` of that path. `memos`: the lock
    /// directory is on a filesystem where memos may be used.
    pub(crate) fn for_path(path: &Path, memos: bool) -> Arc<Slot> {
        static SLOTS: OnceLock<Mutex<HashMap<PathBuf, Weak<Slot>>>> = OnceLock::new();
        let slots = SLOTS.get_or_init(Default::default);
        let mut slots = slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = slots.get(path).and_then(Weak::upgrade) {
            return slot;
        }
        slots.retain(|_, slot| slot.strong_count() > 0);
        let slot = Arc::new(Slot {
            state: Mutex::default(),
            changed: Condvar::new(),
            memos,
        });
        slots.insert(path.to_owned(), Arc::downgrade(&slot));
        slot
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; if something did, the state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to use the descriptor. `pid` is the caller's `std::process::id()`.
    pub(crate) fn admit(&self, shared: bool, patience: Patience, pid: u32) -> Admission {
        let mut state = self.state();
        if state.pid != pid {
            // Inherited through fork: the parent's descriptor and holders are not ours. Dropping
            // our copy of the descriptor leaves the parent's lock alone.
            *state = State {
                pid,
                ..State::default()
            };
        }
        loop {
            match state.admitted {
                Admitted::Nobody => {
                    let quick = shared && !matches!(patience, Patience::Forever);
                    state.admitted = if quick {
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
            // A non-blocking shared attempt resolves at once: wait for it even without patience.
            let joining = shared && state.admitted == Admitted::TakingShared;
            let timeout = match patience {
                Patience::None if joining => None,
                Patience::None => return Admission::Busy,
                Patience::Forever => None,
                Patience::Until(deadline) => {
                    match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => Some(left),
                        _ => return Admission::Busy,
                    }
                }
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

    /// The cached descriptor, opening it with `open` if there is none. Only for the admitted
    /// thread.
    pub(crate) fn file<E>(&self, open: impl FnOnce() -> Result<File, E>) -> Result<Descriptor, E> {
        let mut state = self.state();
        if let Some(file) = &state.file {
            return Ok(Descriptor {
                file: Arc::clone(file),
                memo: state.memo.filter(|_| self.memos),
                fresh: false,
            });
        }
        let file = Arc::new(open()?);
        state.file = Some(Arc::clone(&file));
        Ok(Descriptor {
            file,
            memo: None,
            fresh: true,
        })
    }

    /// The cached descriptor and what was seen of it at its last acquisition (on any
    /// filesystem), for its release.
    pub(crate) fn held_file(&self) -> Option<(Arc<File>, Option<Seen>)> {
        let state = self.state();
        let file = state.file.clone()?;
        Some((file, state.memo.map(|memo| memo.seen)))
    }

    /// The cached descriptor, if any.
    pub(crate) fn cached_file(&self) -> Option<Arc<File>> {
        self.state().file.clone()
    }

    /// The memo of the cached descriptor. Only for the admitted thread.
    pub(crate) fn memo(&self) -> Option<Memo> {
        self.state().memo.filter(|_| self.memos)
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
        state.file = None;
        state.memo = None;
    }

    /// Lets a proxy thread take the kernel lock on `file` for the admitted caller, blocking.
    /// Fails only if no thread can be started.
    pub(crate) fn start_proxy(self: &Arc<Self>, file: Arc<File>, shared: bool) -> io::Result<()> {
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
                let outcome = crate::file::lock_blocking(&file, shared);
                slot.proxy_done(&file, outcome);
            });
        if let Err(e) = started {
            self.state().proxy = None;
            return Err(e);
        }
        Ok(())
    }

    fn proxy_done(&self, file: &File, outcome: io::Result<()>) {
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
                if outcome.is_ok() && !crate::file::unlock(file) {
                    state.file = None;
                    state.memo = None;
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

    /// The admitted thread now holds the kernel lock.
    pub(crate) fn locked(&self, shared: bool) {
        if shared {
            let mut state = self.state();
            state.admitted = Admitted::Shared(1);
            if state.waiting > 0 {
                self.changed.notify_all(); // shared requests waiting for us may join now
            }
        }
    }

    /// A holder leaves. Returns true if it was the last one, which must then release the kernel
    /// lock and call [`Slot::released`].
    pub(crate) fn leave(&self) -> bool {
        let mut state = self.state();
        match state.admitted {
            Admitted::Shared(n) if n > 1 => {
                state.admitted = Admitted::Shared(n - 1);
                false
            }
            _ => {
                // Stay admitted (as one releasing thread) until the kernel lock is released, so
                // nobody joins a lock that is going away.
                state.admitted = Admitted::One;
                true
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
