//! Events for the optional `tracing` feature: acquired, contended, released, timed out, lost.
//! Without the feature every function here is an empty inline function and [`Since`] is a
//! zero-sized type, so the default build does no clock reads and no formatting for them.
//!
//! Every event has the target `lockmacro` and the fields `lock` (the name), `path`, `mode`
//! (`"exclusive"` or `"shared"`) and `pid` (this process), plus:
//!
//! | event (message)       | level | extra fields                          |
//! |-----------------------|-------|---------------------------------------|
//! | `lock contended`      | INFO  | `holder_pid` (0 if unknown)           |
//! | `lock acquired`       | DEBUG | `waited_us`                           |
//! | `lock released`       | DEBUG | `held_us`                             |
//! | `lock wait timed out` | WARN  | `timeout_ms`, `holder_pid`            |
//! | `lock lost`           | ERROR | `reason`                              |
//! | `lock re-established` | WARN  | (its file was removed while held; see `watch`) |
//!
//! The last two come from the watch of a held file lock, which knows the lock's name and path
//! but not how it is held: they carry no `mode`.

#[cfg(feature = "tracing")]
mod imp {
    use std::fmt::Display;
    use std::time::{Duration, Instant};

    use crate::request::Share;

    const TARGET: &str = "lockmacro";

    /// When an acquisition started or a hold began.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Since(Instant);

    impl Since {
        pub(crate) fn now() -> Since {
            Since(Instant::now())
        }

        fn micros(self) -> u64 {
            u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
        }
    }

    macro_rules! lock_event {
        ($level:ident, $about:expr, $($rest:tt)+) => {
            tracing::$level!(
                target: TARGET,
                lock = %$about.name,
                path = %$about.at,
                mode = $about.share.word(),
                pid = std::process::id(),
                $($rest)+
            )
        };
    }

    /// What an event is about: the lock's name, where it is, and how it is asked for.
    #[derive(Clone, Copy)]
    pub(crate) struct About<'a> {
        pub(crate) name: &'a str,
        pub(crate) at: &'a dyn Display,
        pub(crate) share: Share,
    }

    pub(crate) fn contended(about: About<'_>, holder: Option<u32>) {
        lock_event!(
            info,
            about,
            holder_pid = holder.unwrap_or(0),
            "lock contended"
        );
    }

    pub(crate) fn acquired(about: About<'_>, since: Since) {
        lock_event!(debug, about, waited_us = since.micros(), "lock acquired");
    }

    pub(crate) fn released(about: About<'_>, since: Since) {
        lock_event!(debug, about, held_us = since.micros(), "lock released");
    }

    pub(crate) fn timed_out(about: About<'_>, timeout: Duration, holder: Option<u32>) {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let holder_pid = holder.unwrap_or(0);
        lock_event!(warn, about, timeout_ms, holder_pid, "lock wait timed out");
    }

    pub(crate) fn lost(about: About<'_>, reason: &str) {
        lock_event!(error, about, reason, "lock lost");
    }

    /// From the watch, which does not know how the lock is held: no `mode`.
    pub(crate) fn lost_held(name: &str, at: &dyn Display, reason: &str) {
        tracing::error!(
            target: TARGET,
            lock = %name,
            path = %at,
            pid = std::process::id(),
            reason,
            "lock lost"
        );
    }

    pub(crate) fn reestablished(name: &str, at: &dyn Display) {
        tracing::warn!(
            target: TARGET,
            lock = %name,
            path = %at,
            pid = std::process::id(),
            "lock re-established"
        );
    }

    /// Whether a `contended` event is worth its cost (finding the holder reads the lock table).
    pub(crate) fn wants_contended() -> bool {
        tracing::enabled!(target: TARGET, tracing::Level::INFO)
    }

    /// Whether a `lost` check at release is worth its cost (a path lookup).
    pub(crate) fn wants_lost() -> bool {
        tracing::enabled!(target: TARGET, tracing::Level::ERROR)
    }
}

#[cfg(not(feature = "tracing"))]
#[allow(clippy::inline_always)]
mod imp {
    use std::fmt::Display;
    use std::time::Duration;

    use crate::request::Share;

    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Since;

    /// Built by the callers, read only with the feature.
    #[derive(Clone, Copy)]
    #[allow(dead_code)]
    pub(crate) struct About<'a> {
        pub(crate) name: &'a str,
        pub(crate) at: &'a dyn Display,
        pub(crate) share: Share,
    }

    impl Since {
        #[inline(always)]
        pub(crate) fn now() -> Since {
            Since
        }
    }

    #[inline(always)]
    pub(crate) fn contended(_: About<'_>, _: Option<u32>) {}
    #[inline(always)]
    pub(crate) fn acquired(_: About<'_>, _: Since) {}
    #[inline(always)]
    pub(crate) fn released(_: About<'_>, _: Since) {}
    #[inline(always)]
    pub(crate) fn timed_out(_: About<'_>, _: Duration, _: Option<u32>) {}
    #[inline(always)]
    pub(crate) fn lost(_: About<'_>, _: &str) {}
    #[inline(always)]
    pub(crate) fn lost_held(_: &str, _: &dyn Display, _: &str) {}
    #[inline(always)]
    pub(crate) fn reestablished(_: &str, _: &dyn Display) {}
    #[inline(always)]
    pub(crate) fn wants_contended() -> bool {
        false
    }
    #[inline(always)]
    pub(crate) fn wants_lost() -> bool {
        false
    }
}

pub(crate) use imp::*;
