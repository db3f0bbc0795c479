//! Waiting without a blocking system call: capped exponential backoff between non-blocking
//! attempts, and one shared timer thread that wakes async waiters (runtime-agnostic: no executor
//! timer is needed, so it works under tokio, `futures::executor::block_on` or anything else).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
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
struct Timer {
    queue: Mutex<BTreeMap<(Instant, u64), Waker>>,
    changed: Condvar,
    seq: AtomicU64,
}

static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();

/// Arranges for `waker` to be woken at `at`. If no timer thread can be started the waker is
/// woken at once, which degrades to polling but never hangs.
pub(crate) fn wake_at(at: Instant, waker: Waker) {
    let timer = TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(BTreeMap::new()),
            changed: Condvar::new(),
            seq: AtomicU64::new(0),
        }));
        std::thread::Builder::new()
            .name("lockmacro-timer".into())
            .spawn(move || timer.run())
            .ok()
            .map(|_| timer)
    });
    let Some(timer) = timer else {
        waker.wake();
        return;
    };
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
