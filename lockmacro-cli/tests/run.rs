//! `lockmacro run` as a user runs it: the real binary, against `#[exclusive]` programs and the
//! runtime, with real signals.
//!
//! - `refused_both_ways_against_an_exclusive_rust_program`: while an `#[exclusive]` Rust program
//!   holds NAME, `lockmacro run NAME` is refused (status 1, or `--exit-code`, or 0 silently
//!   with `--skip`) with the same line as the Rust program prints when refused by
//!   `lockmacro run`; same lock file for `--dir D` and `dir = "D"`.
//! - `refused_both_ways_against_the_runtime_in_this_process`: `Lock::new(NAME).dir(D)` and
//!   `lockmacro run NAME --dir D` exclude each other; the runtime sees lockmacro's PID.
//! - `flock_1_on_the_printed_path_is_the_same_lock`: `flock -n "$(lockmacro path NAME)"` and
//!   `lockmacro run NAME` exclude each other.
//! - `run_path_and_flock_1_on_the_same_file_exclude_each_other`: `lockmacro run --path FILE`
//!   and `flock -n FILE` refuse each other both ways; `who --path FILE` names the holder.
//! - `the_status_is_the_commands`: 0, 3, 128+signal; 127 and 126 when CMD cannot run.
//! - `signals_are_forwarded_to_the_command`: SIGINT, SIGTERM, SIGHUP, SIGQUIT sent to
//!   lockmacro reach CMD, which decides the status.
//! - `a_signal_before_the_command_starts_ends_lockmacro`: while waiting for the lock.
//! - `the_command_does_not_inherit_the_lock`: no descriptor of the lock file in CMD, and a
//!   background grandchild that outlives lockmacro does not keep the lock.
//! - `timeout_prints_the_waiting_notice_then_gives_up`, `wait_runs_once_the_holder_is_gone`.
//! - `a_lost_lock_stops_the_command_with_75`: the lock file replaced while held: SIGTERM, and
//!   SIGKILL after `--kill-after` for a CMD that ignores SIGTERM.
//! - `usage_errors_are_one_line_with_a_hint`, `help_shows_the_crontab_line`.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use common::{alive, eventually, finish, lockmacro, open_files, Running, Stream};
use lockmacro_runtime::{exclusive, Error, Lock};

/// The lock the `#[exclusive]` child below holds, in `locks/` under its current directory.
const INTEROP: &str = "cli-interop";

