//! How long an acquisition may wait: the one type a wait takes from the attribute (or the `Lock`
//! method) down to the backends' system calls.

use std::time::{Duration, Instant};

/// How long an acquisition may wait for a lock held elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Do not wait: one attempt.
    Now,
    /// Wait as long as it takes.
    Never,
    /// Wait until `at`, which is `timeout` after the acquisition began (the error reports
    /// `timeout`).
    At {
        /// When the wait ends.
        at: Instant,
        /// How long the wait was allowed (for the error message).
        timeout: Duration,
    },
}

impl Deadline {
    /// The deadline `timeout` from now (one that overflows the clock waits about 35,000 years).
    pub fn after(timeout: Duration) -> Deadline {
        let now = Instant::now();
        let at = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(1 << 40));
        Deadline::At { at, timeout }
    }

    /// Whether the deadline has passed (never for `Never`; at once for `Now`).
    pub(crate) fn passed(self) -> bool {
        match self {
            Deadline::Now => true,
            Deadline::Never => false,
            Deadline::At { at, .. } => Instant::now() >= at,
        }
    }
}
