//! `lm-attack`: the child process of the reliability suite (`tests/test_reliability.rs`,
//! `tests/test_rel_stress.rs`, `tests/test_rel_leaks.rs`). It attacks the lock the way real
//! programs and real adversaries do: many processes at once, crashes, fork, signals, hostile
//! directories.
//!
//! It talks to the test over pipes, one line per event, first word first. A child that holds a
//! lock keeps it until its stdin is closed (EOF), never for a while. Subcommands:
//!
//! - `hold <dir|-> <name> [--cleanup] [--shared] [--block] [--spawn-sleep] [--leak-spawn]`:
//!   `try_acquire` (or `acquire` with `--block`) lock `<name>` in `<dir>` (`-`: no explicit
//!   directory, so `LOCKMACRO_DIR` or the default), print `locked <pid>`, wait for stdin EOF,
//!   release, print `released`. `--spawn-sleep` spawns `sleep 30` while holding and prints
//!   `spawned <pid>` first. `--leak-spawn` is the control for that: it locks the file itself
//!   with `flock(2)` on a descriptor *without* close-on-exec, then spawns, so the sleeper does
//!   keep the lock.
//! - `stress <dir> <name> <iterations> <work dir> [--cleanup] [--threads=N]`: print
//!   `ready <pid>`, wait for a `go` line, then (in each of N threads, default 1, each with its
//!   own `Lock`) `iterations` times: `acquire`, run a critical section that increments
//!   `<work dir>/counter` non-atomically and detects overlaps with a marker file made with
//!   `create_new`, release. Print `done overlaps=<n> corrupt=<n> errors=<n>`.
//! - `fork <dir> <name> [--cleanup] [--raw]`: acquire, `fork()` (with `--raw`, the bare system
//!   call, which bypasses the C library's fork handling); the forked child drops its copy of the
//!   guard and `_exit(0)`s; the parent reaps it, prints `forked <child pid> status=<raw>` and
//!   `locked <pid>`, waits for stdin EOF, releases, prints `released`.
//! - `crash <kill|exit|abort|panic>`: call an `#[exclusive(wait)]` function (lock
//!   `lm-attack-crash` in `LOCKMACRO_DIR`) that prints `locked <pid>`, waits for stdin EOF and
//!   then leaves by `process::exit(3)`, by `abort()` from a panic hook (what `panic = "abort"`
//!   does), or by an unwinding panic. `kill` just waits: the test sends SIGKILL.
//! - `signals <dir> <name> <block|timeout|raw> <count>`: install a SIGUSR1 handler without
//!   `SA_RESTART`, print `waiting <pid>`, then `acquire()` (or `acquire_timeout(30s)`) while
//!   another thread sends SIGUSR1 every millisecond to the waiting thread and to every other
//!   thread of the process (the runtime may block in the kernel on a helper thread); after
//!   `<count>` signals were handled during the wait print `interrupted <n>`; once acquired
//!   print `acquired handled=<n> sent=<n>`. Mode `raw` is the control: one bare blocking `flock(2)`
//!   under the same signals, reported as `raw rc=<rc> errno=<EINTR|n>`.
//! - `churn <dir> <name>`: an "other party that deletes" lock files. Lock the lock file with a
//!   bare `flock(2)`, print `ready <pid>`, read a line `go <waiter pid> <swaps>`, then `<swaps>`
//!   times: wait until the waiter is blocked on our file (seen in /proc/locks), lock a fresh
//!   file, rename it over the lock file, close the old one (which wakes the waiter on a file
//!   that is no longer at the path). Print `done <swaps>` (or `gone <i>` if the waiter exited
//!   first), hold the last file until stdin EOF.
//! - `release-while-forked <dir> <name>`: acquire; another thread spawns `true` whose
//!   `pre_exec` hook (which runs in the forked child, before exec) blocks on a pipe, as a slow
//!   exec would; once that child exists, release and print `released <pid>`; at stdin EOF let
//!   the child exec, reap it, print `reaped <status>`.
//! - `default-dir`: print `dir <default_dir()>`.
//! - `main`: `#[exclusive(name = "lm-attack-main")] fn main`: print `locked <pid>`, hold until
//!   stdin EOF.
//! - `env-main`: the same, on lock `lockmacro-rel-env-independence` (with `cleanup`), for the
//!   test that uses the real default directory.
//!
//! Any failure to get a lock through the runtime API prints
//! `error <Variant> holder=<pid|-> path=<path> msg=<message: causes>` and exits with 1.
//! Exit status 2 means a usage or unexpected error (details on stderr).

