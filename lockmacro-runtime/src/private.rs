//! Used by the code `#[exclusive]` generates. Not public API: anything here may change in any
//! release.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::task::{Context, Poll};

use crate::chain;
use crate::error::{one_line, program_name, Error};
use crate::guard::LockGuard;
use crate::lock::Lock;
use crate::request::Share;

pub use core;

/// How many acquisitions on this thread skipped the path lookup on a memo (`--cfg lockmacro_test_hooks` only).
#[cfg(lockmacro_test_hooks)]
pub fn memo_vouched() -> u64 {
    crate::hooks::vouched_count()
}

/// One annotated function's lock, built on first use and kept for the life of the process.
/// Built without a lock (two threads may both build it; one wins), so that a child forked while
/// another thread builds it never waits for that thread (see `fork`).
#[derive(Debug)]
pub struct Site {
    make: fn() -> Lock,
    lock: AtomicPtr<Lock>,
}

impl Site {
    pub const fn new(make: fn() -> Lock) -> Site {
        Site {
            make,
            lock: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    fn lock(&'static self) -> &'static Lock {
        let known = self.lock.load(Ordering::Acquire);
        // SAFETY: published locks are leaked, never freed.
        if let Some(lock) = unsafe { known.as_ref() } {
            return lock;
        }
        let made: *mut Lock = Box::leak(Box::new((self.make)()));
        match self.lock.compare_exchange(
            std::ptr::null_mut(),
            made,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: just leaked, never freed.
            Ok(_) => unsafe { &*made },
            Err(theirs) => {
                // SAFETY: ours was never published; theirs is leaked, never freed.
                drop(unsafe { Box::from_raw(made) });
                unsafe { &*theirs }
            }
        }
    }
}

pub use crate::deadline::Deadline;

/// Whether the call chain already holds this lock in a way that covers the request (`Ok(true)`:
/// run without acquiring), does not hold it (`Ok(false)`), or holds it only shared while
/// exclusive is asked for, which can never succeed.
fn reentrant(lock: &Lock) -> Result<bool, Error> {
    match lock.held_by_chain() {
        None => Ok(false),
        Some(Share::Shared) if !lock.is_shared() => Err(lock.nested(Share::Shared)),
        Some(_) => Ok(true),
    }
}

/// The lock held by a synchronous `#[exclusive]` body, on the call chain until the body ends.
#[derive(Debug)]
pub struct Scope {
    // Field order is drop order: leave the chain, then release.
    _entry: Option<chain::Entry>,
    _guard: Option<LockGuard>,
}

pub fn enter(site: &'static Site, deadline: Deadline) -> Result<Scope, Error> {
    enter_lock(site.lock(), deadline)
}

/// [`enter`] for a lock built at each call (`name = <expression>` that is not a constant), which
/// takes part in the call chain exactly like a site's.
pub fn enter_per_call(lock: Lock, deadline: Deadline) -> Result<Scope, Error> {
    enter_lock(&lock, deadline)
}

fn enter_lock(lock: &Lock, deadline: Deadline) -> Result<Scope, Error> {
    if reentrant(lock)? {
        return Ok(Scope {
            _entry: None,
            _guard: None,
        });
    }
    let guard = lock.acquire_unchecked(deadline)?;
    Ok(Scope {
        _entry: Some(chain::Entry::push(lock.keyed(), share(lock))),
        _guard: Some(guard),
    })
}

/// The lock held by an `async` `#[exclusive]` body. It goes on the call chain only around each
/// poll of the body (see [`AsyncScope::run`]), so other tasks on the same thread are excluded.
#[derive(Debug)]
pub struct AsyncScope {
    /// A site's lock, or one built for this call.
    lock: Cow<'static, Lock>,
    /// `None` when entered nested inside a hold of the same lock.
    guard: Option<LockGuard>,
}

pub async fn enter_async(site: &'static Site, deadline: Deadline) -> Result<AsyncScope, Error> {
    enter_async_lock(Cow::Borrowed(site.lock()), deadline).await
}

/// [`enter_async`] for a lock built at each call.
pub async fn enter_async_per_call(lock: Lock, deadline: Deadline) -> Result<AsyncScope, Error> {
    enter_async_lock(Cow::Owned(lock), deadline).await
}

async fn enter_async_lock(
    lock: Cow<'static, Lock>,
    deadline: Deadline,
) -> Result<AsyncScope, Error> {
    if reentrant(&lock)? {
        return Ok(AsyncScope { lock, guard: None });
    }
    let guard = match deadline {
        Deadline::Now => lock.acquire_unchecked(deadline)?,
        Deadline::Never | Deadline::At { .. } => lock.acquire_async_unchecked(deadline).await?,
    };
    Ok(AsyncScope {
        lock,
        guard: Some(guard),
    })
}

impl AsyncScope {
    /// Runs `body` with this lock on the call chain during every poll; releases the lock as soon
    /// as the body completes (or when the future is dropped).
    pub fn run<F: Future>(self, body: F) -> Scoped<F> {
        Scoped {
            scope: self,
            body: Some(Box::pin(body)),
            catching_up: None,
            on_lost: None,
        }
    }

    /// Like [`AsyncScope::run`], but if the lock is lost while the body runs (`on_lost =
    /// "cancel"`), the body is dropped and `on_lost(err)` is returned instead.
    pub fn run_or_cancel<F: Future>(self, body: F, on_lost: fn(Error) -> F::Output) -> Scoped<F> {
        let mut scoped = self.run(body);
        scoped.on_lost = Some(on_lost);
        scoped
    }
}

/// The future returned by [`AsyncScope::run`].
#[derive(Debug)]
pub struct Scoped<F: Future> {
    // Field order is drop order: a cancelled body's destructors run while the lock is held.
    body: Option<Pin<Box<F>>>,
    /// A nested body whose enclosing hold ended before it did, waiting for the lock itself.
    catching_up: Option<CatchingUp>,
    scope: AsyncScope,
    on_lost: Option<fn(Error) -> F::Output>,
}

/// The acquisition of a nested body that outlived its enclosing hold.
struct CatchingUp(Pin<Box<dyn Future<Output = Result<LockGuard, Error>> + Send>>);

impl std::fmt::Debug for CatchingUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatchingUp")
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let lock: &Lock = &this.scope.lock;
        if this.scope.guard.is_none() && !covered(lock) {
            // Entered nested, but polled outside the hold it was nested in (the future was
            // kept past its parent's end): never run on unlocked; wait for the lock first.
            let catching_up = this.catching_up.get_or_insert_with(|| {
                let lock = lock.clone();
                CatchingUp(Box::pin(async move {
                    lock.acquire_async_unchecked(Deadline::Never).await
                }))
            });
            match catching_up.0.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(guard)) => this.scope.guard = Some(guard),
                Poll::Ready(Err(err)) => panic(err),
            }
            this.catching_up = None;
        }
        if let (Some(on_lost), Some(guard)) = (this.on_lost, &this.scope.guard) {
            let lost = std::pin::pin!(guard.lost()).poll(cx);
            if let Poll::Ready(err) = lost {
                this.body = None; // cancelled: stop the work the lock no longer protects
                this.scope.guard = None;
                return Poll::Ready(on_lost(err));
            }
        }
        let Some(body) = &mut this.body else {
            panic!("`#[exclusive]` future polled after completion");
        };
        let entry = this
            .scope
            .guard
            .as_ref()
            .map(|_| chain::Entry::push(lock.keyed(), share(lock)));
        let out = body.as_mut().poll(cx);
        drop(entry);
        if out.is_ready() {
            this.scope.guard = None;
            this.body = None;
        }
        out
    }
}

