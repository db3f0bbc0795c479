use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a lock was not obtained.
///
/// Every variant names the lock and where it is (its file or directory, or its PostgreSQL server
/// and key), so the message alone is
/// enough to act on. [`Error::holder_pid`] gives the holder's PID when it is known.
///
/// ```
/// use lockmacro_runtime::{Error, Lock};
///
/// let dir = std::env::temp_dir().join("lockmacro-doc-error");
/// let lock = Lock::new("report").dir(&dir);
/// let _held = lock.try_acquire()?;
/// match Lock::new("report").dir(&dir).try_acquire() {
///     Err(Error::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
///     other => panic!("expected Held, got {other:?}"),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Somebody else holds the lock and we were not asked to wait.
    Held {
        /// The lock's name.
        name: String,
        /// Where the lock is: its file, or its PostgreSQL server and key.
        at: Location,
        /// The holder's PID, when it could be determined.
        pid: Option<u32>,
    },
    /// The lock was still held when the timeout ran out.
    Timeout {
        /// The lock's name.
        name: String,
        /// Where the lock is: its file, or its PostgreSQL server and key.
        at: Location,
        /// How long we waited.
        timeout: Duration,
        /// The holder's PID at the time we gave up, when it could be determined.
        pid: Option<u32>,
    },
    /// The same call chain already holds this lock in a way that makes the request impossible:
    /// a blocking runtime acquisition of a lock an enclosing `#[exclusive]` function holds, or an
    /// exclusive request nested inside a shared hold. Waiting would deadlock, so it fails at once.
    Nested {
        /// The lock's name.
        name: String,
        /// Where the lock is: its file, or its PostgreSQL server and key.
        at: Location,
        /// Whether the enclosing hold is shared.
        held_shared: bool,
    },
    /// The lock directory is not safe to use (wrong owner, a symlink, open to other users, or on
    /// a filesystem where locks do not work).
    UnsafeDir {
        /// The lock's name.
        name: String,
        /// The offending directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The lock file is not safe to use: it has more than one link, or is owned by a user other
    /// than the current one or root (who could remove or replace it while we hold it). Nothing is
    /// written to such a file.
    UnsafeFile {
        /// The lock's name.
        name: String,
        /// The lock file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A held lock was lost (see [`OnLost`](crate::OnLost)): its file was removed or replaced
    /// while held and could not be re-established, or its PostgreSQL session ended or stopped
    /// answering.
    Lost {
        /// The lock's name.
        name: String,
        /// Where the lock was: its file, or its PostgreSQL server and key.
        at: Location,
        /// What happened.
        reason: String,
    },
    /// The lock was free, but its last start was less than its period ago
    /// ([`Lock::once_per`](crate::Lock::once_per)): this start is refused, as if the lock were
    /// held, and nothing is recorded.
    TooSoon {
        /// The lock's name.
        name: String,
        /// Where the lock is: its file, or its PostgreSQL server and key.
        at: Location,
        /// How long ago the last start was, on the one clock that judges it (the machine's for
        /// a file lock, the server's for PostgreSQL).
        since: Duration,
        /// The period.
        period: Duration,
    },
    /// An operating-system call failed while creating, opening, locking or removing the lock file.
    /// (A PostgreSQL lock's failures are [`Error::Postgres`].)
    Io {
        /// The lock's name.
        name: String,
        /// The file or directory the operation was about.
        path: PathBuf,
        /// What we were doing, for example "open lock file".
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A PostgreSQL lock could not be taken, kept or asked about: the server could not be
    /// reached or configured, or a query failed (feature `postgres`).
    Postgres {
        /// The lock's name.
        name: String,
        /// The server (never with its password), as `host:port/database`.
        server: String,
        /// The advisory-lock key.
        key: i64,
        /// What we were doing, for example "connect to the server of".
        action: &'static str,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where a lock is: the file of a file lock, or the server and key of a PostgreSQL lock.
///
/// ```
/// use lockmacro_runtime::{Location, Lock};
///
/// let lock = Lock::new("report").dir(std::env::temp_dir().join("lockmacro-doc-location"));
/// assert_eq!(lock.location(), Location::File(lock.path().to_owned()));
/// assert_eq!(lock.location().to_string(), lock.path().display().to_string());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Location {
    /// The lock file.
    File(PathBuf),
    /// A PostgreSQL advisory lock (feature `postgres`).
    Postgres {
        /// The server (never with its password), as `host:port/database`.
        server: String,
        /// The advisory-lock key.
        key: i64,
    },
}

impl Location {
    /// The lock file, for a file lock.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Location::File(path) => Some(path),
            Location::Postgres { .. } => None,
        }
    }
}

/// A file lock shows its path; a PostgreSQL lock `postgres://host:port/db advisory lock KEY`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres { server, key } => {
                write!(f, "postgres://{server} advisory lock {key}")
            }
        }
    }
}

