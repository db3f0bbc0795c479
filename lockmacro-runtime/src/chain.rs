//! Which locks the current call chain holds through `#[exclusive]`.
//!
//! A nested call to a function guarded by the same lock must not open a second descriptor and
//! wait for itself (flock would exclude it: proc-lock and named-lock hang forever there). The
//! chain is a thread-local list: a synchronous `#[exclusive]` body is on it from entry to exit;
//! an `async` body is on it only *while its future is being polled*, so a nested `.await` inside
//! the holder sees it but another task that happens to run on the same thread does not.

use std::cell::RefCell;
use std::sync::Arc;

use crate::error::Location;
use crate::request::Share;

thread_local! {
    static CHAIN: RefCell<Vec<(Arc<Location>, Share, u32)>> = const { RefCell::new(Vec::new()) };
}

/// How the current call chain holds the lock at `at` (spelled canonically: see
/// `Lock::chain_key`): `Some(Exclusive)`, `Some(Shared)` if only shared, `None` not at all.
/// Entries made before a fork are the parent's holds, not the child's (see `file::fork`): a
/// forked child holds nothing.
pub(crate) fn held(at: &Location) -> Option<Share> {
    CHAIN.with(|chain| {
        let chain = chain.borrow();
        if chain.is_empty() {
            return None;
        }
        let pid = crate::pid::current();
        let mut found = None;
        for (key, share, holder) in chain.iter() {
            if *holder == pid && **key == *at {
                if *share == Share::Exclusive {
                    return Some(Share::Exclusive);
                }
                found = Some(Share::Shared);
            }
        }
        found
    })
}

/// Puts a lock on the chain until dropped. Not `Send`: it must be dropped on the thread that
/// created it, which the generated code guarantees (a local of a sync body, or a poll scope).
#[derive(Debug)]
pub(crate) struct Entry {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Entry {
    pub(crate) fn push(at: Arc<Location>, share: Share) -> Entry {
        let pid = crate::pid::current();
        CHAIN.with(|chain| chain.borrow_mut().push((at, share, pid)));
        Entry {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // Entries are strictly nested (scopes), so the last one is ours.
        CHAIN.with(|chain| {
            chain.borrow_mut().pop();
        });
    }
}
