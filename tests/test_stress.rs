//! Mutual exclusion under load: many `lm-child stress` processes (and threads) hammering one
//! lock, half of them (or all) removing the lock file on release (`cleanup`), each running a
//! critical section judged by the oracle of `tests/support/oracle.rs`, which does not trust the
//! lock: every overlap of two holders is seen at the start of the second, and the exclusive
//! holders' non-atomic increments of a shared counter must add up exactly.
//!
//! The same experiment runs through the runtime API (`acquire()`, 5 rounds of 16 processes x
//! 1000, and 8 processes x 2 threads x 1000) and through `#[exclusive(wait)]` functions (8 x
//! 500). Controls prove the oracle can see a broken lock at all: the same load with no lock, and
//! with the protocol broken on purpose (the runtime's test hooks), must be caught.

mod support;

use support::{child, timed, Oracle, Proc};

const PROCESSES: usize = 16;
const ITERATIONS: u64 = 1000;
const ROUNDS: usize = 5;

/// How many processes, each with how many threads, each doing how many acquisitions.
#[derive(Debug, Clone, Copy)]
struct Load {
    processes: usize,
    threads: usize,
    iterations: u64,
}

const SINGLE_THREADED: Load = Load {
    processes: PROCESSES,
    threads: 1,
    iterations: ITERATIONS,
};

/// How the children take the lock.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    /// `Lock::acquire()`.
    Api,
    /// `#[exclusive(name = "stress", wait)]` and `#[exclusive(name = "stress", wait, cleanup)]`
    /// functions, on the same lock in the same directory.
    Attr,
    /// The same critical section without any lock.
    NoLock,
}

#[derive(Debug, Clone, Copy)]
enum Cleanup {
    /// Even-numbered children use `cleanup`, odd ones keep the file.
    Half,
    All,
}

#[derive(Debug, Default)]
struct Round {
    overlaps: u64,
    corrupt: u64,
    errors: u64,
    /// The counter at the end (`None`: torn by concurrent writers).
    count: Option<u64>,
    expected: u64,
}

impl Round {
    fn exact(&self) -> bool {
        self.overlaps == 0
            && self.corrupt == 0
            && self.errors == 0
            && self.count == Some(self.expected)
    }

    /// The oracle saw the lock fail: an overlap, or lost (or torn) increments.
    fn caught(&self) -> bool {
        self.overlaps > 0 || self.corrupt > 0 || self.count != Some(self.expected)
    }
}

/// One round: all children start their loops together (a `go` line after every child printed
/// `ready`), and the round ends when every child printed `done` and exited.
fn round(load: Load, via: Via, cleanup: Cleanup, broken: Option<&str>) -> Round {
    let work = tempfile::tempdir().expect("temp dir");
    let locks = work.path().join("locks");
    let oracle = Oracle::create(&work.path().join("oracle"));
    let oracle_dir = oracle.dir().display().to_string();
    let iterations = load.iterations.to_string();
    let threads = format!("--threads={}", load.threads);
    let mut children: Vec<Proc> = (0..load.processes)
        .map(|i| {
            let mut args = vec!["stress", "-", "stress", &iterations, &oracle_dir, &threads];
            match via {
                Via::Api => {}
                Via::Attr => args.push("--attr"),
                Via::NoLock => args.push("--nolock"),
            }
            if matches!(cleanup, Cleanup::All) || i % 2 == 0 {
                args.push("--cleanup");
            }
            let mut spec = child(args).dir(&locks);
            if let Some(what) = broken {
                spec = spec.env("LOCKMACRO_TEST_BREAK", what);
            }
            spec.spawn()
        })
        .collect();
    for child in &mut children {
        child.expect_pid("ready");
    }
    for child in &mut children {
        child.send("go");
    }
    let mut result = Round {
        expected: (load.processes * load.threads) as u64 * load.iterations,
        ..Round::default()
    };
    for mut child in children {
        // Only a hang may reach this; a debug run on two cores takes seconds.
        let line = child.expect_within("done", 10 * support::PATIENCE);
        result.overlaps += line.number::<u64>("overlaps");
        result.corrupt += line.number::<u64>("corrupt");
        result.errors += line.number::<u64>("errors");
        let done = child.finish_ok();
        if line.number::<u64>("errors") > 0 {
            eprintln!("stress child errors: {}", done.stderr);
        }
    }
    result.count = oracle.count();
    result
}