impl Error {
    /// The PID of the process holding the lock, when known (only [`Error::Held`] and
    /// [`Error::Timeout`] carry one).
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-holder-pid");
    /// let _held = Lock::new("report").dir(&dir).try_acquire()?;
    /// let err = Lock::new("report").dir(&dir).try_acquire().unwrap_err();
    /// assert_eq!(err.holder_pid(), Some(std::process::id()));
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn holder_pid(&self) -> Option<u32> {
        match self {
            Error::Held { pid, .. } | Error::Timeout { pid, .. } => *pid,
            _ => None,
        }
    }

    /// The name of the lock the error is about.
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let dir = std::env::temp_dir().join("lockmacro-doc-error-name");
    /// let _held = Lock::new("report").dir(&dir).try_acquire()?;
    /// let err = Lock::new("report").dir(&dir).try_acquire().unwrap_err();
    /// assert_eq!(err.name(), "report");
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        match self {
            Error::Held { name, .. }
            | Error::Timeout { name, .. }
            | Error::Nested { name, .. }
            | Error::UnsafeDir { name, .. }
            | Error::UnsafeFile { name, .. }
            | Error::Lost { name, .. }
            | Error::Io { name, .. }
            | Error::TooSoon { name, .. }
            | Error::Postgres { name, .. } => name,
        }
    }

    /// The lock file (or, for [`Error::UnsafeDir`], the directory) the error is about; `None`
    /// for a PostgreSQL lock (see [`location`](Error::location)).
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let lock = Lock::new("report").dir(std::env::temp_dir().join("lockmacro-doc-error-path"));
    /// let _held = lock.try_acquire()?;
    /// let err = lock.try_acquire().unwrap_err();
    /// assert_eq!(err.path(), Some(lock.path()));
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Held { at, .. }
            | Error::Timeout { at, .. }
            | Error::Nested { at, .. }
            | Error::Lost { at, .. }
            | Error::TooSoon { at, .. } => at.path(),
            Error::UnsafeDir { path, .. }
            | Error::UnsafeFile { path, .. }
            | Error::Io { path, .. } => Some(path),
            Error::Postgres { .. } => None,
        }
    }

    /// Where the lock the error is about is (for [`Error::UnsafeDir`], the directory).
    ///
    /// ```
    /// use lockmacro_runtime::{Location, Lock};
    ///
    /// let lock = Lock::new("report").dir(std::env::temp_dir().join("lockmacro-doc-error-at"));
    /// let _held = lock.try_acquire()?;
    /// let err = lock.try_acquire().unwrap_err();
    /// assert_eq!(err.location(), lock.location());
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn location(&self) -> Location {
        match self {
            Error::Held { at, .. }
            | Error::Timeout { at, .. }
            | Error::Nested { at, .. }
            | Error::Lost { at, .. }
            | Error::TooSoon { at, .. } => at.clone(),
            Error::UnsafeDir { path, .. }
            | Error::UnsafeFile { path, .. }
            | Error::Io { path, .. } => Location::File(path.clone()),
            Error::Postgres { server, key, .. } => Location::Postgres {
                server: server.clone(),
                key: *key,
            },
        }
    }

    /// True for the "not now, somebody else has it" outcomes: [`Error::Held`], [`Error::Timeout`]
    /// and [`Error::TooSoon`] (started by another within the lock's period).
    ///
    /// ```
    /// use lockmacro_runtime::Lock;
    ///
    /// let tmp = std::env::temp_dir();
    /// let lock = Lock::new("report").dir(tmp.join("lockmacro-doc-contended"));
    /// let _held = lock.try_acquire()?;
    /// assert!(lock.try_acquire().unwrap_err().is_contended()); // busy: skip, or retry later
    ///
    /// let not_a_dir = tmp.join("lockmacro-doc-contended.txt");
    /// std::fs::write(&not_a_dir, "").unwrap();
    /// let err = Lock::new("report").dir(&not_a_dir).try_acquire().unwrap_err();
    /// assert!(!err.is_contended()); // a real failure, worth reporting
    /// # Ok::<(), lockmacro_runtime::Error>(())
    /// ```
    pub fn is_contended(&self) -> bool {
        matches!(
            self,
            Error::Held { .. } | Error::Timeout { .. } | Error::TooSoon { .. }
        )
    }

    pub(crate) fn io(name: &str, path: &Path, action: &'static str, source: io::Error) -> Error {
        Error::Io {
            name: name.to_owned(),
            path: path.to_owned(),
            action,
            source,
        }
    }
}

