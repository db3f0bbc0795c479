use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::file::Stamped;
use crate::fork::LockFile;
use crate::guard::LockGuard;
use crate::lost::OnLost;
use crate::notice::Notice;
use crate::once::OnceArc;
use crate::slot::{Admission, Patience, Place, Proxied, Slot};
use crate::{chain, dir, file, name, slot, trace, wait};

/// A named inter-process lock: a description of which file to lock and how. Creating one does
/// no I/O beyond looking up the default directory; nothing is locked until you acquire it.
///
/// Threads and async tasks of one process exclude each other exactly like processes do: the
/// process keeps one descriptor per lock file and admits one thread at a time to it (or any
/// number of shared holders), and the kernel's flock lock decides between processes.
///
/// ```
/// use lockmacro_runtime::Lock;
///
/// let lock = Lock::new("nightly-backup").dir(std::env::temp_dir().join("lockmacro-doc-lock"));
/// let guard = lock.try_acquire()?;
/// assert_eq!(lock.holder()?, Some(std::process::id()));
/// guard.release()?;
/// assert_eq!(lock.holder()?, None);
/// # Ok::<(), lockmacro_runtime::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Lock {
    spec: Arc<Spec>,
}

#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) kind: dir::Kind,
    pub(crate) path: Arc<PathBuf>,
    pub(crate) cleanup: bool,
    pub(crate) shared: bool,
    /// Whether a long wait is announced on stderr (see `notice`).
    pub(crate) notice: bool,
    /// What a holder does if the lock is lost while held.
    pub(crate) on_lost: OnLost,
    /// Set for a PostgreSQL lock; `path` and `key` then name the server and the key.
    #[cfg(feature = "postgres")]
    pub(crate) pg: Option<crate::pg::PgSpec>,
    /// This process's state for the lock file, shared by every `Lock` of the same path (in the
    /// process that made it; a forked child looks its own up).
    slot: OnceArc<Slot>,
    /// The lock file's path with the directory canonicalized, so that `/var/lock/x` and
    /// `/run/lock/x` (a symlink), or `a/../b`, are recognised as the same lock by the nested-call
    /// check (the call chain).
    key: OnceArc<PathBuf>,
}

/// How long an acquisition may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    Try,
    Block,
    Until(Instant, Duration),
}

enum Attempt {
    Got(LockGuard),
    Busy,
    /// The file we locked is no longer the one at the path: open again.
    Stale,
    /// Admitted in this process, but another process holds the kernel lock; we keep the
    /// admission so that a proxy can wait in the kernel for us.
    Admitted(Arc<LockFile>, u32),
}

impl Spec {
    #[cfg(feature = "postgres")]
    fn set_pg(&mut self, pg: crate::pg::PgSpec) {
        let locator = Arc::new(PathBuf::from(pg.locator()));
        self.path = Arc::clone(&locator);
        self.key = OnceArc::with(locator);
        self.slot = OnceArc::new();
        self.pg = Some(pg);
    }

    #[cfg(feature = "postgres")]
    fn pg_or_default(&self) -> crate::pg::PgSpec {
        self.pg.clone().unwrap_or_else(|| {
            let mut pg = crate::pg::PgSpec::new(None, &self.name);
            pg.on_lost = self.on_lost;
            pg
        })
    }

    /// The PostgreSQL lease (how long a release may wait for the server, too).
    #[cfg(feature = "postgres")]
    pub(crate) fn lease(&self) -> Duration {
        self.pg
            .as_ref()
            .map_or(crate::pg::DEFAULT_LEASE, |pg| pg.lease)
    }

    pub(crate) fn io_error(&self, action: &'static str, source: io::Error) -> Error {
        Error::io(&self.name, &self.path, action, source)
    }
}

impl Lock {
    /// A lock called `name`, in the directory given by `LOCKMACRO_DIR` or else the default
    /// directory (see [`default_dir`](crate::default_dir)). Any string is a valid name: it is
    /// mapped to a safe file name inside the directory.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-new");
    /// let lock = Lock::new("../Reports/2024 Q1").dir(&dir);
    /// assert_eq!(lock.name(), "../Reports/2024 Q1");
    /// assert_eq!(lock.path().parent(), Some(dir.as_path())); // the file stays inside `dir`
    /// let _guard = lock.try_acquire()?;
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn new(name: impl Into<String>) -> Lock {
        let (dir, kind) = dir::resolve(None);
        Lock::from_parts(name.into(), dir, kind)
    }

    fn from_parts(name: String, dir: PathBuf, kind: dir::Kind) -> Lock {
        let path = Arc::new(dir.join(name::file_name(&name)));
        Lock {
            spec: Arc::new(Spec {
                name,
                dir,
                kind,
                path,
                cleanup: false,
                shared: false,
                notice: false,
                on_lost: OnLost::Exit,
                #[cfg(feature = "postgres")]
                pg: None,
                slot: OnceArc::new(),
                key: OnceArc::new(),
            }),
        }
    }

