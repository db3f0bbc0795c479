//! `lm-child`: the one child program of the workspace-level tests (`tests/*.rs` start it through
//! `tests/support/proc.rs`; they find it as `CARGO_BIN_EXE_lm-child`). Run without arguments it
//! says what it is; `cargo run --example demo` shows lockmacro at work.
//!
//! It talks to the test over pipes with the line protocol of `protocol.rs`: one line per event,
//! `word key=value ...`, and a process that holds a lock keeps it until the test says so on its
//! stdin. Lock directories are given as `<dir>` (`-`: none, so `LOCKMACRO_DIR` or the default
//! directory); the annotated functions and programs, whose directory can only be a literal, use
//! `LOCKMACRO_DIR`. Subcommands, by module:
//!
//! - `hold.rs`, locks through the runtime API: `hold`, `try`, `default-dir`, `default-session`,
//!   `create-file`, `chdir-rounds`;
//! - `functions.rs`, annotated functions called by a plain `main`: `migrate`, `wait-acquire`,
//!   `timeout`;
//! - `programs.rs`, whole single-instance programs (`#[exclusive]` on a function named `main`,
//!   which the attribute treats as the program's `main`: exit policy, waiting notice):
//!   `single`, `env-main`, `notice-wait`, `notice-timeout`, `notice-quiet`, `tokio-outer`,
//!   `tokio-inner`;
//! - `fork.rs`, fork without exec: `fork`, `fork-exit`, `fork-hold`, `fork-async-timeout`,
//!   `fork-storm`, `noop`;
//! - `attack.rs`, how processes really end and interfere: `crash`, `signals`, `churn`,
//!   `release-while-forked`;
//! - `stress.rs`: `stress`, critical sections checked by the oracle of
//!   `tests/support/oracle.rs`;
//! - `torture.rs`: `torture-worker`, `torture-oracle`;
//! - `features.rs`, `on_conflict = "skip"` and names from code: `skip-main`, `skip-option`,
//!   `tenant`;
//! - `slots.rs`, N at a time and writers' turns: `slots-hold`, `slots-churn`, `slots-read`,
//!   `slots-write`;
//! - `pg.rs` (feature `postgres`): `pg-hold`, `pg-wait`, `pg-timeout`, `pg-attr-main`,
//!   `pg-attr-cancel`.
//!
//! Each module's documentation describes its subcommands' arguments and lines.

mod attack;
mod features;
mod fork;
mod functions;
mod hold;
#[cfg(feature = "postgres")]
mod pg;
mod programs;
mod protocol;
mod slots;
mod stress;
mod torture;

#[allow(dead_code)] // the tests use more of it than the child does
#[path = "../../support/flock.rs"]
mod flock;
#[allow(dead_code)] // the tests use more of it than the child does
#[path = "../../support/oracle.rs"]
mod oracle;
#[allow(dead_code)] // the tests use more of it than the child does
#[path = "../../support/rng.rs"]
mod rng;

use std::future::Future;
use std::io::{self, BufRead, Read};
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use lockmacro_runtime::{Error, Lock, OnLost};

use protocol::{error_line, say};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        println!(
            "lm-child: the child process of lockmacro's workspace tests, which start it; \
             `cargo run --example demo` shows lockmacro at work"
        );
        return ExitCode::SUCCESS;
    };
    let args = Args::parse(rest);
    let result = match command.as_str() {
        "hold" => hold::hold(&args),
        "try" => hold::try_once(&args),
        "default-dir" => hold::default_dir(),
        "default-session" => hold::default_session(&args),
        "create-file" => hold::create_file(&args),
        "chdir-rounds" => hold::chdir_rounds(&args),
        "migrate" => functions::migrate(),
        "wait-acquire" => functions::wait_acquire(&args),
        "timeout" => functions::timeout(),
        "single" => programs::run(programs::single::main),
        "env-main" => programs::run(programs::env_main::main),
        "notice-wait" => programs::run(programs::notice_wait::main),
        "notice-timeout" => programs::run(programs::notice_timeout::main),
        "notice-quiet" => programs::run(programs::notice_quiet::main),
        "tokio-outer" => programs::run(programs::tokio_outer::main),
        "tokio-inner" => programs::run(programs::tokio_inner::main),
        "fork" => fork::fork(&args),
        "fork-exit" => fork::fork_exit(&args),
        "fork-hold" => fork::fork_hold(&args),
        "fork-async-timeout" => fork::fork_async_timeout(&args),
        "fork-storm" => fork::fork_storm(&args),
        "noop" => Ok(ExitCode::SUCCESS),
        "crash" => attack::crash(&args),
        "signals" => attack::signals(&args),
        "churn" => attack::churn(&args),
        "release-while-forked" => attack::release_while_forked(&args),
        "stress" => stress::stress(&args),
        "torture-worker" => torture::worker(&args),
        "torture-oracle" => torture::foreign_oracle(&args),
        "skip-main" => features::skip_main(&args),
        "skip-option" => features::skip_option(&args),
        "tenant" => features::tenant_once(&args),
        "slots-hold" => slots::hold(&args),
        "slots-churn" => slots::churn(&args),
        "slots-read" => slots::read(&args),
        "slots-write" => slots::write(&args),
        #[cfg(feature = "postgres")]
        "pg-hold" => pg::hold(&args),
        #[cfg(feature = "postgres")]
        "pg-wait" => pg::wait(&args),
        #[cfg(feature = "postgres")]
        "pg-timeout" => pg::timeout(&args),
        #[cfg(feature = "postgres")]
        "pg-attr-main" => pg::attr_main(&args),
        #[cfg(feature = "postgres")]
        "pg-attr-cancel" => pg::attr_cancel(&args),
        other => Err(format!(
            "unknown subcommand `{other}`; see tests/bin/child/main.rs"
        )),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("lm-child {command}: {message}");
            ExitCode::from(2)
        }
    }
}

