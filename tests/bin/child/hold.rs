//! Locks through the runtime API. `[lock options]` are those of `lock_for` in `main.rs`.
//!
//! - `hold <dir> <name> [lock options] [--block] [--mark=<file>] [--spawn-sleep]
//!   [--leak-spawn]`: `try_acquire` (`acquire` with `--block`), print
//!   `locked pid=<pid> path=<lock file>`; then obey lines on stdin: `check` prints
//!   `check result=ok` or `check result=lost msg=<message>`, `release` releases and prints
//!   `released`. At stdin EOF a lock still held is released (after creating `<file>` with
//!   `--mark`, so whoever sees it acquired after this point) and `released` printed; exit 0.
//!   `--spawn-sleep` first spawns `sleep 30` (in its own process group, detached from our pipes;
//!   it must outlive us) and prints `spawned child=<pid>`. `--leak-spawn` is the control for
//!   that: it locks the file itself with `flock(2)` on a descriptor *without* close-on-exec,
//!   spawns the same way, prints `locked`, and exits at stdin EOF.
//! - `try <dir> <name> [lock options]`: `try_acquire` once; print `locked pid=<pid>`, release,
//!   print `released`.
//! - `default-dir`: print `dir path=<default_dir()>`.
//! - `default-session <name>`: take and release lock `<name>` (no directory: the default one),
//!   print `ready pid=<pid>`; then for each stdin line `try <name>`, `try_acquire` that lock (the
//!   same `Lock` value every time for the same name, so its cached state is reused), print
//!   `locked pid=<pid>` and release, or print the `error` line; exit at stdin EOF.
//! - `create-file <path> <octal mode>`: create `<path>` (it must not exist), empty, with exactly
//!   that mode; print `created`.
//! - `chdir-rounds <X> <Y> <name> <rounds>` (a relative directory): in `X`, make
//!   `Lock::new(name).dir("locks")`, take and release it, `chdir` to `Y`, print
//!   `lockfile path=<path()>`, then `<rounds>` times: acquire, look at `X/locks/<file>` with an
//!   independent open + `flock(LOCK_EX|LOCK_NB)`, release. Print
//!   `done bad=<rounds where X's file was not held> rounds=<n> first=<first bad round|->`.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use lockmacro_runtime::Lock;

use crate::flock::{probe, Seen};
use crate::protocol::{error_line, me, one_line, say};
use crate::{lock_for, report, stdin_lines, wait_for_eof, Args, Outcome, LOCK_OPTIONS};

