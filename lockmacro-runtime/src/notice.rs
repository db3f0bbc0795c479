//! The one line a waiting person sees: when a wait with [`Lock::wait_notice`] on lasts more
//! than [`AFTER`], stderr gets "waiting for lock `name` (held by pid N, path ...)", once, the
//! way cargo prints "Blocking waiting for file lock". The shared timer thread prints it, so the
//! waiter itself stays blocked in the kernel (or pending, if async) and needs no polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use crate::lock::Lock;

/// How long a wait lasts before it is announced.
pub(crate) const AFTER: Duration = Duration::from_secs(1);

/// An announcement due at [`AFTER`] from arming; dropping it (the wait ended) cancels it.
#[derive(Debug)]
pub(crate) struct Notice(Arc<Armed>);

#[derive(Debug)]
struct Armed {
    lock: Lock,
    /// Set once printed or cancelled.
    done: AtomicBool,
}

impl Notice {
    /// Arms the notice for `lock` if it asks for one; `None` otherwise.
    pub(crate) fn arm(lock: &Lock) -> Option<Notice> {
        if !lock.spec().notice {
            return None;
        }
        let armed = Arc::new(Armed {
            lock: lock.clone(),
            done: AtomicBool::new(false),
        });
        crate::wait::wake_at(Instant::now() + AFTER, Waker::from(Arc::clone(&armed)));
        Some(Notice(armed))
    }
}

impl Drop for Notice {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::Release);
    }
}

impl Wake for Armed {
    fn wake(self: Arc<Self>) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let lock = &self.lock;
        let holder = lock.holder_info();
        let held_by = match holder.pid {
            Some(pid) => format!("held by pid {pid}"),
            None => "held by another process".to_owned(),
        };
        // `cleanup` is not safe with a locker that does not re-check the file (see
        // `Lock::cleanup`): one that did not record its PID is most likely such a locker.
        let warning = if lock.spec().cleanup && holder.foreign {
            "; the holder did not record its PID, so it is probably not lockmacro (flock(1), a \
             script): `cleanup` is not safe with such lockers, keep the lock file instead"
        } else {
            ""
        };
        eprintln!(
            "{}: waiting for lock `{}` ({held_by}, path {}){warning}",
            crate::error::program_name(),
            lock.name(),
            lock.path().display()
        );
    }
}