/// Whether the current call chain holds `lock` in a way that covers a request for it.
fn covered(lock: &Lock) -> bool {
    match lock.held_by_chain() {
        Some(held) => held == Share::Exclusive || lock.is_shared(),
        None => false,
    }
}

fn share(lock: &Lock) -> Share {
    if lock.is_shared() {
        Share::Shared
    } else {
        Share::Exclusive
    }
}

/// The `"exit"` policy: one line on stderr, then exit with `code`.
pub fn exit(err: Error, code: i32) -> ! {
    eprintln!("{}: {}", program_name(), one_line(&err));
    std::process::exit(code)
}

/// `on_conflict = "skip"` on `main`: exit 0 without a word when the lock is taken (or the
/// timeout ran out); any other failure is reported like the `"exit"` policy, with status 1.
pub fn skip_exit(err: Error) -> ! {
    if err.is_contended() {
        std::process::exit(0)
    }
    exit(err, 1)
}

/// `on_conflict = "skip"` elsewhere: returns when the call is to be skipped (the lock is taken,
/// or the timeout ran out); any other failure panics with the message, as under `wait`.
#[track_caller]
pub fn skip_or_panic(err: Error) {
    if !err.is_contended() {
        panic(err)
    }
}

/// How `name = <expression>` is read: any string, by reference.
#[diagnostic::on_unimplemented(
    message = "a lock name must be a string, not `{Self}`",
    label = "the lock's name",
    note = "`name = ...` takes a `&str`, a `String`, or anything else that implements `AsRef<str>`"
)]
pub trait LockName {
    fn lock_name(&self) -> &str;
}

#[diagnostic::do_not_recommend]
impl<T: AsRef<str> + ?Sized> LockName for T {
    fn lock_name(&self) -> &str {
        self.as_ref()
    }
}

/// How a function returning `Result<_, E>` returns a lock failure: `Err(E::from(err))`. Its own
/// trait (not `From` directly) so that a missing conversion is one error saying what to do.
#[diagnostic::on_unimplemented(
    message = "`#[exclusive]` returns a lock failure as `Err(From::from(lockmacro_runtime::Error))`, \
               but `{Self}` does not implement `From<lockmacro_runtime::Error>`",
    label = "this error type needs `From<lockmacro_runtime::Error>`",
    note = "implement `From<lockmacro_runtime::Error>` for your error type, or return one that has \
            it (`lockmacro_runtime::Error`, `std::io::Error`, `anyhow::Error`, \
            `Box<dyn std::error::Error + Send + Sync>`); or choose `on_conflict = \"exit\"` or \
            `on_conflict = \"panic\"`"
)]
pub trait FromLockError: Sized {
    fn from_lock_error(err: Error) -> Self;
}

#[diagnostic::do_not_recommend]
impl<E: From<Error>> FromLockError for E {
    fn from_lock_error(err: Error) -> E {
        E::from(err)
    }
}

/// The `"panic"` policy (and I/O failures under a bare `wait`).
#[track_caller]
pub fn panic(err: Error) -> ! {
    panic!("{}", one_line(&err))
}