pub fn hold(args: &Args) -> Outcome {
    let [dir, name] = args.positional("<dir> <name>")?;
    args.only(
        &[
            &LOCK_OPTIONS[..],
            &["block", "mark", "spawn-sleep", "leak-spawn"],
        ]
        .concat(),
    )?;
    let lock = lock_for(dir, name, args)?;
    if args.has("leak-spawn") {
        return leak_spawn(&lock);
    }
    let got = if args.has("block") {
        lock.acquire()
    } else {
        lock.try_acquire()
    };
    let mut guard = match got {
        Ok(guard) => Some(guard),
        Err(e) => return Ok(report(&e)),
    };
    if args.has("spawn-sleep") {
        spawn_sleeper()?;
    }
    let path = guard.as_ref().map(|g| g.path().display().to_string());
    say(&format!(
        "locked pid={} path={}",
        me(),
        path.unwrap_or_default()
    ));
    for line in stdin_lines() {
        match (line.trim(), &guard) {
            ("check", Some(held)) => match held.check() {
                Ok(()) => say("check result=ok"),
                Err(e) => say(&format!("check result=lost msg={}", one_line(&e))),
            },
            ("release", Some(_)) => {
                let held = guard.take().expect("held");
                held.release().map_err(|e| format!("release: {e}"))?;
                say("released");
            }
            (other, _) => return Err(format!("unexpected line {other:?}")),
        }
    }
    if let Some(held) = guard {
        if let Some(mark) = args.value("mark") {
            // Created while the lock is still held: whoever sees it acquired after this point.
            fs::write(mark, me().to_string()).map_err(|e| format!("create {mark}: {e}"))?;
        }
        held.release().map_err(|e| format!("release: {e}"))?;
        say("released");
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts `sleep 30` in its own process group and detached from our pipes (so the test sees our
/// EOF when we exit, and killing our group spares it), and prints its PID. We never wait for
/// it: it must outlive us.
fn spawn_sleeper() -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let child = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn sleep: {e}"))?;
    say(&format!("spawned child={}", child.id()));
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
    say(&format!(
        "locked pid={} path={}",
        me(),
        lock.path().display()
    ));
    wait_for_eof();
    Ok(ExitCode::SUCCESS)
}

pub fn try_once(args: &Args) -> Outcome {
    let [dir, name] = args.positional("<dir> <name>")?;
    args.only(&LOCK_OPTIONS)?;
    match lock_for(dir, name, args)?.try_acquire() {
        Ok(guard) => {
            say(&format!("locked pid={}", me()));
            guard.release().map_err(|e| format!("release: {e}"))?;
            say("released");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report(&e)),
    }
}

pub fn default_dir() -> Outcome {
    say(&format!(
        "dir path={}",
        lockmacro_runtime::default_dir().display()
    ));
    Ok(ExitCode::SUCCESS)
}

pub fn default_session(args: &Args) -> Outcome {
    let [name] = args.positional("<name>")?;
    args.only(&[])?;
    let mut locks: HashMap<String, Lock> = HashMap::new();
    let first = locks
        .entry(name.to_owned())
        .or_insert_with(|| Lock::new(name));
    match first.try_acquire() {
        Ok(guard) => guard.release().map_err(|e| format!("release: {e}"))?,
        Err(e) => return Ok(report(&e)),
    }
    say(&format!("ready pid={}", me()));
    for line in stdin_lines() {
        let Some(name) = line.trim().strip_prefix("try ") else {
            return Err(format!("unexpected line {line:?}"));
        };
        let lock = locks
            .entry(name.to_owned())
            .or_insert_with(|| Lock::new(name));
        match lock.try_acquire() {
            Ok(guard) => {
                say(&format!("locked pid={}", me()));
                guard.release().map_err(|e| format!("release: {e}"))?;
            }
            Err(e) => say(&error_line(&e)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn create_file(args: &Args) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let [path, mode] = args.positional("<path> <octal mode>")?;
    args.only(&[])?;
    let mode = u32::from_str_radix(mode, 8).map_err(|e| format!("mode: {e}"))?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("create {path}: {e}"))?;
    // Exactly `mode`, whatever the umask.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {path}: {e}"))?;
    say("created");
    Ok(ExitCode::SUCCESS)
}

pub fn chdir_rounds(args: &Args) -> Outcome {
    let [x, y, name, rounds] = args.positional("<X> <Y> <name> <rounds>")?;
    args.only(&[])?;
    let rounds: usize = rounds.parse().map_err(|e| format!("rounds: {e}"))?;
    std::env::set_current_dir(x).map_err(|e| format!("chdir {x}: {e}"))?;
    let lock = Lock::new(name).dir("locks");
    match lock.acquire() {
        Ok(guard) => guard.release().map_err(|e| format!("release: {e}"))?,
        Err(e) => return Ok(report(&e)),
    }
    let file_name = lock.path().file_name().ok_or("no file name")?.to_owned();
    let x_file: PathBuf = Path::new(x).join("locks").join(file_name);
    std::env::set_current_dir(y).map_err(|e| format!("chdir {y}: {e}"))?;
    say(&format!("lockfile path={}", lock.path().display()));
    let (mut bad, mut first) = (0usize, None);
    for round in 0..rounds {
        let guard = match lock.acquire() {
            Ok(guard) => guard,
            Err(e) => return Ok(report(&e)),
        };
        if probe(&x_file) != Seen::Held {
            bad += 1;
            first.get_or_insert(round);
        }
        guard.release().map_err(|e| format!("release: {e}"))?;
    }
    let first = first.map_or_else(|| "-".to_owned(), |r: usize| r.to_string());
    say(&format!("done bad={bad} rounds={rounds} first={first}"));
    Ok(ExitCode::SUCCESS)
}
