//! `lm-regress`: the child process of `tests/test_never_two.rs` (issue 12, "never two holders").
//!
//! It talks to the test over pipes, one line per event, first word first. Processes it forks
//! itself (`fork`, no exec) never read the test's lines meant for it and never keep its stdout
//! open unless they report on it; they block on a pipe or on stdin, never for a while, so the
//! test decides how long they live (and kills the whole process group when it is done).
//!
//! `<dir>` is a lock directory, or `-` for none (then `LOCKMACRO_DIR` or the default directory).
//! Subcommands:
//!
//! - `hold <dir> <name> [--cleanup] [--shared] [--block]`: `try_acquire` (`acquire` with
//!   `--block`), print `locked <pid>`; then obey lines on stdin: `check` prints `check ok` or
//!   `check lost <message>`, `release` releases and prints `released`; at stdin EOF exit 0 (a
//!   lock still held is released on the way out).
//! - `try <dir> <name> [--cleanup] [--shared]`: `try_acquire` once; print `locked <pid>`, release,
//!   print `released`.
//!
//!   Both also take `--at` (the lock is `Lock::at(<name>)`, an exact path) and `--system`
//!   (`.system()`, after any `<dir>`), for `tests/test_scope.rs`.
//! - `default-dir`: print `dir <default_dir()>`.
//! - `default-session <name>`: take and release lock `<name>` (no directory: the default one),
//!   print `ready <pid>`; then for each stdin line `try <name>`, `try_acquire` that lock (the same
//!   `Lock` value every time for the same name, so its cached state is reused), print
//!   `locked <pid>` and release, or print the error line; exit at stdin EOF.
//! - `create-file <path> <octal mode>`: create `<path>` (it must not exist), empty, with exactly
//!   that mode; print `created`.
//! - `fork-exit <dir> <name>` (issue item 1a): take and release the lock (its descriptor is now
//!   cached), fork a child that blocks reading stdin until EOF (it never touches the lock), print
//!   `forked <child pid>`, take the lock again, print `locked <pid>`, keep it with `forever()`
//!   and exit 0 at once.
//! - `fork-hold <dir> <name> [--cleanup]` (1b): take the lock, fork a child that blocks on a pipe
//!   until we exit, print `forked <child pid>` and `locked <pid>`; at the stdin line `release`,
//!   release and print `released`; exit at stdin EOF.
//! - `fork-async-timeout <dir> <name>` (1c): `acquire_timeout_async(50ms)` (the test holds the
//!   lock) and print `parent <Variant|ok>`; fork a child that runs `acquire_timeout_async(200ms)`
//!   and prints `child <Variant|ok> <elapsed ms>`; wait for it and print `reaped <raw status>`.
//! - `fork-storm <dir> <name> <n>` (1d): one thread takes and releases the shared lock in a loop
//!   while the main thread forks `<n>` times; each child takes the shared lock with
//!   `acquire_timeout(5s)`, releases it and `_exit`s (0 on success, 1 on an error). Before waiting
//!   for child `i`, print `child <i> <pid>`; after, `reaped <i> <raw status>`. At the end
//!   `done <n>`.
//! - `chdir-rounds <X> <Y> <name> <rounds>` (2, relative directory): in `X`, make
//!   `Lock::new(name).dir("locks")`, take and release it, `chdir` to `Y`, print `path <path()>`,
//!   then `<rounds>` times: acquire, look at `X/locks/<file>` with an independent
//!   open + `flock(LOCK_EX|LOCK_NB)`, release. Print `done bad=<rounds where X's file was not
//!   held> rounds=<n> first=<first bad round|->`.
//!
//! A failed acquisition through the runtime API prints
//! `error <Variant> holder=<pid|-> path=<path> msg=<message: causes>` and exits with 1 (for
//! `default-session` it only prints the line). Exit status 2 means a usage or unexpected error
//! (details on stderr).

#[path = "protocol.rs"]
mod protocol;

