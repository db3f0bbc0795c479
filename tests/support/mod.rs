//! Shared by the workspace-level tests (each test file has `mod support;` and uses its own
//! subset): the one way to run the child program `lm-child` (`tests/bin/child`) and read its
//! line protocol ([`proc`]), the critical-section checker its stress runs answer to
//! ([`oracle`]), the kernel's view of a lock file without lockmacro ([`flock`]), a seedable
//! generator ([`rng`]), and small helpers for files, users and bounded waits.
//!
//! Children report events as lines on stdout; a test waits for the line, never for a while. A
//! deadline ([`PATIENCE`]) only turns a hang into a failure that shows the child's stderr.

#![allow(dead_code, unused_imports)] // Each test crate uses its own subset.

pub mod flock;
pub mod oracle;
pub mod proc;
pub mod rng;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::mpsc::{self, Sender};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lockmacro_runtime::Lock;

pub use self::flock::{blocked_in_flock, flock, locked_by_us, probe, Seen};
pub use self::oracle::Oracle;
pub use self::proc::{
    child, no_forks, output, run_isolated, spawn, Finished, Line, Proc, Reported, Spec, CHILD,
};
pub use self::rng::SplitMix;

/// How long any single expected event may take before the test calls it a hang. Generous on
/// purpose: only a hang should ever reach it, even on a loaded two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The unprivileged user the multi-user tests run their children as.
pub const NOBODY: u32 = 65534;

// --- lock files -------------------------------------------------------------------------------

/// The lock file that lock `name` uses in `dir`, as both the children and the test compute it.
pub fn lock_path(dir: &Path, name: &str) -> PathBuf {
    Lock::new(name).dir(dir).path().to_owned()
}

/// The lock file's first line (the holder's PID, possibly stale; the lock's name follows it).
pub fn file_content(path: &Path) -> String {
    String::from_utf8_lossy(&file_bytes(path))
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The file's exact bytes.
pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `path` as UTF-8 text, for a child's arguments.
pub fn show(path: &Path) -> String {
    path.to_str().expect("UTF-8 temporary path").to_owned()
}

/// `lock.holder()`, which must answer.
pub fn holder_of(lock: &Lock) -> Option<u32> {
    lock.holder().expect("Lock::holder")
}

/// Waits (at most [`PATIENCE`]) until `/proc/locks` lists process `pid` as blocked in flock on
/// the file at `path`. `gone` is asked between looks and says why to stop (the process exited).
/// This observes a state; the pause between looks only paces the polling and decides nothing.
pub fn wait_until_blocked(
    pid: u32,
    path: &Path,
    mut gone: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if blocked_in_flock(pid, Some(ino)) {
            return Ok(());
        }
        if let Some(why) = gone() {
            return Err(format!("{why} instead of blocking on the lock"));
        }
        if Instant::now() >= deadline {
            let table = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            return Err(format!(
                "pid {pid} never blocked on {} within {PATIENCE:?}; /proc/locks:\n{table}",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Empties the fixed directory `path` (the literal `dir` of annotated functions in one test),
/// so every run starts from nothing.
pub fn fresh_dir(path: &str) -> &Path {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("remove {path}: {e}"),
        _ => Path::new(path),
    }
}

// --- users and modes --------------------------------------------------------------------------

/// Fails clearly unless the tests can switch to `nobody` (they must run as root, as in CI).
pub fn require_setpriv() {
    let out = output(Command::new("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "id",
        "-u",
    ]))
    .unwrap_or_else(|e| panic!("run setpriv (util-linux): {e}"));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "65534",
        "these tests switch to user nobody with setpriv and must run as root (CI does): {out:?}"
    );
}

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

pub fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {uid} {}: {e}", path.display()));
}

/// A temporary directory that user `nobody` can enter and write (mode 0777).
pub fn tempdir_for_nobody() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    set_mode(dir.path(), 0o777);
    dir
}

/// A fresh directory shared on purpose by all users, like `/run/lock` or `/tmp`: mode 1777,
/// owned by root.
pub fn sticky_shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    set_mode(dir.path(), 0o1777);
    dir
}

/// Removes whatever is at a path (a directory tree, a symlink, a file) when dropped.
pub struct RemoveOnDrop(pub PathBuf);

impl RemoveOnDrop {
    pub fn clear(&self) {
        match std::fs::symlink_metadata(&self.0) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&self.0)
                .unwrap_or_else(|e| panic!("remove {}: {e}", self.0.display())),
            Ok(_) => std::fs::remove_file(&self.0)
                .unwrap_or_else(|e| panic!("remove {}: {e}", self.0.display())),
            Err(_) => {}
        }
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The default lock directory of user `nobody` (the real one: `lm-child default-dir` run as
/// nobody says where), emptied of whatever an interrupted run left there, and removed again
/// when the returned guard is dropped.
pub fn nobody_default_dir() -> RemoveOnDrop {
    let asked = child(["default-dir"]).under_nobody().run();
    assert_eq!(asked.code(), Some(0), "{asked:#?}");
    let default = PathBuf::from(asked.line("dir").field("path"));
    assert!(
        default.ends_with(format!("lockmacro-{NOBODY}")),
        "unexpected default directory for nobody: {}",
        default.display()
    );
    let guard = RemoveOnDrop(default);
    guard.clear(); // a leftover of an interrupted run
    guard
}

// --- processes we did not spawn ---------------------------------------------------------------

/// Sends SIGKILL to a process we did not spawn (a grandchild) when dropped.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0) {
            // SAFETY: kill(2) on a PID; at worst it no longer exists.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The command name of `pid` if it exists and is not a zombie.
pub fn running(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
    let state = rest.split_whitespace().next()?;
    (state != "Z" && state != "X").then(|| comm.to_owned())
}

// --- bounded waits and futures ----------------------------------------------------------------

/// Runs `f` on its own thread and returns its result, or fails the test if it takes longer than
/// [`PATIENCE`] (a hang). A panic in `f` is passed on.
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => resume_unwind(panic),
        Err(_) => panic!("{what}: no result within {PATIENCE:?}: it hangs"),
    }
}

/// Times a block and prints the duration (visible with `--nocapture`; kept in the report).
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    eprintln!("[timing] {what}: {:.2?}", start.elapsed());
    out
}

/// Wraps a future and reports, once, that it returned `Pending` (it is really waiting).
pub struct SignalPending<F> {
    inner: Pin<Box<F>>,
    tx: Option<Sender<()>>,
}

impl<F> SignalPending<F> {
    pub fn new(inner: F, tx: Sender<()>) -> Self {
        SignalPending {
            inner: Box::pin(inner),
            tx: Some(tx),
        }
    }
}

impl<F: Future> Future for SignalPending<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let out = this.inner.as_mut().poll(cx);
        if out.is_pending() {
            if let Some(tx) = this.tx.take() {
                let _ = tx.send(());
            }
        }
        out
    }
}

/// Returns `Pending` once (waking itself at once), then `Ready`: an executor-agnostic yield.
pub async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// A child that holds lock `name` in `dir` until its stdin is closed (waiting for the lock if
/// needed): `lm-child hold <dir> <name> --block <flags>`, once it has said `locked`.
pub fn hold(dir: &Path, name: &str, flags: &[&str]) -> Proc {
    let dir = show(dir);
    let args = ["hold", dir.as_str(), name, "--block"].into_iter();
    let mut holder = child(args.chain(flags.iter().copied())).spawn();
    holder.expect_pid("locked");
    holder
}
