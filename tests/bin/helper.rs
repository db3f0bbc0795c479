//! `lm-helper`: the child process of the multi-process tests (`tests/test_process.rs`,
//! `tests/test_stress.rs`). Every lock it takes lives in `LOCKMACRO_DIR`, which the test sets to
//! a fresh temporary directory.
//!
//! It talks to the test over pipes, one line per event, in `word key=value ...` form (a `path=`
//! field always comes last, so the path may contain spaces). A child that holds a lock keeps it
//! until its stdin is closed. Subcommands:
//!
//! - `hold <name> [--cleanup] [--shared] [--mark <file>]`: `try_acquire` through the runtime API,
//!   print `locked pid=<pid> path=<lock file>`, wait for stdin EOF, create `<file>` (while still
//!   holding), release, print `released`.
//! - `migrate`: call `#[exclusive(name = "migrate")] fn migrate() -> Result<(), AppError>`; print
//!   `ran` from its body, then `ok`, or `held pid=<pid> name=<name> path=<path>` (exit 3) when the
//!   conversion into `AppError` carried an `Error::Held`.
//! - `wait-acquire [--mark <file>]`: print `waiting pid=<pid>`, then call an annotated `wait`
//!   function on lock `wait`; inside it, print
//!   `acquired pid=<pid> mark=<yes|no> holder=<holder()> file=<lock file content>`.
//! - `timeout`: call `#[exclusive(name = "timeout", timeout = "300ms")]`; print `acquired`, or
//!   `timeout pid=<pid> elapsed_ms=<ms> name=<name> path=<path>` (exit 4).
//! - `stress <n> <work dir> [--cleanup | --nolock]`: print `ready pid=<pid>`, wait for a `go` line
//!   on stdin, then run the critical section `n` times under lock `stress` (`wait`, with or
//!   without `cleanup`) or under no lock at all; print `done overlaps=<n> bad=<n>`.
//! - `fork-drop <name>`: take lock `<name>` with `cleanup`, fork a child (through `pre_exec`) that
//!   drops its copy of the guard, print `forked pid=<pid> child=<exit status>`, keep the lock
//!   until stdin EOF, release, print `released`.
//! - `noop`: exit 0 (the exec target of `fork-drop`).
//! - `skip-main`, `skip-option`, `tenant`: see `tests/bin/features.rs`.
//!
//! Exit status 2 means a usage or unexpected error (details on stderr).

#[path = "features.rs"]
mod features;
#[path = "protocol.rs"]
mod protocol;

use protocol::say;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use lockmacro_runtime::{exclusive, Error, Location, Lock};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        return usage("missing subcommand");
    };
    let result = match command.as_str() {
        "hold" => hold(rest),
        "migrate" => run_migrate(),
        "wait-acquire" => wait_acquire(rest),
        "timeout" => run_timeout(),
        "stress" => stress(rest),
        "fork-drop" => fork_drop(rest),
        "noop" => Ok(ExitCode::SUCCESS),
        other => match features::run(other, rest) {
            Some(result) => result,
            None => return usage(&format!("unknown subcommand `{other}`")),
        },
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("lm-helper {command}: {message}");
            ExitCode::from(2)
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "lm-helper: {message}\nusage: lm-helper hold <name> [--cleanup] [--shared] [--mark <file>]\
         | migrate | wait-acquire [--mark <file>] | timeout \
         | stress <n> <dir> [--cleanup|--nolock] | fork-drop <name> | noop \
         | skip-main [--timeout] | skip-option | tenant <id>"
    );
    ExitCode::from(2)
}

type Outcome = Result<ExitCode, String>;

/// Blocks until the test closes our stdin.
fn wait_for_eof() -> Result<(), String> {
    io::stdin()
        .read_to_end(&mut Vec::new())
        .map(drop)
        .map_err(|e| format!("read stdin: {e}"))
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "none".to_owned(), |p| p.to_string())
}

/// Options `--flag` and `--key <value>` after the positional arguments.
struct Opts {
    positional: Vec<String>,
    flags: Vec<String>,
    mark: Option<PathBuf>,
}