/// A single-instance Rust program in the shape of `#[exclusive] fn main`: the same attribute,
/// the same exit policy (one line on stderr, status 1). It prints `ready PID` once it holds the
/// lock and keeps it until its stdin is closed.
#[exclusive(name = "cli-interop", dir = "locks", on_conflict = "exit")]
fn exclusive_program() {
    println!("ready {}", std::process::id());
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Not a test: the child process the tests start (this test binary, run again), which runs
/// `exclusive_program` and exits.
#[test]
fn exclusive_child() {
    if std::env::var_os("LOCKMACRO_CLI_TEST_CHILD").is_some() {
        exclusive_program();
        std::process::exit(0);
    }
}

/// The `#[exclusive]` program, started in `cwd` (its lock is in `cwd/locks`).
fn rust_program(cwd: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "exclusive_child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("LOCKMACRO_CLI_TEST_CHILD", "1")
    .current_dir(cwd);
    cmd
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn dir_arg(dir: &Path) -> String {
    dir.to_str().expect("UTF-8 temp dir").to_owned()
}

/// The line after the program's name: `lock ... is already held by pid N (path)`.
fn without_program(line: &str) -> &str {
    line.split_once(": ").map_or(line, |(_, rest)| rest)
}

#[test]
fn refused_both_ways_against_an_exclusive_rust_program() {
    let cwd = tempdir();
    let locks = cwd.path().join("locks");
    let path = Lock::new(INTEROP).dir(&locks).path().to_owned();

    // The Rust program holds the name: lockmacro is refused.
    let mut rust = Running::start(&mut rust_program(cwd.path()));
    let ready = rust.expect(Stream::Out, "ready ");
    // (The test harness prints "test exclusive_child ... " before it, on the same line.)
    let rust_pid = ready.rsplit("ready ").next().expect("pid").trim();
    let locks_arg = dir_arg(&locks);
    let refused = finish(&mut lockmacro(&[
        "run", INTEROP, "--dir", &locks_arg, "--", "echo", "ran",
    ]));
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    assert_eq!(refused.stdout, "", "CMD must not run");
    let lockmacro_line = refused.stderr.clone();
    assert_eq!(
        lockmacro_line,
        format!(
            "lockmacro: lock `{INTEROP}` is already held by pid {rust_pid} ({})",
            path.display()
        )
    );
    let other_code = finish(&mut lockmacro(&[
        "run",
        INTEROP,
        "--dir",
        &locks_arg,
        "--exit-code",
        "9",
        "--",
        "true",
    ]));
    assert_eq!(other_code.code(), Some(9), "{other_code:?}");
    let skipped = finish(&mut lockmacro(&[
        "run", INTEROP, "--dir", &locks_arg, "--skip", "--", "echo", "ran",
    ]));
    assert_eq!(skipped.code(), Some(0), "{skipped:?}");
    assert_eq!((skipped.stdout.as_str(), skipped.stderr.as_str()), ("", ""));
    assert!(rust.finish().status.success());

    // lockmacro holds the name: the Rust program is refused, with the same line.
    let mut held = Running::start(&mut lockmacro(&[
        "run",
        INTEROP,
        "--dir",
        &locks_arg,
        "--",
        "sh",
        "-c",
        "echo holding; exec cat",
    ]));
    held.expect(Stream::Out, "holding");
    let rust = finish(&mut rust_program(cwd.path()));
    assert_eq!(rust.code(), Some(1), "{rust:?}");
    let rust_line = rust
        .stderr
        .lines()
        .find(|l| l.contains("already held"))
        .unwrap_or_else(|| panic!("no refusal line: {rust:?}"));
    let expected = format!(
        "lock `{INTEROP}` is already held by pid {} ({})",
        held.pid(),
        path.display()
    );
    assert_eq!(without_program(rust_line), expected);
    assert_eq!(
        without_program(&lockmacro_line).split(" by pid").next(),
        expected.split(" by pid").next()
    );
    assert!(held.finish().status.success());
}

#[test]
fn refused_both_ways_against_the_runtime_in_this_process() {
    let dir = tempdir();
    let lock = Lock::new("cli-runtime").dir(dir.path());
    let d = dir_arg(dir.path());

    let guard = lock.try_acquire().expect("free");
    let refused = finish(&mut lockmacro(&[
        "run",
        "cli-runtime",
        "--dir",
        &d,
        "--",
        "true",
    ]));
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    assert_eq!(
        refused.stderr,
        format!(
            "lockmacro: lock `cli-runtime` is already held by pid {} ({})",
            std::process::id(),
            lock.path().display()
        )
    );
    drop(guard);

    let mut held = Running::start(&mut lockmacro(&[
        "run",
        "cli-runtime",
        "--dir",
        &d,
        "--",
        "sh",
        "-c",
        "echo holding; exec cat",
    ]));
    held.expect(Stream::Out, "holding");
    match lock.try_acquire() {
        Err(Error::Held { pid, .. }) => assert_eq!(pid, Some(held.pid())),
        other => panic!("expected Held, got {other:?}"),
    }
    assert_eq!(lock.holder().expect("holder"), Some(held.pid()));
    assert!(held.finish().status.success());
    assert_eq!(lock.holder().expect("holder"), None);
    drop(lock.try_acquire().expect("free once lockmacro is gone"));
}

#[test]
fn flock_1_on_the_printed_path_is_the_same_lock() {
    let dir = tempdir();
    let d = dir_arg(dir.path());
    let path = finish(&mut lockmacro(&["path", "cli-flock", "--dir", &d])).stdout;
    let mut held = Running::start(&mut lockmacro(&[
        "run",
        "cli-flock",
        "--dir",
        &d,
        "--",
        "sh",
        "-c",
        "echo holding; exec cat",
    ]));
    held.expect(Stream::Out, "holding");
    let flock = Command::new("flock")
        .args(["-n", &path, "true"])
        .status()
        .expect("run flock(1) (util-linux)");
    assert_eq!(flock.code(), Some(1), "flock(1) -n while lockmacro holds");
    assert!(held.finish().status.success());

    let mut flock =
        Running::start(Command::new("flock").args([&path, "sh", "-c", "echo holding; exec cat"]));
    flock.expect(Stream::Out, "holding");
    let refused = finish(&mut lockmacro(&[
        "run",
        "cli-flock",
        "--dir",
        &d,
        "--",
        "true",
    ]));
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("is already held by pid"),
        "{refused:?}"
    );
    assert!(flock.finish().status.success());
}

#[test]
fn run_path_and_flock_1_on_the_same_file_exclude_each_other() {
    let dir = tempdir();
    let file = dir.path().join("mailsync.lock");
    let f = dir_arg(&file);
    let mut held = Running::start(&mut lockmacro(&[
        "run",
        "--path",
        &f,
        "--",
        "sh",
        "-c",
        "echo holding; exec cat",
    ]));
    held.expect(Stream::Out, "holding");
    let flock = Command::new("flock")
        .args(["-n", &f, "true"])
        .status()
        .expect("run flock(1) (util-linux)");
    assert_eq!(
        flock.code(),
        Some(1),
        "flock(1) -n while lockmacro --path holds"
    );
    let who = finish(&mut lockmacro(&["who", "--path", &f]));
    assert_eq!(who.code(), Some(0), "{who:?}");
    assert!(
        who.stdout.contains(&format!("held by pid {}", held.pid())),
        "{who:?}"
    );
    assert!(held.finish().status.success());
    assert!(file.exists(), "the file stays, as flock(1) leaves it");

    let mut flock =
        Running::start(Command::new("flock").args([&f, "sh", "-c", "echo holding; exec cat"]));
    flock.expect(Stream::Out, "holding");
    let refused = finish(&mut lockmacro(&["run", "--path", &f, "--", "true"]));
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("is already held by pid"),
        "{refused:?}"
    );
    assert!(flock.finish().status.success());
    let ran = finish(&mut lockmacro(&["run", "--path", &f, "--", "true"]));
    assert_eq!(ran.code(), Some(0), "{ran:?}");
}