#[path = "protocol.rs"]
mod protocol;

use protocol::say;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lockmacro_runtime::{exclusive, Error, Lock, LockGuard};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        return usage("missing subcommand");
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let result = match command.as_str() {
        "hold" => hold(&rest),
        "stress" => stress(&rest),
        "fork" => fork(&rest),
        "crash" => crash(&rest),
        "signals" => signals(&rest),
        "churn" => churn(&rest),
        "release-while-forked" => release_while_forked(&rest),
        "default-dir" => {
            say(&format!(
                "dir {}",
                lockmacro_runtime::default_dir().display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        "main" => {
            excl_main::main();
            Ok(ExitCode::SUCCESS)
        }
        "env-main" => {
            env_main::main();
            Ok(ExitCode::SUCCESS)
        }
        other => return usage(&format!("unknown subcommand `{other}`")),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("lm-attack {command}: {message}");
            ExitCode::from(2)
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "lm-attack: {message}\nusage: lm-attack hold <dir|-> <name> [--cleanup] [--shared] \
         [--block] [--spawn-sleep] [--leak-spawn] | stress <dir> <name> <n> <work dir> \
         [--cleanup] [--threads=N] | fork <dir> <name> [--cleanup] [--raw] \
         | crash <kill|exit|abort|panic> | signals <dir> <name> <block|timeout|raw> <count> \
         | churn <dir> <name> | release-while-forked <dir> <name> | default-dir | main \
         | env-main"
    );
    ExitCode::from(2)
}

type Outcome = Result<ExitCode, String>;

/// Blocks until the test closes our stdin.
fn wait_for_eof() {
    let _ = io::stdin().lock().read_to_end(&mut Vec::new());
}

/// The lock `name` in `dir` (`-`: no explicit directory).
fn lock_for(dir: &str, name: &str, flags: &[&str]) -> Lock {
    let mut lock = Lock::new(name);
    if dir != "-" {
        lock = lock.dir(dir);
    }
    if flags.contains(&"--cleanup") {
        lock = lock.cleanup();
    }
    if flags.contains(&"--shared") {
        lock = lock.shared();
    }
    if std::env::var_os("LOCKMACRO_TEST_BREAK").is_some() {
        // The protocol is broken on purpose to show the critical-section detectors catch two
        // holders: the runtime's own watch would see the lost lock and exit the process first.
        lock = lock.on_lost(lockmacro_runtime::OnLost::Report);
    }
    lock
}

/// Reports a failed acquisition on stdout and exits with 1.
fn report(err: &Error) -> ExitCode {
    let variant = match err {
        Error::Held { .. } => "Held",
        Error::Timeout { .. } => "Timeout",
        Error::Nested { .. } => "Nested",
        Error::UnsafeDir { .. } => "UnsafeDir",
        Error::UnsafeFile { .. } => "UnsafeFile",
        Error::Io { .. } => "Io",
        _ => "Other",
    };
    let holder = err
        .holder_pid()
        .map_or_else(|| "-".to_owned(), |p| p.to_string());
    let mut msg = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    say(&format!(
        "error {variant} holder={holder} path={} msg={msg}",
        err.location()
    ));
    ExitCode::from(1)
}

fn hold(args: &[&str]) -> Outcome {
    let [dir, name, flags @ ..] = args else {
        return Err("usage: hold <dir|-> <name> [flags]".into());
    };
    if flags.contains(&"--leak-spawn") {
        return leak_spawn(&lock_for(dir, name, flags));
    }
    let lock = lock_for(dir, name, flags);
    let got = if flags.contains(&"--block") {
        lock.acquire()
    } else {
        lock.try_acquire()
    };
    let guard = match got {
        Ok(guard) => guard,
        Err(e) => return Ok(report(&e)),
    };
    if flags.contains(&"--spawn-sleep") {
        spawn_sleeper()?;
    }
    say(&format!("locked {}", std::process::id()));
    wait_for_eof();
    guard
        .release()
        .map_err(|e| format!("release failed: {e}"))?;
    say("released");
    Ok(ExitCode::SUCCESS)
}

/// Starts `sleep 30` detached from our pipes (so the test sees our EOF when we exit) and
/// prints its PID. We never wait for it: it must outlive us.
fn spawn_sleeper() -> Result<(), String> {
    let child = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn sleep: {e}"))?;
    say(&format!("spawned {}", child.id()));
    Ok(())
}

/// The control for `--spawn-sleep`: what a library without close-on-exec would do.
fn leak_spawn(lock: &Lock) -> Outcome {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(lock.path().as_os_str().as_bytes())
        .map_err(|e| format!("path: {e}"))?;
    if let Some(dir) = lock.path().parent() {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    // SAFETY: plain system calls on a NUL-terminated path and the descriptor they return.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600) };
    if fd < 0 {
        return Err(format!("open: {}", io::Error::last_os_error()));
    }
    // SAFETY: `fd` is the descriptor opened above.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!("flock: {}", io::Error::last_os_error()));
    }
    spawn_sleeper()?;
    say(&format!("locked {}", std::process::id()));
    wait_for_eof();
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct Tally {
    overlaps: u64,
    corrupt: u64,
    errors: u64,
}

fn stress(args: &[&str]) -> Outcome {
    let [dir, name, iterations, work, flags @ ..] = args else {
        return Err(
            "usage: stress <dir> <name> <iterations> <work dir> [--cleanup] [--threads=N]".into(),
        );
    };
    let iterations: u64 = iterations.parse().map_err(|e| format!("iterations: {e}"))?;
    let threads: usize = match flags.iter().find_map(|f| f.strip_prefix("--threads=")) {
        Some(n) => n.parse().map_err(|e| format!("--threads: {e}"))?,
        None => 1,
    };
    let counter = Path::new(work).join("counter");
    let marker = Path::new(work).join("marker");
    say(&format!("ready {}", std::process::id()));
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("read go: {e}"))?;
    if line.trim() != "go" {
        return Err(format!("expected `go`, got {line:?}"));
    }
    // Each thread makes its own `Lock`, as independent parts of a program would.
    let tallies: Vec<Result<Tally, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let lock = lock_for(dir, name, flags);
                let (counter, marker) = (&counter, &marker);
                scope.spawn(move || stress_loop(&lock, iterations, counter, marker))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| "a stress thread panicked".to_owned())?
            })
            .collect()
    });
    let mut total = Tally::default();
    for tally in tallies {
        let tally = tally?;
        total.overlaps += tally.overlaps;
        total.corrupt += tally.corrupt;
        total.errors += tally.errors;
    }
    say(&format!(
        "done overlaps={} corrupt={} errors={}",
        total.overlaps, total.corrupt, total.errors
    ));
    Ok(ExitCode::SUCCESS)
}

