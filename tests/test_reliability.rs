//! How the lock survives the ways processes really end and really share descriptors, a
//! blocked waiter whose file keeps being replaced, and whether it interoperates with util-linux
//! `flock(1)`. Every holder is an `lm-child` process (`tests/bin/child`, mostly `attack.rs`);
//! the test is the third party that looks at the lock from outside.
//!
//! The rest of the reliability suite: `test_stress.rs` (mutual exclusion under load),
//! `test_rel_hostile.rs` (hostile directories, environment, network filesystems),
//! `test_rel_names.rs` (names to paths), `test_rel_leaks.rs` (descriptors and threads).

mod support;

use std::path::Path;
use std::process::{Command, ExitStatus};

use lockmacro_runtime::{Error, Lock};
use support::{blocked_in_flock, child, file_bytes, running, show, KillOnDrop, Proc};

/// The lock must be held by exactly `pid`, as a third process sees it.
fn assert_held_by(lock: &Lock, pid: u32) {
    match lock.try_acquire() {
        Err(Error::Held { pid: Some(p), .. }) if p == pid => {}
        other => panic!("lock should be held by pid {pid}, try_acquire gave {other:?}"),
    }
    assert_eq!(lock.holder().expect("holder()"), Some(pid), "holder()");
}

// ---------------------------------------------------------------------------------------------
// Crashes: the kernel releases a flock however its holder dies. The PID stays in the
// file, and must be ignored.

/// Runs `lm-child crash <how>`, lets it die while holding, and checks the aftermath.
/// Returns the child's status.
fn crash(how: &str) -> ExitStatus {
    let dir = tempfile::tempdir().expect("temp dir");
    let lock = Lock::new("lm-attack-crash").dir(dir.path());
    let mut child = child(["crash", how]).dir(dir.path()).spawn();
    let pid = child.expect_pid("locked");
    assert_held_by(&lock, pid);
    if how == "kill" {
        child.send_kill();
    }
    let done = child.finish();
    // The dead holder's PID is still in the file: decimal text and a newline at offset 0, then
    // the lock's name and a newline.
    assert_eq!(
        String::from_utf8_lossy(&file_bytes(lock.path())),
        format!("{pid}\nlm-attack-crash\n"),
        "the lock file should still hold the dead PID ({how}): {done:#?}"
    );
    assert_eq!(
        lock.holder().expect("holder()"),
        None,
        "a stale PID in the file must not be reported as the holder ({how})"
    );
    let guard = lock.try_acquire().unwrap_or_else(|e| {
        panic!("the lock should be free at once after the holder died ({how}): {e}")
    });
    assert_eq!(
        String::from_utf8_lossy(&file_bytes(lock.path())),
        format!("{}\nlm-attack-crash\n", std::process::id()),
        "the new holder should have replaced the stale PID"
    );
    guard.release().expect("release");
    eprintln!(
        "[figures] crash {how}: holder pid {pid}, status {:?}",
        done.status
    );
    done.status
}

#[test]
fn crash_sigkill_while_holding_frees_the_lock_at_once() {
    let status = crash("kill");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
}

#[test]
fn crash_process_exit_while_holding_frees_the_lock_at_once() {
    assert_eq!(crash("exit").code(), Some(3));
}

#[test]
fn crash_abort_while_holding_frees_the_lock_at_once() {
    // `panic = "abort"` simulated by a panic hook that calls `abort()`.
    let status = crash("abort");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGABRT)
    );
}

#[test]
fn crash_unwinding_panic_in_annotated_body_frees_the_lock_at_once() {
    // The guard is dropped while unwinding; the panic reaches `main`, hence status 101.
    assert_eq!(crash("panic").code(), Some(101));
}

// ---------------------------------------------------------------------------------------------
// Fork and exec.

/// The descriptors of process `pid` that point at `path`.
fn descriptors_of(pid: u32, path: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|target| target == path))
        .count()
}

