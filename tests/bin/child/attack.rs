//! How processes really end and really interfere with a lock.
//!
//! - `crash <kill|exit|abort|panic>`: call an `#[exclusive(wait)]` function (lock
//!   `lm-attack-crash` in `LOCKMACRO_DIR`) that prints `locked pid=<pid>`, waits for stdin EOF and
//!   then leaves by `process::exit(3)`, by `abort()` from a panic hook (what `panic = "abort"`
//!   does), or by an unwinding panic. `kill` just waits: the test sends SIGKILL.
//! - `signals <dir> <name> <block|timeout|raw> <count>`: install a SIGUSR1 handler without
//!   `SA_RESTART`, print `waiting pid=<pid>`, then `acquire()` (or `acquire_timeout(30s)`) while
//!   another thread sends SIGUSR1 every millisecond to the waiting thread and to every other
//!   thread of the process (the runtime may block in the kernel on a helper thread); after
//!   `<count>` signals were handled during the wait print `interrupted handled=<n>`; once
//!   acquired print `acquired handled=<n> sent=<n>`. Mode `raw` is the control: one bare
//!   blocking `flock(2)` under the same signals, reported as `raw rc=<rc> errno=<EINTR|n>`.
//! - `churn <dir> <name>`: an "other party that deletes" lock files. Lock the lock file with a
//!   bare `flock(2)`, print `ready pid=<pid>`, read a line `go <waiter pid> <swaps>`, then
//!   `<swaps>` times: wait until the waiter is blocked on our file (seen in /proc/locks), lock a
//!   fresh file, rename it over the lock file, close the old one (which wakes the waiter on a
//!   file that is no longer at the path). Print `done swaps=<n>` (or `gone after=<i>` if the
//!   waiter exited first), hold the last file until stdin EOF.
//! - `release-while-forked <dir> <name>`: acquire; another thread spawns `true` whose
//!   `pre_exec` hook (which runs in the forked child, before exec) blocks on a pipe, as a slow
//!   exec would; once that child exists, release and print `released pid=<pid>`; at stdin EOF
//!   let the child exec, reap it, print `reaped status=<status>`.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, ErrorKind};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lockmacro_runtime::{exclusive, Error};

use crate::flock::{blocked_in_flock, flock, locked_by_us};
use crate::protocol::{me, say};
use crate::{lock_for, report, wait_for_eof, Args, Outcome};

pub fn crash(args: &Args) -> Outcome {
    let [how] = args.positional("<kill|exit|abort|panic>")?;
    args.only(&[])?;
    if !matches!(how, "kill" | "exit" | "abort" | "panic") {
        return Err(format!("unknown crash `{how}`"));
    }
    if how == "abort" {
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
    say(&format!("locked pid={}", me()));
    wait_for_eof();
    match how {
        "exit" => std::process::exit(3),
        "abort" | "panic" => panic!("lm-child: simulated crash while holding the lock"),
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

pub fn signals(args: &Args) -> Outcome {
    let [dir, name, mode, count] = args.positional("<dir> <name> <block|timeout|raw> <count>")?;
    args.only(&[])?;
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
    let lock = lock_for(dir, name, args)?;
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
                    say(&format!("interrupted handled={handled}"));
                }
                // Pacing of the attack, not synchronisation.
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        })
    };
    say(&format!("waiting pid={}", me()));
    if mode == "raw" {
        // The control: a bare blocking flock(2), to show the signals do interrupt it.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(lock.path())
            .map_err(|e| format!("open {}: {e}", lock.path().display()))?;
        let rc = if flock(&file, libc::LOCK_EX) { 0 } else { -1 };
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
    let got = match mode {
        "block" => lock.acquire(),
        "timeout" => lock.acquire_timeout(Duration::from_secs(30)),
        other => Err(Error::Io {
            name: name.to_owned(),
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

/// A fresh regular file at `path` (it must not exist), locked exclusively with a bare flock(2),
/// waiting if needed.
fn new_locked_file(path: &Path) -> Result<fs::File, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    if !flock(&file, libc::LOCK_EX) {
        return Err(format!("flock: {}", io::Error::last_os_error()));
    }
    Ok(file)
}

/// True while `pid` is blocked in flock(2) on the file with inode `ino`; `None` once `pid` has
/// exited (gone or a zombie).
fn waiter_blocked_on(pid: u32, ino: u64) -> Option<bool> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'))
    {
        return None;
    }
    Some(blocked_in_flock(pid, Some(ino)))
}

pub fn churn(args: &Args) -> Outcome {
    let [dir, name] = args.positional("<dir> <name>")?;
    args.only(&[])?;
    let path = lock_for(dir, name, args)?.path().to_owned();
    fs::create_dir_all(dir).map_err(|e| format!("create {dir}: {e}"))?;
    let fresh = Path::new(dir).join("churn.tmp");
    let mut current = locked_by_us(&path);
    say(&format!("ready pid={}", me()));
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("read go: {e}"))?;
    let ["go", waiter, swaps] = line.split_whitespace().collect::<Vec<_>>()[..] else {
        return Err(format!("expected `go <pid> <swaps>`, got {line:?}"));
    };
    let waiter: u32 = waiter.parse().map_err(|e| format!("waiter: {e}"))?;
    let swaps: u64 = swaps.parse().map_err(|e| format!("swaps: {e}"))?;
    for i in 0..swaps {
        let ino = current.metadata().map_err(|e| format!("stat: {e}"))?.ino();
        loop {
            match waiter_blocked_on(waiter, ino) {
                Some(true) => break,
                Some(false) => std::thread::yield_now(),
                None => {
                    say(&format!("gone after={i}"));
                    wait_for_eof();
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        let next = new_locked_file(&fresh)?;
        fs::rename(&fresh, &path).map_err(|e| format!("rename: {e}"))?;
        current = next; // closing the old file wakes the waiter on a file that is gone
    }
    say(&format!("done swaps={swaps}"));
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

pub fn release_while_forked(args: &Args) -> Outcome {
    use std::os::unix::process::CommandExt;
    let [dir, name] = args.positional("<dir> <name>")?;
    args.only(&[])?;
    let guard = match lock_for(dir, name, args)?.try_acquire() {
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
    say(&format!("released pid={}", me()));
    wait_for_eof();
    // SAFETY: closes our write end: the child's read returns EOF and it goes on to exec.
    unsafe { libc::close(go_w) };
    let status = spawner
        .join()
        .map_err(|_| "spawner thread panicked")?
        .map_err(|e| format!("spawn true: {e}"))?;
    say(&format!(
        "reaped status={}",
        std::os::unix::process::ExitStatusExt::into_raw(status)
    ));
    Ok(ExitCode::SUCCESS)
}
