//! Run a function, or a whole program, at most once at a time, across threads, async tasks and
//! processes.
//!
//! ```no_run
//! use lockmacro_runtime::exclusive;
//!
//! #[exclusive(name = "nightly-backup")]
//! fn main() {
//!     // A second copy started while this one runs prints
//!     // "backup: lock `nightly-backup` is already held by pid 4242 (...)" and exits with 1.
//! }
//! ```
//!
//! (Not run as a doctest: it would take the lock in the user's real lock directory, and exit
//! if another copy held it.)
//!
//! The [`exclusive`] attribute is the front door; [`Lock`] and [`LockGuard`] are the runtime
//! underneath, usable directly:
//!
//! ```
//! use lockmacro_runtime::Lock;
//!
//! let lock = Lock::new("nightly-backup").dir(std::env::temp_dir().join("lockmacro-doc-crate"));
//! match lock.try_acquire() {
//!     Ok(_guard) => { /* the backup; the lock is released when `_guard` is dropped */ }
//!     Err(e) if e.is_contended() => eprintln!("backup: {e}"), // another copy is running
//!     Err(e) => return Err(e),
//! }
//! # Ok::<(), lockmacro_runtime::Error>(())
//! ```
//!
//! Locks are flock(2) locks (through the `fd-lock` crate) on a file
//! per lock name in a private per-user directory ([`default_dir`]); the kernel releases them
//! when the holder exits, however it exits, and the holder's PID is recorded in the file for
//! error messages. See the README for the guarantees and how each is tested.
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]

mod chain;
mod deadline;
mod dir;
mod error;
mod file;
mod fork;
mod fstype;
mod guard;
mod hooks;
mod lock;
mod lost;
mod name;
mod notice;
mod once;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
mod pg_connect;
mod pid;
mod slot;
mod trace;
mod wait;
mod watch;

#[doc(hidden)]
#[allow(missing_docs, unreachable_pub)]
#[path = "private.rs"]
pub mod __private;

#[doc(inline)]
pub use lockmacro::exclusive;

pub use dir::{default_dir, DIR_ENV};
pub use error::Error;
pub use fstype::ALLOW_NETWORK_FS_ENV;
pub use guard::LockGuard;
pub use lock::Lock;
pub use lost::{OnLost, LOST_EXIT_CODE};
#[cfg(feature = "postgres")]
pub use pg::{key_for as postgres_key_for, DEFAULT_LEASE, KEY_SQL, URL_ENV};

/// The lock name `#[exclusive]` uses when given none: the crate name and the source file,
/// for example `"backup:src/main.rs"`. Every function annotated without a name in one file shares
/// this lock, and two copies of the same binary exclude each other.
///
/// ```
/// let name = lockmacro_runtime::default_name!();
/// assert!(name.ends_with(".rs"), "{name}");
/// ```
#[macro_export]
macro_rules! default_name {
    () => {
        ::core::concat!(::core::env!("CARGO_CRATE_NAME"), ":", ::core::file!())
    };
}

/// Used by `#[exclusive(backend = "postgres")]` around the lock it builds: the lock itself when
/// the `postgres` feature is on, one clear error when it is off.
#[cfg(feature = "postgres")]
#[doc(hidden)]
#[macro_export]
macro_rules! __lockmacro_postgres {
    ($($lock:tt)*) => { $($lock)* };
}

#[cfg(not(feature = "postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __lockmacro_postgres {
    ($($lock:tt)*) => {
        ::core::compile_error!(
            "`backend = \"postgres\"` needs the `postgres` feature of `lockmacro-runtime`: \
             lockmacro-runtime = { version = \"0.1\", features = [\"postgres\"] }"
        )
    };
}

// The guard can be stored, returned and sent to another thread; a `Lock` can be shared.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send::<LockGuard>();
    send_sync::<Lock>();
    send_sync::<Error>();
};
