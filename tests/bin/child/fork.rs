//! Fork without exec. Processes forked here never read the test's lines meant for their parent
//! and never keep its stdout open unless they report on it; they block on a pipe or on stdin,
//! never for a while, so the test decides how long they live (and kills the whole process group
//! when it is done).
//!
//! - `fork <dir> <name> [--cleanup] [--raw | --exec]`: `try_acquire`, fork; the forked child
//!   drops its copy of the guard and `_exit(0)`s (with `--raw`, the fork is the bare `clone`
//!   system call, which bypasses the C library's fork handling; with `--exec` it is
//!   `Command::spawn`, the child dropping its copy in a `pre_exec` hook, then exec'ing
//!   `lm-child noop`). The parent reaps it, prints `forked child=<pid> status=<raw wait
//!   status>` and `locked pid=<pid>`, waits for stdin EOF, releases, prints `released`.
//! - `fork-exit <dir> <name>`: take and release the lock (its descriptor is now cached), fork a
//!   child that blocks reading stdin until EOF (it never touches the lock), print
//!   `forked child=<pid>`, take the lock again, print `locked pid=<pid>`, keep it with
//!   `forever()` and exit 0 at once.
//! - `fork-hold <dir> <name> [--cleanup]`: take the lock, fork a child that blocks on a pipe
//!   until we exit, print `forked child=<pid>` and `locked pid=<pid>`; at the stdin line
//!   `release`, release and print `released`; exit at stdin EOF.
//! - `fork-async-timeout <dir> <name>`: `acquire_timeout_async(50ms)` (the test holds the lock),
//!   print `parent outcome=<Variant|ok>`; fork a child that runs `acquire_timeout_async(200ms)`
//!   and prints `child outcome=<Variant|ok> elapsed_ms=<ms>`; wait for it, print
//!   `reaped status=<raw wait status>`.
//! - `fork-storm <dir> <name> <n>`: one thread takes and releases the shared lock in a loop while
//!   the main thread forks `<n>` times; each child takes the shared lock with
//!   `acquire_timeout(5s)`, releases it and `_exit`s (0 on success, 1 on an error). Before
//!   waiting for child `i`, print `child i=<i> child=<pid>`; after,
//!   `reaped i=<i> status=<raw wait status>`. At the end `done children=<n> cycles=<loops>`.
//! - `noop`: exit 0 (the exec target of `fork --exec`).

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockmacro_runtime::{Error, LockGuard};

use crate::protocol::{kind, me, say};
use crate::{block_on, lock_for, report, stdin_lines, wait_for_eof, Args, Outcome};

/// fork(2) through the C library (so that `pthread_atfork` handlers run), or an error.
fn fork_now() -> Result<libc::pid_t, String> {
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

pub fn fork(args: &Args) -> Outcome {
    let [dir, name] = args.positional("<dir> <name>")?;
    args.only(&["cleanup", "raw", "exec"])?;
    let guard = match lock_for(dir, name, args)?.try_acquire() {
        Ok(guard) => guard,
        Err(e) => return Ok(report(&e)),
    };
    if args.has("exec") {
        return fork_exec(guard);
    }
    let child = if args.has("raw") {
        // SAFETY: as below; a bare clone with just the exit signal is fork(2) without the C
        // library's bookkeeping.
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
        exit_now(0);
    }
    let status = waitpid(child)?;
    say(&format!("forked child={child} status={status}"));
    say(&format!("locked pid={}", me()));
    wait_for_eof();
    guard
        .release()
        .map_err(|e| format!("release failed: {e}"))?;
    say("released");
    Ok(ExitCode::SUCCESS)
}

/// `fork --exec`: the forked child drops its copy of the guard in a `pre_exec` hook, then execs
/// `lm-child noop`; the parent releases by dropping its own copy, at stdin EOF.
fn fork_exec(guard: LockGuard) -> Outcome {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};
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
    let mut child = command.spawn().map_err(|e| format!("fork child: {e}"))?;
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    say(&format!(
        "forked child={} status={}",
        child.id(),
        status.into_raw()
    ));
    say(&format!("locked pid={}", me()));
    wait_for_eof();
    drop(command); // drops the parent's guard: the real release
    say("released");
    Ok(ExitCode::SUCCESS)
}

pub fn fork_exit(args: &Args) -> Outcome {
    let [dir, name] = args.positional("<dir> <name>")?;
    args.only(&[])?;
    let lock = lock_for(dir, name, args)?;
    match lock.try_acquire() {
        Ok(guard) => guard.release().map_err(|e| format!("release: {e}"))?,
        Err(e) => return Ok(report(&e)),
    }
    let child = fork_now()?;
    if child == 0 {
        // Never touches the lock: waits for the test (stdin EOF), the way a worker sleeps.
        silence();
        let mut buf = [0u8; 64];
        // SAFETY: reads into a local buffer from descriptor 0.
        while unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        exit_now(0);
    }
    say(&format!("forked child={child}"));
    match lock.try_acquire() {
        Ok(guard) => {
            say(&format!("locked pid={}", me()));
            guard.forever(); // until we exit, which is now
        }
        Err(e) => return Ok(report(&e)),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn fork_hold(args: &Args) -> Outcome {
    let [dir, name] = args.positional("<dir> <name>")?;
    args.only(&["cleanup"])?;
    let mut guard = match lock_for(dir, name, args)?.try_acquire() {
        Ok(guard) => Some(guard),
        Err(e) => return Ok(report(&e)),
    };
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", io::Error::last_os_error()));
    }
    let [read_end, write_end] = fds;
    let child = fork_now()?;
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
    say(&format!("forked child={child}"));
    say(&format!("locked pid={}", me()));
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

fn outcome(got: &Result<LockGuard, Error>) -> &'static str {
    match got {
        Ok(_) => "ok",
        Err(e) => kind(e),
    }
}

pub fn fork_async_timeout(args: &Args) -> Outcome {
    let [dir, name] = args.positional("<dir> <name>")?;
    args.only(&[])?;
    let lock = lock_for(dir, name, args)?;
    let got = block_on(lock.acquire_timeout_async(Duration::from_millis(50)));
    say(&format!("parent outcome={}", outcome(&got)));
    drop(got);
    let child = fork_now()?;
    if child == 0 {
        let started = Instant::now();
        let got = block_on(lock.acquire_timeout_async(Duration::from_millis(200)));
        say(&format!(
            "child outcome={} elapsed_ms={}",
            outcome(&got),
            started.elapsed().as_millis()
        ));
        drop(got);
        exit_now(0);
    }
    let status = waitpid(child)?;
    say(&format!("reaped status={status}"));
    Ok(ExitCode::SUCCESS)
}

pub fn fork_storm(args: &Args) -> Outcome {
    let [dir, name, n] = args.positional("<dir> <name> <n>")?;
    args.only(&[])?;
    let n: usize = n.parse().map_err(|e| format!("n: {e}"))?;
    let lock = lock_for(dir, name, args)?.shared();
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
        let child = fork_now()?;
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
        say(&format!("child i={i} child={child}"));
        let status = waitpid(child)?;
        say(&format!("reaped i={i} status={status}"));
    }
    stop.store(true, Ordering::Relaxed);
    let cycles = hammer.join().map_err(|_| "hammer thread panicked")?;
    say(&format!("done children={n} cycles={cycles}"));
    Ok(ExitCode::SUCCESS)
}