    /// Keeps the lock file in `dir` instead of the default directory. A relative `dir` is made
    /// absolute now, against the current directory, so a later `chdir` does not move the lock.
    /// The directory is created (mode 0700, with its parents) if missing. It may be shared with
    /// other users on purpose; then it must be owned by you or root, and have the sticky bit if
    /// others may write to it (see the README's rules for shared directories).
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-dir").join("jobs");
    /// let lock = Lock::new("nightly-backup").dir(&dir);
    /// assert!(lock.path().starts_with(&dir));
    /// let _guard = lock.try_acquire()?; // creates the directory if it is missing
    /// assert!(dir.is_dir());
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    #[must_use]
    pub fn dir(self, dir: impl Into<PathBuf>) -> Lock {
        let (dir, kind) = dir::resolve(Some(dir.into()));
        let spec = &self.spec;
        let mut lock = Lock::from_parts(spec.name.clone(), dir, kind);
        let new = Arc::make_mut(&mut lock.spec);
        new.cleanup = spec.cleanup;
        new.shared = spec.shared;
        new.notice = spec.notice;
        new.on_lost = spec.on_lost;
        #[cfg(feature = "postgres")]
        if let Some(pg) = &spec.pg {
            new.set_pg(pg.clone());
        }
        lock
    }

    /// Removes the lock file when the lock is released. It is unlinked while still locked, and
    /// every lockmacro acquirer re-checks the identity of the file it locked, so among lockmacro
    /// processes this is race-free. **Not with lockers that do not re-check** (`flock(1)`, shell
    /// recipes, Python's `fcntl.flock`): one of them waiting on the removed file wakes up holding
    /// it while a lockmacro process locks the new file, and both run. Use the default (keep the
    /// file, as flock(1) and cargo do) whenever such a locker shares the lock. Costs several
    /// times a plain lock cycle.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("nightly-backup")
    ///     .dir(std::env::temp_dir().join("lockmacro-doc-cleanup"))
    ///     .cleanup();
    /// let guard = lock.try_acquire()?;
    /// assert!(lock.path().exists());
    /// guard.release()?;
    /// assert!(!lock.path().exists()); // removed on release
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    #[must_use]
    pub fn cleanup(mut self) -> Lock {
        Arc::make_mut(&mut self.spec).cleanup = true;
        self
    }

    /// Makes this a shared (reader) lock: any number of shared holders run together, while an
    /// exclusive holder excludes them all and they exclude it.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-shared");
    /// let reader = Lock::new("catalog").dir(&dir).shared();
    /// let first = reader.try_acquire()?;
    /// let second = reader.try_acquire()?; // readers hold it together
    /// let writer = Lock::new("catalog").dir(&dir);
    /// assert!(writer.try_acquire().unwrap_err().is_contended()); // a writer must wait
    /// drop((first, second));
    /// let _write = writer.try_acquire()?;
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    #[must_use]
    pub fn shared(mut self) -> Lock {
        Arc::make_mut(&mut self.spec).shared = true;
        self
    }

    /// Prints one line to stderr when a wait for this lock lasts more than about a second, the
    /// way cargo prints "Blocking waiting for file lock", so that a person watching a stuck
    /// program knows why:
    ///
    /// ```text
    /// backup: waiting for lock `nightly-backup` (held by pid 4242, path /run/lock/lockmacro-0/nightly-backup-3f2a....lock)
    /// ```
    ///
    /// Once per wait, never for a wait that ends sooner, never for `try_acquire`. Off by
    /// default; `#[exclusive]` turns it on for a `main` that waits (`notice = false` turns it
    /// off there).
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("nightly-backup")
    ///     .dir(std::env::temp_dir().join("lockmacro-doc-notice"))
    ///     .wait_notice(true);
    /// let guard = lock.acquire()?; // free: no wait, no line
    /// # drop(guard);
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    #[must_use]
    pub fn wait_notice(mut self, on: bool) -> Lock {
        Arc::make_mut(&mut self.spec).notice = on;
        self
    }

    /// Holds this lock in PostgreSQL instead of a file: a session-level advisory lock on a
    /// dedicated connection to the server at `url` (a `postgres://` URL or a `key=value`
    /// connection string), so that processes on different machines exclude each other. See the
    /// README's PostgreSQL section for the guarantees and their limits.
    ///
    /// ```no_run
    /// use lockmacro_runtime::Lock;
    ///
    /// // no_run: needs a PostgreSQL server.
    /// let lock = Lock::new("nightly-report").postgres("postgres://app@db.internal/app");
    /// let guard = lock.acquire()?;
    /// guard.check()?; // still ours? (by default a lost lock exits the process instead)
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn postgres(self, url: impl Into<String>) -> Lock {
        self.with_pg(|pg| pg.url = Some(url.into()))
    }

