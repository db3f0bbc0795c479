use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::error::Error;
use crate::file;
use crate::fork::LockFile;
use crate::lock::Lock;
use crate::slot::{Slot, Verdict};
use crate::trace;

/// Proof that a lock is held; dropping it releases the lock.
///
/// It can be stored, returned or sent to another thread (`Send`). The lock belongs to the
/// process that acquired it: if that process forks, the child holds nothing (see the README's
/// fork rules), and a guard dropped in the child does nothing.
///
/// ```
/// use lockmacro_runtime::Lock;
///
/// let lock = Lock::new("cache-rebuild").dir(std::env::temp_dir().join("lockmacro-doc-guard"));
/// let guard = lock.acquire()?;
/// assert_eq!(guard.path(), lock.path());
/// std::thread::spawn(move || drop(guard)).join().unwrap(); // released on another thread
/// assert_eq!(lock.holder()?, None);
/// # Ok::<(), lockmacro_runtime::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    lock: Lock,
    /// This process's state of the lock file, which the guard keeps alive (`None` for a
    /// PostgreSQL lock).
    slot: Option<Arc<Slot>>,
    /// The process that acquired the lock; only it may release (or unlink) anything.
    pid: u32,
    released: bool,
    since: trace::Since,
    /// The session holding a PostgreSQL lock.
    #[cfg(feature = "postgres")]
    pg: Option<Arc<crate::pg::Hold>>,
}

impl LockGuard {
    pub(crate) fn new(lock: Lock, slot: Arc<Slot>, pid: u32) -> LockGuard {
        LockGuard {
            lock,
            slot: Some(slot),
            pid,
            released: false,
            since: trace::Since::now(),
            #[cfg(feature = "postgres")]
            pg: None,
        }
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(lock: Lock, hold: Arc<crate::pg::Hold>) -> LockGuard {
        LockGuard {
            lock,
            slot: None,
            pid: std::process::id(),
            released: false,
            since: trace::Since::now(),
            pg: Some(hold),
        }
    }

    /// Drops the guard without releasing anything (its owner releases by other means).
    #[cfg(feature = "postgres")]
    pub(crate) fn defuse(mut self) {
        self.released = true;
    }

    /// The lock file's path.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-guard-path");
    /// let guard = Lock::new("cache-rebuild").dir(&dir).try_acquire()?;
    /// assert!(guard.path().starts_with(&dir));
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        self.lock.path()
    }

