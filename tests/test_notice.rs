//! The waiting notice: a single-instance `main` that waits tells the person watching why, once,
//! after about a second ("waiting for lock `single` (held by pid N, path ...)"), and says nothing
//! for a short wait or with `notice = false`.
//!
//! The programs are subcommands of `lm-child` (`tests/bin/child/programs.rs`): `single` holds
//! the lock; `notice-wait` (`wait`), `notice-timeout` (`timeout = "1h"`) and `notice-quiet`
//! (`wait, notice = false`) wait for it.
#![cfg(target_os = "linux")] // waiters are observed in /proc/locks

mod support;

use std::path::Path;

use support::{child, lock_path, Proc};

const WAIT: &str = "notice-wait";
const TIMEOUT: &str = "notice-timeout";
const QUIET: &str = "notice-quiet";

/// The program `lm-child <program>` with its locks in `dir`.
fn program(program: &str, dir: &Path) -> Proc {
    child([program]).dir(dir).spawn()
}

fn notices(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("waiting for lock"))
        .collect()
}

/// Holder, then a waiter that must announce its wait: the line names the lock, the holder's PID
/// and the path, and comes exactly once even though the wait goes on after it.
fn long_wait_is_announced_once(waiter: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = lock_path(tmp.path(), "single");
    let mut holder = program("single", tmp.path());
    holder.expect_pid("locked");
    let mut waiter = program(waiter, tmp.path());
    let line = waiter.expect_stderr("waiting for lock");
    let expected = format!(
        "waiting for lock `single` (held by pid {}, path {})",
        holder.id(),
        path.display()
    );
    assert!(line.ends_with(&expected), "{line:?} lacks {expected:?}");
    holder.finish_ok();
    waiter.expect_pid("locked");
    let done = waiter.finish_ok();
    assert_eq!(notices(&done.stderr), [line.as_str()], "{}", done.stderr);
}

#[test]
fn a_long_wait_of_a_waiting_main_is_announced_once() {
    long_wait_is_announced_once(WAIT);
}

#[test]
fn a_long_wait_of_a_timeout_main_is_announced_once() {
    long_wait_is_announced_once(TIMEOUT);
}

/// The waiter is released as soon as the kernel shows it blocked: far less than a second.
#[test]
fn a_short_wait_is_not_announced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = lock_path(tmp.path(), "single");
    for waiter in [WAIT, TIMEOUT] {
        let mut holder = program("single", tmp.path());
        holder.expect_pid("locked");
        let mut waiter = program(waiter, tmp.path());
        waiter.wait_until_blocked_on(&path);
        holder.finish_ok();
        waiter.expect_pid("locked");
        let done = waiter.finish_ok();
        assert!(notices(&done.stderr).is_empty(), "{}", done.stderr);
    }
}

/// `notice = false`: the quiet waiter starts waiting before a noisy one, so by the time the noisy
/// one announces its wait (after a second), the quiet one has waited longer, and said nothing.
#[test]
fn notice_false_keeps_a_long_wait_silent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = lock_path(tmp.path(), "single");
    let mut holder = program("single", tmp.path());
    holder.expect_pid("locked");
    let mut quiet = program(QUIET, tmp.path());
    quiet.wait_until_blocked_on(&path);
    let mut noisy = program(WAIT, tmp.path());
    noisy.expect_stderr("waiting for lock");
    holder.finish_ok();
    // Both get the lock in turn; each exits as soon as it has it.
    let quiet = quiet.finish_ok();
    let noisy = noisy.finish_ok();
    assert!(notices(&quiet.stderr).is_empty(), "{}", quiet.stderr);
    assert_eq!(notices(&noisy.stderr).len(), 1, "{}", noisy.stderr);
}
