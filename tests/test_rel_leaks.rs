//! Nothing leaks from failed or abandoned acquisitions: 1000 timed-out `acquire_timeout(1ms)`
//! calls and 1000 async acquisitions dropped while pending leave the process with as many open
//! descriptors and threads as before.
//!
//! Also: many short-lived locks keep at most eight descriptors open (the slots of the eight `Lock`s most recently used for the first time).
//!
//! Alone in its test binary on purpose: other tests running in the same process would open
//! descriptors and start threads of their own. Its two tests take turns (`SERIAL`).

mod support;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use lockmacro_runtime::{Error, Lock};
use support::{hold, timed};

/// The tests of this file take turns: each counts the process's descriptors.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .count()
}

fn threads() -> String {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status")
        .lines()
        .find(|l| l.starts_with("Threads:"))
        .expect("a Threads: line")
        .to_owned()
}

fn timed_out(lock: &Lock, holder: u32) {
    match lock.acquire_timeout(Duration::from_millis(1)) {
        Err(Error::Timeout { pid, .. }) => assert_eq!(pid, Some(holder)),
        other => panic!("expected a timeout, the child holds the lock: {other:?}"),
    }
}

/// Polls `acquire_async()` once or twice (it stays pending: the lock is held), then drops it.
fn cancelled(lock: &Lock, polls: usize) {
    let mut fut = pin!(lock.acquire_async());
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    for _ in 0..polls {
        assert!(
            matches!(fut.as_mut().poll(&mut cx), Poll::Pending),
            "the lock is held by the child: the acquisition must stay pending"
        );
    }
}

#[test]
fn thousand_timeouts_and_thousand_cancelled_async_acquisitions_leak_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let lock = Lock::new("leaks").dir(dir.path());
    let child = hold(dir.path(), "leaks", &[]);
    let holder = child.id();

    // Warm-up: the shared timer thread starts on the first pending async acquisition.
    for i in 0..5 {
        timed_out(&lock, holder);
        cancelled(&lock, 1 + i % 2);
    }
    let fds = open_descriptors();
    let before = threads();

    timed("1000 acquire_timeout(1ms)", || {
        for _ in 0..1000 {
            timed_out(&lock, holder);
        }
    });
    timed("1000 cancelled acquire_async", || {
        for i in 0..1000 {
            cancelled(&lock, 1 + i % 2);
        }
    });

    let fds_after = open_descriptors();
    let after = threads();
    eprintln!("[figures] leaks: descriptors {fds} -> {fds_after}; {before} -> {after}");
    assert_eq!(fds_after, fds, "open descriptors changed");
    assert_eq!(after, before, "thread count changed");

    let done = child.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    // Still usable afterwards, through the same async path.
    let guard = futures::executor::block_on(lock.acquire_timeout_async(Duration::from_secs(30)))
        .expect("free once the child released");
    guard.release().expect("release");
}

/// A process that makes a new `Lock` for each of 200 names (acquired and released once each)
/// keeps the files of the last eight open, and no more.
#[test]
fn short_lived_locks_keep_at_most_eight_descriptors_open() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    // Warm-up: the first hold starts the watch thread, with two descriptors of its own.
    drop(
        Lock::new("warm-up")
            .dir(dir.path())
            .try_acquire()
            .expect("free"),
    );
    let before = open_descriptors();
    for i in 0..200 {
        let lock = Lock::new(format!("short-lived-{i}")).dir(dir.path());
        drop(lock.try_acquire().expect("free"));
    }
    let after = open_descriptors();
    eprintln!("[figures] short-lived locks: descriptors {before} -> {after}");
    assert!(
        after <= before + 8,
        "200 short-lived locks left {} descriptors open",
        after.saturating_sub(before)
    );
}