fn stress_loop(
    lock: &Lock,
    iterations: u64,
    counter: &Path,
    marker: &Path,
) -> Result<Tally, String> {
    let mut tally = Tally::default();
    for _ in 0..iterations {
        match lock.acquire() {
            Ok(guard) => {
                critical_section(counter, marker, &mut tally)?;
                if let Err(e) = guard.release() {
                    tally.errors += 1;
                    eprintln!("lm-attack stress: release: {e}");
                }
            }
            Err(e) => {
                tally.errors += 1;
                if tally.errors <= 3 {
                    eprintln!("lm-attack stress: acquire: {e}");
                }
            }
        }
    }
    Ok(tally)
}

/// Increments the counter file (20 digits, written in place) with a read, a yield and a write
/// (so two holders at once lose an increment), and detects a second holder by a marker file
/// only the lock holder may create.
fn critical_section(counter: &Path, marker: &Path, tally: &mut Tally) -> Result<(), String> {
    let mine = match OpenOptions::new().write(true).create_new(true).open(marker) {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            tally.overlaps += 1;
            false
        }
        Err(e) => return Err(format!("create marker: {e}")),
    };
    let text = fs::read_to_string(counter).map_err(|e| format!("read counter: {e}"))?;
    let value: u64 = text.trim().parse().unwrap_or_else(|_| {
        tally.corrupt += 1;
        0
    });
    std::thread::yield_now();
    // Overwritten in place, never truncated: truncate-then-write forces a flush on ext4.
    OpenOptions::new()
        .write(true)
        .open(counter)
        .and_then(|mut f| f.write_all(format!("{:020}\n", value + 1).as_bytes()))
        .map_err(|e| format!("write counter: {e}"))?;
    if mine {
        match fs::remove_file(marker) {
            // Only its creator removes the marker; a missing one means someone broke in.
            Err(e) if e.kind() == ErrorKind::NotFound => tally.overlaps += 1,
            Err(e) => return Err(format!("remove marker: {e}")),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// A regular file at `path`, locked exclusively with a bare flock(2).
fn locked_file(path: &Path, create_new: bool) -> Result<fs::File, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(!create_new)
        .create_new(create_new)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(std::os::unix::io::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) } != 0 {
        return Err(format!("flock: {}", io::Error::last_os_error()));
    }
    Ok(file)
}

