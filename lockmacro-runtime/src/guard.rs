use std::future::Future;
use std::path::Path;

use crate::backend::{Backend, Hold};
use crate::error::{Error, Location};
use crate::request::Share;
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
    /// The lock this guard holds (what it is, for the accessors and events).
    lock: Backend,
    hold: Hold,
    since: trace::Since,
}

impl LockGuard {
    pub(crate) fn new(lock: Backend, hold: Hold) -> LockGuard {
        LockGuard {
            lock,
            hold,
            since: trace::Since::now(),
        }
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

    /// Where the lock is: its file, or its PostgreSQL server and key.
    ///
    /// ```
    /// use lockmacro_runtime::{Location, Lock};
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-guard-location");
    /// let guard = Lock::new("cache-rebuild").dir(&dir).try_acquire()?;
    /// assert_eq!(guard.location(), Location::File(guard.path().to_owned()));
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn location(&self) -> Location {
        self.lock.location()
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

    /// The fencing token of this acquisition, with [`Lock::fencing`](crate::Lock::fencing)
    /// (else `None`): a number that strictly increases with every acquisition of the lock,
    /// across holders, processes and (for PostgreSQL) hosts, taken once the lock is held. Pass
    /// it with every write to the guarded resource, and have the resource refuse a token lower
    /// than the highest it has seen: a holder paused past its lease (or whose file lock was
    /// lost) then cannot overwrite the work of the holder after it.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("doc-fencing")
    ///     .dir(std::env::temp_dir().join("lockmacro-doc-fencing"))
    ///     .fencing();
    /// let first = lock.try_acquire()?.fencing_token().expect("asked for");
    /// let second = lock.try_acquire()?.fencing_token().expect("asked for");
    /// assert!(second > first);
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn fencing_token(&self) -> Option<u64> {
        self.hold.token()
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
        self.lock.share() == Share::Shared
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
        self.hold.lost_reason()
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
        std::future::poll_fn(move |cx| match self.hold.poll_lost(cx.waker()) {
            Some(reason) => std::task::Poll::Ready(self.lost_error(reason)),
            None => std::task::Poll::Pending,
        })
    }

    fn lost_error(&self, reason: String) -> Error {
        Error::Lost {
            name: self.name().to_owned(),
            at: self.location(),
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
        if self.hold.is_live() {
            trace::released(self.lock.about(), self.since);
        }
        self.hold.release()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.release_inner();
    }
}