fn parse_opts(args: &[String], known_flags: &[&str]) -> Result<Opts, String> {
    let mut opts = Opts {
        positional: Vec::new(),
        flags: Vec::new(),
        mark: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--mark" {
            let file = it.next().ok_or("`--mark` needs a file")?;
            opts.mark = Some(PathBuf::from(file));
        } else if known_flags.contains(&arg.as_str()) {
            opts.flags.push(arg.clone());
        } else if arg.starts_with("--") {
            return Err(format!("unknown option `{arg}`"));
        } else {
            opts.positional.push(arg.clone());
        }
    }
    Ok(opts)
}

impl Opts {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

// ---- hold -------------------------------------------------------------------------------------

fn hold(args: &[String]) -> Outcome {
    let opts = parse_opts(args, &["--cleanup", "--shared"])?;
    let [name] = opts.positional.as_slice() else {
        return Err("expected exactly one lock name".into());
    };
    let mut lock = Lock::new(name.as_str());
    if opts.has("--cleanup") {
        lock = lock.cleanup();
    }
    if opts.has("--shared") {
        lock = lock.shared();
    }
    let guard = lock.try_acquire().map_err(|e| e.to_string())?;
    say(&format!(
        "locked pid={} path={}",
        std::process::id(),
        guard.path().display()
    ));
    wait_for_eof()?;
    if let Some(mark) = &opts.mark {
        // Created while the lock is still held: whoever sees it acquired after this point.
        fs::write(mark, std::process::id().to_string())
            .map_err(|e| format!("create {}: {e}", mark.display()))?;
    }
    guard.release().map_err(|e| e.to_string())?;
    say("released");
    Ok(ExitCode::SUCCESS)
}

// ---- migrate: a `Result` function, the error converted into the user's type ---------------

/// The user's own error type; `#[exclusive]` converts the lock error into it with `From`.
#[derive(Debug)]
enum AppError {
    Lock(Error),
    #[allow(dead_code)] // Only here to show `AppError` is the user's type, not a lock error.
    Database(String),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Lock(e)
    }
}

#[exclusive(name = "migrate")]
fn migrate() -> Result<(), AppError> {
    say("ran");
    Ok(())
}

fn run_migrate() -> Outcome {
    match migrate() {
        Ok(()) => {
            say("ok");
            Ok(ExitCode::SUCCESS)
        }
        Err(AppError::Lock(Error::Held {
            name,
            at: Location::File(path),
            pid,
        })) => {
            say(&format!(
                "held pid={} name={name} path={}",
                pid_text(pid),
                path.display()
            ));
            Ok(ExitCode::from(3))
        }
        Err(other) => Err(format!("unexpected error: {other:?}")),
    }
}

// ---- wait-acquire -----------------------------------------------------------------------------

#[exclusive(name = "wait", wait)]
fn wait_locked(mark: Option<&Path>) -> Result<String, Error> {
    let saw_mark = mark.is_some_and(Path::exists);
    let lock = Lock::new("wait");
    let holder = lock.holder()?;
    let content = fs::read_to_string(lock.path()).map_err(|e| format!("{e}"));
    Ok(format!(
        "acquired pid={} mark={} holder={} file={}",
        std::process::id(),
        if saw_mark { "yes" } else { "no" },
        pid_text(holder),
        // The PID line (the lock's name follows it).
        content
            .as_deref()
            .map_or("unreadable", |c| c.lines().next().unwrap_or_default()),
    ))
}

fn wait_acquire(args: &[String]) -> Outcome {
    let opts = parse_opts(args, &[])?;
    if !opts.positional.is_empty() {
        return Err("takes no positional argument".into());
    }
    say(&format!("waiting pid={}", std::process::id()));
    let line = wait_locked(opts.mark.as_deref()).map_err(|e| e.to_string())?;
    say(&line);
    Ok(ExitCode::SUCCESS)
}

// ---- timeout ----------------------------------------------------------------------------------

#[exclusive(name = "timeout", timeout = "300ms")]
fn bounded() -> Result<(), AppError> {
    say("acquired");
    Ok(())
}

fn run_timeout() -> Outcome {
    let start = Instant::now();
    let result = bounded();
    let elapsed = start.elapsed();
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(AppError::Lock(Error::Timeout {
            name,
            at: Location::File(path),
            timeout,
            pid,
        })) => {
            say(&format!(
                "timeout pid={} elapsed_ms={} timeout_ms={} name={name} path={}",
                pid_text(pid),
                elapsed.as_millis(),
                timeout.as_millis(),
                path.display()
            ));
            Ok(ExitCode::from(4))
        }
        Err(other) => Err(format!("unexpected error: {other:?}")),
    }
}