/// True while `pid` is blocked in flock(2) on the file with inode `ino` (a `->` line of
/// /proc/locks); `None` once `pid` has exited (gone or a zombie).
fn waiter_blocked_on(pid: &str, ino: u64) -> Option<bool> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'))
    {
        return None;
    }
    let suffix = format!(":{ino}");
    let table = fs::read_to_string("/proc/locks").ok()?;
    Some(table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        matches!(fields.as_slice(), [_, "->", "FLOCK", _, _, p, id, ..]
            if *p == pid && id.ends_with(&suffix))
    }))
}

fn churn(args: &[&str]) -> Outcome {
    use std::os::unix::fs::MetadataExt;
    let [dir, name] = args else {
        return Err("usage: churn <dir> <name>".into());
    };
    let path = lock_for(dir, name, &[]).path().to_owned();
    fs::create_dir_all(dir).map_err(|e| format!("create {dir}: {e}"))?;
    let fresh = Path::new(dir).join("churn.tmp");
    let mut current = locked_file(&path, false)?;
    say(&format!("ready {}", std::process::id()));
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("read go: {e}"))?;
    let [_, waiter, swaps] = line.split_whitespace().collect::<Vec<_>>()[..] else {
        return Err(format!("expected `go <pid> <swaps>`, got {line:?}"));
    };
    let swaps: u64 = swaps.parse().map_err(|e| format!("swaps: {e}"))?;
    for i in 0..swaps {
        let ino = current.metadata().map_err(|e| format!("stat: {e}"))?.ino();
        loop {
            match waiter_blocked_on(waiter, ino) {
                Some(true) => break,
                Some(false) => std::thread::yield_now(),
                None => {
                    say(&format!("gone {i}"));
                    wait_for_eof();
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        let next = locked_file(&fresh, true)?;
        fs::rename(&fresh, &path).map_err(|e| format!("rename: {e}"))?;
        current = next; // closing the old file wakes the waiter on a file that is gone
    }
    say(&format!("done {swaps}"));
    wait_for_eof();
    drop(current);
    Ok(ExitCode::SUCCESS)
}

/// A pipe whose two ends are close-on-exec: `(read, write)`.
fn pipe() -> Result<(libc::c_int, libc::c_int), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", io::Error::last_os_error()));
    }
    Ok((fds[0], fds[1]))
}

