//! N at a time (`Lock::slots`) and writers get their turn, for `tests/test_slots.rs`.
//!
//! When `LOCKMACRO_TEST_GATE_LOG` is set, every entry into the lock also appends `in <pid>` to
//! that file (one `O_APPEND` write), next to the runtime's own `queued <pid>` and
//! `entered <pid>` lines (see the runtime's `hooks`).
//!
//! - `slots-hold <dir> <name> <slots>`: `try_acquire`, print `locked pid=<pid>`, keep it until
//!   stdin EOF.
//! - `slots-churn <dir> <name> <slots> <rounds> <markers> <mode> <hold_us>`: `<rounds>` times:
//!   acquire (`<mode>`: `wait`, `timeout`, `async`, `async-timeout`), take one of the oracle's
//!   markers `<markers>/m.0` .. `m.<slots-1>` with `O_EXCL` (none free: print `over pid=<pid>`
//!   and exit 3), hold `<hold_us>` µs, remove the marker, release. Then print `done pid=<pid>`.
//! - `slots-read <dir> <name> <hold_us> <max_rounds>`: take the lock shared and hold it
//!   `<hold_us>` µs, again and again, until stdin EOF or `<max_rounds>`; print `ready pid=<pid>`
//!   after the first entry and `done rounds=<rounds>` at the end.
//! - `slots-write <dir> <name> <rounds> <hold_us>`: `<rounds>` times: `acquire` (exclusive),
//!   hold `<hold_us>` µs, release; print
//!   `waited longest_us=<longest wait in µs> each_us=<each wait in µs, comma-separated>`.
//!
//! Any runtime error is an unexpected one here (exit status 2, on stderr).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockmacro_runtime::{Lock, LockGuard};

use crate::protocol::{me, say};
use crate::{block_on, wait_for_eof, Args, Outcome};

const LONG: Duration = Duration::from_secs(120);

fn num<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

fn lock(dir: &str, name: &str, slots: &str) -> Result<Lock, String> {
    Ok(Lock::new(name).dir(dir).slots(num(slots)?))
}

fn log_entry() -> Result<(), String> {
    if let Ok(path) = std::env::var("LOCKMACRO_TEST_GATE_LOG") {
        let line = format!("in {}\n", me());
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| format!("gate log {path}: {e}"))?;
    }
    Ok(())
}

fn hold_for(us: u64) {
    // The work done while holding the lock, not a synchronisation.
    std::thread::sleep(Duration::from_micros(us));
}

pub fn hold(args: &Args) -> Outcome {
    let [dir, name, slots] = args.positional("<dir> <name> <slots>")?;
    args.only(&[])?;
    let guard = lock(dir, name, slots)?
        .try_acquire()
        .map_err(|e| e.to_string())?;
    say(&format!("locked pid={}", me()));
    wait_for_eof();
    drop(guard);
    Ok(ExitCode::SUCCESS)
}

fn acquire(lock: &Lock, mode: &str) -> Result<LockGuard, String> {
    let got = match mode {
        "wait" => lock.acquire(),
        "timeout" => lock.acquire_timeout(LONG),
        "async" => block_on(lock.acquire_async()),
        "async-timeout" => block_on(lock.acquire_timeout_async(LONG)),
        other => return Err(format!("unknown mode {other}")),
    };
    got.map_err(|e| e.to_string())
}

pub fn churn(args: &Args) -> Outcome {
    let [dir, name, slots, rounds, markers, mode, hold_us] =
        args.positional("<dir> <name> <slots> <rounds> <markers> <mode> <hold_us>")?;
    args.only(&[])?;
    let n: u32 = num(slots)?;
    let lock = lock(dir, name, slots)?;
    let hold_us = num(hold_us)?;
    for _ in 0..num::<u32>(rounds)? {
        let guard = acquire(&lock, mode)?;
        // The oracle: one of n markers, taken with O_EXCL; n holders inside take them all.
        let marker = (0..n)
            .map(|i| Path::new(markers).join(format!("m.{i}")))
            .find(|m| {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(m)
                    .is_ok()
            });
        let Some(marker) = marker else {
            say(&format!("over pid={}", me()));
            return Ok(ExitCode::from(3));
        };
        log_entry()?;
        hold_for(hold_us);
        std::fs::remove_file(&marker).map_err(|e| e.to_string())?;
        drop(guard);
    }
    say(&format!("done pid={}", me()));
    Ok(ExitCode::SUCCESS)
}

pub fn read(args: &Args) -> Outcome {
    let [dir, name, hold_us, max_rounds] =
        args.positional("<dir> <name> <hold_us> <max_rounds>")?;
    args.only(&[])?;
    let lock = Lock::new(name).dir(dir).shared();
    let hold_us = num(hold_us)?;
    let max_rounds: u64 = num(max_rounds)?;
    let stop = Arc::new(AtomicBool::new(false));
    let eof = Arc::clone(&stop);
    std::thread::spawn(move || {
        wait_for_eof();
        eof.store(true, Ordering::SeqCst);
    });
    let mut rounds = 0u64;
    while rounds < max_rounds && !stop.load(Ordering::SeqCst) {
        let guard = lock.acquire().map_err(|e| e.to_string())?;
        log_entry()?;
        hold_for(hold_us);
        drop(guard);
        rounds += 1;
        if rounds == 1 {
            say(&format!("ready pid={}", me()));
        }
    }
    say(&format!("done rounds={rounds}"));
    Ok(ExitCode::SUCCESS)
}

pub fn write(args: &Args) -> Outcome {
    let [dir, name, rounds, hold_us] = args.positional("<dir> <name> <rounds> <hold_us>")?;
    args.only(&[])?;
    let lock = Lock::new(name).dir(dir);
    let hold_us = num(hold_us)?;
    let mut waits = Vec::new();
    for _ in 0..num::<u32>(rounds)? {
        let since = Instant::now();
        let guard = lock.acquire().map_err(|e| e.to_string())?;
        waits.push(since.elapsed().as_micros());
        log_entry()?;
        hold_for(hold_us);
        drop(guard);
    }
    let longest = waits.iter().max().copied().unwrap_or(0);
    let all: Vec<String> = waits.iter().map(u128::to_string).collect();
    say(&format!(
        "waited longest_us={longest} each_us={}",
        all.join(",")
    ));
    Ok(ExitCode::SUCCESS)
}