    /// Like [`postgres`](Lock::postgres), with the URL read from `LOCKMACRO_POSTGRES_URL` when
    /// the lock is acquired (a missing variable is an error then, never a fallback to a file).
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("nightly-report").postgres_from_env();
    /// assert!(lock.path().to_string_lossy().contains("$LOCKMACRO_POSTGRES_URL"));
    /// ```
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn postgres_from_env(self) -> Lock {
        self.with_pg(|pg| pg.url = None)
    }

    /// Uses this advisory-lock key instead of the one derived from the name
    /// ([`postgres_key_for`](crate::postgres_key_for)), for example to share a lock with
    /// non-Rust programs that already use a fixed key.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("legacy").postgres_from_env().postgres_key(42);
    /// assert!(lock.path().to_string_lossy().ends_with("advisory lock 42"));
    /// ```
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn postgres_key(self, key: i64) -> Lock {
        self.with_pg(|pg| pg.key = key)
    }

    /// The PostgreSQL lease (default [`DEFAULT_LEASE`](crate::DEFAULT_LEASE), 10 s): the
    /// server ends a session that has been silent this long, freeing its lock, and the holder
    /// heartbeats every fifth of it and declares the lock lost when no heartbeat sent in the
    /// last half of it was answered. Shorter means faster takeover after a frozen network,
    /// more queries. At least 1 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("failover").postgres_from_env().lease(Duration::from_secs(2));
    /// # drop(lock);
    /// ```
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn lease(self, lease: Duration) -> Lock {
        self.with_pg(|pg| pg.lease = lease.max(Duration::from_millis(1)))
    }

    /// What a holder does when the lock is lost while held: exit the process (the default) or
    /// let the guard report it ([`OnLost`]). A file lock is lost when its file is removed or
    /// replaced while held and cannot be re-established (see the README); a PostgreSQL lock when
    /// its session ends or stops answering.
    ///
    /// ```
    /// use lockmacro_runtime::{Lock, OnLost};
    ///
    /// let lock = Lock::new("sync-job")
    ///     .dir(std::env::temp_dir().join("lockmacro-doc-lock-on-lost"))
    ///     .on_lost(OnLost::Report);
    /// let guard = lock.try_acquire()?;
    /// assert!(!guard.is_lost());
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    #[must_use]
    pub fn on_lost(mut self, on_lost: OnLost) -> Lock {
        let spec = Arc::make_mut(&mut self.spec);
        spec.on_lost = on_lost;
        #[cfg(feature = "postgres")]
        if let Some(pg) = &mut spec.pg {
            pg.on_lost = on_lost;
        }
        self
    }

    /// Makes this a PostgreSQL lock (if it is not yet) and changes its settings with `change`.
    #[cfg(feature = "postgres")]
    fn with_pg(mut self, change: impl FnOnce(&mut crate::pg::PgSpec)) -> Lock {
        let spec = Arc::make_mut(&mut self.spec);
        let mut pg = spec.pg_or_default();
        change(&mut pg);
        spec.set_pg(pg);
        self
    }

