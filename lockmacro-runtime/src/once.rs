//! A value computed once and shared, set without a lock.
//!
//! `OnceLock` makes a second thread wait while the first computes the value. A child forked at
//! that instant inherits the "being computed" state but not the computing thread, and would wait
//! forever (see `fork`). Here two threads may both compute; one value wins, the other is
//! dropped, and nobody ever waits.

use std::fmt;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

pub(crate) struct OnceArc<T>(AtomicPtr<T>);

impl<T> OnceArc<T> {
    pub(crate) const fn new() -> Self {
        OnceArc(AtomicPtr::new(std::ptr::null_mut()))
    }

    pub(crate) fn with(value: Arc<T>) -> Self {
        OnceArc(AtomicPtr::new(Arc::into_raw(value).cast_mut()))
    }

    pub(crate) fn get(&self) -> Option<Arc<T>> {
        let raw = self.0.load(Ordering::Acquire);
        if raw.is_null() {
            return None;
        }
        // SAFETY: a published pointer came from `Arc::into_raw` and keeps its strong count
        // until `self` is dropped, so it is alive while `&self` is.
        unsafe {
            Arc::increment_strong_count(raw);
            Some(Arc::from_raw(raw))
        }
    }

    /// The value, computing it with `make` if there is none yet.
    pub(crate) fn get_or_init(&self, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        if let Some(value) = self.get() {
            return value;
        }
        let value = make();
        let raw = Arc::into_raw(Arc::clone(&value)).cast_mut();
        match self.0.compare_exchange(
            std::ptr::null_mut(),
            raw,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => value,
            Err(theirs) => {
                // SAFETY: ours was never published; theirs is alive as in `get`.
                unsafe {
                    drop(Arc::from_raw(raw));
                    Arc::increment_strong_count(theirs);
                    Arc::from_raw(theirs)
                }
            }
        }
    }
}

impl<T> Drop for OnceArc<T> {
    fn drop(&mut self) {
        let raw = *self.0.get_mut();
        if !raw.is_null() {
            // SAFETY: the reference `into_raw` kept for us.
            drop(unsafe { Arc::from_raw(raw) });
        }
    }
}

impl<T> Clone for OnceArc<T> {
    fn clone(&self) -> Self {
        match self.get() {
            Some(value) => OnceArc::with(value),
            None => OnceArc::new(),
        }
    }
}

impl<T> Default for OnceArc<T> {
    fn default() -> Self {
        OnceArc::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for OnceArc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OnceArc").field(&self.get()).finish()
    }
}

// SAFETY: it is an `Option<Arc<T>>` set once; `Arc<T>` is Send and Sync when T is.
unsafe impl<T: Send + Sync> Send for OnceArc<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for OnceArc<T> {}
