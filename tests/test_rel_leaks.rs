//! Nothing leaks from failed or abandoned acquisitions: 1000 timed-out `acquire_timeout(1ms)`
//! calls and 1000 async acquisitions dropped while pending leave the process with as many open
//! descriptors and threads as before.
//!
//! Alone in its test binary on purpose: other tests running in the same process would open
//! descriptors and start threads of their own.

mod support;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use lockmacro_runtime::{Error, Lock};
use support::{hold, timed};

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