// ---- stress -----------------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    /// Times the marker already existed on entry: someone else was inside at the same time.
    overlaps: u64,
    /// Times the counter file did not hold a number (a torn read of a concurrent write).
    bad: u64,
}

#[exclusive(name = "stress", wait)]
fn stress_locked(dir: &Path, stats: &mut Stats) {
    critical(dir, stats);
}

#[exclusive(name = "stress", wait, cleanup)]
fn stress_locked_cleanup(dir: &Path, stats: &mut Stats) {
    critical(dir, stats);
}

/// The critical section: an overlap detector plus a deliberately non-atomic increment.
fn critical(dir: &Path, stats: &mut Stats) {
    let marker = dir.join("inside");
    let mine = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
    {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            stats.overlaps += 1;
            false
        }
        Err(e) => panic!("create {}: {e}", marker.display()),
    };
    let counter = dir.join("counter");
    let text =
        fs::read_to_string(&counter).unwrap_or_else(|e| panic!("read {}: {e}", counter.display()));
    match text.trim().parse::<u64>() {
        Ok(value) => {
            // Widen the read-modify-write window, so that without a lock another process gets
            // to run in the middle of it.
            std::thread::yield_now();
            fs::write(&counter, (value + 1).to_string())
                .unwrap_or_else(|e| panic!("write {}: {e}", counter.display()));
        }
        Err(_) => stats.bad += 1,
    }
    if mine {
        fs::remove_file(&marker).unwrap_or_else(|e| panic!("remove {}: {e}", marker.display()));
    }
}

fn stress(args: &[String]) -> Outcome {
    let opts = parse_opts(args, &["--cleanup", "--nolock"])?;
    let [n, dir] = opts.positional.as_slice() else {
        return Err("expected <iterations> <work dir>".into());
    };
    let n: u64 = n.parse().map_err(|e| format!("iterations `{n}`: {e}"))?;
    let dir = Path::new(dir);
    say(&format!("ready pid={}", std::process::id()));
    let mut go = String::new();
    io::stdin()
        .lock()
        .read_line(&mut go)
        .map_err(|e| format!("read stdin: {e}"))?;
    if go.trim() != "go" {
        return Err(format!("expected `go` on stdin, got {go:?}"));
    }
    let mut stats = Stats::default();
    for _ in 0..n {
        if opts.has("--nolock") {
            critical(dir, &mut stats);
        } else if opts.has("--cleanup") {
            stress_locked_cleanup(dir, &mut stats);
        } else {
            stress_locked(dir, &mut stats);
        }
    }
    say(&format!(
        "done overlaps={} bad={}",
        stats.overlaps, stats.bad
    ));
    Ok(ExitCode::SUCCESS)
}

// ---- fork-drop --------------------------------------------------------------------------------

#[cfg(unix)]
fn fork_drop(args: &[String]) -> Outcome {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let [name] = args else {
        return Err("expected exactly one lock name".into());
    };
    // `cleanup`, so that a guard wrongly releasing in the forked child would also delete the file.
    let guard = Lock::new(name.as_str())
        .cleanup()
        .try_acquire()
        .map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut in_child = Some(guard);
    let mut command = Command::new(exe);
    command
        .arg("noop")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: this process is single-threaded (no thread was started before this point), so
    // the forked child may allocate and run destructors before `exec`. The closure runs only in
    // the child: the parent's copy of the guard stays inside `command` until it is dropped below.
    unsafe {
        command.pre_exec(move || {
            drop(in_child.take());
            Ok(())
        });
    }
    let status = command.status().map_err(|e| format!("fork child: {e}"))?;
    say(&format!(
        "forked pid={} child={}",
        std::process::id(),
        status
            .code()
            .map_or_else(|| "signal".to_owned(), |c| c.to_string())
    ));
    wait_for_eof()?;
    drop(command); // drops the parent's guard: the real release
    say("released");
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(unix))]
fn fork_drop(_args: &[String]) -> Outcome {
    Err("fork-drop needs Unix".into())
}
