//! `lm-pg`: the child process of `tests/test_postgres.rs` (feature `postgres`). The first two
//! arguments are always `<server url> <lock name>`; the URL is also put in
//! `LOCKMACRO_POSTGRES_URL` for the attribute forms. Events are lines on stdout,
//! `word key=value ...`, where `t=` is CLOCK_MONOTONIC in nanoseconds (comparable between
//! processes on one machine). A holder keeps its lock until stdin is closed. Subcommands:
//!
//! - `hold [--lease <ms>] [--report]`: `try_acquire`; `locked pid=<pid> t=<ns>`, or
//!   `held pid=<holder or 0>`. With `--report` (OnLost::Report) a loss prints
//!   `lost t=<ns> reason=<...>`; without it a loss exits the process with status 75.
//! - `wait [--lease <ms>]`: prints `waiting`, `acquire()`s, prints `acquired t=<ns>`, holds.
//! - `timeout <ms>`: `acquired`, or `timeout pid=<holder or 0> elapsed_ms=<ms>` (exit 4).
//! - `stress <n> <work dir>`: `ready`, waits for `go`, then `n` times: `acquire()`, critical
//!   section with an overlap detector and a counter file, release; `done overlaps=<n>`.
//! - `attr-main`: calls `#[exclusive(backend = "postgres")] fn main`-style function with the
//!   exit policy: `ran` then holds, or exits 1 with the policy's line.
//! - `attr-cancel`: an `async fn` with `on_lost = "cancel"` (lease 5 s): prints `locked`, then
//!   waits forever; when the lock is lost it returns `Err(Error::Lost)`: `cancelled <error>`.

#[path = "protocol.rs"]
mod protocol;

use protocol::say;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, ErrorKind, Read};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lockmacro_runtime::{exclusive, Error, Lock, OnLost};

fn now_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u128::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u128::try_from(ts.tv_nsec).unwrap_or(0)
}

fn wait_for_eof() {
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, url, name, rest @ ..] = args.as_slice() else {
        eprintln!("usage: lm-pg <command> <url> <name> [args]");
        return ExitCode::from(2);
    };
    std::env::set_var("LOCKMACRO_POSTGRES_URL", url);
    let lease = rest
        .iter()
        .position(|a| a == "--lease")
        .and_then(|i| rest.get(i + 1))
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    let mut lock = Lock::new(name.as_str()).postgres(url.as_str());
    if let Some(lease) = lease {
        lock = lock.lease(lease);
    }
    if rest.iter().any(|a| a == "--report") {
        lock = lock.on_lost(OnLost::Report);
    }
    let result = match command.as_str() {
        "hold" => hold(&lock),
        "wait" => wait(&lock),
        "timeout" => timeout(&lock, rest),
        "stress" => stress(&lock, rest),
        "attr-main" => {
            attr_main();
            Ok(ExitCode::SUCCESS)
        }
        "attr-cancel" => attr_cancel(),
        other => Err(format!("unknown command `{other}`")),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("lm-pg {command}: {message}");
            ExitCode::from(2)
        }
    }
}

fn hold(lock: &Lock) -> Result<ExitCode, String> {
    let guard = match lock.try_acquire() {
        Ok(guard) => guard,
        Err(e @ Error::Held { .. }) => {
            say(&format!("held pid={} msg={e}", e.holder_pid().unwrap_or(0)));
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.to_string()),
    };
    say(&format!("locked pid={} t={}", std::process::id(), now_ns()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Either stdin closes (release) or the lock is lost (reported, with `--report`).
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        wait_for_eof();
        let _ = eof_tx.send(());
    });
    runtime.block_on(async {
        tokio::select! {
            _ = eof_rx => {}
            err = guard.lost() => say(&format!("lost t={} reason={err}", now_ns())),
        }
    });
    let lost = guard.is_lost();
    guard.release().map_err(|e| e.to_string())?;
    if !lost {
        say("released");
    }
    Ok(ExitCode::SUCCESS)
}

fn wait(lock: &Lock) -> Result<ExitCode, String> {
    say("waiting");
    let guard = lock.acquire().map_err(|e| e.to_string())?;
    say(&format!("acquired t={}", now_ns()));
    wait_for_eof();
    drop(guard);
    say("released");
    Ok(ExitCode::SUCCESS)
}

fn timeout(lock: &Lock, rest: &[String]) -> Result<ExitCode, String> {
    let ms: u64 = rest
        .first()
        .and_then(|ms| ms.parse().ok())
        .ok_or("timeout needs <ms>")?;
    let started = Instant::now();
    match lock.acquire_timeout(Duration::from_millis(ms)) {
        Ok(_guard) => {
            say("acquired");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ Error::Timeout { .. }) => {
            say(&format!(
                "timeout pid={} elapsed_ms={} msg={e}",
                e.holder_pid().unwrap_or(0),
                started.elapsed().as_millis()
            ));
            Ok(ExitCode::from(4))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn stress(lock: &Lock, rest: &[String]) -> Result<ExitCode, String> {
    let [n, dir, ..] = rest else {
        return Err("stress needs <n> <work dir>".into());
    };
    let n: u32 = n.parse().map_err(|e| format!("n: {e}"))?;
    let dir = Path::new(dir);
    say("ready");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let mut overlaps = 0;
    for _ in 0..n {
        let guard = lock.acquire().map_err(|e| e.to_string())?;
        let inside = dir.join("inside");
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&inside)
        {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => overlaps += 1,
            Err(e) => return Err(format!("marker: {e}")),
        }
        let counter = dir.join("counter");
        let count: u64 = fs::read_to_string(&counter)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        std::thread::yield_now(); // widen the window a broken lock would let others into
        fs::write(&counter, format!("{}\n", count + 1)).map_err(|e| e.to_string())?;
        let _ = fs::remove_file(&inside);
        guard.release().map_err(|e| e.to_string())?;
    }
    say(&format!("done overlaps={overlaps}"));
    Ok(ExitCode::SUCCESS)
}

/// The attribute with `main`'s default policy (exit with status 1 when held).
#[exclusive(name = "pg-attr-main", backend = "postgres", on_conflict = "exit")]
fn attr_main() {
    say(&format!("ran pid={}", std::process::id()));
    wait_for_eof();
}

#[exclusive(
    name = "pg-attr-cancel",
    backend = "postgres",
    lease = "5s",
    on_lost = "cancel"
)]
async fn cancellable() -> Result<(), Error> {
    say(&format!("locked pid={}", std::process::id()));
    std::future::pending::<()>().await;
    Ok(())
}

fn attr_cancel() -> Result<ExitCode, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match runtime.block_on(cancellable()) {
        Err(e @ Error::Lost { .. }) => {
            say(&format!("cancelled t={} {e}", now_ns()));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("expected Error::Lost, got {other:?}")),
    }
}