use protocol::say;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, BufRead};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use lockmacro_runtime::{Error, Lock};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        return usage("missing subcommand");
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let result = match command.as_str() {
        "hold" => hold(&rest),
        "try" => try_once(&rest),
        "default-dir" => {
            say(&format!(
                "dir {}",
                lockmacro_runtime::default_dir().display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        "default-session" => default_session(&rest),
        "create-file" => create_file(&rest),
        "fork-exit" => fork_exit(&rest),
        "fork-hold" => fork_hold(&rest),
        "fork-async-timeout" => fork_async_timeout(&rest),
        "fork-storm" => fork_storm(&rest),
        "chdir-rounds" => chdir_rounds(&rest),
        other => return usage(&format!("unknown subcommand `{other}`")),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("lm-regress {command}: {message}");
            ExitCode::from(2)
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "lm-regress: {message}\nusage: lm-regress hold <dir|-> <name> [--cleanup] [--shared] \
         [--block] | try <dir|-> <name> [--cleanup] [--shared] | default-dir \
         | default-session <name> | create-file <path> <mode> | fork-exit <dir> <name> \
         | fork-hold <dir> <name> [--cleanup] | fork-async-timeout <dir> <name> \
         | fork-storm <dir> <name> <n> | chdir-rounds <X> <Y> <name> <rounds>"
    );
    ExitCode::from(2)
}

type Outcome = Result<ExitCode, String>;

/// The lock `name` in `dir` (`-`: no explicit directory).
fn lock_for(dir: &str, name: &str, flags: &[&str]) -> Lock {
    let mut lock = if flags.contains(&"--at") {
        Lock::at(name)
    } else {
        Lock::new(name)
    };
    if dir != "-" {
        lock = lock.dir(dir);
    }
    if flags.contains(&"--system") {
        lock = lock.system();
    }
    if flags.contains(&"--cleanup") {
        lock = lock.cleanup();
    }
    if flags.contains(&"--shared") {
        lock = lock.shared();
    }
    if flags.contains(&"--notice") {
        lock = lock.wait_notice(true);
    }
    if flags.contains(&"--report") {
        lock = lock.on_lost(lockmacro_runtime::OnLost::Report);
    }
    lock
}

fn variant(err: &Error) -> &'static str {
    match err {
        Error::Held { .. } => "Held",
        Error::Timeout { .. } => "Timeout",
        Error::Nested { .. } => "Nested",
        Error::UnsafeDir { .. } => "UnsafeDir",
        Error::UnsafeFile { .. } => "UnsafeFile",
        Error::Lost { .. } => "Lost",
        Error::Io { .. } => "Io",
        _ => "Other",
    }
}

/// The error and its causes on one line.
fn one_line(err: &Error) -> String {
    let mut msg = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}

fn error_line(err: &Error) -> String {
    let holder = err
        .holder_pid()
        .map_or_else(|| "-".to_owned(), |p| p.to_string());
    format!(
        "error {} holder={holder} path={} msg={}",
        variant(err),
        err.location(),
        one_line(err)
    )
}

/// Reports a failed acquisition on stdout and exits with 1.
fn report(err: &Error) -> ExitCode {
    say(&error_line(err));
    ExitCode::from(1)
}

fn stdin_lines() -> impl Iterator<Item = String> {
    io::stdin().lock().lines().map_while(Result::ok)
}

fn hold(args: &[&str]) -> Outcome {
    let [dir, name, flags @ ..] = args else {
        return Err("usage: hold <dir|-> <name> [flags]".into());
    };
    let lock = lock_for(dir, name, flags);
    let got = if flags.contains(&"--block") {
        lock.acquire()
    } else {
        lock.try_acquire()
    };
    let mut guard = match got {
        Ok(guard) => Some(guard),
        Err(e) => return Ok(report(&e)),
    };
    say(&format!("locked {}", std::process::id()));
    for line in stdin_lines() {
        match (line.trim(), &guard) {
            ("check", Some(held)) => match held.check() {
                Ok(()) => say("check ok"),
                Err(e) => say(&format!("check lost {}", one_line(&e))),
            },
            ("release", Some(_)) => {
                let held = guard.take().expect("held");
                held.release().map_err(|e| format!("release: {e}"))?;
                say("released");
            }
            (other, _) => return Err(format!("unexpected line {other:?}")),
        }
    }
    drop(guard);
    Ok(ExitCode::SUCCESS)
}

fn try_once(args: &[&str]) -> Outcome {
    let [dir, name, flags @ ..] = args else {
        return Err("usage: try <dir|-> <name> [flags]".into());
    };
    match lock_for(dir, name, flags).try_acquire() {
        Ok(guard) => {
            say(&format!("locked {}", std::process::id()));
            guard.release().map_err(|e| format!("release: {e}"))?;
            say("released");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report(&e)),
    }
}

fn default_session(args: &[&str]) -> Outcome {
    let [name] = args else {
        return Err("usage: default-session <name>".into());
    };
    let mut locks: HashMap<String, Lock> = HashMap::new();
    let first = locks
        .entry((*name).to_owned())
        .or_insert_with(|| Lock::new(*name));
    match first.try_acquire() {
        Ok(guard) => guard.release().map_err(|e| format!("release: {e}"))?,
        Err(e) => return Ok(report(&e)),
    }
    say(&format!("ready {}", std::process::id()));
    for line in stdin_lines() {
        let Some(name) = line.trim().strip_prefix("try ") else {
            return Err(format!("unexpected line {line:?}"));
        };
        let lock = locks
            .entry(name.to_owned())
            .or_insert_with(|| Lock::new(name));
        match lock.try_acquire() {
            Ok(guard) => {
                say(&format!("locked {}", std::process::id()));
                guard.release().map_err(|e| format!("release: {e}"))?;
            }
            Err(e) => say(&error_line(&e)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create_file(args: &[&str]) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let [path, mode] = args else {
        return Err("usage: create-file <path> <octal mode>".into());
    };
    let mode = u32::from_str_radix(mode, 8).map_err(|e| format!("mode: {e}"))?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("create {path}: {e}"))?;
    // Exactly `mode`, whatever the umask.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {path}: {e}"))?;
    say("created");
    Ok(ExitCode::SUCCESS)
}

/// Writes `line` and a newline to stdout with one write(2): usable in a forked child of a
/// multi-threaded process, where std's stdout lock might be held by a thread that is gone.
fn raw_say(line: &str) {
    let text = format!("{line}\n");
    // SAFETY: writes bytes we own to descriptor 1.
    unsafe { libc::write(1, text.as_ptr().cast(), text.len()) };
}

/// Points descriptors 1 and 2 at /dev/null (in a forked child that must not keep the test's
/// pipes open).
fn silence() {
    // SAFETY: plain system calls on a NUL-terminated literal and the descriptor they return.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            libc::close(null);
        }
    }
}

/// fork(2) through the C library (so that `pthread_atfork` handlers run), or an error.
fn fork() -> Result<libc::pid_t, String> {
    // SAFETY: the callers' children only run code meant to be run in a forked child.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    Ok(pid)
}

fn waitpid(pid: libc::pid_t) -> Result<libc::c_int, String> {
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(format!("waitpid {pid}: {err}"));
        }
    }
}

