//! The PostgreSQL backend (feature `postgres`), for `tests/test_postgres.rs`. `<url>` is the
//! server; it is also put in `LOCKMACRO_POSTGRES_URL` for the attribute forms. `t=` is
//! CLOCK_MONOTONIC in nanoseconds (comparable between processes on one machine). A holder keeps
//! its lock until stdin is closed. (The stress run is `stress` with `--postgres=<url>`.)
//!
//! - `pg-hold <url> <name> [--lease=<ms>] [--report]`: `try_acquire`; `locked pid=<pid> t=<ns>`,
//!   or `held holder=<pid|-> msg=<error>` and exit 3. With `--report` (`OnLost::Report`) a loss
//!   prints `lost t=<ns> msg=<reason>`; without it a loss exits the process with status 75. At
//!   stdin EOF a lock still held is released and `released` printed.
//! - `pg-wait <url> <name> [--lease=<ms>]`: print `waiting`, `acquire()`, print
//!   `acquired t=<ns>`, hold until stdin EOF, print `released`.
//! - `pg-timeout <url> <name> <ms>`: `acquired`, or `timeout holder=<pid|-> elapsed_ms=<ms>
//!   msg=<error>` (exit 4).
//! - `pg-attr-main <url>`: a function with `#[exclusive(backend = "postgres", on_conflict =
//!   "exit")]` (lock `pg-attr-main`): `ran pid=<pid>` then holds until stdin EOF, or exits 1 with
//!   the policy's line.
//! - `pg-attr-cancel <url>`: an `async fn` with `on_lost = "cancel"` (lock `pg-attr-cancel`,
//!   lease 5 s): prints `locked pid=<pid>`, then waits forever; when the lock is lost it returns
//!   `Err(Error::Lost)`: `cancelled t=<ns> msg=<error>`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use lockmacro_runtime::{exclusive, Error, Lock, OnLost};

use crate::protocol::{me, pid_text, say};
use crate::{wait_for_eof, Args, Outcome};

fn now_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u128::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u128::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The lock `name` on the server at `url`, with `--lease` and `--report`.
fn pg_lock(url: &str, name: &str, args: &Args) -> Result<Lock, String> {
    args.only(&["lease", "report"])?;
    std::env::set_var(lockmacro_runtime::URL_ENV, url);
    let mut lock = Lock::new(name).postgres(url);
    if let Some(ms) = args.number("lease")? {
        lock = lock.lease(Duration::from_millis(ms));
    }
    if args.has("report") {
        lock = lock.on_lost(OnLost::Report);
    }
    Ok(lock)
}

pub fn hold(args: &Args) -> Outcome {
    let [url, name] = args.positional("<url> <name>")?;
    let lock = pg_lock(url, name, args)?;
    let guard = match lock.try_acquire() {
        Ok(guard) => guard,
        Err(e @ Error::Held { .. }) => {
            say(&format!("held holder={} msg={e}", pid_text(e.holder_pid())));
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.to_string()),
    };
    say(&format!("locked pid={} t={}", me(), now_ns()));
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
            err = guard.lost() => say(&format!("lost t={} msg={err}", now_ns())),
        }
    });
    let lost = guard.is_lost();
    guard.release().map_err(|e| e.to_string())?;
    if !lost {
        say("released");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn wait(args: &Args) -> Outcome {
    let [url, name] = args.positional("<url> <name>")?;
    let lock = pg_lock(url, name, args)?;
    say("waiting");
    let guard = lock.acquire().map_err(|e| e.to_string())?;
    say(&format!("acquired t={}", now_ns()));
    wait_for_eof();
    drop(guard);
    say("released");
    Ok(ExitCode::SUCCESS)
}

pub fn timeout(args: &Args) -> Outcome {
    let [url, name, ms] = args.positional("<url> <name> <ms>")?;
    let lock = pg_lock(url, name, args)?;
    let ms: u64 = ms.parse().map_err(|e| format!("ms: {e}"))?;
    let started = Instant::now();
    match lock.acquire_timeout(Duration::from_millis(ms)) {
        Ok(_guard) => {
            say("acquired");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ Error::Timeout { .. }) => {
            say(&format!(
                "timeout holder={} elapsed_ms={} msg={e}",
                pid_text(e.holder_pid()),
                started.elapsed().as_millis()
            ));
            Ok(ExitCode::from(4))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The attribute with `main`'s default policy (exit with status 1 when held).
#[exclusive(name = "pg-attr-main", backend = "postgres", on_conflict = "exit")]
fn attr_main_locked() {
    say(&format!("ran pid={}", me()));
    wait_for_eof();
}

pub fn attr_main(args: &Args) -> Outcome {
    let [url] = args.positional("<url>")?;
    args.only(&[])?;
    std::env::set_var(lockmacro_runtime::URL_ENV, url);
    attr_main_locked();
    Ok(ExitCode::SUCCESS)
}

#[exclusive(
    name = "pg-attr-cancel",
    backend = "postgres",
    lease = "5s",
    on_lost = "cancel"
)]
async fn cancellable() -> Result<(), Error> {
    say(&format!("locked pid={}", me()));
    std::future::pending::<()>().await;
    Ok(())
}

pub fn attr_cancel(args: &Args) -> Outcome {
    let [url] = args.positional("<url>")?;
    args.only(&[])?;
    std::env::set_var(lockmacro_runtime::URL_ENV, url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match runtime.block_on(cancellable()) {
        Err(e @ Error::Lost { .. }) => {
            say(&format!("cancelled t={} msg={e}", now_ns()));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("expected Error::Lost, got {other:?}")),
    }
}
