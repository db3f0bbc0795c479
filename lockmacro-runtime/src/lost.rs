//! What happens when a held lock is lost: a file lock whose file was removed or replaced while
//! held (and could not be re-established, see `watch`), or a PostgreSQL lock whose session ended
//! or stopped answering (see `pg`).

/// The exit status of a process whose lock was lost under [`OnLost::Exit`] (`EX_TEMPFAIL`: the
/// work was interrupted and may be retried).
///
/// ```
/// // A supervisor can tell "lost the lock, retry later" from a real failure:
/// # let status: Option<i32> = Some(75);
/// if status == Some(lockmacro_runtime::LOST_EXIT_CODE) { /* reschedule */ }
/// ```
pub const LOST_EXIT_CODE: i32 = 75;

/// What a holder does when its lock is lost while held: a file lock whose file was removed or
/// replaced and could not be re-established on a new file (see the README), or a PostgreSQL
/// lock whose connection broke, whose session ended, whose heartbeat went unanswered for half a
/// lease, or which `pg_locks` no longer shows.
///
/// ```
/// use lockmacro_runtime::{Lock, OnLost};
///
/// let lock = Lock::new("sync-job")
///     .dir(std::env::temp_dir().join("lockmacro-doc-on-lost"))
///     .on_lost(OnLost::Report);
/// assert_eq!(OnLost::default(), OnLost::Exit);
/// let guard = lock.try_acquire()?;
/// guard.check()?; // Err(Error::Lost { .. }) once lost
/// # Ok::<(), lockmacro_runtime::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnLost {
    /// Print one line to stderr and exit the process with [`LOST_EXIT_CODE`]: the guarded work
    /// must not go on unprotected, and a thread cannot be stopped from outside.
    #[default]
    Exit,
    /// Keep running; the guard reports the loss ([`LockGuard::is_lost`],
    /// [`LockGuard::check`], [`LockGuard::lost`]) and it is up to the program to stop.
    ///
    /// [`LockGuard::is_lost`]: crate::LockGuard::is_lost
    /// [`LockGuard::check`]: crate::LockGuard::check
    /// [`LockGuard::lost`]: crate::LockGuard::lost
    Report,
}
