//! Locks between real processes, each played by `lm-child` (`tests/bin/child`): a whole
//! single-instance program (`single`, an `#[exclusive]` function named `main`), annotated
//! functions (`migrate`, `wait-acquire`, `timeout`) and runtime calls (`hold`, `fork`).
//!
//! Every test uses its own temporary lock directory (`LOCKMACRO_DIR` or a `<dir>` argument for
//! children, `.dir()` in this process), and synchronises with its children through their
//! stdin/stdout pipes only.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use lockmacro_runtime::{Error, Lock};
use support::{child, file_content, lock_path, show, Proc, PATIENCE};
use tempfile::TempDir;

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("create a temporary lock directory")
}

/// `lm-child <subcommand> <args>` with `LOCKMACRO_DIR=dir`.
fn run_in(dir: &Path, args: &[&str]) -> Proc {
    child(args).dir(dir).spawn()
}

/// `lm-child hold <dir> <name> <flags>`.
fn holder(dir: &Path, name: &str, flags: &[&str]) -> Proc {
    let dir = show(dir);
    child(["hold", dir.as_str(), name].iter().chain(flags)).spawn()
}

#[test]
fn single_instance_main_refuses_a_second_copy_until_the_first_exits() {
    let tmp = temp_dir();
    let path = lock_path(tmp.path(), "single");

    let mut first = run_in(tmp.path(), &["single"]);
    let first_pid = first.expect_pid("locked");

    let second = run_in(tmp.path(), &["single"]).finish();
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(second.stdout.is_empty(), "second copy ran main: {second:?}");
    let stderr = second.stderr.trim_end();
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    assert!(stderr.contains("`single`"), "lock name missing: {stderr:?}");
    assert!(
        stderr.contains(&format!("by pid {first_pid}")),
        "holder pid {first_pid} missing: {stderr:?}"
    );
    assert!(
        stderr.contains(&path.display().to_string()),
        "lock file {} missing: {stderr:?}",
        path.display()
    );

    let first = first.finish_ok();
    assert!(first.stdout.is_empty(), "{first:?}");

    let mut third = run_in(tmp.path(), &["single"]);
    third.expect_pid("locked");
    third.finish_ok();
}

#[test]
fn result_fn_gets_held_with_the_holders_pid_converted_into_the_users_error() {
    let tmp = temp_dir();
    let path = lock_path(tmp.path(), "migrate");

    let mut holder = holder(tmp.path(), "migrate", &[]);
    let holder_pid = holder.expect_pid("locked");

    // `migrate` prints `held ...` only if its `AppError::from` received an `Error::Held`.
    let mut blocked = run_in(tmp.path(), &["migrate"]);
    let held = blocked.expect("held");
    assert_eq!(held.pid_of("holder"), Some(holder_pid), "{held}");
    assert_eq!(held.field("name"), "migrate", "{held}");
    assert_eq!(held.field("path"), path.to_str().expect("utf-8 path"));
    let blocked = blocked.finish();
    assert_eq!(blocked.status.code(), Some(3), "{blocked:?}");
    assert!(blocked.stdout.is_empty(), "the body ran: {blocked:?}");

    holder.finish_ok();

    let mut free = run_in(tmp.path(), &["migrate"]);
    free.expect("ran");
    free.expect("ok");
    free.finish_ok();
}

#[test]
fn wait_acquires_right_after_the_holder_releases_and_not_before() {
    let tmp = temp_dir();
    let path = lock_path(tmp.path(), "wait");
    // The holder creates this file while it still holds the lock, just before releasing.
    let mark = tmp.path().join("holder-releasing");
    let mark_arg = format!("--mark={}", show(&mark));

    let mut holder = holder(tmp.path(), "wait", &[&mark_arg]);
    let holder_pid = holder.expect_pid("locked");

    let mut waiter = run_in(tmp.path(), &["wait-acquire", &mark_arg]);
    let waiter_pid = waiter.expect_pid("waiting");

    // The waiter is parked inside flock, so it has not acquired: the kernel says so.
    waiter.wait_until_blocked_on(&path);
    assert!(!mark.exists());
    assert_eq!(file_content(&path), holder_pid.to_string());
    assert_eq!(
        Lock::new("wait").dir(tmp.path()).holder().expect("holder"),
        Some(holder_pid)
    );

    holder.close_stdin();
    holder.expect("released");
    let released_at = Instant::now();
    let acquired = waiter.expect("acquired");
    let handover = released_at.elapsed();
    // Seeing the mark proves the waiter got the lock after the holder began releasing.
    assert_eq!(acquired.field("mark"), "yes", "{acquired}");
    assert_eq!(acquired.pid_of("holder"), Some(waiter_pid), "{acquired}");
    assert_eq!(acquired.number::<u32>("file"), waiter_pid, "{acquired}");
    assert!(handover < PATIENCE, "handover took {handover:?}");
    holder.finish_ok();
    waiter.finish_ok();
    eprintln!("wait: handover observed {handover:?} after the holder's `released`");
}

