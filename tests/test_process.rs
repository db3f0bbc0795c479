//! Locks between real processes: the child programs `lm-single` (an `#[exclusive] fn main`) and
//! `lm-helper` (annotated functions and runtime calls as subcommands, see `tests/bin/helper.rs`).
//!
//! Every test uses its own temporary lock directory (`LOCKMACRO_DIR` for children, `.dir()` in
//! this process), and synchronises with its children through their stdin/stdout pipes only.

mod common;

use std::time::{Duration, Instant};

use common::{field, file_content, lock_path, pid_field, Proc, PATIENCE, SINGLE};
use lockmacro_runtime::{Error, Lock};
use tempfile::TempDir;

const NO_ARGS: [&str; 0] = [];

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("create a temporary lock directory")
}

#[test]
fn single_instance_main_refuses_a_second_copy_until_the_first_exits() {
    let tmp = temp_dir();
    let path = lock_path(tmp.path(), "single");

    let mut first = Proc::spawn(SINGLE, NO_ARGS, tmp.path());
    let ready = first.expect("ready");
    let first_pid: u32 = ready
        .strip_prefix("ready ")
        .and_then(|pid| pid.parse().ok())
        .expect("`ready <pid>`");
    assert_eq!(first_pid, first.id());

    let second = Proc::spawn(SINGLE, NO_ARGS, tmp.path()).finish();
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

    let mut third = Proc::spawn(SINGLE, NO_ARGS, tmp.path());
    let ready = third.expect("ready");
    assert_eq!(ready, format!("ready {}", third.id()));
    third.finish_ok();
}

#[test]
fn result_fn_gets_held_with_the_holders_pid_converted_into_the_users_error() {
    let tmp = temp_dir();
    let path = lock_path(tmp.path(), "migrate");

    let mut holder = Proc::helper(["hold", "migrate"], tmp.path());
    let holder_pid = pid_field(&holder.expect("locked"), "pid");
    assert_eq!(holder_pid, holder.id());

    // `migrate` prints `held ...` only if its `AppError::from` received an `Error::Held`.
    let mut blocked = Proc::helper(["migrate"], tmp.path());
    let held = blocked.expect("held");
    assert_eq!(pid_field(&held, "pid"), holder_pid, "{held}");
    assert_eq!(field(&held, "name"), "migrate", "{held}");
    assert_eq!(field(&held, "path"), path.to_str().expect("utf-8 path"));
    let blocked = blocked.finish();
    assert_eq!(blocked.status.code(), Some(3), "{blocked:?}");
    assert!(blocked.stdout.is_empty(), "the body ran: {blocked:?}");

    holder.finish_ok();

    let mut free = Proc::helper(["migrate"], tmp.path());
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
    let mark_arg = mark.to_str().expect("utf-8 path");

    let mut holder = Proc::helper(["hold", "wait", "--mark", mark_arg], tmp.path());
    let holder_pid = pid_field(&holder.expect("locked"), "pid");

    let mut waiter = Proc::helper(["wait-acquire", "--mark", mark_arg], tmp.path());
    let waiter_pid = pid_field(&waiter.expect("waiting"), "pid");
    assert_eq!(waiter_pid, waiter.id());

    // The waiter is parked inside flock, so it has not acquired: the kernel says so.
    #[cfg(target_os = "linux")]
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
    assert_eq!(field(&acquired, "mark"), "yes", "{acquired}");
    assert_eq!(pid_field(&acquired, "holder"), waiter_pid, "{acquired}");
    assert_eq!(pid_field(&acquired, "file"), waiter_pid, "{acquired}");
    assert!(handover < PATIENCE, "handover took {handover:?}");
    holder.finish_ok();
    waiter.finish_ok();
    eprintln!("wait: handover observed {handover:?} after the holder's `released`");
}

#[test]
fn timeout_fn_gives_up_after_its_timeout_naming_the_holder() {
    let tmp = temp_dir();
    let path = lock_path(tmp.path(), "timeout");

    let mut holder = Proc::helper(["hold", "timeout"], tmp.path());
    let holder_pid = pid_field(&holder.expect("locked"), "pid");

    let mut late = Proc::helper(["timeout"], tmp.path());
    let line = late.expect("timeout");
    assert_eq!(pid_field(&line, "pid"), holder_pid, "{line}");
    assert_eq!(field(&line, "timeout_ms"), "300", "{line}");
    assert_eq!(field(&line, "name"), "timeout", "{line}");
    assert_eq!(field(&line, "path"), path.to_str().expect("utf-8 path"));
    let elapsed = Duration::from_millis(field(&line, "elapsed_ms").parse().expect("elapsed_ms"));
    assert!(
        elapsed >= Duration::from_millis(300),
        "gave up early: {line}"
    );
    assert!(elapsed < PATIENCE, "{line}");
    let late = late.finish();
    assert_eq!(late.status.code(), Some(4), "{late:?}");
    assert!(late.stdout.is_empty(), "the body ran: {late:?}");

    holder.finish_ok();

    let mut free = Proc::helper(["timeout"], tmp.path());
    free.expect("acquired");
    free.finish_ok();
    eprintln!("timeout: gave up after {elapsed:?}");
}

#[test]
fn killed_holder_frees_the_lock_at_once_leaving_its_stale_pid() {
    let tmp = temp_dir();
    let lock = Lock::new("crash").dir(tmp.path());

    let mut holder = Proc::helper(["hold", "crash"], tmp.path());
    let line = holder.expect("locked");
    let dead_pid = pid_field(&line, "pid");
    assert_eq!(field(&line, "path"), lock.path().to_str().expect("utf-8"));
    assert_eq!(lock.holder().expect("holder"), Some(dead_pid));

    let status = holder.kill();
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
    #[cfg(not(unix))]
    assert!(!status.success());

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

    let mut holder = Proc::helper(["hold", "tidy", "--cleanup"], tmp.path());
    let holder_pid = pid_field(&holder.expect("locked"), "pid");
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
        let mut holder = Proc::helper(["hold", "tidy", "--cleanup"], tmp.path());
        let pid = pid_field(&holder.expect("locked"), "pid");
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

    let mut a = Proc::helper(["hold", "readers", "--shared"], tmp.path());
    let a_pid = pid_field(&a.expect("locked"), "pid");
    let mut b = Proc::helper(["hold", "readers", "--shared"], tmp.path());
    let b_pid = pid_field(&b.expect("locked"), "pid");

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

#[cfg(unix)]
#[test]
fn guard_dropped_in_a_forked_child_releases_nothing() {
    let tmp = temp_dir();
    let lock = Lock::new("forked").dir(tmp.path());

    // The helper takes the lock with `cleanup`, forks, and the fork drops its copy of the guard.
    let mut owner = Proc::helper(["fork-drop", "forked"], tmp.path());
    let line = owner.expect("forked");
    let owner_pid = pid_field(&line, "pid");
    assert_eq!(field(&line, "child"), "0", "{line}");

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