    /// The lock's name.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("nightly-backup").dir(std::env::temp_dir().join("lockmacro-doc-name"));
    /// assert_eq!(lock.name(), "nightly-backup");
    /// ```
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The lock file's path.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-path");
    /// let lock = Lock::new("nightly-backup").dir(&dir);
    /// assert!(lock.path().starts_with(&dir));
    /// let _guard = lock.try_acquire()?;
    /// assert!(lock.path().is_file()); // the file that is locked
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.spec.path
    }

    /// Takes the lock if it is free, else fails at once with [`Error::Held`] naming the holder.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("report").dir(std::env::temp_dir().join("lockmacro-doc-try"));
    /// let guard = lock.try_acquire()?;
    /// let err = lock.try_acquire().unwrap_err(); // held: fails without waiting
    /// assert_eq!(err.holder_pid(), Some(std::process::id()));
    /// drop(guard);
    /// let _guard = lock.try_acquire()?; // free again
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<LockGuard, Error> {
        self.not_nested()?;
        self.acquire_with(Wait::Try)
    }

    /// Takes the lock, blocking the thread until it is free.
    ///
    /// Fails at once with [`Error::Nested`] when the current `#[exclusive]` call chain already
    /// holds this lock, since waiting would deadlock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("report").dir(std::env::temp_dir().join("lockmacro-doc-acquire"));
    /// let guard = lock.acquire()?;
    /// let other = std::thread::spawn(move || {
    ///     std::thread::sleep(Duration::from_millis(50));
    ///     drop(guard);
    /// });
    /// let _guard = lock.acquire()?; // blocks until the other thread releases it
    /// # other.join().unwrap();
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<LockGuard, Error> {
        self.not_nested()?;
        self.acquire_with(Wait::Block)
    }

    /// Takes the lock, waiting at most `timeout`; [`Error::Timeout`] after that.
    ///
    /// flock has no timeout, and polling is slow to notice a release or burns CPU, so when
    /// another process holds the lock a helper thread waits in the kernel for this call (at most
    /// one per lock file) while the caller waits for it with its deadline: the handoff takes tens
    /// of microseconds and the wait costs no CPU. If the caller gives up, the helper stays until
    /// the lock is next released, then takes it for an instant and releases it. So a process
    /// that timed out may still briefly appear as the holder at that moment (another process's
    /// `try_acquire` can see it held), and a waiting helper, like any waiter, keeps the last
    /// shared `cleanup` holder from removing the file. Exclusion is never affected.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lockmacro_runtime::{Error, Lock};
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-timeout");
    /// let _held = Lock::new("report").dir(&dir).acquire()?;
    /// let lock = Lock::new("report").dir(&dir); // contends exactly like another process
    /// match lock.acquire_timeout(Duration::from_millis(50)) {
    ///     Err(Error::Timeout { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
    ///     other => panic!("expected Timeout, got {other:?}"),
    /// }
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard, Error> {
        self.not_nested()?;
        self.acquire_with(deadline(timeout))
    }

    /// Takes the lock without blocking the executor, on any executor: when another process
    /// holds the lock, a helper thread waits in the kernel and wakes the task (as for
    /// [`acquire_timeout`](Lock::acquire_timeout), whose notes apply); when another task of this
    /// process holds it, the task retries after a capped backoff on a shared timer thread.
    /// Dropping the future cancels the wait: no lock is kept and no descriptor leaks.
    ///
    /// The future is `Send`, so a multi-threaded executor can run it. (This example runs no
    /// executor: it checks that, and that dropping an unpolled future takes nothing.)
    ///
    /// ```
    /// use lockmacro_runtime::{Error, Lock};
    ///
    /// async fn rebuild(lock: &Lock) -> Result<(), Error> {
    ///     let _guard = lock.acquire_async().await?; // the task waits, the thread does not
    ///     Ok(()) // ... the work, then the guard is dropped
    /// }
    ///
    /// fn spawnable<F: std::future::Future + Send>(_: F) {}
    /// let lock = Lock::new("cache").dir(std::env::temp_dir().join("lockmacro-doc-async"));
    /// spawnable(rebuild(&lock));
    /// assert_eq!(lock.holder()?, None);
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn acquire_async(&self) -> impl Future<Output = Result<LockGuard, Error>> + Send + '_ {
        Acquire::new(self, None, true)
    }

    /// Like [`acquire_async`](Lock::acquire_async), giving up with [`Error::Timeout`] after
    /// `timeout` (counted from the first poll).
    ///
    /// (This example runs no executor; it checks that the future is `Send`.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use lockmacro_runtime::{Error, Lock};
    ///
    /// async fn refresh(lock: &Lock) -> Result<bool, Error> {
    ///     match lock.acquire_timeout_async(Duration::from_secs(5)).await {
    ///         Ok(_guard) => Ok(true), // ... the work, holding the lock
    ///         Err(Error::Timeout { .. }) => Ok(false), // still busy after 5 s: skip this time
    ///         Err(e) => Err(e),
    ///     }
    /// }
    ///
    /// fn spawnable<F: std::future::Future + Send>(_: F) {}
    /// let lock = Lock::new("cache").dir(std::env::temp_dir().join("lockmacro-doc-timeout-async"));
    /// spawnable(refresh(&lock));
    /// ```
    pub fn acquire_timeout_async(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<LockGuard, Error>> + Send + '_ {
        Acquire::new(self, Some(timeout), true)
    }

    /// The PID of a process holding the lock now, or `None` if nobody holds it. A stale PID left
    /// in the file by a crashed holder is never reported: on Linux the kernel's lock table is
    /// asked; elsewhere a non-blocking shared probe decides. For a shared lock this is the PID
    /// recorded by the most recent shared holder if it still holds the lock, else the lowest PID
    /// among the holders. For a PostgreSQL lock, the server is asked; a holder on another host
    /// has no PID here and is reported as `None` too.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-holder");
    /// let lock = Lock::new("report").dir(&dir);
    /// assert_eq!(lock.holder()?, None);
    /// let guard = Lock::new("report").dir(&dir).try_acquire()?;
    /// assert_eq!(lock.holder()?, Some(std::process::id())); // asking does not take the lock
    /// drop(guard);
    /// assert_eq!(lock.holder()?, None);
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn holder(&self) -> Result<Option<u32>, Error> {
        let spec = &self.spec;
        #[cfg(feature = "postgres")]
        if let Some(pg) = &spec.pg {
            return crate::pg::holder(self, pg);
        }
        let Some(f) =
            file::open_existing(&spec.path).map_err(|e| spec.io_error("open lock file", e))?
        else {
            return Ok(None);
        };
        if let Some(pids) = file::kernel_holders(&f) {
            return Ok(if pids.is_empty() {
                None
            } else {
                file::holder_pid(&f)
            });
        }
        // A shared probe: taken (and released on close) only if nobody holds it exclusively.
        let free = file::try_lock(&f, true).map_err(|e| spec.io_error("probe lock file", e))?;
        Ok(if free { None } else { file::read_pid(&f) })
    }

    pub(crate) fn spec(&self) -> &Spec {
        &self.spec
    }

    fn not_nested(&self) -> Result<(), Error> {
        match chain::held(&self.key()) {
            Some(held_shared) => Err(self.nested(held_shared)),
            None => Ok(()),
        }
    }

    pub(crate) fn nested(&self, held_shared: bool) -> Error {
        Error::Nested {
            name: self.spec.name.clone(),
            path: self.path().to_owned(),
            held_shared,
        }
    }

    /// This process's slot for the lock file (see `slot`).
    pub(crate) fn slot(&self) -> Arc<Slot> {
        let pid = crate::pid::current();
        let slot = self.spec.slot.get_or_init(|| self.find_slot(pid));
        if slot.pid == pid {
            slot
        } else {
            self.find_slot(pid) // a forked child: the cached slot is the parent's
        }
    }

    fn find_slot(&self, pid: u32) -> Arc<Slot> {
        let spec = &self.spec;
        let place = || Place {
            name: spec.name.clone(),
            dir: spec.dir.clone(),
            kind: spec.kind,
            path: spec.path.to_path_buf(),
        };
        Slot::for_place(place, &spec.path, pid)
    }

    /// Identifies the lock file whatever the spelling of its directory (see `Spec::key`).
    pub(crate) fn key(&self) -> Arc<PathBuf> {
        if let Some(key) = self.spec.key.get() {
            return key;
        }
        let Ok(dir) = std::fs::canonicalize(&self.spec.dir) else {
            // No directory yet, so nothing can hold a lock in it yet; try again next time.
            return Arc::clone(&self.spec.path);
        };
        let name = self.spec.path.file_name().unwrap_or_default();
        self.spec.key.get_or_init(|| Arc::new(dir.join(name)))
    }

    /// The synchronous acquisition, without the nested-call check.
    pub(crate) fn acquire_with(&self, wait: Wait) -> Result<LockGuard, Error> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = &self.spec.pg {
            return crate::pg::acquire(self, pg, wait.into());
        }
        let since = trace::Since::now();
        let result = self.acquire_loop(wait);
        if result.is_ok() {
            trace::acquired(&self.spec, since);
        }
        result
    }

    /// Called the first time an acquisition finds the lock taken: the `contended` event, and
    /// the waiting notice if this is a wait that asks for one (it is cancelled when dropped).
    pub(crate) fn contention(&self, waits: bool) -> Option<Notice> {
        if trace::wants_contended() {
            trace::contended(&self.spec, self.current_holder());
        }
        if waits {
            Notice::arm(self)
        } else {
            None
        }
    }

    fn acquire_loop(&self, wait: Wait) -> Result<LockGuard, Error> {
        // Held for the whole acquisition, and by the guard after it (in a forked child nothing
        // else keeps the child's own slot alive).
        let slot = &self.slot();
        let mut stale = 0u32;
        let mut contended = false;
        // Armed for the whole wait, however many rounds it takes; cancelled on return.
        let mut _notice = None;
        if matches!(wait, Wait::Block) && (self.spec.notice || trace::wants_contended()) {
            // A blocking wait contends inside the kernel call, out of sight: look first.
            match self.attempt(slot, Wait::Try, false)? {
                Attempt::Got(guard) => return Ok(guard),
                Attempt::Busy => {
                    contended = true;
                    _notice = self.contention(true);
                }
                _ => {}
            }
        }
        loop {
            match self.attempt(slot, wait, matches!(wait, Wait::Until(..)))? {
                Attempt::Got(guard) => return Ok(guard),
                // A blocking or timed wait goes round until it succeeds or its deadline passes;
                // only a plain try bounds how often the file may be replaced under it.
                Attempt::Stale => match wait {
                    Wait::Try => stale = self.count_stale(stale)?,
                    Wait::Until(deadline, timeout) if Instant::now() >= deadline => {
                        return Err(self.timeout_error(timeout))
                    }
                    _ => {}
                },
                Attempt::Admitted(f, pid) => {
                    if !std::mem::replace(&mut contended, true) {
                        _notice = self.contention(true);
                    }
                    let Wait::Until(deadline, timeout) = wait else {
                        // Only timed waits keep the admission; never leave it taken.
                        slot.released();
                        return Err(self.held_error());
                    };
                    let outcome = match slot.start_proxy(f.clone(), self.spec.shared) {
                        Ok(()) => slot.wait_proxy(deadline),
                        Err(e) => Proxied::Done(Err(e)),
                    };
                    match self.proxied(slot, outcome, &f, pid)? {
                        Some(Attempt::Got(guard)) => return Ok(guard),
                        Some(_) => {} // stale: go round
                        None => return Err(self.timeout_error(timeout)),
                    }
                }
                Attempt::Busy => {
                    if !contended {
                        self.contention(false);
                    }
                    match wait {
                        // Busy without admission: another thread of this process held on past
                        // the deadline.
                        Wait::Until(_, timeout) => return Err(self.timeout_error(timeout)),
                        _ => return Err(self.held_error()),
                    }
                }
            }
        }
    }

    /// Finishes a proxied wait: `Some(Got | Stale)` once the proxy is done, `None` if the
    /// waiter gave up and the proxy keeps the admission.
    fn proxied(
        &self,
        slot: &Arc<Slot>,
        outcome: Proxied,
        f: &LockFile,
        pid: u32,
    ) -> Result<Option<Attempt>, Error> {
        let spec = &self.spec;
        match outcome {
            Proxied::Pending => Ok(None),
            Proxied::Done(Ok(())) => {
                let attempt = self.finish(slot, f, pid, slot.memo());
                if !matches!(attempt, Ok(Attempt::Got(_))) {
                    slot.released();
                }
                attempt.map(Some)
            }
            Proxied::Done(Err(e)) => {
                slot.released();
                Err(spec.io_error("lock", e))
            }
        }
    }

    /// Bounds how often a plain try may find the file replaced under it (files churned by
    /// `cleanup` holders): after that many, the lock is plainly busy.
    fn count_stale(&self, stale: u32) -> Result<u32, Error> {
        if stale >= 1000 {
            return Err(self.held_error());
        }
        Ok(stale + 1)
    }

    /// One attempt: be admitted among this process's threads, then take the kernel lock on the
    /// (cached) descriptor, check the file is still the one at the path, record our PID. Only
    /// `Wait::Block` blocks in the kernel. With `keep`, a kernel lock held elsewhere gives
    /// `Attempt::Admitted` (admission kept) instead of `Attempt::Busy`.
    fn attempt(&self, slot: &Arc<Slot>, wait: Wait, keep: bool) -> Result<Attempt, Error> {
        let spec = &self.spec;
        let patience = match wait {
            Wait::Try => Patience::None,
            Wait::Block => Patience::Forever,
            Wait::Until(deadline, _) => Patience::Until(deadline),
        };
        let pid = slot.pid;
        match slot.admit(spec.shared, patience) {
            Admission::Busy => return Ok(Attempt::Busy),
            Admission::Joined => {
                slot.joined(spec.on_lost == OnLost::Exit);
                return Ok(Attempt::Got(LockGuard::new(
                    self.clone(),
                    Arc::clone(slot),
                    pid,
                )));
            }
            Admission::First => {}
        }
        let outcome = self.take_kernel_lock(slot, matches!(wait, Wait::Block), pid, keep);
        if !matches!(outcome, Ok(Attempt::Got(_) | Attempt::Admitted(..))) {
            slot.released();
        }
        outcome
    }

    fn take_kernel_lock(
        &self,
        slot: &Arc<Slot>,
        block: bool,
        pid: u32,
        keep: bool,
    ) -> Result<Attempt, Error> {
        let spec = &self.spec;
        let slot::Descriptor {
            file: f,
            memo,
            fresh,
        } = slot.file(|| self.open())?;
        let lock_error = |e| spec.io_error("lock", e);
        if block && fresh && !spec.shared {
            // Just opened by path, so live: wait in one call (`finish` checks the file). (A
            // shared request tries first, see `Slot::admit`.)
            file::lock_blocking(&f, spec.shared).map_err(lock_error)?;
            return self.finish(slot, &f, pid, memo);
        }
        if file::try_lock(&f, spec.shared).map_err(lock_error)? {
            return self.finish(slot, &f, pid, memo);
        }
        // Taken. Before waiting on this descriptor, make sure it is still a live file: a cached
        // descriptor of a deleted file could be held by someone forever. (Exclusion does not
        // rest on this: `finish` checks the file's identity once the lock is ours.) A blocking
        // wait checks the link count only, the costly path lookup is for the slower modes.
        let check_error = |e| spec.io_error("check lock file", e);
        let live = if block {
            file::linked(&f).map_err(check_error)?
        } else {
            file::still_named(&f, &spec.path).map_err(check_error)?
        };
        if !live {
            slot.discard_file();
            return Ok(Attempt::Stale);
        }
        if block {
            slot.blocking();
            file::lock_blocking(&f, spec.shared).map_err(lock_error)?;
            return self.finish(slot, &f, pid, memo);
        }
        Ok(if keep {
            Attempt::Admitted(f, pid)
        } else {
            Attempt::Busy
        })
    }

    /// With the kernel lock held: check the file is still the one at the path, record our PID.
    /// `memo` is the slot's memo of `f` (see `file::Memo`).
    fn finish(
        &self,
        slot: &Arc<Slot>,
        f: &LockFile,
        pid: u32,
        memo: Option<file::Memo>,
    ) -> Result<Attempt, Error> {
        let spec = &self.spec;
        let check_identity = !crate::hooks::broken("no-identity-check");
        if !memo.is_some_and(|memo| memo.may_vouch()) {
            // A full lookup follows: only what the watch sees from now on concerns this hold.
            crate::watch::hold_begins(slot);
        }
        let outcome = file::stamp(f, &spec.path, check_identity, pid, memo);
        if !matches!(outcome, Ok(Stamped::Held(_))) {
            // Not ours to keep: unlock now rather than when the last reference closes it.
            file::unlock(f);
            slot.discard_file();
        }
        match outcome {
            Ok(Stamped::Held(now)) => {
                if now != memo {
                    slot.remember(now);
                }
                slot.locked(spec.shared, spec.on_lost == OnLost::Exit);
                Ok(Attempt::Got(LockGuard::new(
                    self.clone(),
                    Arc::clone(slot),
                    pid,
                )))
            }
            Ok(Stamped::Stale) => Ok(Attempt::Stale),
            Ok(Stamped::Untrusted(reason)) => Err(Error::UnsafeFile {
                name: spec.name.clone(),
                path: spec.path.to_path_buf(),
                reason,
            }),
            Err(e) => Err(spec.io_error("check and stamp lock file", e)),
        }
    }

    /// Opens the lock file by name in its checked directory (see `dir`).
    fn open(&self) -> Result<slot::Opened, Error> {
        let spec = &self.spec;
        let dir = dir::open(&spec.name, &spec.dir, spec.kind)?;
        #[cfg(unix)]
        let opened = {
            let name = spec.path.file_name().unwrap_or_default();
            LockFile::open_with(|| file::open_at(&dir.fd, name, dir.file_mode))
        };
        #[cfg(not(unix))]
        let opened = LockFile::open_with(|| file::open(&spec.path));
        let file = opened.map_err(|e| spec.io_error("open lock file", e))?;
        Ok(slot::Opened {
            file,
            memos: dir.memos,
        })
    }

    /// Who holds the lock, for an error message: best effort, never an error itself.
    pub(crate) fn current_holder(&self) -> Option<u32> {
        #[cfg(feature = "postgres")]
        if self.spec.pg.is_some() {
            return None; // asking needs a connection; the session reports holders itself
        }
        self.holder_info().pid
    }

    /// Who holds the lock, best effort: the PID, and whether it is a foreign locker.
    pub(crate) fn holder_info(&self) -> file::Holder {
        #[cfg(feature = "postgres")]
        if self.spec.pg.is_some() {
            return file::Holder::default(); // asking needs a connection
        }
        let f = match self.slot().cached_file() {
            Some(f) => f,
            None => match file::open_existing(self.path()) {
                Ok(Some(f)) => Arc::new(f),
                _ => return file::Holder::default(),
            },
        };
        file::holder(&f)
    }

    fn held_error(&self) -> Error {
        Error::Held {
            name: self.spec.name.clone(),
            path: self.path().to_owned(),
            pid: self.current_holder(),
        }
    }

    fn timeout_error(&self, timeout: Duration) -> Error {
        let holder = self.holder_info();
        trace::timed_out(&self.spec, timeout, holder.pid);
        Error::Timeout {
            name: self.spec.name.clone(),
            path: self.path().to_owned(),
            timeout,
            pid: holder.pid,
        }
    }
}

