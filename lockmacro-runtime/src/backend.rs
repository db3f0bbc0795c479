//! The one dispatch between the public types and the backends: a lock is a file lock or (with
//! the `postgres` feature) a PostgreSQL lock. Two fixed backends, so an enum, not a trait
//! object: each method is one `match`, and a third backend is one more arm in each (see
//! ARCHITECTURE.md).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::chain::Keyed;
use crate::deadline::Deadline;
use crate::error::{Error, Location};
use crate::file;
#[cfg(feature = "postgres")]
use crate::postgres;
use crate::request::{Request, Share};
use crate::trace;

/// Which backend holds a lock, and its spec.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    File(Arc<file::Spec>),
    #[cfg(feature = "postgres")]
    Postgres(Arc<postgres::Spec>),
}

/// What events show as the lock's place: its path, or its server and key.
impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::File(spec) => spec.fmt(f),
            #[cfg(feature = "postgres")]
            Backend::Postgres(spec) => spec.fmt(f),
        }
    }
}

/// A held lock, whichever backend holds it; dropping it releases the lock.
#[derive(Debug)]
pub(crate) enum Hold {
    File(file::Hold),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Hold),
}

impl Backend {
    pub(crate) fn request(&self) -> &Request {
        match self {
            Backend::File(spec) => &spec.request,
            #[cfg(feature = "postgres")]
            Backend::Postgres(spec) => &spec.request,
        }
    }

    pub(crate) fn request_mut(&mut self) -> &mut Request {
        match self {
            Backend::File(spec) => &mut Arc::make_mut(spec).request,
            #[cfg(feature = "postgres")]
            Backend::Postgres(spec) => &mut Arc::make_mut(spec).request,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.request().name
    }

    pub(crate) fn share(&self) -> Share {
        self.request().share
    }

    /// What events say about this lock.
    pub(crate) fn about(&self) -> trace::About<'_> {
        trace::About {
            name: self.name(),
            at: self,
            share: self.share(),
        }
    }

    /// The lock file's path; empty for a PostgreSQL lock, which has none.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Backend::File(spec) => spec.path(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => Path::new(""),
        }
    }

    pub(crate) fn location(&self) -> Location {
        match self {
            Backend::File(spec) => Location::File(spec.path().to_owned()),
            #[cfg(feature = "postgres")]
            Backend::Postgres(spec) => spec.location(),
        }
    }

    /// The lock as the call chain knows it (its key is worked out only if needed).
    pub(crate) fn keyed(&self) -> Arc<dyn Keyed> {
        match self {
            Backend::File(spec) => spec.clone(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(spec) => spec.clone(),
        }
    }

    pub(crate) fn acquire(&self, deadline: Deadline) -> Result<Hold, Error> {
        match self {
            Backend::File(spec) => file::fair::acquire(spec, deadline)
                .and_then(|hold| spec.recorded(hold))
                .map(Hold::File),
            #[cfg(feature = "postgres")]
            Backend::Postgres(spec) => spec.acquire(deadline).map(Hold::Postgres),
        }
    }

    pub(crate) fn acquire_async(&self, deadline: Deadline) -> Acquire {
        match self {
            Backend::File(spec) => {
                Acquire::File(file::fair::acquire_async(spec, deadline), Arc::clone(spec))
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(spec) => Acquire::Postgres(Box::pin(spec.acquire_async(deadline))),
        }
    }

    pub(crate) fn holder(&self) -> Result<Option<u32>, Error> {
        match self {
            Backend::File(spec) => spec.holder(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(spec) => spec.holder(),
        }
    }

    pub(crate) fn holders(&self) -> Result<Vec<u32>, Error> {
        match self {
            Backend::File(spec) => spec.holders(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(spec) => Ok(spec.holder()?.into_iter().collect()),
        }
    }
}

/// The future of [`Backend::acquire_async`].
pub(crate) enum Acquire {
    /// The acquisition, and the lock to record its start in (`file::Spec::recorded`).
    File(file::fair::Acquiring, Arc<file::Spec>),
    #[cfg(feature = "postgres")]
    Postgres(Pin<Box<dyn Future<Output = Result<postgres::Hold, Error>> + Send>>),
}

impl std::fmt::Debug for Acquire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Acquire::File(..) => f.write_str("Acquire::File"),
            #[cfg(feature = "postgres")]
            Acquire::Postgres(_) => f.write_str("Acquire::Postgres"),
        }
    }
}

impl Future for Acquire {
    type Output = Result<Hold, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Acquire::File(acquire, spec) => acquire
                .as_mut()
                .poll(cx)
                .map(|got| got.and_then(|hold| spec.recorded(hold)))
                .map_ok(Hold::File),
            #[cfg(feature = "postgres")]
            Acquire::Postgres(acquire) => acquire.as_mut().poll(cx).map_ok(Hold::Postgres),
        }
    }
}

impl Hold {
    /// Still to be released, by this process (a forked child's copy is not).
    pub(crate) fn is_live(&self) -> bool {
        match self {
            Hold::File(hold) => hold.is_live(),
            #[cfg(feature = "postgres")]
            Hold::Postgres(hold) => hold.is_live(),
        }
    }

    /// The fencing token of this acquisition, if asked for.
    pub(crate) fn token(&self) -> Option<u64> {
        match self {
            Hold::File(hold) => hold.token(),
            #[cfg(feature = "postgres")]
            Hold::Postgres(hold) => hold.token(),
        }
    }

    /// Why the lock is not held now, looking again; `None` while it is.
    pub(crate) fn lost_reason(&self) -> Option<String> {
        match self {
            Hold::File(hold) => hold.lost_reason(),
            #[cfg(feature = "postgres")]
            Hold::Postgres(hold) => hold.lost_reason(),
        }
    }

    /// The reason if the lock is lost, else registers `waker` to be woken when it is.
    pub(crate) fn poll_lost(&self, waker: &Waker) -> Option<String> {
        match self {
            Hold::File(hold) => hold.poll_lost(waker),
            #[cfg(feature = "postgres")]
            Hold::Postgres(hold) => hold.poll_lost(waker),
        }
    }

    pub(crate) fn release(&mut self) -> Result<(), Error> {
        match self {
            Hold::File(hold) => hold.release(),
            #[cfg(feature = "postgres")]
            Hold::Postgres(hold) => {
                hold.release();
                Ok(())
            }
        }
    }
}

/// Identifies the lock on the call chain, whatever the spelling of its place.
impl Keyed for Backend {
    fn chain_key(&self) -> Arc<Location> {
        match self {
            Backend::File(spec) => spec.chain_key(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(spec) => spec.chain_key(),
        }
    }
}
