//! `stress <dir> <name> <iterations> <oracle dir> [lock options] [--threads=N] [--attr |
//! --nolock]`: print `ready pid=<pid>`, wait for a `go` line, then in each of N threads (default
//! 1, each with its own `Lock`, as independent parts of a program would have) `iterations` times:
//! acquire, run a critical section checked by the oracle in `<oracle dir>` (see
//! `tests/support/oracle.rs`), release. Exclusive holders increment the oracle's counter;
//! shared ones (`--shared`) count the other shared holders they see inside, looking four times
//! with yields between, and every 64th turn stay a little longer so that they really overlap.
//! Print `done acquisitions=<n> overlaps=<n> corrupt=<n> errors=<n> readers=<most other shared
//! holders seen at once>`.
//!
//! The lock is taken with `acquire()` through the runtime API, or, with `--attr`, by calling an
//! `#[exclusive(name = "stress", wait)]` function (`shared` and `cleanup` as the options say; its
//! directory is `LOCKMACRO_DIR`, so `<dir>` must be `-` and `<name>` `stress`), or, with
//! `--nolock`, not at all: the control that shows the oracle sees overlaps.

use std::process::ExitCode;

use lockmacro_runtime::{exclusive, Lock};

use crate::oracle::Oracle;
use crate::protocol::{me, say};
use crate::{lock_for, wait_for_go, Args, Outcome, LOCK_OPTIONS};

#[derive(Default)]
struct Tally {
    acquisitions: u64,
    /// Overlaps the oracle saw, on entry or on leaving.
    overlaps: u64,
    /// Counter reads that were not a number (a torn read of a concurrent write).
    corrupt: u64,
    /// Failed acquisitions or releases.
    errors: u64,
    /// The most other shared holders seen inside at once.
    readers: usize,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.acquisitions += other.acquisitions;
        self.overlaps += other.overlaps;
        self.corrupt += other.corrupt;
        self.errors += other.errors;
        self.readers = self.readers.max(other.readers);
    }

    fn overlap(&mut self, what: &str) {
        self.overlaps += 1;
        if self.overlaps <= 3 {
            eprintln!("lm-child stress: {what}");
        }
    }

    fn error(&mut self, what: &str) {
        self.errors += 1;
        if self.errors <= 3 {
            eprintln!("lm-child stress: {what}");
        }
    }
}

/// How a thread takes the lock.
enum Via {
    Api(Lock),
    Attr,
    NoLock,
}

pub fn stress(args: &Args) -> Outcome {
    let [dir, name, iterations, oracle] =
        args.positional("<dir> <name> <iterations> <oracle dir>")?;
    args.only(&[&LOCK_OPTIONS[..], &["threads", "attr", "nolock"]].concat())?;
    let iterations: u64 = iterations.parse().map_err(|e| format!("iterations: {e}"))?;
    let threads: usize = args.number("threads")?.unwrap_or(1);
    if args.has("attr") && (dir != "-" || name != "stress") {
        return Err("--attr takes lock `stress` in LOCKMACRO_DIR: give `- stress`".into());
    }
    let oracle = Oracle::at(std::path::Path::new(oracle));
    let shared = args.has("shared");
    let cleanup = args.has("cleanup");
    let vias = (0..threads)
        .map(|_| match (args.has("attr"), args.has("nolock")) {
            (false, false) => lock_for(dir, name, args).map(Via::Api),
            (true, false) => Ok(Via::Attr),
            (false, true) => Ok(Via::NoLock),
            (true, true) => Err("--attr or --nolock, not both".to_owned()),
        })
        .collect::<Result<Vec<Via>, String>>()?;
    say(&format!("ready pid={}", me()));
    wait_for_go()?;
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let workers: Vec<_> = vias
            .into_iter()
            .enumerate()
            .map(|(t, via)| {
                let oracle = &oracle;
                scope.spawn(move || {
                    let who = format!("{}.{t}", me());
                    let mut tally = Tally::default();
                    for turn in 0..iterations {
                        turn_of(&via, oracle, shared, cleanup, &who, turn, &mut tally);
                    }
                    tally
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a stress thread panicked"))
            .collect()
    });
    let mut total = Tally::default();
    for tally in &tallies {
        total.add(tally);
    }
    say(&format!(
        "done acquisitions={} overlaps={} corrupt={} errors={} readers={}",
        total.acquisitions, total.overlaps, total.corrupt, total.errors, total.readers
    ));
    Ok(ExitCode::SUCCESS)
}

/// One acquisition, critical section and release.
fn turn_of(
    via: &Via,
    oracle: &Oracle,
    shared: bool,
    cleanup: bool,
    who: &str,
    turn: u64,
    tally: &mut Tally,
) {
    match via {
        Via::Api(lock) => match lock.acquire() {
            Ok(guard) => {
                section(oracle, shared, who, turn, tally);
                if let Err(e) = guard.release() {
                    tally.error(&format!("release: {e}"));
                }
            }
            Err(e) => tally.error(&format!("acquire: {e}")),
        },
        Via::Attr => match (shared, cleanup) {
            (false, false) => attr_exclusive(oracle, who, turn, tally),
            (false, true) => attr_exclusive_cleanup(oracle, who, turn, tally),
            (true, false) => attr_shared(oracle, who, turn, tally),
            (true, true) => attr_shared_cleanup(oracle, who, turn, tally),
        },
        Via::NoLock => section(oracle, shared, who, turn, tally),
    }
}

#[exclusive(name = "stress", wait)]
fn attr_exclusive(oracle: &Oracle, who: &str, turn: u64, tally: &mut Tally) {
    section(oracle, false, who, turn, tally);
}

#[exclusive(name = "stress", wait, cleanup)]
fn attr_exclusive_cleanup(oracle: &Oracle, who: &str, turn: u64, tally: &mut Tally) {
    section(oracle, false, who, turn, tally);
}

#[exclusive(name = "stress", shared, wait)]
fn attr_shared(oracle: &Oracle, who: &str, turn: u64, tally: &mut Tally) {
    section(oracle, true, who, turn, tally);
}

#[exclusive(name = "stress", shared, wait, cleanup)]
fn attr_shared_cleanup(oracle: &Oracle, who: &str, turn: u64, tally: &mut Tally) {
    section(oracle, true, who, turn, tally);
}

/// The critical section, judged by the oracle.
fn section(oracle: &Oracle, shared: bool, who: &str, turn: u64, tally: &mut Tally) {
    tally.acquisitions += 1;
    let inside = oracle
        .enter(shared, who)
        .map_err(|e| tally.overlap(&e))
        .ok();
    if shared {
        if let Some(inside) = &inside {
            for _ in 0..4 {
                tally.readers = tally.readers.max(inside.others());
                std::thread::yield_now();
            }
        }
        if turn.is_multiple_of(64) {
            for _ in 0..200 {
                std::thread::yield_now();
            }
        }
    } else if !oracle.bump() {
        tally.corrupt += 1;
    }
    if let Some(inside) = inside {
        if let Err(e) = inside.leave(who) {
            tally.overlap(&e);
        }
    }
}