    /// The lock's name.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-guard-name");
    /// let guard = Lock::new("cache-rebuild").dir(&dir).try_acquire()?;
    /// assert_eq!(guard.name(), "cache-rebuild");
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.lock.name()
    }

    /// True if this is a shared hold.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("catalog").dir(std::env::temp_dir().join("lockmacro-doc-is-shared"));
    /// assert!(!lock.try_acquire()?.is_shared());
    /// assert!(lock.shared().try_acquire()?.is_shared());
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn is_shared(&self) -> bool {
        self.lock.spec().shared
    }

    /// Whether the lock was lost while held: `check().is_err()`, so it looks again at every
    /// call. A file lock is lost when its file was removed or replaced while held and could not
    /// be re-established on a new file at the path (see the README); a PostgreSQL lock when its
    /// session ended or stopped answering. With the default [`OnLost::Exit`](crate::OnLost) the
    /// process exits as soon as that is noticed (by the watch, or by this call), so only a lock
    /// held with `OnLost::Report` is ever seen lost here.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let guard = Lock::new("doc-is-lost")
    ///     .dir(std::env::temp_dir().join("lockmacro-doc-is-lost"))
    ///     .try_acquire()?;
    /// assert!(!guard.is_lost());
    /// guard.check()?; // the same, as a Result
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn is_lost(&self) -> bool {
        self.check().is_err()
    }

    /// `Err(Error::Lost { .. })` if the lock was lost while held (see
    /// [`is_lost`](LockGuard::is_lost)): call it before committing work that must only happen
    /// under the lock. For a file lock it looks the path up at every call: `Ok` means the path
    /// names the file this guard holds locked, now. In a forked child, a guard inherited from the
    /// parent is `Err`: the lock is the parent's.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let guard = Lock::new("doc-check")
    ///     .dir(std::env::temp_dir().join("lockmacro-doc-check"))
    ///     .try_acquire()?;
    /// let batch = vec![1, 2, 3]; // work done under the lock...
    /// guard.check()?; // ...committed only if the lock is still ours
    /// # drop(batch);
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn check(&self) -> Result<(), Error> {
        match self.lost_reason() {
            Some(reason) => Err(self.lost_error(reason)),
            None => Ok(()),
        }
    }

    /// Why the lock is not held by this guard now, looking again.
    fn lost_reason(&self) -> Option<String> {
        #[cfg(feature = "postgres")]
        if let Some(hold) = &self.pg {
            return hold.lost_reason();
        }
        if crate::pid::current() != self.pid {
            return Some(format!(
                "this guard was inherited through fork: the lock belongs to process {}",
                self.pid
            ));
        }
        let slot = self.slot.as_ref().filter(|_| !self.released)?;
        match crate::watch::check(slot) {
            Verdict::Fine => None,
            Verdict::Lost { reason, exit: true } => crate::watch::exit_lost(slot, reason),
            Verdict::Lost { reason, .. } => Some(reason),
        }
    }

    /// A future that completes with [`Error::Lost`] when the lock is lost (with
    /// `OnLost::Report`; with `OnLost::Exit` the process exits instead). Race it against the
    /// guarded work to stop as soon as the lock is gone, for example with `tokio::select!`. For a
    /// file lock it is woken by the watch (Linux; elsewhere only a loss found by
    /// [`check`](LockGuard::check) wakes it).
    ///
    /// ```
    /// use std::future::Future;
    /// use lockmacro_runtime::Lock;
    ///
    /// let guard = Lock::new("doc-lost")
    ///     .dir(std::env::temp_dir().join("lockmacro-doc-lost"))
    ///     .try_acquire()?;
    /// fn is_send<F: Future + Send>(_: F) {}
    /// is_send(guard.lost()); // pending for as long as the lock is held
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn lost(&self) -> impl Future<Output = Error> + Send + '_ {
        std::future::poll_fn(move |cx| {
            #[cfg(feature = "postgres")]
            if let Some(hold) = &self.pg {
                return match hold.watch(cx.waker()) {
                    Some(reason) => std::task::Poll::Ready(self.lost_error(reason)),
                    None => std::task::Poll::Pending,
                };
            }
            if crate::pid::current() != self.pid {
                return std::task::Poll::Pending; // the parent's lock: nothing to watch here
            }
            match self
                .slot
                .as_ref()
                .and_then(|slot| slot.watch_lost(cx.waker()))
            {
                Some(reason) => std::task::Poll::Ready(self.lost_error(reason)),
                None => std::task::Poll::Pending,
            }
        })
    }

    fn lost_error(&self, reason: String) -> Error {
        Error::Lost {
            name: self.name().to_owned(),
            path: self.path().to_owned(),
            reason,
        }
    }

    /// Releases the lock now, reporting a failure to remove the lock file (with `cleanup`).
    /// Dropping the guard does the same but can only ignore such a failure.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("cache-rebuild")
    ///     .dir(std::env::temp_dir().join("lockmacro-doc-release"))
    ///     .cleanup();
    /// let guard = lock.try_acquire()?;
    /// guard.release()?; // free now, and the lock file is gone (or the error says why not)
    /// assert_eq!(lock.holder()?, None);
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn release(mut self) -> Result<(), Error> {
        self.release_inner()
    }

    /// Keeps the lock until the process exits (the kernel releases it then), like Python
    /// `exclusiveprocess`'s `.forever()`: for a program that must stay single-instance for its
    /// whole life after some point.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("daemon").dir(std::env::temp_dir().join("lockmacro-doc-forever"));
    /// lock.try_acquire()?.forever();
    /// // Still held although the guard is gone: a second instance is refused until we exit.
    /// assert!(lock.try_acquire().unwrap_err().is_contended());
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn forever(self) {
        std::mem::forget(self);
    }

    fn release_inner(&mut self) -> Result<(), Error> {
        if std::mem::replace(&mut self.released, true) || crate::pid::current() != self.pid {
            // Already released, or a forked child: the parent's lock is not ours to touch.
            return Ok(());
        }
        trace::released(self.lock.spec(), self.since);
        #[cfg(feature = "postgres")]
        if let Some(hold) = &self.pg {
            hold.release(self.lock.spec().lease());
            return Ok(());
        }
        let Some(slot) = self.slot.clone() else {
            return Ok(());
        };
        if !slot.leave() {
            return Ok(()); // other shared holders of this process keep the kernel lock
        }
        let result = match slot.held_file() {
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
        seen: Option<file::Seen>,
    ) -> Result<(), Error> {
        let spec = self.lock.spec();
        if spec.cleanup && crate::hooks::broken("unlock-before-unlink") {
            slot.discard_file();
            drop(f);
            let _ = std::fs::remove_file(spec.path.as_path());
            return Ok(());
        }
        if trace::wants_lost() && !file::still_named(&f, &spec.path).unwrap_or(true) {
            trace::lost(spec, "the lock file was removed or replaced while held");
        }
        if spec.cleanup {
            let result = unlink_if_last(&f, seen, spec.shared, &spec.path);
            // Unlocked explicitly, after the unlink: closing would not release it if another
            // process still had the open file (see `fork`).
            file::unlock(&f);
            slot.discard_file();
            drop(f);
            return result.map_err(|e| spec.io_error("remove lock file", e));
        }
        if !file::unlock(&f) {
            slot.discard_file(); // closing releases it instead
        }
        Ok(())
    }
}

/// Removes the lock file while we still hold its lock, so no one can lock the old inode and
/// believe they hold the lock at the path. A shared holder removes it only if it can convert to
/// exclusive without waiting, that is when it is the last holder; if two leave at the same
/// instant, neither may, and the file stays behind, which is harmless.
fn unlink_if_last(
    f: &LockFile,
    seen: Option<file::Seen>,
    shared: bool,
    path: &Path,
) -> io::Result<()> {
    if shared && !file::try_lock(f, false)? {
        return Ok(()); // others still hold it shared
    }
    // Somebody outside the protocol may have replaced the file; never remove theirs. (Which
    // file is ours, its device and inode, was seen when we acquired it.)
    let ours = match seen {
        Some(seen) => seen.named_by(path)?,
        None => file::still_named(f, path)?,
    };
    if ours {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.release_inner();
    }
}
