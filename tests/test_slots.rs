//! N at a time (`Lock::slots`) and writers get their turn (the gate), across real processes
//! (`lm-child`'s `slots-*` subcommands, `tests/bin/child/slots.rs`).
//!
//! Oracles do not trust the lock: a holder takes one of N marker files with `O_EXCL`, so an
//! (N+1)th holder inside finds none free. The fairness bounds are checked as an order, never as a
//! time: the runtime (built with the test hooks) appends `queued <pid>` to a log when a waiter
//! announces itself (holds the gate) and `entered <pid>` once it holds the lock, and every child
//! appends `in <pid>` when it enters; between a waiter's two lines at most K others may enter,
//! K from the README's bound. Children report events as lines; the test waits for the line, never
//! for a while ([`BOUND`] only turns a hang into a failure).
//!
//! To see a test fail, run it with `LOCKMACRO_SLOTS_TEST_BREAK=no-gate` (passed on to the
//! children as `LOCKMACRO_TEST_BREAK`): waiters then neither hold nor pass the gate.
//! `measure_writer_wait` (ignored) prints the longest writer wait with and without the gate.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use lockmacro_runtime::{Error, Lock};
use support::{child, Proc};
use tempfile::TempDir;

/// How long any single expected event may take before the test calls it a hang (longer than
/// `support::PATIENCE`: a churning child reports only at its end).
const BOUND: Duration = Duration::from_secs(60);

/// One `lm-child` slots subcommand, with `LOCKMACRO_SLOTS_TEST_BREAK` passed on as
/// `LOCKMACRO_TEST_BREAK`, and the extra environment `env`.
fn kid(args: &[&str], env: &[(&str, &Path)]) -> Proc {
    let mut spec = child(args);
    if let Ok(broken) = std::env::var("LOCKMACRO_SLOTS_TEST_BREAK") {
        spec = spec.env("LOCKMACRO_TEST_BREAK", broken);
    }
    for (key, value) in env {
        spec = spec.env(key, value);
    }
    spec.spawn()
}

/// The gate log's lines as (event, pid), in order.
fn read_log(path: &Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let (event, pid) = line.split_once(' ').expect("event pid");
            (event.to_owned(), pid.parse().expect("pid"))
        })
        .collect()
}

/// For each announced waiter (`queued P` .. `entered P`): how many entries (`in Q`, Q ≠ P) fell
/// in between. Also checks that each window closes.
fn entries_while_queued(log: &[(String, u32)]) -> Vec<(u32, usize)> {
    let mut open: HashMap<u32, usize> = HashMap::new();
    let mut windows = Vec::new();
    for (event, pid) in log {
        match event.as_str() {
            "queued" => {
                assert!(open.insert(*pid, 0).is_none(), "{pid} queued twice");
            }
            "entered" => {
                let n = open.remove(pid).expect("entered without queued");
                windows.push((*pid, n));
            }
            "in" => {
                for (waiter, n) in &mut open {
                    if waiter != pid {
                        *n += 1;
                    }
                }
            }
            other => panic!("unknown event {other}"),
        }
    }
    assert!(open.is_empty(), "waiters never entered: {open:?}");
    windows
}

#[test]
fn eight_processes_three_slots_never_more_than_three_inside() {
    let dir = TempDir::new().unwrap();
    let markers = dir.path().join("markers");
    std::fs::create_dir(&markers).unwrap();
    let locks = dir.path().join("locks");
    let (locks, markers) = (locks.to_str().unwrap(), markers.to_str().unwrap());
    let modes = ["wait", "timeout", "async", "async-timeout"];
    let kids: Vec<Proc> = (0..8)
        .map(|i| {
            let args = [
                "slots-churn",
                locks,
                "pool",
                "3",
                "40",
                markers,
                modes[i % 4],
                "1500",
            ];
            kid(&args, &[])
        })
        .collect();
    for mut kid in kids {
        kid.expect_within("done", BOUND); // an `over` line (a fourth holder inside) fails here
        kid.finish_ok();
    }
    let left: Vec<_> = std::fs::read_dir(markers).unwrap().collect();
    assert!(left.is_empty(), "markers left behind: {left:?}");
}

