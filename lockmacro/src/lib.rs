//! The `#[exclusive]` attribute. This crate is an implementation detail of
//! [`lockmacro-runtime`](https://docs.rs/lockmacro-runtime), which re-exports the attribute and
//! documents it: depend on that crate, not on this one.
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]

mod args;
mod check;
mod expand;
mod item;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;

/// Runs the function's body under an inter-process lock: at most one caller at a time, across
/// processes, threads and async tasks.
///
/// ```ignore
/// use lockmacro_runtime::exclusive;
///
/// #[exclusive(name = "nightly-backup")]
/// fn main() {
///     // A second copy started while this runs prints one line and exits with status 1:
///     // backup: lock `nightly-backup` is already held by pid 4242 (/run/lock/lockmacro-0/...)
/// }
///
/// #[exclusive(name = "migrate")]
/// fn migrate() -> Result<(), MyError> {   // MyError: From<lockmacro_runtime::Error>
///     // On conflict the caller gets Err(Error::Held { pid, .. }) converted with From.
///     Ok(())
/// }
///
/// #[test]
/// #[exclusive(name = "db", wait)]           // tests that share a database take turns
/// fn uses_shared_db() {}
/// ```
///
/// # Arguments
///
/// All optional, in any order, each at most once.
///
/// | argument | meaning |
/// |---|---|
/// | `name = "..."` | The lock's name. Default: the crate name and the source file (see [`default_name!`]), so all functions annotated without a name in one file share one lock, and two copies of one binary exclude each other. Any text is fine: it is mapped to a safe file name. |
/// | `name = JOB_NAME`, `name = format!("tenant-{id}")` | A name from code: any expression whose type is `AsRef<str>` (`&str`, `String`, `Cow<str>`, ...). A path that does not start with an argument, a generic parameter or `Self` (a `const` or `static`) is read once per process, like a literal. Any other expression is evaluated at each call and the lock built for that call: calls with different names run together, calls with the same name exclude each other, and nested calls on the same name run as for any lock. |
/// | `wait` | Block until the lock is free. Default: do not wait. |
/// | `timeout = "250ms"` | Wait at most this long (`ms`, `s`, `m` or `h`), then fail with [`Error::Timeout`]. Checked at compile time. Not with `wait`. |
/// | `scope = "user" \| "system"` | Which default directory: the per-user one (`"user"`, the default) or the system-wide one (`Lock::system`). Not with `dir`, `path` or `backend = "postgres"`. |
/// | `path = "..."` | Lock exactly this file (`Lock::at`). Not with `name`, `dir`, `scope` or `backend = "postgres"`. |
/// | `slots = N` | Up to `N` holders at once (`N` ≥ 1; `Lock::slots`). Not with `shared` or `backend = "postgres"`. |
/// | `dir = "..."` | The lock directory for this lock. Default: `LOCKMACRO_DIR` if set, else a private per-user directory (see [`default_dir`]). A shared directory must be owned by you or root, and have the sticky bit if others may write to it (see `Lock::dir`). |
/// | `cleanup` | Remove the lock file on release: race-free among lockmacro processes, which re-check the file they locked; **not with lockers that do not (`flock(1)`, scripts) on the same file: two holders.** Default: keep it, as flock(1) and cargo do; it costs nothing and is never stale, because the kernel, not the file, says who holds the lock. |
/// | `shared` | A shared (reader) lock: shared holders run together; an exclusive holder excludes them and they exclude it. |
/// | `on_conflict = "error" \| "exit" \| "panic" \| "skip"` | What happens when the lock is not obtained (taken, timed out, or an I/O failure such as an unusable directory). `"skip"`: see below. |
/// | `exit_code = N` | The exit status for `"exit"` (0 to 255; default 1). |
/// | `notice = true \| false` | With `wait` or `timeout`: print one line to stderr when the wait lasts more than about a second (`prog: waiting for lock `name` (held by pid N, path ...)`), once. Default: on for `main` unless it skips, off elsewhere (see `Lock::wait_notice`). |
/// | `backend = "file" \| "postgres"` | Where the lock lives. Default `"file"`. `"postgres"` (runtime feature `postgres`): a PostgreSQL session advisory lock, so hosts exclude each other; the server URL comes from `LOCKMACRO_POSTGRES_URL`. Not with `dir` or `cleanup`. |
/// | `key = N` | PostgreSQL only: the advisory-lock key (`i64`) instead of the one derived from the name. |
/// | `lease = "10s"` | PostgreSQL only: the lease (default 10 s). The server frees the lock of a holder silent this long; the holder declares the lock lost after half of it without an answered heartbeat. |
/// | `on_lost = "exit" \| "cancel"` | When the lock is lost while held (a lock file removed or replaced and not re-established, a PostgreSQL session that ended): exit the process with status 75 (default), or, for an `async fn` returning `Result`, drop the body's future and return `Err(Error::Lost)` converted with `From`. |
/// | `crate = "path"` | Where the runtime crate is, for re-exports and renamed dependencies, e.g. `crate = "my_tools::lockmacro_runtime"`. |
///
/// # What happens when the lock is not obtained
///
/// - A function named `main`: `"exit"`: one line on stderr naming the lock, the holder's PID
///   and the lock file, then `std::process::exit(1)` (or `exit_code`).
/// - A function returning `Result` (any path ending in `Result`: `Result<T, E>`,
///   `io::Result<T>`, `anyhow::Result<T>`): `"error"`: the body does not run and the function
///   returns `Err(From::from(err))` with `err` a [`lockmacro_runtime::Error`][Error], so `E`
///   needs `From<lockmacro_runtime::Error>` (`io::Error`, `anyhow::Error` and
///   `Box<dyn Error>` have it).
/// - Any other function must say: `wait` (blocks; an I/O failure then panics with the message),
///   or `on_conflict = "exit"` / `"panic"` / `"skip"`. Without one it does not compile, and
///   `timeout` alone does not count, because a timeout needs somewhere to go.
/// - `"skip"` (on a function returning `()` or `Option<T>`, sync or async, or on any `main`):
///   when the lock is taken, or the `timeout` ran out ([`Error::is_contended`]), the body does
///   not run and the function returns at once: `()`, `None`, or for `main` the process exits
///   with status 0 and prints nothing (no wait notice either, unless `notice = true`). Any other
///   failure is not skipped: `main` prints its one line and exits with status 1, other functions
///   panic with the message. Not with `wait`, which never gives up; on another return type it
///   is a compile error.
///
/// # Nested calls
///
/// A function whose call chain already holds the same lock (same name and directory) runs
/// without acquiring it again: recursion, and functions sharing the default per-file name that
/// call each other, just work. Other threads, other tasks and other processes are excluded as
/// usual. A shared hold does not cover an exclusive request: that fails at once with
/// [`Error::Nested`] instead of deadlocking.
///
/// # Async functions
///
/// On an `async fn` the lock is taken when the future is first polled and released when the
/// body completes or the future is dropped. Waiting (`wait`, `timeout`) never blocks the
/// executor: a helper thread waits in the kernel for a lock held by another process and wakes
/// the task; another task of this process is waited for with a capped backoff on one shared
/// timer thread. No executor timer is needed, so it works on any executor (tokio,
/// `futures::executor::block_on`, ...). The returned future is `Send`
/// whenever the body's is. The body runs inside an `async move` block, so `return` and `?`
/// behave as before.
///
/// Only `async fn` gets this treatment: on a plain `fn` that *returns* a future (`-> impl
/// Future`), the lock is held while the future is created, not while it runs. Write it as an
/// `async fn`, or take the lock inside the future with `Lock::acquire_async`.
///
/// # Order with other attributes
///
/// `#[exclusive]` composes with `#[tokio::main]`, `#[tokio::test]` and `#[test]` in either
/// order; outer attributes expand first. *Above* `#[tokio::main]`, it sees your `async fn main`
/// and takes the lock when the runtime first polls it. *Below* it, it sees the synchronous
/// `main` that tokio generates and takes the lock before the runtime starts (slightly cheaper:
/// a second copy exits before building a runtime). Either way a second copy exits at once.
///
/// # Equivalent code
///
/// ```ignore
/// #[exclusive(name = "migrate", timeout = "5s")]
/// fn migrate() -> Result<(), MyError> {
///     run_migrations()?;
///     Ok(())
/// }
/// ```
/// becomes, in essence:
/// ```ignore
/// fn migrate() -> Result<(), MyError> {
///     static SITE: Site = Site::new(|| Lock::new("migrate")); // built once per process
///     let _scope = match enter(&SITE, Deadline::after(Duration::from_millis(5000))) {
///         Ok(scope) => scope,                     // guard + "this call chain holds it"
///         Err(err) => return Err(From::from(err)),
///     };
///     run_migrations()?;                          // your body, unchanged
///     Ok(())
/// }                                               // `_scope` dropped: lock released
/// ```
///
/// [`default_name!`]: https://docs.rs/lockmacro-runtime/latest/lockmacro_runtime/macro.default_name.html
/// [`default_dir`]: https://docs.rs/lockmacro-runtime/latest/lockmacro_runtime/fn.default_dir.html
/// [`Error::Timeout`]: https://docs.rs/lockmacro-runtime/latest/lockmacro_runtime/enum.Error.html#variant.Timeout
/// [`Error::Nested`]: https://docs.rs/lockmacro-runtime/latest/lockmacro_runtime/enum.Error.html#variant.Nested
/// [Error]: https://docs.rs/lockmacro-runtime/latest/lockmacro_runtime/enum.Error.html
/// [`Error::is_contended`]: https://docs.rs/lockmacro-runtime/latest/lockmacro_runtime/enum.Error.html#method.is_contended
#[proc_macro_attribute]
pub fn exclusive(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_exclusive(args.into(), item.into()).into()
}

/// The one way through: the item is read ([`item`]), the arguments parsed ([`args`]) and checked
/// against it ([`check`]), then the code is written ([`expand`]). On any mistake: the untouched
/// item plus the compile error, so IDEs and later code keep working.
fn expand_exclusive(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let expanded = item::parse(item.clone()).and_then(|(f, info)| {
        let config = check::check(args::parse(args)?, &info)?;
        Ok(expand::expand(f, &info, &config))
    });
    expanded.unwrap_or_else(|err| {
        let err = err.into_compile_error();
        quote::quote!(#item #err)
    })
}
