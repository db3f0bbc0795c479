//! Mutual exclusion under load: 16 processes × 1000
//! blocking acquisitions of one lock, half of them removing the lock file on release
//! (`cleanup`), each running a critical section that increments a counter file non-atomically
//! and detects a second holder with a marker file created with `create_new`.
//!
//! The same load with the protocol broken on purpose (the runtime's test hooks) must
//! be caught, which proves the detectors can see a broken lock at all.

mod common;
mod common_rel;

use std::fs;

use common_rel::{attack, timed, Proc};

const PROCESSES: usize = 16;
const ITERATIONS: u64 = 1000;

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
    count: u64,
    expected: u64,
}

impl Round {
    fn exact(&self) -> bool {
        self.overlaps == 0 && self.corrupt == 0 && self.errors == 0 && self.count == self.expected
    }
}

/// One round: all children start their loops together (a `go` line after every child printed
/// `ready`), and the round ends when every child printed `done` and exited.
fn round(load: Load, cleanup: Cleanup, broken: Option<&str>) -> Round {
    let work = tempfile::tempdir().expect("temp dir");
    let locks = work.path().join("locks");
    fs::write(work.path().join("counter"), "0\n").expect("write counter");
    let mut children: Vec<Proc> = (0..load.processes)
        .map(|i| {
            let mut args = vec![
                "stress".to_owned(),
                locks.display().to_string(),
                "stress".to_owned(),
                load.iterations.to_string(),
                work.path().display().to_string(),
                format!("--threads={}", load.threads),
            ];
            if matches!(cleanup, Cleanup::All) || i % 2 == 0 {
                args.push("--cleanup".to_owned());
            }
            let mut spec = attack(args);
            if let Some(what) = broken {
                spec = spec.env("LOCKMACRO_TEST_BREAK", what);
            }
            spec.spawn()
        })
        .collect();
    for child in &mut children {
        child.expect("ready");
    }
    for child in &mut children {
        child.send("go");
    }
    let mut result = Round {
        expected: (load.processes * load.threads) as u64 * load.iterations,
        ..Round::default()
    };
    for mut child in children {
        let line = child.expect("done");
        let value = |key: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        };
        result.overlaps += value("overlaps");
        result.corrupt += value("corrupt");
        result.errors += value("errors");
        let done = child.finish();
        assert_eq!(done.code(), Some(0), "stress child failed: {done:#?}");
        if value("errors") > 0 {
            eprintln!("stress child errors: {}", done.stderr);
        }
    }
    let text = fs::read_to_string(work.path().join("counter")).expect("read counter");
    result.count = text.trim().parse().unwrap_or(0);
    result
}

const ROUNDS: usize = 5;

/// The whole test: `ROUNDS` rounds of the same load, with the protocol intact or broken.
fn rounds(cleanup: Cleanup, broken: Option<&str>) -> Vec<Round> {
    let label = broken.unwrap_or("correct protocol");
    (1..=ROUNDS)
        .map(|n| {
            let r = timed(&format!("stress ({label}) round {n}"), || {
                round(SINGLE_THREADED, cleanup, broken)
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

/// Runs the rounds with the protocol broken by `hook` and asserts the detectors saw it in each.
fn assert_every_round_caught(cleanup: Cleanup, hook: &str) {
    for (n, r) in rounds(cleanup, Some(hook)).iter().enumerate() {
        assert!(
            r.overlaps > 0 || r.count != r.expected,
            "round {}: the broken protocol went unnoticed: {r:?}",
            n + 1
        );
    }
}

/// Sensitivity: `cleanup` that unlocks before it unlinks lets a waiter lock the old inode while
/// a newcomer creates a fresh file: two holders. The detectors must see it in every round.
#[test]
fn stress_detects_unlock_before_unlink() {
    assert_every_round_caught(Cleanup::All, "unlock-before-unlink");
}

/// Sensitivity: without the device/inode re-check, a waiter that wakes up on a file a `cleanup`
/// holder has just unlinked believes it holds the lock. The detectors must see it in every
/// round.
#[test]
fn stress_detects_missing_identity_check() {
    assert_every_round_caught(Cleanup::Half, "no-identity-check");
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
    let r = timed("stress, 8 processes x 2 threads", || {
        round(load, Cleanup::Half, None)
    });
    eprintln!("[figures] correct protocol, 8 processes x 2 threads: {r:?}");
    assert!(
        r.exact(),
        "{load:?} must give exactly {} increments and no overlap: {r:?}",
        r.expected
    );
}
