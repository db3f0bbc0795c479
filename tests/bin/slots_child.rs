//! `lm-slots`: the child process of `tests/test_slots.rs` (N at a time, writers get their turn).
//!
//! One line per event on stdout. When `LOCKMACRO_TEST_GATE_LOG` is set, every entry into the
//! lock also appends `in <pid>` to that file (one `O_APPEND` write), next to the runtime's own
//! `queued <pid>` and `entered <pid>` lines (see the runtime's `hooks`). Subcommands:
//!
//! - `hold <dir> <name> <slots>`: `try_acquire`, print `locked <pid>`, keep it until stdin EOF.
//! - `churn <dir> <name> <slots> <rounds> <markers> <mode> <hold_us>`: `<rounds>` times: acquire
//!   (`<mode>`: `wait`, `timeout`, `async`, `async-timeout`), take one of the oracle's markers
//!   `<markers>/m.0` .. `m.<slots-1>` with `O_EXCL` (none free: print `over` and exit 3), hold
//!   `<hold_us>` µs, remove the marker, release. Then print `done <pid>`.
//! - `read <dir> <name> <hold_us> <max_rounds>`: take the lock shared and hold it `<hold_us>`
//!   µs, again and again, until stdin EOF or `<max_rounds>`; print `ready <pid>` after the first
//!   entry and `done <rounds>` at the end.
//! - `write <dir> <name> <rounds> <hold_us>`: `<rounds>` times: `acquire` (exclusive), hold
//!   `<hold_us>` µs, release; print `waited <longest wait in µs> <each wait in µs...>`.
//!
//! Exit status 2: a usage or runtime error (on stderr).

#[path = "protocol.rs"]
mod protocol;

use std::fs::OpenOptions;
use std::future::Future;
use std::io::{Read, Write};
use std::path::Path;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use lockmacro_runtime::{Lock, LockGuard};
use protocol::say;

const LONG: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match a.as_slice() {
        ["hold", dir, name, slots] => hold(dir, name, slots),
        ["churn", dir, name, slots, rounds, markers, mode, hold_us] => {
            churn(dir, name, slots, rounds, markers, mode, hold_us)
        }
        ["read", dir, name, hold_us, max_rounds] => read(dir, name, hold_us, max_rounds),
        ["write", dir, name, rounds, hold_us] => write(dir, name, rounds, hold_us),
        _ => Err(format!("usage: see tests/bin/slots_child.rs; got {a:?}")),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("lm-slots: {message}");
            ExitCode::from(2)
        }
    }
}

fn num<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

fn lock(dir: &str, name: &str, slots: &str) -> Result<Lock, String> {
    Ok(Lock::new(name).dir(dir).slots(num(slots)?))
}

fn log_entry() {
    if let Ok(path) = std::env::var("LOCKMACRO_TEST_GATE_LOG") {
        let line = format!("in {}\n", std::process::id());
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .expect("gate log");
        f.write_all(line.as_bytes()).expect("write gate log");
    }
}

fn hold_for(us: u64) {
    // The work done while holding the lock, not a synchronisation.
    std::thread::sleep(Duration::from_micros(us));
}

fn hold(dir: &str, name: &str, slots: &str) -> Result<ExitCode, String> {
    let guard = lock(dir, name, slots)?
        .try_acquire()
        .map_err(|e| e.to_string())?;
    say(&format!("locked {}", std::process::id()));
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
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

fn churn(
    dir: &str,
    name: &str,
    slots: &str,
    rounds: &str,
    markers: &str,
    mode: &str,
    hold_us: &str,
) -> Result<ExitCode, String> {
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
            say("over");
            return Ok(ExitCode::from(3));
        };
        log_entry();
        hold_for(hold_us);
        std::fs::remove_file(&marker).map_err(|e| e.to_string())?;
        drop(guard);
    }
    say(&format!("done {}", std::process::id()));
    Ok(ExitCode::SUCCESS)
}

fn read(dir: &str, name: &str, hold_us: &str, max_rounds: &str) -> Result<ExitCode, String> {
    let lock = Lock::new(name).dir(dir).shared();
    let hold_us = num(hold_us)?;
    let stop = Arc::new(AtomicBool::new(false));
    let eof = Arc::clone(&stop);
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        eof.store(true, Ordering::SeqCst);
    });
    let mut rounds = 0u64;
    while rounds < num(max_rounds)? && !stop.load(Ordering::SeqCst) {
        let guard = lock.acquire().map_err(|e| e.to_string())?;
        log_entry();
        hold_for(hold_us);
        drop(guard);
        rounds += 1;
        if rounds == 1 {
            say(&format!("ready {}", std::process::id()));
        }
    }
    say(&format!("done {rounds}"));
    Ok(ExitCode::SUCCESS)
}

fn write(dir: &str, name: &str, rounds: &str, hold_us: &str) -> Result<ExitCode, String> {
    let lock = Lock::new(name).dir(dir);
    let hold_us = num(hold_us)?;
    let mut waits = Vec::new();
    for _ in 0..num::<u32>(rounds)? {
        let since = Instant::now();
        let guard = lock.acquire().map_err(|e| e.to_string())?;
        waits.push(since.elapsed().as_micros());
        log_entry();
        hold_for(hold_us);
        drop(guard);
    }
    let longest = waits.iter().max().copied().unwrap_or(0);
    let all: Vec<String> = waits.iter().map(u128::to_string).collect();
    say(&format!("waited {longest} {}", all.join(" ")));
    Ok(ExitCode::SUCCESS)
}

/// Runs a future on this thread (any executor would do; this child needs none).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