fn exit_now(code: libc::c_int) -> ! {
    // SAFETY: ends a forked child without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

fn fork_exit(args: &[&str]) -> Outcome {
    let [dir, name] = args else {
        return Err("usage: fork-exit <dir> <name>".into());
    };
    let lock = lock_for(dir, name, &[]);
    match lock.try_acquire() {
        Ok(guard) => guard.release().map_err(|e| format!("release: {e}"))?,
        Err(e) => return Ok(report(&e)),
    }
    let child = fork()?;
    if child == 0 {
        // Never touches the lock: waits for the test (stdin EOF), the way a worker sleeps.
        silence();
        let mut byte = [0u8; 64];
        // SAFETY: reads into a local buffer from descriptor 0.
        while unsafe { libc::read(0, byte.as_mut_ptr().cast(), byte.len()) } > 0 {}
        exit_now(0);
    }
    say(&format!("forked {child}"));
    match lock.try_acquire() {
        Ok(guard) => {
            say(&format!("locked {}", std::process::id()));
            guard.forever(); // until we exit, which is now
        }
        Err(e) => return Ok(report(&e)),
    }
    Ok(ExitCode::SUCCESS)
}

fn fork_hold(args: &[&str]) -> Outcome {
    let [dir, name, flags @ ..] = args else {
        return Err("usage: fork-hold <dir> <name> [--cleanup]".into());
    };
    let lock = lock_for(dir, name, flags);
    let mut guard = match lock.try_acquire() {
        Ok(guard) => Some(guard),
        Err(e) => return Ok(report(&e)),
    };
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", io::Error::last_os_error()));
    }
    let [read_end, write_end] = fds;
    let child = fork()?;
    if child == 0 {
        // Blocks until the parent is gone (its write end closes), touching nothing.
        silence();
        // SAFETY: closes our copy of the write end, then reads from the read end.
        unsafe {
            libc::close(write_end);
            let mut byte = 0u8;
            libc::read(read_end, std::ptr::addr_of_mut!(byte).cast(), 1);
        }
        exit_now(0);
    }
    // SAFETY: the parent does not read the pipe.
    unsafe { libc::close(read_end) };
    say(&format!("forked {child}"));
    say(&format!("locked {}", std::process::id()));
    for line in stdin_lines() {
        match (line.trim(), guard.take()) {
            ("release", Some(held)) => {
                held.release().map_err(|e| format!("release: {e}"))?;
                say("released");
            }
            (other, _) => return Err(format!("unexpected line {other:?}")),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A minimal executor: polls `future` on this thread, parking between wake-ups.
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

fn outcome_word(got: &Result<lockmacro_runtime::LockGuard, Error>) -> &'static str {
    match got {
        Ok(_) => "ok",
        Err(e) => variant(e),
    }
}

fn fork_async_timeout(args: &[&str]) -> Outcome {
    let [dir, name] = args else {
        return Err("usage: fork-async-timeout <dir> <name>".into());
    };
    let lock = lock_for(dir, name, &[]);
    let got = block_on(lock.acquire_timeout_async(Duration::from_millis(50)));
    say(&format!("parent {}", outcome_word(&got)));
    drop(got);
    let child = fork()?;
    if child == 0 {
        let started = Instant::now();
        let got = block_on(lock.acquire_timeout_async(Duration::from_millis(200)));
        raw_say(&format!(
            "child {} {}",
            outcome_word(&got),
            started.elapsed().as_millis()
        ));
        drop(got);
        exit_now(0);
    }
    let status = waitpid(child)?;
    say(&format!("reaped {status}"));
    Ok(ExitCode::SUCCESS)
}

fn fork_storm(args: &[&str]) -> Outcome {
    let [dir, name, n] = args else {
        return Err("usage: fork-storm <dir> <name> <n>".into());
    };
    let n: usize = n.parse().map_err(|e| format!("n: {e}"))?;
    let lock = lock_for(dir, name, &["--shared"]);
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let (lock, stop) = (lock.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut cycles = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(guard) = lock.try_acquire() {
                    drop(guard);
                }
                cycles += 1;
            }
            cycles
        })
    };
    for i in 0..n {
        let child = fork()?;
        if child == 0 {
            let code = match lock.acquire_timeout(Duration::from_secs(5)) {
                Ok(guard) => match guard.release() {
                    Ok(()) => 0,
                    Err(_) => 1,
                },
                Err(_) => 1,
            };
            exit_now(code);
        }
        say(&format!("child {i} {child}"));
        let status = waitpid(child)?;
        say(&format!("reaped {i} {status}"));
    }
    stop.store(true, Ordering::Relaxed);
    let cycles = hammer.join().map_err(|_| "hammer thread panicked")?;
    say(&format!("done {n} cycles={cycles}"));
    Ok(ExitCode::SUCCESS)
}