#[cfg(feature = "postgres")]
impl From<Wait> for crate::pg::PgWait {
    fn from(wait: Wait) -> Self {
        match wait {
            Wait::Try => crate::pg::PgWait::Try,
            Wait::Block => crate::pg::PgWait::Until(None, Duration::ZERO),
            Wait::Until(at, timeout) => crate::pg::PgWait::Until(Some(at), timeout),
        }
    }
}

pub(crate) fn deadline(timeout: Duration) -> Wait {
    let now = Instant::now();
    let until = now
        .checked_add(timeout)
        .unwrap_or(now + Duration::from_secs(1 << 40));
    Wait::Until(until, timeout)
}

/// The future behind [`Lock::acquire_async`]: a non-blocking attempt; if another process holds
/// the lock, a proxy thread waits in the kernel and wakes the task (see `slot`); if another task
/// of this process is in the way, the task retries after a capped backoff on the shared timer.
#[derive(Debug)]
pub(crate) struct Acquire<'a> {
    lock: &'a Lock,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    started: bool,
    check_nested: bool,
    pause: Duration,
    /// The slot, from the first poll on (see `acquire_loop`).
    slot: Option<Arc<Slot>>,
    /// Set while a proxy waits in the kernel for us.
    proxy: Option<(Arc<LockFile>, u32)>,
    /// Whether the timer will wake us at the deadline already.
    deadline_armed: bool,
    since: trace::Since,
    contended: bool,
    /// The waiting notice, armed once the lock is found taken; cancelled when dropped.
    notice: Option<Notice>,
    /// A PostgreSQL acquisition: its session thread does all the waiting.
    #[cfg(feature = "postgres")]
    pg: Option<PgFuture>,
}

