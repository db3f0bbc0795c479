//! The one line a waiting person sees: when a wait with [`Lock::wait_notice`](crate::Lock::wait_notice) on lasts more
//! than [`AFTER`], stderr gets "waiting for lock `name` (held by pid N, path ...)", once, the
//! way cargo prints "Blocking waiting for file lock". The shared timer thread prints it, so the
//! waiter itself stays blocked in the kernel (or pending, if async) and needs no polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use crate::error::Location;

/// How long a wait lasts before it is announced.
pub(crate) const AFTER: Duration = Duration::from_secs(1);

/// An announcement due at [`AFTER`] from arming; dropping it (the wait ended) cancels it.
#[derive(Debug)]
pub(crate) struct Notice(Arc<Armed>);

/// Who holds the lock, as the line tells it: asked only when the line is printed.
#[derive(Debug, Default)]
pub(crate) struct Holder {
    pub(crate) pid: Option<u32>,
    /// Appended to the line (a warning about the holder), or empty.
    pub(crate) warning: &'static str,
}

type Ask = Box<dyn Fn() -> Holder + Send + Sync>;

struct Armed {
    name: String,
    at: Location,
    holder: Ask,
    done: AtomicBool,
}

impl std::fmt::Debug for Armed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Armed")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Notice {
    /// Arms the line for the lock `name` at `at`; `holder` is asked when it is printed.
    pub(crate) fn arm(
        name: &str,
        at: Location,
        holder: impl Fn() -> Holder + Send + Sync + 'static,
    ) -> Notice {
        let armed = Arc::new(Armed {
            name: name.to_owned(),
            at,
            holder: Box::new(holder),
            done: AtomicBool::new(false),
        });
        crate::wait::wake_at(Instant::now() + AFTER, Waker::from(Arc::clone(&armed)));
        Notice(armed)
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
        let holder = (self.holder)();
        let held_by = match holder.pid {
            Some(pid) => format!("held by pid {pid}"),
            None => "held by another process".to_owned(),
        };
        let where_ = match &self.at {
            Location::File(path) => format!("path {}", path.display()),
            other => other.to_string(),
        };
        eprintln!(
            "{}: waiting for lock `{}` ({held_by}, {where_}){}",
            crate::error::program_name(),
            self.name,
            holder.warning,
        );
    }
}