/// A holder spawns `sleep 30`, then exits; the sleeper outlives it. Returns what a third
/// process sees afterwards, with the number of lock-file descriptors the sleeper has.
fn spawn_then_exit(flag: &str) -> (Result<(), Error>, usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let lock = Lock::new("spawn").dir(dir.path());
    let mut holder = child(["hold", &show(dir.path()), "spawn", flag]).spawn();
    let sleeper = holder
        .expect("spawned")
        .pid_of("child")
        .expect("the sleeper's pid");
    let _reap = KillOnDrop(sleeper);
    let pid = holder.expect_pid("locked");
    match lock.try_acquire() {
        Err(e) if e.is_contended() => {}
        other => panic!("the holder {pid} should hold the lock: {other:?}"),
    }
    let done = holder.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    assert_eq!(
        running(sleeper).as_deref(),
        Some("sleep"),
        "the spawned child should still be running after its parent exited"
    );
    let leaked = descriptors_of(sleeper, lock.path());
    let seen = lock.try_acquire().map(drop);
    (seen, leaked)
}

#[test]
fn spawned_child_does_not_keep_the_lock_after_the_holder_exits() {
    let (seen, leaked) = spawn_then_exit("--spawn-sleep");
    assert_eq!(
        leaked, 0,
        "the spawned child inherited the lock file descriptor"
    );
    seen.expect("the lock should be free once the holder exited, though its child still runs");
}

/// Control: the same scenario with a descriptor that lacks close-on-exec must be caught, or the
/// test above proves nothing.
#[test]
fn spawned_child_with_an_inherited_descriptor_is_caught() {
    let (seen, leaked) = spawn_then_exit("--leak-spawn");
    assert_eq!(leaked, 1, "the control should leak exactly one descriptor");
    match seen {
        Err(Error::Held { .. }) => {}
        other => panic!("an inherited descriptor keeps the lock, so Held was expected: {other:?}"),
    }
}

/// `fork()` without exec: the forked child drops its copy of the guard and exits; the parent
/// must still hold the lock, and (with `cleanup`) the file must still be there.
fn fork_and_drop(cleanup: bool, raw: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let lock = Lock::new("fork").dir(dir.path());
    let dir_arg = show(dir.path());
    let mut args = vec!["fork", &dir_arg, "fork"];
    if cleanup {
        args.push("--cleanup");
    }
    if raw {
        args.push("--raw");
    }
    let mut parent = child(args).spawn();
    let forked = parent.expect("forked");
    assert_eq!(
        forked.field("status"),
        "0",
        "the forked child should exit 0: {forked}"
    );
    let pid = parent.expect_pid("locked");
    assert_held_by(&lock, pid);
    assert_eq!(
        String::from_utf8_lossy(&file_bytes(lock.path())),
        format!("{pid}\nfork\n"),
        "the forked child must not touch the file"
    );
    let done = parent.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    assert_eq!(done.stdout, ["released"], "{done:#?}");
    assert_eq!(
        lock.path().exists(),
        !cleanup,
        "after the parent's release the file should be removed exactly when `cleanup` is set"
    );
    lock.try_acquire()
        .expect("free after the parent released")
        .release()
        .expect("release");
}

#[test]
fn forked_child_dropping_its_guard_leaves_the_parents_lock() {
    fork_and_drop(false, false);
}

#[test]
fn forked_child_dropping_its_cleanup_guard_neither_unlocks_nor_unlinks() {
    fork_and_drop(true, false);
}

/// The runtime caches its PID in a page the kernel wipes in every child (`pid.rs`); a bare
/// `clone` system call, which no C library fork handler sees, must clear it too.
#[test]
fn child_of_a_bare_clone_dropping_its_guard_leaves_the_parents_lock() {
    fork_and_drop(false, true);
}

