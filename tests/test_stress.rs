//! Many processes hammering one lock through `#[exclusive(wait)]` functions, half of them with
//! `cleanup` (the lock file deleted and re-created all the time), each doing inside the lock an
//! overlap check and a deliberately non-atomic read-modify-write of a shared counter file. The
//! same run without any lock proves the two detectors do catch concurrent critical sections.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{field, Proc};

const PROCESSES: usize = 8;
const ITERATIONS: u64 = 500;
/// Only a hang may reach this; a debug run on two cores takes seconds.
const RUN_PATIENCE: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Even-numbered processes use `#[exclusive(name = "stress", wait)]`, odd-numbered ones
    /// `#[exclusive(name = "stress", wait, cleanup)]`: same lock, same directory.
    Locked,
    /// The same critical section without any lock.
    NoLock,
}

#[derive(Debug)]
struct Outcome {
    counter: u64,
    overlaps: u64,
    bad_reads: u64,
    elapsed: Duration,
}

fn run(mode: Mode) -> Outcome {
    let tmp = tempfile::tempdir().expect("create a temporary directory");
    let locks = tmp.path().join("locks");
    let work: PathBuf = tmp.path().join("work");
    std::fs::create_dir(&work).expect("create the work directory");
    std::fs::write(work.join("counter"), "0").expect("create the counter");

    let iterations = ITERATIONS.to_string();
    let work_arg = work.to_str().expect("utf-8 path");
    let mut procs: Vec<Proc> = (0..PROCESSES)
        .map(|i| {
            let mut args = vec!["stress", iterations.as_str(), work_arg];
            match mode {
                Mode::Locked if i % 2 == 1 => args.push("--cleanup"),
                Mode::Locked => {}
                Mode::NoLock => args.push("--nolock"),
            }
            Proc::helper(args, &locks)
        })
        .collect();

    // Start barrier: every process is up and blocked reading stdin before any of them starts.
    for p in &mut procs {
        p.expect("ready");
    }
    let start = Instant::now();
    for p in &mut procs {
        p.send("go");
    }
    let mut overlaps = 0;
    let mut bad_reads = 0;
    for p in &mut procs {
        let done = p.expect_within("done", RUN_PATIENCE);
        overlaps += field(&done, "overlaps").parse::<u64>().expect("overlaps");
        bad_reads += field(&done, "bad").parse::<u64>().expect("bad");
    }
    let elapsed = start.elapsed();
    for p in procs {
        p.finish_ok();
    }
    let text = std::fs::read_to_string(work.join("counter")).expect("read the counter");
    let counter = text.trim().parse().unwrap_or(u64::MAX); // torn by the unlocked run
    Outcome {
        counter,
        overlaps,
        bad_reads,
        elapsed,
    }
}

#[test]
fn stress_wait_and_cleanup_holders_never_overlap_nor_lose_an_increment() {
    let out = run(Mode::Locked);
    eprintln!(
        "stress, locked: {PROCESSES} processes x {ITERATIONS} acquisitions (half with cleanup) \
         in {:?}: {out:?}",
        out.elapsed
    );
    assert_eq!(out.overlaps, 0, "{out:?}");
    assert_eq!(out.bad_reads, 0, "{out:?}");
    assert_eq!(out.counter, PROCESSES as u64 * ITERATIONS, "{out:?}");
}

#[test]
fn stress_detectors_catch_overlaps_without_a_lock() {
    let out = run(Mode::NoLock);
    eprintln!(
        "stress, no lock: {PROCESSES} processes x {ITERATIONS} critical sections in {:?}: {out:?}",
        out.elapsed
    );
    assert!(
        out.overlaps > 0 || out.bad_reads > 0 || out.counter != PROCESSES as u64 * ITERATIONS,
        "without a lock the detectors saw nothing, so they prove nothing: {out:?}"
    );
}