#[test]
fn the_status_is_the_commands() {
    let dir = tempdir();
    let d = dir_arg(dir.path());
    let run = |script: &str| {
        finish(&mut lockmacro(&[
            "run",
            "cli-status",
            "--dir",
            &d,
            "--",
            "sh",
            "-c",
            script,
        ]))
    };
    assert_eq!(run("exit 0").code(), Some(0));
    assert_eq!(run("exit 3").code(), Some(3));
    assert_eq!(run("kill -USR1 $$").code(), Some(128 + libc::SIGUSR1));
    assert_eq!(run("kill -KILL $$").code(), Some(128 + libc::SIGKILL));

    let missing = finish(&mut lockmacro(&[
        "run",
        "cli-status",
        "--dir",
        &d,
        "--",
        "/nonexistent/x",
    ]));
    assert_eq!(missing.code(), Some(127), "{missing:?}");
    assert!(
        missing
            .stderr
            .starts_with("lockmacro: cannot run `/nonexistent/x`"),
        "{missing:?}"
    );
    assert!(missing.stderr.contains("(hint: "), "{missing:?}");
    let not_executable = dir.path().join("script");
    std::fs::write(&not_executable, "#!/bin/sh\n").expect("write");
    let not_executable = dir_arg(&not_executable);
    let denied = finish(&mut lockmacro(&[
        "run",
        "cli-status",
        "--dir",
        &d,
        "--",
        &not_executable,
    ]));
    assert_eq!(denied.code(), Some(126), "{denied:?}");
}