#[test]
fn slots_try_timeout_and_holders() {
    let dir = TempDir::new().unwrap();
    let locks = dir.path().to_str().unwrap();
    let mut holders: Vec<Proc> = (0..3)
        .map(|_| kid(&["slots-hold", locks, "pool", "3"], &[]))
        .collect();
    for kid in &mut holders {
        kid.expect_pid("locked");
    }
    let lock = Lock::new("pool").dir(locks).slots(3);
    let mut expected: Vec<u32> = holders.iter().map(Proc::id).collect();
    expected.sort_unstable();
    let mut listed = lock.holders().unwrap();
    listed.sort_unstable();
    assert_eq!(listed, expected, "holders() lists the three holders");
    assert!(expected.contains(&lock.holder().unwrap().expect("a holder")));

    let err = lock.try_acquire().unwrap_err();
    assert!(matches!(err, Error::Held { .. }), "try: {err:?}");
    assert!(expected.contains(&err.holder_pid().expect("holder pid")));
    let err = lock
        .acquire_timeout(Duration::from_millis(100))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "timeout: {err:?}");
    let timed_async = lock.acquire_timeout_async(Duration::from_millis(100));
    let err = futures::executor::block_on(timed_async).unwrap_err();
    assert!(
        matches!(err, Error::Timeout { .. }),
        "async timeout: {err:?}"
    );

    // One leaves: a waiter gets its slot.
    let leaving = holders.remove(1);
    let left = leaving.id();
    leaving.finish_ok();
    let guard = lock.acquire_timeout(BOUND).expect("a slot freed");
    let mut listed = lock.holders().unwrap();
    listed.sort_unstable();
    let mut now: Vec<u32> = holders.iter().map(Proc::id).collect();
    now.push(std::process::id());
    now.sort_unstable();
    assert_eq!(listed, now, "{left} left, we are in");
    drop(guard);

    // A shared lock cannot have slots.
    let err = Lock::new("pool2")
        .dir(locks)
        .slots(2)
        .shared()
        .try_acquire()
        .unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }),
        "shared with slots: {err:?}"
    );
}

/// The README's bound for N at a time: once a waiter holds the gate, each other acquirer can
/// enter at most once (an acquisition that had passed the gate, or held it, before) before the
/// waiter: K = 7 with eight single-threaded processes.
#[test]
fn a_slot_waiter_gets_in_within_the_bound_while_others_churn() {
    let dir = TempDir::new().unwrap();
    let markers = dir.path().join("markers");
    std::fs::create_dir(&markers).unwrap();
    let log = dir.path().join("gate.log");
    let locks = dir.path().join("locks");
    let (locks, markers_s) = (locks.to_str().unwrap(), markers.to_str().unwrap());
    let modes = ["wait", "async", "timeout", "async-timeout"];
    let kids: Vec<Proc> = (0..8)
        .map(|i| {
            let args = [
                "slots-churn",
                locks,
                "pool",
                "3",
                "40",
                markers_s,
                modes[i % 4],
                "1000",
            ];
            kid(&args, &[("LOCKMACRO_TEST_GATE_LOG", &log)])
        })
        .collect();
    for mut kid in kids {
        kid.expect_within("done", BOUND);
        kid.finish_ok();
    }
    let windows = entries_while_queued(&read_log(&log));
    assert!(windows.len() >= 10, "too few waits to judge: {windows:?}");
    let worst = windows.iter().map(|w| w.1).max().unwrap();
    assert!(
        worst <= 7,
        "a waiter saw {worst} entries after it announced itself (bound 7): {windows:?}"
    );
}

/// Four reader processes take the lock shared in a loop, overlapping, so it is never free; a
/// writer takes it 20 times. README's bound: once the writer holds the gate, at most one entry
/// per reader (K = 4) before it.
fn writer_among_readers(rounds: &str, max_reads: &str) -> (Vec<(u32, usize)>, String) {
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("gate.log");
    let locks = dir.path().join("locks");
    let locks = locks.to_str().unwrap();
    let env = [("LOCKMACRO_TEST_GATE_LOG", log.as_path())];
    let mut readers: Vec<Proc> = (0..4)
        .map(|_| kid(&["slots-read", locks, "catalog", "2000", max_reads], &env))
        .collect();
    for reader in &mut readers {
        reader.expect_within("ready", BOUND);
    }
    let mut writer = kid(&["slots-write", locks, "catalog", rounds, "200"], &env);
    let waited = writer.expect_within("waited", BOUND);
    writer.finish_ok();
    for mut reader in readers {
        reader.close_stdin();
        reader.expect_within("done", BOUND);
        reader.finish_ok();
    }
    (
        entries_while_queued(&read_log(&log)),
        waited.as_str().to_owned(),
    )
}

#[test]
fn a_writer_gets_in_within_the_bound_while_four_readers_keep_coming() {
    let (windows, _) = writer_among_readers("20", "3000");
    assert!(!windows.is_empty(), "the writer never had to wait");
    let worst = windows.iter().map(|w| w.1).max().unwrap();
    assert!(
        worst <= 4,
        "the writer saw {worst} reader entries after it announced itself (bound 4): {windows:?}"
    );
}

/// Prints the longest writer wait among four busy readers, without the gate (as before) and
/// with it. `cargo test --test test_slots -- --ignored --nocapture measure_writer_wait`.
#[test]
#[ignore]
fn measure_writer_wait() {
    for broken in ["no-gate", ""] {
        std::env::set_var("LOCKMACRO_SLOTS_TEST_BREAK", broken);
        let (windows, waited) = writer_among_readers("20", "2500");
        let worst = windows.iter().map(|w| w.1).max().unwrap_or(0);
        eprintln!(
            "{}: {waited} (µs); most reader entries in one wait: {worst}",
            if broken.is_empty() { "gate" } else { broken }
        );
    }
}