fn release_while_forked(args: &[&str]) -> Outcome {
    use std::os::unix::process::CommandExt;
    let [dir, name] = args else {
        return Err("usage: release-while-forked <dir> <name>".into());
    };
    let lock = lock_for(dir, name, &[]);
    let guard = match lock.try_acquire() {
        Ok(guard) => guard,
        Err(e) => return Ok(report(&e)),
    };
    let (forked_r, forked_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let spawner = std::thread::spawn(move || {
        let mut cmd = Command::new("true");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (close, write, read) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Our copy of the write end, so that the parent's death also means EOF here.
                libc::close(go_w);
                libc::write(forked_w, b"f".as_ptr().cast(), 1);
                let mut byte = 0u8;
                libc::read(go_r, std::ptr::addr_of_mut!(byte).cast(), 1);
                Ok(())
            });
        }
        cmd.status()
    });
    let mut byte = 0u8;
    // SAFETY: reads one byte into a local from a pipe we own.
    if unsafe { libc::read(forked_r, std::ptr::addr_of_mut!(byte).cast(), 1) } != 1 {
        return Err(format!(
            "the spawned child never reported: {}",
            io::Error::last_os_error()
        ));
    }
    // The child now exists, with copies of all our descriptors (the lock file's included) until
    // it execs; close-on-exec cannot help before that.
    guard
        .release()
        .map_err(|e| format!("release failed: {e}"))?;
    say(&format!("released {}", std::process::id()));
    wait_for_eof();
    // SAFETY: closes our write end: the child's read returns EOF and it goes on to exec.
    unsafe { libc::close(go_w) };
    let status = spawner
        .join()
        .map_err(|_| "spawner thread panicked")?
        .map_err(|e| format!("spawn true: {e}"))?;
    say(&format!("reaped {status}"));
    Ok(ExitCode::SUCCESS)
}

fn fork(args: &[&str]) -> Outcome {
    let [dir, name, flags @ ..] = args else {
        return Err("usage: fork <dir> <name> [--cleanup] [--raw]".into());
    };
    let lock = lock_for(dir, name, flags);
    let guard: LockGuard = match lock.try_acquire() {
        Ok(guard) => guard,
        Err(e) => return Ok(report(&e)),
    };
    let child = if flags.contains(&"--raw") {
        // SAFETY: as below; the child only drops the guard and exits. A bare clone with just
        // the exit signal is fork(2) without the C library's bookkeeping.
        let child = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
        libc::pid_t::try_from(child).map_err(|e| format!("clone: {e}"))?
    } else {
        // SAFETY: this process is single-threaded here, so the child may run arbitrary code.
        unsafe { libc::fork() }
    };
    if child < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if child == 0 {
        // The forked child: its copy of the guard must leave the parent's lock alone.
        drop(guard);
        // SAFETY: ends the forked child without running the parent's exit handlers twice.
        unsafe { libc::_exit(0) }
    }
    let mut status = 0;
    // SAFETY: waits for the child we just forked.
    if unsafe { libc::waitpid(child, &mut status, 0) } != child {
        return Err(format!("waitpid: {}", io::Error::last_os_error()));
    }
    say(&format!("forked {child} status={status}"));
    say(&format!("locked {}", std::process::id()));
    wait_for_eof();
    guard
        .release()
        .map_err(|e| format!("release failed: {e}"))?;
    say("released");
    Ok(ExitCode::SUCCESS)
}

fn crash(args: &[&str]) -> Outcome {
    let [how] = args else {
        return Err("usage: crash <kill|exit|abort|panic>".into());
    };
    if !matches!(*how, "kill" | "exit" | "abort" | "panic") {
        return Err(format!("unknown crash `{how}`"));
    }
    if *how == "abort" {
        // No core dump: it would only slow the test down.
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit with a valid struct.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
        // What `panic = "abort"` does, without changing the workspace-wide profile.
        std::panic::set_hook(Box::new(|_| std::process::abort()));
    }
    crash_inside(how);
    Ok(ExitCode::SUCCESS)
}

#[exclusive(name = "lm-attack-crash", wait)]
fn crash_inside(how: &str) {
    say(&format!("locked {}", std::process::id()));
    wait_for_eof();
    match how {
        "exit" => std::process::exit(3),
        "abort" | "panic" => panic!("lm-attack: simulated crash while holding the lock"),
        _ => {} // `kill`: the test kills us before it closes stdin
    }
}

static HANDLED: AtomicU64 = AtomicU64::new(0);

/// The thread ids of this process except `me`.
fn other_threads(me: libc::pid_t) -> Vec<libc::pid_t> {
    fs::read_dir("/proc/self/task")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|tid| *tid != me)
                .collect()
        })
        .unwrap_or_default()
}