/// Whether an independent open of `path` can take `flock(LOCK_EX|LOCK_NB)` now (released at
/// once). `None` if there is no file at `path`.
fn free_now(path: &Path) -> Option<bool> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => panic!("open {}: {e}", path.display()),
    };
    // SAFETY: flock on a descriptor we own; closing it releases what it took.
    Some(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0)
}

fn chdir_rounds(args: &[&str]) -> Outcome {
    let [x, y, name, rounds] = args else {
        return Err("usage: chdir-rounds <X> <Y> <name> <rounds>".into());
    };
    let rounds: usize = rounds.parse().map_err(|e| format!("rounds: {e}"))?;
    std::env::set_current_dir(x).map_err(|e| format!("chdir {x}: {e}"))?;
    let lock = Lock::new(*name).dir("locks");
    match lock.acquire() {
        Ok(guard) => guard.release().map_err(|e| format!("release: {e}"))?,
        Err(e) => return Ok(report(&e)),
    }
    let file_name = lock.path().file_name().ok_or("no file name")?.to_owned();
    let x_file: PathBuf = Path::new(x).join("locks").join(file_name);
    std::env::set_current_dir(y).map_err(|e| format!("chdir {y}: {e}"))?;
    say(&format!("path {}", lock.path().display()));
    let (mut bad, mut first) = (0usize, None);
    for round in 0..rounds {
        let guard = match lock.acquire() {
            Ok(guard) => guard,
            Err(e) => return Ok(report(&e)),
        };
        if free_now(&x_file) != Some(false) {
            bad += 1;
            first.get_or_insert(round);
        }
        guard.release().map_err(|e| format!("release: {e}"))?;
    }
    let first = first.map_or_else(|| "-".to_owned(), |r| r.to_string());
    say(&format!("done bad={bad} rounds={rounds} first={first}"));
    Ok(ExitCode::SUCCESS)
}
