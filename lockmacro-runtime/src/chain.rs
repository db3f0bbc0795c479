//! Which locks the current call chain holds through `#[exclusive]`.
//!
//! A nested call to a function guarded by the same lock must not open a second descriptor and
//! wait for itself (flock would exclude it: proc-lock and named-lock hang forever there). The
//! chain is a thread-local list: a synchronous `#[exclusive]` body is on it from entry to exit;
//! an `async` body is on it only *while its future is being polled*, so a nested `.await` inside
//! the holder sees it but another task that happens to run on the same thread does not.
//!
//! A lock is known on the chain by its [`Keyed::chain_key`]: for a file, its path with the
//! directory canonicalized, which costs a system call per path component. That key is only
//! worked out when the chain is not empty, so a program that never nests (a single-instance
//! `main`) never pays for it. It is a snapshot, cached for the life of the `Lock` (as it was when
//! it was worked out at the first acquisition): now taken at the first nested check instead. If
//! a directory symlink is switched between the acquisition and that check, a nested call
//! through a spelling that now leads where the held one leads counts as nested; the outer hold
//! is then on a file its path no longer names, which `LockGuard::check` reports, and the nested
//! body is exactly as protected as the outer one.

use std::cell::RefCell;
use std::sync::Arc;

use crate::error::Location;
use crate::request::Share;

/// A lock as the chain knows it: what identifies it whatever the spelling of its place, worked
/// out only when needed (and cached by the implementor).
pub(crate) trait Keyed {
    fn chain_key(&self) -> Arc<Location>;
}

/// A lock the chain holds, how, and the process that pushed it (a forked child's copy of the
/// chain is its parent's, not its own).
type Link = (Arc<dyn Keyed>, Share, u32);

thread_local! {
    /// The locks this thread's call chain holds, innermost last.
    static CHAIN: RefCell<Vec<Link>> = const { RefCell::new(Vec::new()) };
}

/// How the current call chain holds `lock`: `Some(Exclusive)`, `Some(Shared)` if only shared,
/// `None` not at all. Entries made before a fork are the parent's holds, not the child's (see
/// `file::fork`): a forked child holds nothing.
pub(crate) fn held(lock: &dyn Keyed) -> Option<Share> {
    CHAIN.with(|chain| {
        let chain = chain.borrow();
        if chain.is_empty() {
            return None;
        }
        let pid = crate::pid::current();
        let at = lock.chain_key();
        let mut found = None;
        for (key, share, holder) in chain.iter() {
            if *holder == pid && *key.chain_key() == *at {
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
    pub(crate) fn push(lock: Arc<dyn Keyed>, share: Share) -> Entry {
        let pid = crate::pid::current();
        CHAIN.with(|chain| chain.borrow_mut().push((lock, share, pid)));
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