#[test]
fn timeout_fn_gives_up_after_its_timeout_naming_the_holder() {
    let tmp = temp_dir();
    let path = lock_path(tmp.path(), "timeout");

    let mut holder = holder(tmp.path(), "timeout", &[]);
    let holder_pid = holder.expect_pid("locked");

    let mut late = run_in(tmp.path(), &["timeout"]);
    let line = late.expect("timeout");
    assert_eq!(line.pid_of("holder"), Some(holder_pid), "{line}");
    assert_eq!(line.field("timeout_ms"), "300", "{line}");
    assert_eq!(line.field("name"), "timeout", "{line}");
    assert_eq!(line.field("path"), path.to_str().expect("utf-8 path"));
    let elapsed = Duration::from_millis(line.number("elapsed_ms"));
    assert!(
        elapsed >= Duration::from_millis(300),
        "gave up early: {line}"
    );
    assert!(elapsed < PATIENCE, "{line}");
    let late = late.finish();
    assert_eq!(late.status.code(), Some(4), "{late:?}");
    assert!(late.stdout.is_empty(), "the body ran: {late:?}");

    holder.finish_ok();

    let mut free = run_in(tmp.path(), &["timeout"]);
    free.expect("acquired");
    free.finish_ok();
    eprintln!("timeout: gave up after {elapsed:?}");
}

#[test]
fn killed_holder_frees_the_lock_at_once_leaving_its_stale_pid() {
    let tmp = temp_dir();
    let lock = Lock::new("crash").dir(tmp.path());

    let mut holder = holder(tmp.path(), "crash", &[]);
    let line = holder.expect("locked");
    let dead_pid = line.pid();
    assert_eq!(line.field("path"), lock.path().to_str().expect("utf-8"));
    assert_eq!(lock.holder().expect("holder"), Some(dead_pid));

    let status = holder.kill();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );

    assert_eq!(file_content(lock.path()), dead_pid.to_string());
    assert_eq!(lock.holder().expect("holder"), None);
    let guard = lock
        .try_acquire()
        .expect("a single try_acquire after the holder was killed");
    assert_eq!(file_content(lock.path()), std::process::id().to_string());
    assert_eq!(lock.holder().expect("holder"), Some(std::process::id()));
    guard.release().expect("release");
}

#[test]
fn cleanup_holder_removes_the_lock_file_when_it_releases() {
    let tmp = temp_dir();
    let path = lock_path(tmp.path(), "tidy");

    let mut holder = holder(tmp.path(), "tidy", &["--cleanup"]);
    let holder_pid = holder.expect_pid("locked");
    assert_eq!(file_content(&path), holder_pid.to_string());

    let done = holder.finish_ok();
    assert_eq!(done.stdout, ["released"]);
    assert!(!path.exists(), "{} left behind", path.display());
}

#[test]
fn killed_cleanup_holders_leftover_file_blocks_nobody() {
    let tmp = temp_dir();
    let lock = Lock::new("tidy").dir(tmp.path()).cleanup();

    for _ in 0..2 {
        // A cleanup holder dies without removing its file, which keeps its stale PID...
        let mut holder = holder(tmp.path(), "tidy", &["--cleanup"]);
        let pid = holder.expect_pid("locked");
        holder.kill();
        assert_eq!(file_content(lock.path()), pid.to_string());
        assert_eq!(lock.holder().expect("holder"), None);
    }
    // ...yet the next process (the second child above) and this one get the lock at once.
    let guard = lock
        .try_acquire()
        .expect("try_acquire over a leftover file");
    assert_eq!(file_content(lock.path()), std::process::id().to_string());
    guard.release().expect("release");
    assert!(!lock.path().exists());
}

#[test]
fn shared_holders_run_together_and_exclude_an_exclusive_one() {
    let tmp = temp_dir();
    let exclusive = Lock::new("readers").dir(tmp.path());

    let mut a = holder(tmp.path(), "readers", &["--shared"]);
    let a_pid = a.expect_pid("locked");
    let mut b = holder(tmp.path(), "readers", &["--shared"]);
    let b_pid = b.expect_pid("locked");

    match exclusive.try_acquire() {
        Err(Error::Held { pid: Some(pid), .. }) => {
            assert!(
                pid == a_pid || pid == b_pid,
                "{pid} is not {a_pid} or {b_pid}"
            );
        }
        other => panic!("expected Held by {a_pid} or {b_pid}, got {other:?}"),
    }
    let holder = exclusive.holder().expect("holder");
    assert!(holder == Some(a_pid) || holder == Some(b_pid), "{holder:?}");

    a.finish_ok();
    b.finish_ok();
    exclusive
        .try_acquire()
        .expect("free after both readers left")
        .release()
        .expect("release");
}

