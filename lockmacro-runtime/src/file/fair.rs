//! Who goes next. flock orders nobody: a waiting exclusive request does not stop new shared
//! ones, so readers that keep overlapping keep a writer out for ever, and nothing makes one of
//! several waiters go before a newcomer. This module composes the acquisitions of the file
//! backend (`Spec::acquire_loop`, `Spec::try_once`, `future::Acquire`) into fair ones with one
//! more lock file per lock, the **gate** (`<file>.gate`):
//!
//! - a waiter *announces itself* by holding the gate exclusively (waiting for it, with its
//!   deadline, behind other waiters), and lets go of it as soon as it holds the lock, or gives
//!   up;
//! - everyone who could overtake it *passes* the gate first: takes it shared (waiting, with
//!   the deadline, while a waiter holds it) and lets go at once, then takes the lock.
//!
//! **Writers get their turn.** A shared acquisition passes the gate, then takes the lock shared.
//! An exclusive one tries the lock; if it is taken, it waits at the gate, then for the lock.
//! Bound: once a writer holds the gate, the only readers that can still enter before it are
//! those that had passed the gate before it took it, at most one per reader thread then
//! between the gate and the lock; then it gets the lock as soon as the readers inside leave.
//!
//! **N at a time** (`Lock::slots(n)`): the lock is `n` files, `<file>.1` to `<file>.n`, each
//! taken exclusively, so each has one holder at most. An acquisition passes the gate, then tries
//! each slot file without waiting; if all are taken, it waits at the gate, then for whichever
//! slot file is freed first (a proxy thread per slot file, see `slot`; the ones that lose give
//! back what they get). Bound: once a waiter holds the gate, only acquisitions that had passed
//! the gate before it can still take a slot before it, at most one per acquiring thread; it takes
//! the next slot freed after those.
//!
//! Before holding the gate, a waiter waits for it with the other waiters (flock does not order
//! them) and for passes, which hold the gate shared only between two system calls. A gate file
//! that does not exist has never been waited at: passing it then opens and creates nothing. The
//! gate file stays (it is never removed, even with `cleanup`, so it takes no part in the unlink
//! protocol) and is never lost with an exit. Lockers that do not know the gate (`flock(1)` on the
//! lock file) are not held back by it: the bounds hold among lockmacro processes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::future::Acquire;
use super::{Hold, Spec};
use crate::deadline::Deadline;
use crate::error::{Error, Location};
use crate::hooks;
use crate::notice::Notice;
use crate::request::Share;
use crate::trace;

/// The future of [`acquire_async`].
pub(crate) type Acquiring = Pin<Box<dyn Future<Output = Result<Hold, Error>> + Send>>;

/// The synchronous acquisition of a file lock (the nested-call check is the caller's).
pub(crate) fn acquire(spec: &Arc<Spec>, deadline: Deadline) -> Result<Hold, Error> {
    if spec.request.slots > 1 {
        return crate::wait::block_on(slots(Arc::clone(spec), deadline));
    }
    match spec.request.share {
        Share::Shared => {
            let since = trace::Since::now();
            let waited = pass_blocking(spec, deadline)?;
            let hold = spec.acquire_loop(deadline, waited.is_some())?;
            spec.acquired(since);
            Ok(hold)
        }
        Share::Exclusive if deadline == Deadline::Now => spec.acquire(deadline),
        Share::Exclusive => {
            let since = trace::Since::now();
            if let Some(hold) = spec.try_once()? {
                spec.acquired(since);
                return Ok(hold);
            }
            // The whole wait, at the gate and for the lock, is one wait: one event, one notice.
            let _notice = spec.contended_waiting();
            let gate = if gate_broken() {
                None
            } else {
                let gate = &spec.companions().gate_exclusive;
                Some(
                    gate.acquire_loop(deadline, false)
                        .map_err(|e| for_lock(spec, e))?,
                )
            };
            hooks::gate_log("queued");
            let hold = spec.acquire_loop(deadline, true)?;
            hooks::gate_log("entered");
            drop(gate);
            spec.acquired(since);
            Ok(hold)
        }
    }
}

/// The asynchronous acquisition of a file lock (the nested-call check is the caller's).
pub(crate) fn acquire_async(spec: &Arc<Spec>, deadline: Deadline) -> Acquiring {
    let spec = Arc::clone(spec);
    if spec.request.slots > 1 {
        return Box::pin(slots(spec, deadline));
    }
    Box::pin(async move {
        match spec.request.share {
            Share::Shared => match pass(&spec, deadline).await? {
                None => Acquire::new(&spec, deadline).await,
                Some(_notice) => Acquire::contended(&spec, deadline).await,
            },
            Share::Exclusive if deadline == Deadline::Now => Acquire::new(&spec, deadline).await,
            Share::Exclusive => {
                let since = trace::Since::now();
                if let Some(hold) = spec.try_once()? {
                    spec.acquired(since);
                    return Ok(hold);
                }
                let _notice = spec.contended_waiting();
                let gate = queue(&spec, deadline).await?;
                let hold = Acquire::contended(&spec, deadline).await?;
                hooks::gate_log("entered");
                drop(gate);
                Ok(hold)
            }
        }
    })
}

