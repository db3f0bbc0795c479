//! The `tracing` feature's events, seen by a capturing subscriber: acquired (with the wait),
//! contended (with the holder's PID), released (with the hold time), timed out and lost, each
//! with the lock name, path, mode and PID. Built without the feature, the same operations must
//! emit nothing at all (`cargo test` checks that; `cargo test --all-features` checks the events).

#![cfg_attr(not(feature = "tracing"), allow(dead_code))]

mod support;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockmacro_runtime::{Error, Lock};
use support::hold;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    target: String,
    message: String,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("no field `{key}` in {self:?}"))
    }

    fn number(&self, key: &str) -> u64 {
        self.field(key)
            .parse()
            .unwrap_or_else(|e| panic!("field `{key}` of {self:?}: {e}"))
    }
}

/// Records every event; spans are not used by the runtime.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        self.0.lock().expect("capture").push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message,
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Runs `f` with a capturing subscriber on this thread; returns what it captured.
fn capture(f: impl FnOnce()) -> Vec<Captured> {
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), f);
    let events = capture.0.lock().expect("capture").clone();
    events
}

/// The events the lifecycle below produces, by message.
fn by_message<'a>(events: &'a [Captured], message: &str) -> Vec<&'a Captured> {
    events.iter().filter(|e| e.message == message).collect()
}

/// Every operation that has an event: an uncontended exclusive hold, a shared hold, a refusal
/// and a timeout against a holder in another process, a wait that succeeds when it leaves,
/// and a hold whose file is removed under it. Returns the other process's PID.
fn lifecycle(dir: &Path) -> u32 {
    let lock = Lock::new("traced").dir(dir);
    drop(lock.try_acquire().expect("uncontended"));
    drop(
        Lock::new("traced-shared")
            .dir(dir)
            .shared()
            .acquire()
            .expect("shared"),
    );

    let holder = hold(dir, "traced", &[]);
    let refused = lock.try_acquire().expect_err("held by the child");
    assert!(matches!(refused, Error::Held { .. }), "{refused}");
    let timed_out = lock
        .acquire_timeout(Duration::from_millis(50))
        .expect_err("still held");
    assert!(matches!(timed_out, Error::Timeout { .. }), "{timed_out}");
    let pid = holder.id();
    holder.finish_ok();

    // Replaced while held (a file merely removed is put back by the holder's watch, and nothing
    // is lost): the release reports the loss. Reported, not exiting, for this test process.
    let lost = Lock::new("traced-lost")
        .dir(dir)
        .on_lost(lockmacro_runtime::OnLost::Report);
    let guard = lost.acquire().expect("lost: acquire");
    let other = dir.join("replacement");
    std::fs::write(&other, "").expect("a replacement file");
    std::fs::rename(&other, lost.path()).expect("replace the held lock file");
    drop(guard);
    pid
}

#[cfg(feature = "tracing")]
#[test]
fn every_event_has_the_lock_the_path_the_mode_and_the_pids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut child = 0;
    let events = capture(|| child = lifecycle(tmp.path()));
    let me = std::process::id().to_string();
    let path = Lock::new("traced")
        .dir(tmp.path())
        .path()
        .display()
        .to_string();
    for e in &events {
        assert_eq!(e.target, "lockmacro", "{e:?}");
        assert_eq!(e.field("pid"), me, "{e:?}");
        assert!(e.field("path").ends_with(".lock"), "{e:?}");
        assert!(["exclusive", "shared"].contains(&e.field("mode")), "{e:?}");
    }

    let acquired = by_message(&events, "lock acquired");
    let released = by_message(&events, "lock released");
    assert_eq!(acquired.len(), 3, "{events:#?}");
    assert_eq!(released.len(), 3, "{events:#?}");
    assert_eq!(acquired[0].field("lock"), "traced");
    assert_eq!(acquired[0].field("path"), path);
    assert_eq!(acquired[0].field("mode"), "exclusive");
    assert_eq!(acquired[0].level, Level::DEBUG);
    assert_eq!(acquired[1].field("mode"), "shared");
    for e in acquired.iter().chain(&released) {
        let key = if e.message == "lock acquired" {
            "waited_us"
        } else {
            "held_us"
        };
        assert!(e.number(key) < 60_000_000, "{e:?}");
    }

    // The refusal and the timeout each saw the child as the holder.
    let contended = by_message(&events, "lock contended");
    assert_eq!(contended.len(), 2, "{events:#?}");
    for e in &contended {
        assert_eq!(e.field("lock"), "traced");
        assert_eq!(e.number("holder_pid"), u64::from(child), "{e:?}");
        assert_eq!(e.level, Level::INFO);
    }
    let timed_out = by_message(&events, "lock wait timed out");
    assert_eq!(timed_out.len(), 1, "{events:#?}");
    assert_eq!(timed_out[0].number("timeout_ms"), 50);
    assert_eq!(timed_out[0].number("holder_pid"), u64::from(child));
    assert_eq!(timed_out[0].level, Level::WARN);

    let lost = by_message(&events, "lock lost");
    assert_eq!(lost.len(), 1, "{events:#?}");
    assert_eq!(lost[0].field("lock"), "traced-lost");
    assert!(lost[0].field("reason").contains("removed"), "{:?}", lost[0]);
    assert_eq!(lost[0].level, Level::ERROR);
}

/// A waiter that gets the lock when its holder leaves reports the holder, then how long it
/// waited: no more than the whole test step took, and not nothing.
#[cfg(all(feature = "tracing", target_os = "linux"))]
#[test]
fn a_wait_reports_the_holder_then_how_long_it_waited() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lock = Lock::new("traced-wait").dir(tmp.path());
    let holder = hold(tmp.path(), "traced-wait", &[]);
    let started = std::time::Instant::now();
    let events = std::thread::scope(|s| {
        let waiter = s.spawn(|| capture(|| drop(lock.acquire().expect("acquire"))));
        // A thread of this process blocked on the lock file, as /proc/locks shows it.
        support::wait_until_blocked(std::process::id(), lock.path(), || None)
            .unwrap_or_else(|why| panic!("{why}"));
        holder.finish_ok();
        waiter.join().expect("waiter")
    });
    let elapsed = started.elapsed();
    let contended = by_message(&events, "lock contended");
    let acquired = by_message(&events, "lock acquired");
    assert_eq!((contended.len(), acquired.len()), (1, 1), "{events:#?}");
    assert!(contended[0].number("holder_pid") > 0, "{events:#?}");
    let waited = acquired[0].number("waited_us");
    assert!(
        waited > 0 && u128::from(waited) <= elapsed.as_micros(),
        "{waited} µs of {elapsed:?}"
    );
}

#[cfg(not(feature = "tracing"))]
#[test]
fn without_the_feature_nothing_is_emitted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let events = capture(|| {
        lifecycle(tmp.path());
    });
    assert!(events.is_empty(), "{events:#?}");
}