#[test]
fn signals_are_forwarded_to_the_command() {
    let dir = tempdir();
    let d = dir_arg(dir.path());
    // The shell waits on a background sleep, so that a trapped signal is handled at once. The
    // sleep is ended with SIGKILL: a SIGTERM can reach its process between fork and exec, while
    // it still has the shell's trap handler, and be lost, leaving the output open.
    let script =
        "for s in INT TERM HUP QUIT; do trap \"echo got $s; kill -KILL \\$!; exit 7\" $s; done; \
                  sleep 1000 & echo ready; wait";
    for (signal, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGQUIT, "QUIT"),
    ] {
        let mut running = Running::start(&mut lockmacro(&[
            "run",
            "cli-signals",
            "--dir",
            &d,
            "--",
            "sh",
            "-c",
            script,
        ]));
        running.expect(Stream::Out, "ready");
        running.signal(signal);
        running.expect(Stream::Out, &format!("got {name}"));
        let done = running.finish();
        assert_eq!(done.code(), Some(7), "SIG{name}: {done:?}");
    }

    // A command that does not handle SIGTERM dies of it: 128 + 15.
    let mut running = Running::start(&mut lockmacro(&[
        "run",
        "cli-signals",
        "--dir",
        &d,
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 1000",
    ]));
    running.expect(Stream::Out, "ready");
    running.signal(libc::SIGTERM);
    assert_eq!(running.finish().code(), Some(128 + libc::SIGTERM));
}

#[test]
fn a_signal_before_the_command_starts_ends_lockmacro() {
    let dir = tempdir();
    let d = dir_arg(dir.path());
    let guard = Lock::new("cli-early")
        .dir(dir.path())
        .try_acquire()
        .expect("free");
    let mut waiting = Running::start(&mut lockmacro(&[
        "run",
        "cli-early",
        "--dir",
        &d,
        "--wait",
        "--",
        "echo",
        "ran",
    ]));
    waiting.expect(Stream::Err, "waiting for lock `cli-early`");
    waiting.signal(libc::SIGTERM);
    let done = waiting.finish();
    assert_eq!(done.code(), Some(128 + libc::SIGTERM), "{done:?}");
    assert_eq!(done.stdout, "", "CMD must not have run");
    drop(guard);
}

#[test]
fn the_command_does_not_inherit_the_lock() {
    let dir = tempdir();
    let d = dir_arg(dir.path());
    let lock = Lock::new("cli-inherit").dir(dir.path());
    // CMD starts a grandchild in the background (its output elsewhere, so that ours ends),
    // prints its PID and its own PID, and waits for a line on stdin.
    let mut running = Running::start(&mut lockmacro(&[
        "run",
        "cli-inherit",
        "--dir",
        &d,
        "--",
        "sh",
        "-c",
        "sleep 1000 </dev/null >/dev/null 2>&1 & echo grandchild $!; echo cmd $$; read line",
    ]));
    let grandchild: u32 = running.expect(Stream::Out, "grandchild ")["grandchild ".len()..]
        .parse()
        .expect("grandchild pid");
    let cmd: u32 = running.expect(Stream::Out, "cmd ")["cmd ".len()..]
        .parse()
        .expect("cmd pid");
    assert_eq!(lock.holder().expect("holder"), Some(running.pid()));
    for pid in [running.pid(), cmd, grandchild] {
        let has = open_files(pid).iter().any(|f| f == lock.path());
        assert_eq!(
            has,
            pid == running.pid(),
            "pid {pid} and the lock file descriptor"
        );
    }
    running.write("go\n");
    assert!(running.finish().status.success());

    assert!(alive(grandchild), "the grandchild still runs");
    assert_eq!(lock.holder().expect("holder"), None);
    let guard = lock.try_acquire().expect("free while the grandchild runs");
    drop(guard);
    // SAFETY: a plain system call.
    unsafe { libc::kill(grandchild as libc::pid_t, libc::SIGKILL) };
}

#[test]
fn timeout_prints_the_waiting_notice_then_gives_up() {
    let dir = tempdir();
    let d = dir_arg(dir.path());
    let lock = Lock::new("cli-timeout").dir(dir.path());
    let guard = lock.try_acquire().expect("free");
    let done = finish(&mut lockmacro(&[
        "run",
        "cli-timeout",
        "--dir",
        &d,
        "--timeout",
        "2500ms",
        "--",
        "echo",
        "ran",
    ]));
    let path = lock.path().display();
    let me = std::process::id();
    assert_eq!(done.code(), Some(1), "{done:?}");
    assert_eq!(done.stdout, "");
    assert_eq!(
        done.stderr,
        format!(
            "lockmacro: waiting for lock `cli-timeout` (held by pid {me}, path {path})\n\
             lockmacro: timed out after 2.5s waiting for lock `cli-timeout`, held by pid {me} ({path})"
        )
    );
    drop(guard);
}