/// `release()` says "releases the lock now". In a process where another thread is spawning a
/// child (`Command::spawn` forks, and the child holds copies of every descriptor until it
/// execs; close-on-exec cannot help before the exec), closing the lock's descriptor does not
/// release it: the child's copy keeps the open file description, and its lock, alive. An
/// explicit unlock (`flock(LOCK_UN)`, which acts on the open file description) before the
/// close would. Here the child's exec is held back by a `pre_exec` hook, as a slow exec (a big
/// binary, a loaded machine, `pre_exec` work) would.
///
/// Regression: before commit 17e07b2 the guard released by closing its descriptor only; this
/// test failed on that runtime (`Held` by the releasing process until the child exec'd).
#[test]
fn release_is_immediate_while_another_thread_is_spawning_a_child() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lock = Lock::new("forked").dir(dir.path());
    let mut holder = child(["release-while-forked", &show(dir.path()), "forked"]).spawn();
    let pid = holder.expect_pid("released");
    let seen = lock.try_acquire().map(drop);
    let holder_seen = lock.holder();
    let done = holder.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    let later = lock.try_acquire().map(drop);
    eprintln!(
        "[figures] release while another thread spawns: right after release() {seen:?}, \
         holder() {holder_seen:?}; after the child exec'd: {later:?}"
    );
    assert!(
        seen.is_ok(),
        "pid {pid}'s release() returned, yet the lock is still held: {seen:?} (holder() = \
         {holder_seen:?}), by the copy of its descriptor in a child that another thread was \
         spawning"
    );
}

// ---------------------------------------------------------------------------------------------
// Signals: EINTR is retried, never reported.

/// Signals the waiter must have handled while blocked before the test releases the lock.
const SIGNALS_WHILE_WAITING: u64 = 200;

fn waiter_under_signals(mode: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let lock = Lock::new("signals").dir(dir.path());
    let guard = lock.try_acquire().expect("the test takes the lock first");
    let mut waiter = child([
        "signals",
        &show(dir.path()),
        "signals",
        mode,
        &SIGNALS_WHILE_WAITING.to_string(),
    ])
    .spawn();
    waiter.expect_pid("waiting");
    // Reached only if the wait survived this many interruptions without returning.
    let interrupted = waiter.expect("interrupted");
    let seen = samples_blocked_in_flock(waiter.id());
    // A blocking acquire() must be in the kernel (flock(2)), so that the signals interrupt it.
    // A timed one may be too (a helper thread) or may poll: only reported.
    assert!(
        mode != "block" || seen > 0,
        "the waiter should be a blocked flock(2) waiter in /proc/locks"
    );
    let blocked =
        format!("; seen blocked in flock(2) in {seen} of {SAMPLES} samples of /proc/locks");
    assert_eq!(
        lock.holder().expect("holder()"),
        Some(std::process::id()),
        "the waiter must not have taken the lock from us"
    );
    guard.release().expect("release");
    let acquired = waiter.expect("acquired");
    let done = waiter.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    assert!(
        acquired.number::<u64>("handled") >= SIGNALS_WHILE_WAITING,
        "{acquired}"
    );
    eprintln!("[figures] signals, {mode}: {interrupted}; {acquired}{blocked}");
}

const SAMPLES: usize = 200;

/// In how many of `SAMPLES` reads of /proc/locks process `pid` is a blocked flock waiter
/// (`N: -> FLOCK ADVISORY WRITE <pid> ...`). Between two signals it should be, nearly always.
fn samples_blocked_in_flock(pid: u32) -> usize {
    (0..SAMPLES).filter(|_| blocked_in_flock(pid, None)).count()
}

/// Control: under the same signals a bare blocking flock(2) does fail with EINTR, so the two
/// tests above really exercise the retry.
#[test]
fn bare_flock_under_the_same_signals_fails_with_eintr() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lock = Lock::new("signals").dir(dir.path());
    let guard = lock.try_acquire().expect("the test takes the lock first");
    let mut waiter = child([
        "signals",
        &show(dir.path()),
        "signals",
        "raw",
        &u64::MAX.to_string(), // no `interrupted` line: only the `raw` one
    ])
    .spawn();
    waiter.expect_pid("waiting");
    let line = waiter.expect("raw");
    assert_eq!(line, "raw rc=-1 errno=EINTR");
    let done = waiter.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    guard.release().expect("release");
}

#[test]
fn blocking_acquire_survives_sigusr1_every_millisecond_without_sa_restart() {
    waiter_under_signals("block");
}

#[test]
fn acquire_timeout_survives_sigusr1_every_millisecond_without_sa_restart() {
    waiter_under_signals("timeout");
}

// ---------------------------------------------------------------------------------------------
// Interoperability with util-linux flock(1): the same kernel lock on the same file.

