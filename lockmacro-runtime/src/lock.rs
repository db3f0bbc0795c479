use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::chain;
use crate::deadline::Deadline;
use crate::error::{Error, Location};
use crate::file;
use crate::guard::LockGuard;
use crate::lost::OnLost;
use crate::request::{Announce, Request, Share};

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
    backend: Backend,
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
        let spec = file::Spec::new(Request::new(name.into()), None);
        Lock {
            backend: Backend::File(Arc::new(spec)),
        }
    }

    /// A lock on exactly the file at `path`, whatever program locks it: the file name is not
    /// derived from a lock name, so a shell script's `flock -n /var/lock/mailsync.lock ...` and
    /// this lock exclude each other both ways. The lock's name, in messages, is `path` as given.
    ///
    /// A relative `path` is made absolute now, against the current directory. The file is
    /// created (mode 0644) if missing, but its directory is not: a missing directory is an error
    /// naming it. The file follows the rules of every lock file (not a symbolic link, one link,
    /// owned by you or root) and its directory those of a shared directory (owned by you or
    /// root, sticky if others may write to it). [`dir`](Lock::dir) and
    /// [`system`](Lock::system) change nothing on such a lock. Keep the file (no
    /// [`cleanup`](Lock::cleanup)) when other tools lock it too.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-at");
    /// std::fs::create_dir_all(&dir).unwrap(); // never created by `at`
    /// let file = dir.join("mailsync.lock");
    /// let lock = Lock::at(&file);
    /// assert_eq!(lock.path(), file);
    /// assert_eq!(lock.name(), file.display().to_string());
    /// let _guard = lock.try_acquire()?; // `flock -n <file> ...` now fails, and the other way round
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn at(path: impl AsRef<Path>) -> Lock {
        let path = path.as_ref();
        let request = Request::new(path.to_string_lossy().into_owned());
        let spec = file::Spec::at(request, path);
        Lock {
            backend: Backend::File(Arc::new(spec)),
        }
    }

    /// Makes this one lock for all users of the machine: its file goes in the system directory
    /// ([`system_dir`](crate::system_dir), `/run/lock/lockmacro` on most Linux systems) instead
    /// of your own, so a program run by root, by a service user and by you excludes itself.
    /// `LOCKMACRO_DIR` does not move it.
    ///
    /// The directory is created if missing, mode 1777 (anyone may add files, nobody may remove
    /// another's), and must be owned by root or by you: one made by another user is refused
    /// with [`Error::UnsafeDir`](crate::Error::UnsafeDir), saying what to run as root. Lock files
    /// there are created 0644 (other users lock them through read-only descriptors), and a file
    /// is used only if it is owned by root or by you; so **a lock shared by several non-root
    /// users needs its file made by root first** (or by a root process taking the lock once),
    /// else the first user's file is refused for the others with
    /// [`Error::UnsafeFile`](crate::Error::UnsafeFile). See the README's "User or system scope".
    ///
    /// With [`dir`](Lock::dir), the last one called wins. On a lock made with
    /// [`at`](Lock::at), and on a PostgreSQL lock, it changes nothing.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("firmware-update").system();
    /// assert_eq!(lock.path().parent(), Some(lockmacro_runtime::system_dir().as_path()));
    /// let mine = Lock::new("firmware-update").system().dir("/srv/locks"); // the last one wins
    /// assert!(mine.path().starts_with("/srv/locks"));
    /// ```
    #[must_use]
    #[allow(irrefutable_let_patterns)] // without `postgres`, every lock is a file lock
    pub fn system(mut self) -> Lock {
        if let Backend::File(spec) = &self.backend {
            self.backend = Backend::File(Arc::new(spec.in_system()));
        }
        self
    }

    /// Keeps the lock file in `dir` instead of the default directory. A relative `dir` is made
    /// absolute now, against the current directory, so a later `chdir` does not move the lock.
    /// The directory is created (mode 0700, with its parents) if missing. It may be shared with
    /// other users on purpose; then it must be owned by you or root, and have the sticky bit if
    /// others may write to it (see the README's rules for shared directories). With
    /// [`system`](Lock::system), the last one called wins. A lock made with [`at`](Lock::at)
    /// stays at its path, and a PostgreSQL lock has no file: on those it changes nothing.
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
    #[allow(irrefutable_let_patterns)] // without `postgres`, every lock is a file lock
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Lock {
        if let Backend::File(spec) = &self.backend {
            self.backend = Backend::File(Arc::new(spec.in_dir(dir.into())));
        }
        self
    }

    /// Removes the lock file when the lock is released. It is unlinked while still locked, and
    /// every lockmacro acquirer re-checks the identity of the file it locked, so among lockmacro
    /// processes this is race-free. **Not with lockers that do not re-check** (`flock(1)`, shell
    /// recipes, Python's `fcntl.flock`): one of them waiting on the removed file wakes up holding
    /// it while a lockmacro process locks the new file, and both run. Use the default (keep the
    /// file, as flock(1) and cargo do) whenever such a locker shares the lock. Costs several
    /// times a plain lock cycle. File locks only (a PostgreSQL lock has no file).
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
    #[allow(irrefutable_let_patterns)] // without `postgres`, every lock is a file lock
    pub fn cleanup(mut self) -> Lock {
        if let Backend::File(spec) = &mut self.backend {
            Arc::make_mut(spec).cleanup = file::Cleanup::Remove;
        }
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
        self.backend.request_mut().share = Share::Shared;
        self
    }

    /// Lets up to `n` holders in at once, across processes (a pool of workers sharing `n`
    /// licences, a semaphore: portalocker's `BoundedSemaphore`). `1`, the default, is a plain
    /// lock; `0` is taken as `1`. Every acquisition works as for a plain lock (try, wait,
    /// timeout, async, the nested-call check), and waiting is fair: once a waiter is first in
    /// line, no newcomer takes a slot before it (see the README's "N at a time" for the exact
    /// bound). [`holders`](Lock::holders) lists the holders; [`holder`](Lock::holder) names one.
    ///
    /// The lock is `n` files, the lock file's path with `.1` to `.n` appended, each with one
    /// holder at most, and a gate file (`.gate`) where waiters line up: every user of the lock
    /// must ask for the same `n`, and a plain lock of the same name is another lock. Exclusive
    /// only: acquiring a [`shared`](Lock::shared) lock with slots fails with [`Error::Io`]
    /// (`Unsupported`); so does a [`postgres`](Lock::postgres) lock with slots
    /// ([`Error::Postgres`]).
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-slots");
    /// let renderers = Lock::new("render").dir(&dir).slots(2);
    /// let first = renderers.try_acquire()?;
    /// let second = renderers.try_acquire()?; // two at a time
    /// assert!(renderers.try_acquire().unwrap_err().is_contended()); // not three
    /// assert_eq!(renderers.holders()?, vec![std::process::id(); 2]);
    /// drop(first);
    /// let _third = renderers.try_acquire()?; // a slot is free again
    /// # drop(second);
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    #[must_use]
    pub fn slots(mut self, n: u32) -> Lock {
        self.backend.request_mut().slots = n.max(1);
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
        self.backend.request_mut().announce = if on {
            Announce::LongWaits
        } else {
            Announce::Quiet
        };
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
    /// assert!(lock.location().to_string().contains("$LOCKMACRO_POSTGRES_URL"));
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
    /// assert!(lock.location().to_string().ends_with("advisory lock 42"));
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

    /// Gives every acquisition a fencing token ([`LockGuard::fencing_token`]): a number that
    /// strictly increases with every acquisition of this lock, taken once it is held. A file
    /// lock keeps the counter in a file beside the lock file (`<lock file>.state`, never
    /// removed, also with `cleanup`); a PostgreSQL lock in the table `lockmacro_state`, created
    /// on first use (see the README for the SQL to run by hand when the role may not create
    /// it), so it survives a server restart. Exclusive locks only: a shared acquisition with it
    /// fails.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("doc-fencing-lock")
    ///     .dir(std::env::temp_dir().join("lockmacro-doc-fencing-lock"))
    ///     .fencing();
    /// let guard = lock.try_acquire()?;
    /// assert!(guard.fencing_token().is_some());
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    #[must_use]
    pub fn fencing(mut self) -> Lock {
        self.backend.request_mut().record.token = true;
        self
    }

    /// Refuses a start within `period` of the last start of this lock, by any holder, even one
    /// that has since ended and exited: the acquisition fails with [`Error::TooSoon`] (which
    /// [`Error::is_contended`] counts, so `#[exclusive]`'s conflict policy applies). For a job
    /// that cron starts on several hosts seconds apart: the first runs, the others skip. Time
    /// is judged on one clock: the machine's for a file lock (the start is kept beside the
    /// lock file, as for [`fencing`](Lock::fencing)), the server's for PostgreSQL. Exclusive
    /// locks only.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lockmacro_runtime::{Error, Lock};
    ///
    /// let lock = Lock::new("doc-once-per")
    ///     .dir(std::env::temp_dir().join("lockmacro-doc-once-per"))
    ///     .once_per(Duration::from_secs(3600));
    /// # let _ = std::fs::remove_file(lock.path().with_extension("lock.state"));
    /// drop(lock.try_acquire()?); // the first start of the hour runs
    /// match lock.try_acquire() {
    ///     Err(Error::TooSoon { period, .. }) => assert_eq!(period, Duration::from_secs(3600)),
    ///     other => panic!("expected TooSoon, got {other:?}"),
    /// }
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    #[must_use]
    pub fn once_per(mut self, period: Duration) -> Lock {
        self.backend.request_mut().record.period = Some(period);
        self
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
        self.backend.request_mut().on_lost = on_lost;
        self
    }

    /// Makes this a PostgreSQL lock (if it is not yet) and changes its settings with `change`.
    #[cfg(feature = "postgres")]
    fn with_pg(mut self, change: impl FnOnce(&mut crate::postgres::Spec)) -> Lock {
        let mut spec = match self.backend {
            Backend::Postgres(spec) => spec,
            Backend::File(file) => Arc::new(crate::postgres::Spec::new(file.request.clone(), None)),
        };
        let changing = Arc::make_mut(&mut spec);
        change(changing);
        changing.url_changed();
        self.backend = Backend::Postgres(spec);
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
        self.backend.name()
    }

    /// Where the lock is: its file, or its PostgreSQL server and key.
    ///
    /// ```
    /// use lockmacro_runtime::{Location, Lock};
    ///
    /// let lock = Lock::new("nightly-backup").dir(std::env::temp_dir().join("lockmacro-doc-loc"));
    /// assert_eq!(lock.location(), Location::File(lock.path().to_owned()));
    /// ```
    pub fn location(&self) -> Location {
        self.backend.location()
    }

    /// The lock file's path (empty for a PostgreSQL lock, which has no file: see
    /// [`location`](Lock::location)).
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
        self.backend.path()
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
        self.acquire_unchecked(Deadline::Now)
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
        self.acquire_unchecked(Deadline::Never)
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
    #[doc(alias = "timeout")]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard, Error> {
        self.not_nested()?;
        self.acquire_unchecked(Deadline::after(timeout))
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
    #[allow(clippy::manual_async_fn)] // the signature states the future is `Send`
    pub fn acquire_async(&self) -> impl Future<Output = Result<LockGuard, Error>> + Send + '_ {
        async move {
            self.not_nested()?;
            self.acquire_async_unchecked(Deadline::Never).await
        }
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
    #[allow(clippy::manual_async_fn)] // the signature states the future is `Send`
    pub fn acquire_timeout_async(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<LockGuard, Error>> + Send + '_ {
        async move {
            self.not_nested()?;
            // Counted from the first poll, when this block starts.
            self.acquire_async_unchecked(Deadline::after(timeout)).await
        }
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
        self.backend.holder()
    }

    /// The PIDs of the processes holding the lock now, empty if nobody does: with
    /// [`slots`](Lock::slots), one entry per held slot (a process holding two slots is listed
    /// twice); for a shared lock every shared holder (on Linux, where the kernel lists them;
    /// elsewhere the one [`holder`](Lock::holder) finds); for a PostgreSQL lock, `holder()`.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-holders");
    /// let pool = Lock::new("workers").dir(&dir).slots(3);
    /// assert!(pool.holders()?.is_empty());
    /// let _guard = pool.acquire()?;
    /// assert_eq!(pool.holders()?, [std::process::id()]);
    /// assert_eq!(pool.holder()?, Some(std::process::id()));
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn holders(&self) -> Result<Vec<u32>, Error> {
        self.backend.holders()
    }

    pub(crate) fn is_shared(&self) -> bool {
        self.backend.share() == Share::Shared
    }

    /// The lock as the call chain knows it.
    pub(crate) fn keyed(&self) -> Arc<dyn chain::Keyed> {
        self.backend.keyed()
    }

    /// How the current call chain holds this lock, if it does.
    pub(crate) fn held_by_chain(&self) -> Option<Share> {
        chain::held(&self.backend)
    }

    fn not_nested(&self) -> Result<(), Error> {
        match self.held_by_chain() {
            Some(held) => Err(self.nested(held)),
            None => Ok(()),
        }
    }

    /// The error for a request the call chain's hold (`held`) makes impossible.
    pub(crate) fn nested(&self, held: Share) -> Error {
        Error::Nested {
            name: self.name().to_owned(),
            at: self.location(),
            held_shared: held == Share::Shared,
        }
    }

    /// The synchronous acquisition, without the nested-call check.
    pub(crate) fn acquire_unchecked(&self, deadline: Deadline) -> Result<LockGuard, Error> {
        let hold = self.backend.acquire(deadline)?;
        Ok(LockGuard::new(self.backend.clone(), hold))
    }

    /// The asynchronous acquisition, without the nested-call check.
    pub(crate) async fn acquire_async_unchecked(
        &self,
        deadline: Deadline,
    ) -> Result<LockGuard, Error> {
        let hold = self.backend.acquire_async(deadline).await?;
        Ok(LockGuard::new(self.backend.clone(), hold))
    }
}