fn by_pid(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!(" by pid {pid}"),
        None => String::new(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Held { name, at, pid } => {
                write!(f, "lock `{name}` is already held{} ({at})", by_pid(*pid),)
            }
            Error::Timeout {
                name,
                at,
                timeout,
                pid,
            } => write!(
                f,
                "timed out after {timeout:?} waiting for lock `{name}`, held{} ({at})",
                by_pid(*pid),
            ),
            Error::Nested {
                name,
                at,
                held_shared,
            } => {
                let how = if *held_shared {
                    "takes it exclusively inside a shared hold"
                } else {
                    "acquires it again through the runtime API"
                };
                write!(
                    f,
                    "lock `{name}` is already held by this call chain, and this request {how}, \
                     which would deadlock ({at})"
                )
            }
            Error::UnsafeDir { name, path, reason } => write!(
                f,
                "refusing lock directory {} for lock `{name}`: {reason}",
                path.display()
            ),
            Error::UnsafeFile { name, path, reason } => write!(
                f,
                "refusing lock file {} for lock `{name}`: {reason}",
                path.display()
            ),
            Error::Lost { name, at, reason } => {
                write!(f, "lost lock `{name}` while holding it ({at}): {reason}")
            }
            Error::TooSoon {
                name,
                at,
                since,
                period,
            } => write!(
                f,
                "lock `{name}` was last taken {}s ago, within its period of {}s ({at})",
                since.as_secs_f32(),
                period.as_secs_f32()
            ),
            Error::Io {
                name, path, action, ..
            } => write!(f, "lock `{name}`: cannot {action} {}", path.display()),
            Error::Postgres {
                name,
                server,
                key,
                action,
                ..
            } => write!(
                f,
                "lock `{name}`: cannot {action} {}",
                Location::Postgres {
                    server: server.clone(),
                    key: *key
                }
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Postgres { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// For functions returning `io::Result`: the kind says what happened (`WouldBlock` for
/// [`Error::Held`], `TimedOut` for [`Error::Timeout`], the original kind for [`Error::Io`]) and
/// the message stays the same.
///
/// ```
/// use lockmacro_runtime::exclusive;
///
/// #[exclusive(name = "doc-io-result", dir = "target/doc-locks")]
/// fn read_config() -> std::io::Result<String> {
///     Ok(String::from("ok"))
/// }
/// assert_eq!(read_config()?, "ok");
/// # Ok::<(), std::io::Error>(())
/// ```
impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match &err {
            Error::Held { .. } | Error::TooSoon { .. } => io::ErrorKind::WouldBlock,
            Error::Timeout { .. } => io::ErrorKind::TimedOut,
            Error::Io { source, .. } => source.kind(),
            Error::Postgres { .. } => io::ErrorKind::Other,
            Error::Nested { .. } => io::ErrorKind::Other,
            Error::Lost { .. } => io::ErrorKind::ConnectionAborted,
            Error::UnsafeDir { .. } | Error::UnsafeFile { .. } => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, err)
    }
}

/// This program's file name, for the lines printed to stderr (`backup: ...`).
pub(crate) fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "error".to_owned())
}

/// The error and its causes on one line (`a: b: c`), for the exit and panic policies.
pub(crate) fn one_line(err: &Error) -> String {
    let mut line = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}