/// What a subcommand returns: its exit status, or a usage or unexpected error (status 2).
type Outcome = Result<ExitCode, String>;

/// A subcommand's arguments: positional ones, and options `--flag` or `--key=value`.
pub struct Args {
    pos: Vec<String>,
    opts: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(args: &[String]) -> Args {
        let mut parsed = Args {
            pos: Vec::new(),
            opts: Vec::new(),
        };
        for arg in args {
            match arg.strip_prefix("--") {
                Some(opt) => {
                    let (key, value) = match opt.split_once('=') {
                        Some((key, value)) => (key, Some(value.to_owned())),
                        None => (opt, None),
                    };
                    parsed.opts.push((key.to_owned(), value));
                }
                None => parsed.pos.push(arg.clone()),
            }
        }
        parsed
    }

    /// The positional arguments, which must be `N` (`usage` describes them).
    fn positional<const N: usize>(&self, usage: &str) -> Result<[&str; N], String> {
        let pos: Vec<&str> = self.pos.iter().map(String::as_str).collect();
        pos.try_into()
            .map_err(|_| format!("expected {usage}, got {:?}", self.pos))
    }

    /// Fails on an option not in `known`.
    fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.opts.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((key, _)) => Err(format!("unknown option `--{key}`")),
            None => Ok(()),
        }
    }

    fn has(&self, flag: &str) -> bool {
        self.opts.iter().any(|(k, _)| k == flag)
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.opts
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The value of `--key=<number>`, if given.
    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        self.value(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("`--{key}={v}` is not a number"))
            })
            .transpose()
    }
}

/// The lock options every subcommand that builds a `Lock` accepts.
const LOCK_OPTIONS: [&str; 8] = [
    "at", "system", "cleanup", "shared", "notice", "report", "postgres", "lease",
];

/// The lock `name` in `dir` (`-`: no explicit directory) with the lock options of `args`:
/// `--at` (the lock is `Lock::at(<name>)`, an exact path), `--system` (`.system()`, after any
/// `<dir>`), `--cleanup`, `--shared`, `--notice` (the waiting notice), `--report`
/// (`OnLost::Report`, also set when `LOCKMACRO_TEST_BREAK` breaks the protocol on purpose: the
/// runtime's own watch would see the lost lock and exit the process before the oracle sees two
/// holders), and with the feature `postgres`, `--postgres=<url>` and `--lease=<ms>`.
fn lock_for(dir: &str, name: &str, args: &Args) -> Result<Lock, String> {
    let mut lock = if args.has("at") {
        Lock::at(name)
    } else {
        Lock::new(name)
    };
    if dir != "-" {
        lock = lock.dir(dir);
    }
    if args.has("system") {
        lock = lock.system();
    }
    #[cfg(feature = "postgres")]
    {
        if let Some(url) = args.value("postgres") {
            lock = lock.postgres(url);
        }
        if let Some(ms) = args.number("lease")? {
            lock = lock.lease(std::time::Duration::from_millis(ms));
        }
    }
    #[cfg(not(feature = "postgres"))]
    if args.has("postgres") || args.has("lease") {
        return Err("`--postgres` and `--lease` need the feature `postgres`".into());
    }
    if args.has("cleanup") {
        lock = lock.cleanup();
    }
    if args.has("shared") {
        lock = lock.shared();
    }
    if args.has("notice") {
        lock = lock.wait_notice(true);
    }
    if args.has("report") || std::env::var_os("LOCKMACRO_TEST_BREAK").is_some() {
        lock = lock.on_lost(OnLost::Report);
    }
    Ok(lock)
}

/// Reports a failed acquisition (an `error` line) and returns exit status 1.
fn report(err: &Error) -> ExitCode {
    say(&error_line(err));
    ExitCode::from(1)
}

/// Blocks until the test closes our stdin.
fn wait_for_eof() {
    let _ = io::stdin().lock().read_to_end(&mut Vec::new());
}

/// The lines the test sends on our stdin, until it closes it.
fn stdin_lines() -> impl Iterator<Item = String> {
    io::stdin().lock().lines().map_while(Result::ok)
}

/// Waits for the test's `go` line (the start signal of the stress runs).
fn wait_for_go() -> Result<(), String> {
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("read stdin: {e}"))?;
    if line.trim() == "go" {
        Ok(())
    } else {
        Err(format!("expected `go` on stdin, got {line:?}"))
    }
}

/// A minimal executor: polls `future` on this thread, parking between wake-ups (no executor
/// state that a fork would copy badly).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