#[test]
fn wait_runs_once_the_holder_is_gone() {
    let dir = tempdir();
    let d = dir_arg(dir.path());
    let guard = Lock::new("cli-wait")
        .dir(dir.path())
        .try_acquire()
        .expect("free");
    let mut waiting = Running::start(&mut lockmacro(&[
        "run", "cli-wait", "--dir", &d, "--wait", "--", "echo", "ran",
    ]));
    waiting.expect(Stream::Err, "waiting for lock `cli-wait`");
    assert!(waiting.stdout.is_empty());
    drop(guard);
    waiting.expect(Stream::Out, "ran");
    assert_eq!(waiting.finish().code(), Some(0));
}

#[test]
fn a_lost_lock_stops_the_command_with_75() {
    let dir = tempdir();
    let d = dir_arg(dir.path());
    let lock = Lock::new("cli-lost").dir(dir.path());
    let replace = || {
        // Another file renamed over the held one: the lock is lost (never re-established).
        let other = dir.path().join("other");
        std::fs::write(&other, "").expect("write");
        std::fs::rename(&other, lock.path()).expect("rename over the lock file");
    };

    let mut running = Running::start(&mut lockmacro(&[
        "run",
        "cli-lost",
        "--dir",
        &d,
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 1000",
    ]));
    running.expect(Stream::Out, "ready");
    replace();
    let done = running.finish();
    assert_eq!(done.code(), Some(75), "{done:?}");
    assert!(
        done.stderr
            .starts_with("lockmacro: lost lock `cli-lost` while holding it")
            && done.stderr.contains("stopping the command"),
        "{done:?}"
    );

    // A command that ignores SIGTERM is killed after --kill-after.
    let mut running = Running::start(&mut lockmacro(&[
        "run",
        "cli-lost",
        "--dir",
        &d,
        "--kill-after",
        "200ms",
        "--",
        "sh",
        "-c",
        "trap '' TERM; echo ready; exec sleep 1000",
    ]));
    running.expect(Stream::Out, "ready");
    let cmd_pid = running.pid();
    replace();
    let done = running.finish();
    assert_eq!(done.code(), Some(75), "{done:?}");
    assert!(done.stderr.contains("SIGKILL after 200ms"), "{done:?}");
    eventually("lockmacro gone", || !alive(cmd_pid));
}

#[test]
fn usage_errors_are_one_line_with_a_hint() {
    for args in [
        &["run", "job", "sh"][..],
        &["run", "job", "--timeout", "soon", "--", "true"],
        &["run", "job", "--wait", "--timeout", "1s", "--", "true"],
        &["run", "--", "true"],
        &["frobnicate"],
    ] {
        let done = finish(&mut lockmacro(args));
        assert_eq!(done.code(), Some(2), "{args:?}: {done:?}");
        assert_eq!(done.stderr.lines().count(), 1, "{args:?}: {done:?}");
        assert!(
            done.stderr.starts_with("lockmacro: ") && done.stderr.contains("(hint: "),
            "{args:?}: {done:?}"
        );
    }
    let done = finish(&mut lockmacro(&["run", "job", "sh"]));
    assert!(done.stderr.contains("after `--`"), "{done:?}");

    // A lock that cannot be used at all: its own status (71), one line, a hint.
    let dir = tempdir();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "").expect("write");
    let file = dir_arg(&file);
    let done = finish(&mut lockmacro(&[
        "run", "job", "--dir", &file, "--", "true",
    ]));
    assert_eq!(done.code(), Some(71), "{done:?}");
    assert_eq!(done.stderr.lines().count(), 1, "{done:?}");
    assert!(done.stderr.contains("(hint: "), "{done:?}");
}

#[test]
fn help_shows_the_crontab_line() {
    for args in [&["--help"][..], &["run", "--help"]] {
        let done = finish(&mut lockmacro(args));
        assert_eq!(done.code(), Some(0));
        assert!(
            done.stdout
                .contains("*/5 * * * * lockmacro run mailsync -- mailsync.sh")
                && done
                    .stdout
                    .contains("flock -n /tmp/mailsync.lock mailsync.sh"),
            "{}",
            done.stdout
        );
    }
}
