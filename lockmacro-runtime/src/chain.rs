//! Which locks the current call chain holds through `#[exclusive]`.
//!
//! A nested call to a function guarded by the same lock must not open a second descriptor and
//! wait for itself (flock would exclude it: proc-lock and named-lock hang forever there). The
//! chain is a thread-local list: a synchronous `#[exclusive]` body is on it from entry to exit;
//! an `async` body is on it only *while its future is being polled*, so a nested `.await` inside
//! the holder sees it but another task that happens to run on the same thread does not.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

thread_local! {
    static CHAIN: RefCell<Vec<(Arc<PathBuf>, bool, u32)>> = const { RefCell::new(Vec::new()) };
}

/// How the current call chain holds the lock at `path`: `Some(false)` exclusively,
/// `Some(true)` only shared, `None` not at all. Entries made before a fork are the parent's
/// holds, not the child's (see `fork`): a forked child holds nothing.
pub(crate) fn held(path: &Path) -> Option<bool> {
    CHAIN.with(|chain| {
        let chain = chain.borrow();
        if chain.is_empty() {
            return None;
        }
        let pid = crate::pid::current();
        let mut found = None;
        for (p, shared, holder) in chain.iter() {
            if *holder == pid && p.as_path() == path {
                if !shared {
                    return Some(false);
                }
                found = Some(true);
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
    pub(crate) fn push(path: Arc<PathBuf>, shared: bool) -> Entry {
        let pid = crate::pid::current();
        CHAIN.with(|chain| chain.borrow_mut().push((path, shared, pid)));
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
