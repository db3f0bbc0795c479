//! Waiting without a blocking system call: capped exponential backoff between non-blocking
//! attempts, and one shared timer thread that wakes async waiters (runtime-agnostic: no executor
//! timer is needed, so it works under tokio, `futures::executor::block_on` or anything else).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

/// First pause between attempts.
pub(crate) const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// Longest pause between attempts.
pub(crate) const MAX_PAUSE: Duration = Duration::from_millis(25);

/// The pause after `pause`, doubled and capped.
pub(crate) fn next_pause(pause: Duration) -> Duration {
    (pause * 2).min(MAX_PAUSE)
}

/// One thread for the whole process that wakes async waiters at their instants. Cancelled
/// waiters' entries simply expire; waking a waker nobody polls is harmless.
///
/// Per process: a forked child inherits the parent's timer but not its thread (nor perhaps an
/// unlocked queue), so it starts one of its own (see `fork`).
struct Timer {
    pid: u32,
    /// False if its thread could not be started.
    running: AtomicBool,
    queue: Mutex<BTreeMap<(Instant, u64), Waker>>,
    changed: Condvar,
    seq: AtomicU64,
}

/// This process's timer, started on first use (never freed).
fn timer() -> &'static Timer {
    static CURRENT: AtomicPtr<Timer> = AtomicPtr::new(std::ptr::null_mut());
    let pid = crate::pid::current();
    loop {
        let current = CURRENT.load(Ordering::Acquire);
        // SAFETY: published timers are leaked, never freed.
        if let Some(timer) = unsafe { current.as_ref() } {
            if timer.pid == pid {
                return timer;
            }
        }
        let fresh: *mut Timer = Box::leak(Box::new(Timer {
            pid,
            running: AtomicBool::new(true),
            queue: Mutex::new(BTreeMap::new()),
            changed: Condvar::new(),
            seq: AtomicU64::new(0),
        }));
        if CURRENT
            .compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: ours was never published.
            drop(unsafe { Box::from_raw(fresh) });
            continue;
        }
        // SAFETY: just published, never freed.
        let timer: &'static Timer = unsafe { &*fresh };
        let started = std::thread::Builder::new()
            .name("lockmacro-timer".into())
            .spawn(move || timer.run());
        if started.is_err() {
            timer.running.store(false, Ordering::Release);
        }
        return timer;
    }
}

/// Arranges for `waker` to be woken at `at`. If no timer thread can be started the waker is
/// woken at once, which degrades to polling but never hangs.
pub(crate) fn wake_at(at: Instant, waker: Waker) {
    let timer = timer();
    if !timer.running.load(Ordering::Acquire) {
        waker.wake();
        return;
    }
    let key = (at, timer.seq.fetch_add(1, Ordering::Relaxed));
    let Ok(mut queue) = timer.queue.lock() else {
        waker.wake();
        return;
    };
    let earliest = queue.keys().next().is_none_or(|first| key < *first);
    queue.insert(key, waker);
    drop(queue);
    if earliest {
        timer.changed.notify_one();
    }
}

impl Timer {
    fn run(&self) {
        let Ok(mut queue) = self.queue.lock() else {
            return;
        };
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(entry) = queue.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                drop(queue);
                due.into_iter().for_each(Waker::wake);
                queue = match self.queue.lock() {
                    Ok(q) => q,
                    Err(_) => return,
                };
                continue;
            }
            let next = queue.keys().next().map(|(at, _)| *at);
            queue = match next {
                Some(at) => match self.changed.wait_timeout(queue, at - now) {
                    Ok((q, _)) => q,
                    Err(_) => return,
                },
                None => match self.changed.wait(queue) {
                    Ok(q) => q,
                    Err(_) => return,
                },
            };
        }
    }
}

/// Runs a future to completion on this thread, parking between polls. Used instead of a
/// runtime's `block_on` so that a synchronous acquisition works even when called from inside
/// an async runtime's thread.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