fn flock_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new("flock");
    cmd.args(args);
    cmd
}

/// The exit status of `flock <args> true` (a non-blocking probe).
fn flock_probe(args: &[&str], path: &Path) -> Option<i32> {
    let out =
        support::output(flock_cmd(args).arg(path).arg("true")).expect("run flock(1) (util-linux)");
    out.status.code()
}

#[test]
fn flock_1_holder_is_seen_as_held_and_we_are_seen_by_flock_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lock = Lock::new("interop").dir(dir.path());
    let path = lock.path().to_owned();
    lock.try_acquire()
        .expect("create the file")
        .release()
        .expect("release");
    let before = file_bytes(&path);

    // flock(1) holds it: we see Held, with flock's PID from the kernel's table.
    let mut cmd = flock_cmd(&[]);
    cmd.arg(&path).args(["-c", "echo locked; cat >/dev/null"]);
    let mut holder = Proc::start("flock <path> -c 'echo locked; cat >/dev/null'".into(), cmd);
    holder.expect("locked");
    assert_held_by(&lock, holder.id());
    match lock.clone().shared().try_acquire() {
        Err(Error::Held { .. }) => {}
        other => panic!("a shared request should be refused by flock's exclusive hold: {other:?}"),
    }
    assert_eq!(
        file_bytes(&path),
        before,
        "losing contenders must not touch the file"
    );
    let done = holder.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");

    // We hold it: flock(1) sees it.
    let guard = lock.try_acquire().expect("free after flock(1) exited");
    assert_eq!(
        flock_probe(&["-n"], &path),
        Some(1),
        "flock -n while we hold it"
    );
    assert_eq!(flock_probe(&["-s", "-n"], &path), Some(1), "flock -s -n");
    guard.release().expect("release");
    // Waiting (-w), not -n: other tests of this binary spawn children from other threads, and a
    // child between fork and exec briefly keeps our closed descriptor, and so the lock (see
    // `release_is_immediate_while_another_thread_is_spawning_a_child`).
    assert_eq!(
        flock_probe(&["-w", "30"], &path),
        Some(0),
        "flock after release"
    );

    // A shared hold admits flock -s but not flock -x.
    let shared = Lock::new("interop")
        .dir(dir.path())
        .shared()
        .try_acquire()
        .expect("shared");
    assert_eq!(flock_probe(&["-s", "-n"], &path), Some(0), "flock -s -n");
    assert_eq!(flock_probe(&["-x", "-n"], &path), Some(1), "flock -x -n");
    shared.release().expect("release");
}

// ---------------------------------------------------------------------------------------------
// Trap 2, from the waiter's side: "blocked waiters must start over", as often as it takes.

/// Files replaced under a blocked waiter, more than the runtime's bound of 1000 stale rounds.
const SWAPS: u64 = 1500;

/// A blocking `acquire()` whose file is replaced (unlinked while locked, as `cleanup` holders
/// and "some other party" do) again and again must keep waiting, then get the lock: it was
/// asked to wait, so `Held` ("we were not asked to wait") is never a correct answer.
///
/// Regression: before commit 1106a25 every acquisition, blocking ones included, gave up with
/// `Error::Held` after 1000 stale rounds; this test failed on that runtime.
#[test]
fn blocking_acquire_keeps_waiting_while_the_file_is_replaced_under_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = show(dir.path());
    let mut churner = child(["churn", &dir_arg, "churn"]).spawn();
    let churner_pid = churner.expect_pid("ready");
    let mut waiter = child(["hold", &dir_arg, "churn", "--block"]).spawn();
    churner.send(&format!("go {} {SWAPS}", waiter.id()));
    let line = churner.next_line();
    if line.word() == "gone" {
        let gave_up = waiter.finish();
        panic!("the blocking waiter gave up as its file was replaced ({line}): {gave_up:#?}");
    }
    assert_eq!(line.word(), "done", "{line}");
    let done = churner.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    waiter.expect_pid("locked"); // fails here on an `error kind=Held ...` line
    let done = waiter.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    eprintln!("[figures] churn: {line} (churner {churner_pid}), then the waiter got the lock");
}
