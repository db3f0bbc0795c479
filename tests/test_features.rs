//! What users reach for next, between real processes: `on_conflict = "skip"` (a skipped `main`
//! exits 0 without a word, a skipped `Option` function returns `None`, a real failure is still
//! reported) and lock names computed from the call (`name = format!("tenant-{id}")`: different
//! tenants run together, the same tenant is excluded). The children are `lm-child`
//! subcommands, see `tests/bin/child/features.rs`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{child, Proc};
use tempfile::TempDir;

/// `lm-child args...` with `LOCKMACRO_DIR=dir`, where its annotated functions lock.
fn helper<const N: usize>(args: [&str; N], dir: &Path) -> Proc {
    child(args).dir(dir).spawn()
}

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("create a temporary lock directory")
}

#[test]
fn skipping_main_exits_0_and_prints_nothing_while_another_copy_runs() {
    let tmp = temp_dir();
    let mut first = helper(["skip-main"], tmp.path());
    let first_pid = first.expect("ran").pid();
    assert_eq!(first_pid, first.id());

    let second = helper(["skip-main"], tmp.path()).finish();
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    assert!(second.stdout.is_empty(), "the skipped main ran: {second:?}");
    assert!(second.stderr.is_empty(), "cron would mail this: {second:?}");

    first.finish_ok();
    // Free again: the next run runs.
    let mut third = helper(["skip-main"], tmp.path());
    third.expect("ran");
    third.finish_ok();
}

#[test]
fn skipping_main_with_a_timeout_waits_then_exits_0_without_a_notice() {
    let tmp = temp_dir();
    let mut first = helper(["skip-main"], tmp.path());
    first.expect("ran");

    let start = Instant::now();
    let second = helper(["skip-main", "--timeout"], tmp.path()).finish();
    let waited = start.elapsed();
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    assert!(second.stdout.is_empty(), "the skipped main ran: {second:?}");
    // 1.5 s is past the wait notice's second: a skipping `main` does not announce its wait.
    assert!(second.stderr.is_empty(), "cron would mail this: {second:?}");
    assert!(
        waited >= Duration::from_millis(1500),
        "skipped after {waited:?}, before its timeout"
    );
    first.finish_ok();
}

#[test]
fn skipping_main_still_reports_a_real_failure_with_status_1() {
    let tmp = temp_dir();
    // A lock "directory" that is a file: an I/O failure, not contention.
    let not_a_dir = tmp.path().join("file");
    std::fs::write(&not_a_dir, "").expect("create a file");
    let run = helper(["skip-main"], &not_a_dir).finish();
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    let stderr = run.stderr.trim_end();
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    assert!(
        stderr.contains("`skip-main`"),
        "lock name missing: {stderr:?}"
    );
}

#[test]
fn skipping_option_function_returns_none_while_held_elsewhere() {
    let tmp = temp_dir();
    let mut holder = helper(["hold", "-", "skip-option"], tmp.path());
    holder.expect("locked");

    let mut skipped = helper(["skip-option"], tmp.path());
    assert_eq!(skipped.next_line(), "none");
    let skipped = skipped.finish();
    assert!(
        skipped.status.success() && skipped.stderr.is_empty(),
        "{skipped:?}"
    );

    holder.finish_ok();
    let mut ran = helper(["skip-option"], tmp.path());
    assert_eq!(ran.next_line(), "some n=7");
    ran.finish_ok();
}

#[test]
fn skipping_option_function_panics_on_a_real_failure() {
    let tmp = temp_dir();
    let not_a_dir = tmp.path().join("file");
    std::fs::write(&not_a_dir, "").expect("create a file");
    let run = helper(["skip-option"], &not_a_dir).finish();
    assert_eq!(run.status.code(), Some(101), "a panic expected: {run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(run.stderr.contains("`skip-option`"), "{run:?}");
}

#[test]
fn names_from_arguments_exclude_equal_tenants_and_let_different_ones_run_together() {
    let tmp = temp_dir();
    let mut one = helper(["tenant", "1"], tmp.path());
    assert_eq!(one.next_line(), "ran id=1");

    // Tenant 2 runs while tenant 1 is inside its body.
    let mut two = helper(["tenant", "2"], tmp.path());
    assert_eq!(two.next_line(), "ran id=2");

    // Tenant 1 again: excluded, so skipped.
    let mut again = helper(["tenant", "1"], tmp.path());
    assert_eq!(again.next_line(), "skipped id=1");
    again.finish_ok();

    // The name is the runtime's `Lock::new(format!(..))`: another program can ask about it.
    let lock = lockmacro_runtime::Lock::new("tenant-2").dir(tmp.path());
    assert_eq!(lock.holder().expect("holder"), Some(two.id()));

    one.finish_ok();
    two.finish_ok();
    let mut later = helper(["tenant", "1"], tmp.path());
    assert_eq!(later.next_line(), "ran id=1");
    later.finish_ok();
}