/// `ROUNDS` rounds of the same load through the runtime API, with the protocol intact or broken.
fn rounds(cleanup: Cleanup, broken: Option<&str>) -> Vec<Round> {
    let label = broken.unwrap_or("correct protocol");
    (1..=ROUNDS)
        .map(|n| {
            let r = timed(&format!("stress ({label}) round {n}"), || {
                round(SINGLE_THREADED, Via::Api, cleanup, broken)
            });
            eprintln!("[figures] {label}, round {n}: {r:?}");
            r
        })
        .collect()
}

#[test]
fn stress_16_processes_x_1000_half_cleanup_5_rounds_exact_count_no_overlap() {
    for (n, r) in rounds(Cleanup::Half, None).iter().enumerate() {
        assert!(
            r.exact(),
            "round {}: {PROCESSES} processes x {ITERATIONS} acquisitions must give exactly {} \
             increments and no overlap: {r:?}",
            n + 1,
            r.expected
        );
    }
}

/// Runs the rounds with the protocol broken by `hook` and asserts the oracle saw it in each.
fn assert_every_round_caught(cleanup: Cleanup, hook: &str) {
    for (n, r) in rounds(cleanup, Some(hook)).iter().enumerate() {
        assert!(
            r.overlaps > 0 || r.count != Some(r.expected),
            "round {}: the broken protocol went unnoticed: {r:?}",
            n + 1
        );
    }
}

/// Sensitivity: `cleanup` that unlocks before it unlinks lets a waiter lock the old inode while
/// a newcomer creates a fresh file: two holders. The oracle must see it in every round.
#[test]
fn stress_detects_unlock_before_unlink() {
    assert_every_round_caught(Cleanup::All, "unlock-before-unlink");
}

/// Sensitivity: without the device/inode re-check, a waiter that wakes up on a file a `cleanup`
/// holder has just unlinked believes it holds the lock. The oracle must see it in every round.
#[test]
fn stress_detects_missing_identity_check() {
    assert_every_round_caught(Cleanup::Half, "no-identity-check");
}

/// One round of `load` taken `via`, half of the children with `cleanup`, correct protocol.
fn one_round(what: &str, load: Load, via: Via) -> Round {
    let r = timed(&format!("stress, {what}"), || {
        round(load, via, Cleanup::Half, None)
    });
    eprintln!("[figures] {what}, {load:?}: {r:?}");
    r
}

/// Asserts a round of `load` taken `via` gave the exact count and no overlap.
fn assert_exact(what: &str, load: Load, via: Via) {
    let r = one_round(what, load, via);
    assert!(
        r.exact(),
        "{load:?} ({what}) must give exactly {} increments and no overlap: {r:?}",
        r.expected
    );
}

/// The same load spread over threads too: 8 processes × 2 threads × 1000. Threads of one process
/// must exclude each other exactly like processes do, whatever the runtime shares
/// between them (an open descriptor, an in-process admission).
#[test]
fn stress_8_processes_x_2_threads_x_1000_half_cleanup_exact_count_no_overlap() {
    let load = Load {
        processes: 8,
        threads: 2,
        iterations: ITERATIONS,
    };
    assert_exact("8 processes x 2 threads", load, Via::Api);
}

/// 8 processes × 500 calls of `#[exclusive(wait)]` functions, half of them with `cleanup`.
const ANNOTATED: Load = Load {
    processes: 8,
    threads: 1,
    iterations: 500,
};

#[test]
fn stress_wait_and_cleanup_holders_never_overlap_nor_lose_an_increment() {
    assert_exact("#[exclusive(wait)] functions", ANNOTATED, Via::Attr);
}

#[test]
fn stress_detectors_catch_overlaps_without_a_lock() {
    let r = one_round("no lock", ANNOTATED, Via::NoLock);
    assert!(
        r.caught(),
        "without a lock the oracle saw nothing, so it proves nothing: {r:?}"
    );
}