/// `Lock::slots(n)`: passes the gate, tries each slot file; else waits at the gate, then for
/// the first slot file freed.
async fn slots(spec: Arc<Spec>, deadline: Deadline) -> Result<Hold, Error> {
    if spec.request.share == Share::Shared {
        return Err(Error::Io {
            name: spec.request.name.clone(),
            path: spec.path.to_path_buf(),
            action: "take",
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "a shared lock cannot have slots: slots are N exclusive holders at a time",
            ),
        });
    }
    let since = trace::Since::now();
    let files = spec.companions();
    let waited = pass(&spec, deadline).await?;
    for slot in &files.slots {
        if let Some(hold) = slot.try_once()? {
            spec.acquired(since);
            return Ok(hold);
        }
    }
    if deadline == Deadline::Now {
        spec.contended();
        return Err(spec.held_error());
    }
    let _notice = match waited {
        Some(notice) => notice,
        None => spec.contended_waiting(),
    };
    let gate = queue(&spec, deadline).await?;
    let waits = files
        .slots
        .iter()
        .map(|slot| Acquire::new(slot, deadline))
        .collect();
    let hold = First(waits).await.map_err(|e| for_lock(&spec, e))?;
    hooks::gate_log("entered");
    drop(gate);
    spec.acquired(since);
    Ok(hold)
}

/// Waits at the gate, announcing this waiter: the gate's hold, kept until the lock is ours.
async fn queue(spec: &Arc<Spec>, deadline: Deadline) -> Result<Option<Hold>, Error> {
    let gate = if gate_broken() {
        None
    } else {
        let gate = &spec.companions().gate_exclusive;
        let hold = Acquire::new(gate, deadline).await;
        Some(hold.map_err(|e| for_lock(spec, e))?)
    };
    hooks::gate_log("queued");
    Ok(gate)
}

/// Passes the gate: waits while a waiter holds it (`Now`: fails with `Held`). If it had to
/// wait, the lock counts as contended: `Some`, with the waiting notice to keep armed for the
/// rest of the wait.
async fn pass(spec: &Arc<Spec>, deadline: Deadline) -> Result<Option<Option<Notice>>, Error> {
    let Some(gate) = gate_to_pass(spec) else {
        return Ok(None);
    };
    if let Some(hold) = gate.try_once()? {
        drop(hold);
        return Ok(None);
    }
    if deadline == Deadline::Now {
        return Err(queued_error(spec, &gate));
    }
    let notice = spec.contended_waiting();
    let hold = Acquire::new(&gate, deadline).await;
    drop(hold.map_err(|e| for_lock(spec, e))?);
    Ok(Some(notice))
}

/// [`pass`], blocking the thread.
fn pass_blocking(spec: &Arc<Spec>, deadline: Deadline) -> Result<Option<Option<Notice>>, Error> {
    let Some(gate) = gate_to_pass(spec) else {
        return Ok(None);
    };
    if let Some(hold) = gate.try_once()? {
        drop(hold);
        return Ok(None);
    }
    if deadline == Deadline::Now {
        return Err(queued_error(spec, &gate));
    }
    let notice = spec.contended_waiting();
    drop(
        gate.acquire_loop(deadline, false)
            .map_err(|e| for_lock(spec, e))?,
    );
    Ok(Some(notice))
}

/// The gate's shared spec, unless there is nothing to pass.
fn gate_to_pass(spec: &Spec) -> Option<Arc<Spec>> {
    if gate_broken() {
        return None;
    }
    let gate = Arc::clone(&spec.companions().gate_shared);
    gate.may_exist().then_some(gate)
}

/// A test switch: `no-gate` shows what the tests of the bounds see without it.
fn gate_broken() -> bool {
    hooks::broken("no-gate")
}

/// A try that found a waiter announced: the lock is taken for us.
fn queued_error(spec: &Spec, gate: &Spec) -> Error {
    spec.contended();
    Error::Held {
        name: spec.request.name.clone(),
        at: Location::File(spec.path.to_path_buf()),
        pid: gate.holder_info().pid,
    }
}

/// An error of an internal file (the gate, a slot file) as the lock's own.
fn for_lock(spec: &Spec, e: Error) -> Error {
    match e {
        Error::Timeout { timeout, .. } => spec.timeout_error(timeout),
        Error::Held { pid, .. } => Error::Held {
            name: spec.request.name.clone(),
            at: Location::File(spec.path.to_path_buf()),
            pid,
        },
        other => other,
    }
}

/// The first of several acquisitions to finish; dropping the others cancels them (a proxy
/// that gets a slot file later gives it back at once).
struct First(Vec<Acquire>);

impl Future for First {
    type Output = Result<Hold, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        for wait in &mut self.get_mut().0 {
            if let Poll::Ready(outcome) = Pin::new(wait).poll(cx) {
                return Poll::Ready(outcome);
            }
        }
        Poll::Pending
    }
}
