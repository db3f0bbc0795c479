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
    use std::time::{Duration, Instant};

    use crate::lock::Spec;

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

    fn mode(spec: &Spec) -> &'static str {
        if spec.shared {
            "shared"
        } else {
            "exclusive"
        }
    }

    /// One event with the fields every event has, then the extra fields and the message.
    macro_rules! lock_event {
        ($level:ident, $spec:expr, $($rest:tt)+) => {
            tracing::$level!(
                target: TARGET,
                lock = %$spec.name,
                path = %$spec.path.display(),
                mode = mode($spec),
                pid = std::process::id(),
                $($rest)+
            )
        };
    }

    pub(crate) fn contended(spec: &Spec, holder: Option<u32>) {
        lock_event!(
            info,
            spec,
            holder_pid = holder.unwrap_or(0),
            "lock contended"
        );
    }

    pub(crate) fn acquired(spec: &Spec, since: Since) {
        lock_event!(debug, spec, waited_us = since.micros(), "lock acquired");
    }

    pub(crate) fn released(spec: &Spec, since: Since) {
        lock_event!(debug, spec, held_us = since.micros(), "lock released");
    }

    pub(crate) fn timed_out(spec: &Spec, timeout: Duration, holder: Option<u32>) {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let holder_pid = holder.unwrap_or(0);
        lock_event!(warn, spec, timeout_ms, holder_pid, "lock wait timed out");
    }

    pub(crate) fn lost(spec: &Spec, reason: &str) {
        lock_event!(error, spec, reason, "lock lost");
    }

    pub(crate) fn lost_held(slot: &crate::slot::Slot, reason: &str) {
        tracing::error!(
            target: TARGET,
            lock = %slot.place.name,
            path = %slot.place.path.display(),
            pid = std::process::id(),
            reason,
            "lock lost"
        );
    }

    pub(crate) fn reestablished(slot: &crate::slot::Slot) {
        tracing::warn!(
            target: TARGET,
            lock = %slot.place.name,
            path = %slot.place.path.display(),
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
    use std::time::Duration;

    use crate::lock::Spec;

    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Since;

    impl Since {
        #[inline(always)]
        pub(crate) fn now() -> Since {
            Since
        }
    }

    #[inline(always)]
    pub(crate) fn contended(_: &Spec, _: Option<u32>) {}
    #[inline(always)]
    pub(crate) fn acquired(_: &Spec, _: Since) {}
    #[inline(always)]
    pub(crate) fn released(_: &Spec, _: Since) {}
    #[inline(always)]
    pub(crate) fn timed_out(_: &Spec, _: Duration, _: Option<u32>) {}
    #[inline(always)]
    pub(crate) fn lost(_: &Spec, _: &str) {}
    #[inline(always)]
    pub(crate) fn lost_held(_: &crate::slot::Slot, _: &str) {}
    #[inline(always)]
    pub(crate) fn reestablished(_: &crate::slot::Slot) {}
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