#[test]
fn guard_dropped_in_a_forked_child_releases_nothing() {
    let tmp = temp_dir();
    let lock = Lock::new("forked").dir(tmp.path());

    // The child takes the lock with `cleanup` and spawns a process that drops its copy of the
    // guard between fork and exec.
    let dir = show(tmp.path());
    let mut owner = child(["fork", dir.as_str(), "forked", "--cleanup", "--exec"]).spawn();
    let line = owner.expect("forked");
    assert_eq!(
        line.field("status"),
        "0",
        "the forked child should exit 0: {line}"
    );
    let owner_pid = owner.expect_pid("locked");

    assert!(lock.path().exists(), "the fork removed the lock file");
    assert_eq!(file_content(lock.path()), owner_pid.to_string());
    assert_eq!(lock.holder().expect("holder"), Some(owner_pid));
    match lock.try_acquire() {
        Err(Error::Held { pid, .. }) => assert_eq!(pid, Some(owner_pid)),
        other => panic!("the fork released the lock: {other:?}"),
    }

    let done = owner.finish_ok();
    assert_eq!(done.stdout, ["released"]);
    assert!(
        !lock.path().exists(),
        "the owner's release did not clean up"
    );
}

/// The system calls of one run of `lm-child <args>` under `strace -f` (every thread), by name,
/// with `LOCKMACRO_DIR` set to `dir`; `None` if strace cannot run here.
fn syscalls(dir: &Path, args: &[&str]) -> Option<std::collections::BTreeMap<String, usize>> {
    let log = dir.join(format!("strace-{}.log", args[0]));
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-o"])
        .arg(&log)
        .arg(support::CHILD)
        .args(args)
        .env("LOCKMACRO_DIR", dir);
    let out = support::output(&mut cmd).ok()?;
    assert!(out.status.success(), "strace lm-child {args:?}: {out:?}");
    let text = std::fs::read_to_string(&log).expect("read the strace log");
    let mut calls = std::collections::BTreeMap::new();
    for line in text.lines() {
        // `N name(...`; the second half of a call strace split (`<... name resumed>`) is not
        // a new call. `prctl(PR_GET_AUXV)` counts as its own name.
        let line = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        if line.starts_with("<...") || line.starts_with("+++") || line.starts_with("---") {
            continue;
        }
        if let Some((name, rest)) = line.split_once('(') {
            let name = if name == "prctl" && rest.starts_with("0x41555856") {
                "prctl(PR_GET_AUXV)"
            } else {
                name
            };
            *calls.entry(name.to_owned()).or_insert(0) += 1;
        }
    }
    Some(calls)
}

/// A single-instance program's first acquisition makes none of the system calls it used to
/// spend on nothing (see BENCHMARKS.md, "What this round removed"): no `readlink` (the call
/// chain's canonical path, worked out only for a nested call), no `madvise` (the wiped-on-fork
/// PID page, made only by a process that asks for its PID often), no `getrandom` (hash seeds),
/// no `prctl(PR_GET_AUXV)` (rustix finds the vDSO through libc); and it locks once and unlocks
/// once. Compared with `lm-child noop`, the same program doing nothing. Needs `strace` (CI
/// installs it); skipped, saying so, where it cannot run.
///
/// Broken on purpose (the chain's key worked out at every entry, as before): "readlink: 2 in
/// `single`, 0 in `noop`".
#[test]
fn a_single_instance_main_makes_no_needless_system_calls() {
    let tmp = temp_dir();
    let (Some(noop), Some(single)) = (
        syscalls(tmp.path(), &["noop"]),
        syscalls(tmp.path(), &["single"]),
    ) else {
        eprintln!("strace cannot run here: not checked");
        return;
    };
    let count = |calls: &std::collections::BTreeMap<String, usize>, name: &str| {
        calls.get(name).copied().unwrap_or(0)
    };
    for name in ["readlink", "madvise", "getrandom", "prctl(PR_GET_AUXV)"] {
        assert!(
            count(&single, name) <= count(&noop, name),
            "{name}: {} in `single`, {} in `noop`",
            count(&single, name),
            count(&noop, name)
        );
    }
    assert_eq!(
        count(&single, "flock"),
        2,
        "one lock, one unlock: {single:?}"
    );
}
