//! A file lock acquired without blocking a thread: a non-blocking attempt; if another process
//! holds the lock, a proxy thread waits in the kernel and wakes the task (see `slot`); if
//! another task of this process is in the way, the task retries after a capped backoff on the
//! shared timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::fork::LockFile;
use super::slot::Slot;
use super::{Attempt, Hold, IfTaken, Spec};
use crate::deadline::Deadline;
use crate::error::Error;
use crate::notice::Notice;
use crate::{trace, wait};

/// The future of one acquisition (see the module docs). Dropping it cancels the wait: no lock
/// is kept and no descriptor leaks.
#[derive(Debug)]
pub(crate) struct Acquire {
    spec: Arc<Spec>,
    deadline: Deadline,
    pause: Duration,
    /// The slot, from the first poll on (see `Spec::acquire_loop`).
    slot: Option<Arc<Slot>>,
    /// Set while a proxy waits in the kernel for us.
    proxy: Option<(Arc<LockFile>, u32)>,
    /// Whether the timer will wake us at the deadline already.
    deadline_armed: bool,
    since: trace::Since,
    contended: bool,
    /// The waiting notice, armed once the lock is found taken; cancelled when dropped.
    notice: Option<Notice>,
}

impl Acquire {
    /// Waits until `deadline` (`Now`: one attempt; `Never`: as long as it takes).
    pub(crate) fn new(spec: &Arc<Spec>, deadline: Deadline) -> Acquire {
        Acquire {
            spec: Arc::clone(spec),
            deadline,
            pause: wait::FIRST_PAUSE,
            slot: None,
            proxy: None,
            deadline_armed: false,
            since: trace::Since::now(),
            contended: false,
            notice: None,
        }
    }

    /// The same, for a caller that already found the lock taken, sent the event and armed the
    /// notice (see `fair`).
    pub(crate) fn contended(spec: &Arc<Spec>, deadline: Deadline) -> Acquire {
        let mut acquire = Acquire::new(spec, deadline);
        acquire.contended = true;
        acquire
    }

    fn contention(&mut self) {
        if !std::mem::replace(&mut self.contended, true) {
            self.notice = self.spec.contended_waiting();
        }
    }

    fn got(&mut self, hold: Hold) -> Poll<Result<Hold, Error>> {
        self.notice = None;
        self.spec.acquired(self.since);
        Poll::Ready(Ok(hold))
    }

    /// The timeout, if the deadline has passed.
    fn timed_out(&self) -> Option<Duration> {
        match self.deadline {
            Deadline::At { timeout, .. } if self.deadline.passed() => Some(timeout),
            _ => None,
        }
    }

    fn at(&self) -> Option<Instant> {
        match self.deadline {
            Deadline::At { at, .. } => Some(at),
            _ => None,
        }
    }
}

impl Future for Acquire {
    type Output = Result<Hold, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let spec = Arc::clone(&this.spec);
        let slot = Arc::clone(this.slot.get_or_insert_with(|| spec.slot()));
        let slot = &slot;
        loop {
            if let Some((f, pid)) = this.proxy.clone() {
                // Decided once: abandoning and reporting a timeout must go together, or an
                // outcome the proxy delivers later would be left unclaimed, lock held.
                let expired = this.timed_out();
                let outcome = match expired {
                    Some(_) => slot.abandon_proxy(),
                    None => slot.poll_proxy(cx.waker()),
                };
                match (spec.proxied(slot, outcome, &f, pid), expired) {
                    (Ok(None), Some(timeout)) => {
                        this.proxy = None;
                        return Poll::Ready(Err(spec.timeout_error(timeout)));
                    }
                    (Ok(None), None) => {
                        if let (Some(at), false) = (this.at(), this.deadline_armed) {
                            this.deadline_armed = true;
                            wait::wake_at(at, cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                    (Ok(Some(Attempt::Got(hold))), _) => {
                        this.proxy = None;
                        return this.got(hold);
                    }
                    (Ok(Some(_)), _) => this.proxy = None, // stale: go round
                    (Err(e), _) => {
                        this.proxy = None;
                        return Poll::Ready(Err(e));
                    }
                }
                continue;
            }
            let if_taken = match this.deadline {
                Deadline::Now => IfTaken::GiveUp,
                Deadline::Never | Deadline::At { .. } => IfTaken::KeepAdmission,
            };
            match spec.attempt(slot, Deadline::Now, if_taken) {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(Attempt::Got(hold)) => return this.got(hold),
                Ok(Attempt::Stale) => {} // replaced under us: go round at once
                Ok(Attempt::Admitted(f, pid)) => {
                    this.contention();
                    if let Err(e) = slot.start_proxy(Arc::clone(&f), spec.request.share) {
                        slot.released();
                        return Poll::Ready(Err(spec.io_error("wait for", e)));
                    }
                    this.proxy = Some((f, pid));
                }
                Ok(Attempt::Busy) => {
                    if this.deadline == Deadline::Now {
                        spec.contended();
                        return Poll::Ready(Err(spec.held_error()));
                    }
                    this.contention();
                    if let Some(timeout) = this.timed_out() {
                        return Poll::Ready(Err(spec.timeout_error(timeout)));
                    }
                    let mut wake = Instant::now() + this.pause;
                    if let Some(at) = this.at() {
                        wake = wake.min(at);
                    }
                    this.pause = wait::next_pause(this.pause);
                    wait::wake_at(wake, cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for Acquire {
    /// Cancellation: if a proxy is waiting for us, it releases whatever it gets; if it already
    /// got the lock, the hold made here releases it at once.
    fn drop(&mut self) {
        if let Some((f, pid)) = self.proxy.take() {
            if crate::pid::current() != pid {
                return; // an inherited future in a forked child: the parent's state
            }
            let Some(slot) = &self.slot else { return };
            let outcome = slot.abandon_proxy();
            drop(self.spec.proxied(slot, outcome, &f, pid));
        }
    }
}