#[cfg(feature = "postgres")]
struct PgFuture(Pin<Box<dyn Future<Output = Result<LockGuard, Error>> + Send>>);

#[cfg(feature = "postgres")]
impl std::fmt::Debug for PgFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgFuture")
    }
}

impl<'a> Acquire<'a> {
    pub(crate) fn new(lock: &'a Lock, timeout: Option<Duration>, check_nested: bool) -> Self {
        Acquire {
            lock,
            timeout,
            deadline: None,
            started: false,
            check_nested,
            pause: wait::FIRST_PAUSE,
            slot: None,
            proxy: None,
            deadline_armed: false,
            since: trace::Since::now(),
            contended: false,
            notice: None,
            #[cfg(feature = "postgres")]
            pg: None,
        }
    }

    fn contention(&mut self) {
        if !std::mem::replace(&mut self.contended, true) {
            self.notice = self.lock.contention(true);
        }
    }

    fn got(&mut self, guard: LockGuard) -> Poll<Result<LockGuard, Error>> {
        self.notice = None;
        trace::acquired(&self.lock.spec, self.since);
        Poll::Ready(Ok(guard))
    }

    fn timed_out(&self) -> Option<Duration> {
        match (self.deadline, self.timeout) {
            (Some(deadline), Some(timeout)) if Instant::now() >= deadline => Some(timeout),
            _ => None,
        }
    }
}

