//! Helpers shared by `test_async`, `test_shared` and `test_nested`: child processes that are
//! always killed and reaped, bounded waits instead of hangs, and small futures.
//!
//! Synchronisation is by pipes only: a child prints a line when it has reached a state (for
//! `lm-async hold`, `locked <pid>` once it holds the lock) and stays there until its stdin is
//! closed. Every wait is bounded by [`LIMIT`], a generous bound that only a hang reaches.
#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lockmacro_runtime::Lock;

/// How long anything may take before we call it a hang.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The `lm-async` helper binary, with `LOCKMACRO_DIR` set to `dir`.
pub fn lm_async(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lm-async"));
    cmd.env("LOCKMACRO_DIR", dir);
    cmd
}

/// Held while a child is being spawned, and by [`no_forks`].
static FORKS: Mutex<()> = Mutex::new(());

/// Keeps other tests of this process from spawning children until dropped.
///
/// Spawning forks this process, and the fork holds copies of *all* our descriptors until it
/// execs (close-on-exec only closes them then), lock files included: a lock this process has
/// just released can stay held for that instant, so `holder()` names us or a shared holder's
/// `cleanup` finds it is not the last. A test that checks the state right after an in-process
/// release holds this for the duration. (`Command::spawn` returns only once the child has
/// exec'd, so [`Proc::spawn`] holding the same mutex leaves no fork in flight.) Never call
/// [`Proc::spawn`] or [`hold`] while holding it: the mutex is not re-entrant.
pub fn no_forks() -> MutexGuard<'static, ()> {
    FORKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A child process with piped stdio. Dropping it kills and reaps the child, so a failed
/// assertion never leaves a lock holder behind.
pub struct Proc {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// The child's PID.
    pub pid: u32,
}

/// How a child ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Lines printed after the last one read with [`Proc::line`].
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Proc {
    pub fn spawn(what: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = {
            let _forking = no_forks();
            cmd.spawn()
        };
        let mut child = spawned.unwrap_or_else(|e| panic!("{what}: cannot spawn {cmd:?}: {e}"));
        let pid = child.id();
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let (out_tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if out_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(err).read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        Proc {
            what: what.to_owned(),
            child,
            stdin,
            stdout,
            stderr,
            pid,
        }
    }

    /// The next line on the child's stdout; fails if the child ends first or takes [`LIMIT`].
    pub fn line(&mut self) -> String {
        match self.stdout.recv_timeout(LIMIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => self.fail("no output within the limit"),
            Err(RecvTimeoutError::Disconnected) => self.fail("stdout closed"),
        }
    }

    /// The next line, which must start with `prefix`; returns the rest of it.
    pub fn expect(&mut self, prefix: &str) -> String {
        let line = self.line();
        match line.strip_prefix(prefix) {
            Some(rest) => rest.to_owned(),
            None => self.fail(&format!(
                "expected a line starting with {prefix:?}, got {line:?}"
            )),
        }
    }

    /// Waits for `locked <pid>` and checks the PID is the child's.
    pub fn locked(&mut self) {
        let pid = self.expect("locked ");
        assert_eq!(pid, self.pid.to_string(), "{}: wrong pid", self.what);
    }

    /// True if the child has printed nothing more so far (it is still waiting, or busy).
    pub fn quiet(&self) -> bool {
        matches!(self.stdout.try_recv(), Err(mpsc::TryRecvError::Empty))
    }

    pub fn send(&mut self, line: &str) {
        let what = self.what.clone();
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{what}: write to stdin: {e}"));
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// For a `hold` child: closes its stdin and waits until it says it has released the lock.
    pub fn release(&mut self) {
        self.close_stdin();
        self.expect("released");
    }

    /// Closes stdin and waits (at most [`LIMIT`]) for the child to exit.
    pub fn finish(mut self) -> Finished {
        self.close_stdin();
        let deadline = Instant::now() + LIMIT;
        let mut stdout = Vec::new();
        loop {
            match self
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => stdout.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => self.fail("did not exit within the limit"),
            }
        }
        let stderr = match self
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(text) => text,
            Err(_) => self.fail("stderr not closed within the limit"),
        };
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("{}: wait: {e}", self.what));
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    /// Kills the child and panics with `why` and whatever it wrote on stderr.
    fn fail(&mut self, why: &str) -> ! {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        panic!(
            "{} (pid {}): {why}; stderr: {stderr:?}",
            self.what, self.pid
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `lm-async hold <name> <flags>` child that holds the lock (it has printed `locked <pid>`).
pub fn hold(dir: &Path, name: &str, flags: &[&str]) -> Proc {
    let mut cmd = lm_async(dir);
    cmd.arg("hold").arg(name).args(flags);
    let mut child = Proc::spawn(&format!("holder of `{name}`"), cmd);
    child.locked();
    child
}

/// `lock.holder()`, asked again (up to 5 times in all) while it answers `None`.
///
/// `Lock::holder` sometimes answers `None` for a lock that is held, while other processes take
/// and release flock locks (it reads `/proc/locks` in several `read` calls, and the kernel's
/// list shifts in between): see `regression_holder_reports_nobody_for_a_held_lock_while_others_lock`
/// in `test_shared.rs`, which pins that bug. Elsewhere we want to test other things, so a `None`
/// is only believed when repeated. Missed lines can turn a holder into `None`, never invent one.
pub fn holder_of(lock: &Lock) -> Option<u32> {
    (0..5).find_map(|_| lock.holder().expect("Lock::holder"))
}

/// Runs `f` on its own thread and returns its result, or fails the test if it takes longer than
/// [`LIMIT`] (a hang). A panic in `f` is passed on.
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(LIMIT) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => resume_unwind(panic),
        Err(_) => panic!("{what}: no result within {LIMIT:?}: it hangs"),
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