extern "C" fn on_usr1(_signal: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

fn signals(args: &[&str]) -> Outcome {
    let [dir, name, mode, count] = args else {
        return Err("usage: signals <dir> <name> <block|timeout|raw> <count>".into());
    };
    let count: u64 = count.parse().map_err(|e| format!("count: {e}"))?;
    // SAFETY: installs an async-signal-safe handler (one atomic add); sa_flags = 0, so no
    // SA_RESTART: a blocking flock(2) returns EINTR on every signal.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) != 0 {
            return Err(format!("sigaction: {}", io::Error::last_os_error()));
        }
    }
    let lock = lock_for(dir, name, &[]);
    // SAFETY: the id of this (the waiting) thread, which outlives the sender (joined below).
    let waiter = unsafe { libc::pthread_self() };
    // SAFETY: gettid(2) has no arguments.
    let waiter_tid = unsafe { libc::gettid() };
    let stop = Arc::new(AtomicBool::new(false));
    let base = HANDLED.load(Ordering::Relaxed);
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // SAFETY: plain system calls without arguments.
            let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
            let mut sent = 0u64;
            let mut announced = false;
            while !stop.load(Ordering::Relaxed) {
                // The waiting thread, and every other thread of ours: whichever one the runtime
                // blocks in the kernel (the caller, or a helper thread waiting for it).
                // SAFETY: the waiting thread is alive until this thread is joined.
                unsafe { libc::pthread_kill(waiter, libc::SIGUSR1) };
                sent += 1;
                for tid in other_threads(me) {
                    if tid != waiter_tid {
                        // SAFETY: tgkill(2) on a thread of this process; at worst it is gone.
                        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1) };
                        sent += 1;
                    }
                }
                let handled = HANDLED.load(Ordering::Relaxed) - base;
                if !announced && handled >= count {
                    announced = true;
                    say(&format!("interrupted {handled}"));
                }
                // Pacing of the attack, not synchronisation.
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        })
    };
    say(&format!("waiting {}", std::process::id()));
    if *mode == "raw" {
        // The control: a bare blocking flock(2), to show the signals do interrupt it.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(lock.path())
            .map_err(|e| format!("open {}: {e}", lock.path().display()))?;
        // SAFETY: flock(2) on a descriptor we own.
        let rc =
            unsafe { libc::flock(std::os::unix::io::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        stop.store(true, Ordering::Relaxed);
        sender.join().map_err(|_| "signal thread panicked")?;
        let errno = if errno == libc::EINTR {
            "EINTR".to_owned()
        } else {
            errno.to_string()
        };
        say(&format!("raw rc={rc} errno={errno}"));
        return Ok(ExitCode::SUCCESS);
    }
    let got = match *mode {
        "block" => lock.acquire(),
        "timeout" => lock.acquire_timeout(Duration::from_secs(30)),
        other => Err(Error::Io {
            name: (*name).to_owned(),
            path: PathBuf::from(dir),
            action: "parse mode",
            source: io::Error::new(ErrorKind::InvalidInput, other.to_owned()),
        }),
    };
    let handled = HANDLED.load(Ordering::Relaxed) - base;
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().map_err(|_| "signal thread panicked")?;
    match got {
        Ok(guard) => {
            say(&format!("acquired handled={handled} sent={sent}"));
            drop(guard);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report(&e)),
    }
}

/// A real `#[exclusive] fn main` (the attribute only looks at the name): the exit policy.
mod excl_main {
    use lockmacro_runtime::exclusive;

    #[exclusive(name = "lm-attack-main")]
    pub(crate) fn main() {
        super::say(&format!("locked {}", std::process::id()));
        super::wait_for_eof();
    }
}

/// The single-instance program of the environment-independence test: default directory, a
/// name no other test uses, and `cleanup` so the real directory is left as it was.
mod env_main {
    use lockmacro_runtime::exclusive;

    #[exclusive(name = "lockmacro-rel-env-independence", cleanup)]
    pub(crate) fn main() {
        super::say(&format!("locked {}", std::process::id()));
        super::wait_for_eof();
    }
}