impl Future for Acquire<'_> {
    type Output = Result<LockGuard, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let lock = this.lock;
        if !this.started {
            this.started = true;
            this.since = trace::Since::now();
            if this.check_nested {
                if let Err(e) = lock.not_nested() {
                    return Poll::Ready(Err(e));
                }
            }
            let wait = this.timeout.map_or(Wait::Block, deadline);
            if let Wait::Until(at, _) = wait {
                this.deadline = Some(at);
            }
            #[cfg(feature = "postgres")]
            if let Some(pg) = &lock.spec.pg {
                this.pg = Some(PgFuture(Box::pin(crate::pg::acquire_async(
                    lock,
                    pg,
                    wait.into(),
                ))));
            }
        }
        #[cfg(feature = "postgres")]
        if let Some(pg) = &mut this.pg {
            return pg.0.as_mut().poll(cx);
        }
        let slot = Arc::clone(this.slot.get_or_insert_with(|| lock.slot()));
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
                match (lock.proxied(slot, outcome, &f, pid), expired) {
                    (Ok(None), Some(timeout)) => {
                        this.proxy = None;
                        return Poll::Ready(Err(lock.timeout_error(timeout)));
                    }
                    (Ok(None), None) => {
                        if let (Some(deadline), false) = (this.deadline, this.deadline_armed) {
                            this.deadline_armed = true;
                            wait::wake_at(deadline, cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                    (Ok(Some(Attempt::Got(guard))), _) => {
                        this.proxy = None;
                        return this.got(guard);
                    }
                    (Ok(Some(_)), _) => this.proxy = None, // stale: go round
                    (Err(e), _) => {
                        this.proxy = None;
                        return Poll::Ready(Err(e));
                    }
                }
                continue;
            }
            match lock.attempt(slot, Wait::Try, true) {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(Attempt::Got(guard)) => return this.got(guard),
                Ok(Attempt::Stale) => {} // replaced under us: go round at once
                Ok(Attempt::Admitted(f, pid)) => {
                    this.contention();
                    if let Err(e) = slot.start_proxy(Arc::clone(&f), lock.spec.shared) {
                        slot.released();
                        let spec = &lock.spec;
                        return Poll::Ready(Err(spec.io_error("wait for", e)));
                    }
                    this.proxy = Some((f, pid));
                }
                Ok(Attempt::Busy) => {
                    this.contention();
                    if let Some(timeout) = this.timed_out() {
                        return Poll::Ready(Err(lock.timeout_error(timeout)));
                    }
                    let mut wake = Instant::now() + this.pause;
                    if let Some(deadline) = this.deadline {
                        wake = wake.min(deadline);
                    }
                    this.pause = wait::next_pause(this.pause);
                    wait::wake_at(wake, cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for Acquire<'_> {
    /// Cancellation: if a proxy is waiting for us, it releases whatever it gets; if it already
    /// got the lock, the guard made here releases it at once.
    fn drop(&mut self) {
        if let Some((f, pid)) = self.proxy.take() {
            if crate::pid::current() != pid {
                return; // an inherited future in a forked child: the parent's state
            }
            let Some(slot) = &self.slot else { return };
            let outcome = slot.abandon_proxy();
            drop(self.lock.proxied(slot, outcome, &f, pid));
        }
    }
}
