//! `lockmacro run NAME -- CMD`: take the lock, run CMD, pass signals on, watch for a lost lock,
//! exit with CMD's status.
//!
//! Threads: the main thread takes the lock, starts CMD and waits for it to end; a signal thread
//! takes the forwarded signals (blocked everywhere else) and passes them on to CMD, or ends
//! lockmacro if CMD has not started yet; a watcher thread waits for the lock to be lost, and
//! then stops CMD. CMD's PID is signalled only between its start and the moment its end is
//! seen (it is reaped only after that), so a signal never reaches a recycled PID.

use std::ffi::OsString;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::pin::pin;
use std::process::{Child, Command};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use lockmacro_runtime::{Error, LockGuard, OnLost, LOST_EXIT_CODE};

use crate::fail::{self, one_line, Fail};
use crate::sys::{self, Signals};
use crate::RunArgs;

/// CMD, as the signal and watcher threads may signal it.
enum Cmd {
    NotYet,
    Running(u32),
    Ended,
}

static CMD: Mutex<Cmd> = Mutex::new(Cmd::NotYet);

fn cmd() -> MutexGuard<'static, Cmd> {
    CMD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends `signal` to CMD if it is running.
fn signal_cmd(signal: libc::c_int) {
    if let Cmd::Running(pid) = *cmd() {
        sys::kill(pid, signal);
    }
}

pub(crate) fn run(args: RunArgs) -> Result<i32, Fail> {
    // First, before the runtime starts any thread: every thread inherits the mask.
    let signals = Signals::block_forwarded()
        .map_err(|e| Fail::new(fail::FAILED, format!("cannot block signals: {e}"), None))?;
    std::thread::Builder::new()
        .name("lockmacro-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || forward(signals))
        .map_err(|e| Fail::new(fail::FAILED, format!("cannot start a thread: {e}"), None))?;

    let lock = args
        .place
        .lock(args.name.as_deref())?
        .on_lost(OnLost::Report)
        .wait_notice(true);
    let lock = if args.shared { lock.shared() } else { lock };
    let acquired = match (args.wait, args.timeout) {
        (true, _) => lock.acquire(),
        (false, Some(timeout)) => lock.acquire_timeout(timeout),
        (false, None) => lock.try_acquire(),
    };
    let guard = match acquired {
        Ok(guard) => guard,
        Err(err) if err.is_contended() && args.skip => return Err(Fail::silent(0)),
        Err(err) if err.is_contended() => {
            return Err(Fail::new(i32::from(args.exit_code), one_line(&err), None))
        }
        Err(err) => return Err(Fail::lock(&err)),
    };
    let child = spawn(&args.command)?;
    let code = supervise(child, &guard, &args);
    let _ = guard.release();
    Ok(code)
}

/// The signal thread: passes each forwarded signal on to CMD; before CMD starts, a signal ends
/// lockmacro (the lock, if taken, goes with the process).
fn forward(signals: Signals) {
    loop {
        let got = signals.next();
        match *cmd() {
            Cmd::NotYet => std::process::exit(128 + got.signal),
            // A terminal's signal went to CMD too (same process group): once is enough.
            Cmd::Running(pid) if !got.by_kernel => sys::kill(pid, got.signal),
            Cmd::Running(_) | Cmd::Ended => {}
        }
    }
}

fn spawn(command: &[OsString]) -> Result<Child, Fail> {
    let (program, rest) = command.split_first().expect("clap requires CMD");
    let mut command = Command::new(program);
    command.args(rest);
    sys::unblock_in_child(&mut command);
    let mut state = cmd();
    match command.spawn() {
        Ok(child) => {
            *state = Cmd::Running(child.id());
            Ok(child)
        }
        Err(err) => {
            *state = Cmd::Ended;
            let (code, hint) = match err.kind() {
                std::io::ErrorKind::NotFound => (
                    fail::NOT_FOUND,
                    "is it on PATH? cron's PATH is short: give the full path",
                ),
                _ => (fail::CANNOT_EXECUTE, "is it an executable file (chmod +x)?"),
            };
            let what = format!("cannot run `{}`: {err}", program.to_string_lossy());
            Err(Fail::new(code, what, Some(hint)))
        }
    }
}

/// Waits for CMD to end while a watcher stops it if the lock is lost; lockmacro's exit status.
fn supervise(mut child: Child, guard: &LockGuard, args: &RunArgs) -> i32 {
    let pid = child.id();
    let ended = Ended::default();
    let (status, lost) = std::thread::scope(|scope| {
        let watcher = std::thread::Builder::new()
            .name("lockmacro-watch".into())
            .spawn_scoped(scope, || watch(guard, &ended, pid, args.kill_after));
        let _ = sys::wait_ended(pid);
        *cmd() = Cmd::Ended; // from now on nobody signals the PID, which may be reaped
        let status = child.wait();
        ended.set();
        let lost = match watcher {
            Ok(watcher) => watcher.join().unwrap_or(None),
            Err(_) => None,
        };
        (status, lost)
    });
    if lost.is_some() {
        return LOST_EXIT_CODE;
    }
    match status {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(err) => Fail::new(
            fail::FAILED,
            format!("cannot wait for pid {pid}: {err}"),
            None,
        )
        .report(),
    }
}

/// The watcher: waits until the lock is lost or CMD has ended. On a loss, says so and stops CMD:
/// SIGTERM, then SIGKILL if it has not ended after `kill_after`.
fn watch(guard: &LockGuard, ended: &Ended, pid: u32, kill_after: Duration) -> Option<Error> {
    let mut lost = pin!(guard.lost());
    let err = block_on(std::future::poll_fn(|cx| {
        if ended.wake_me(cx.waker()) {
            return Poll::Ready(None);
        }
        lost.as_mut().poll(cx).map(Some)
    }))?;
    fail::say(&format!(
        "{}; stopping the command (pid {pid}): SIGTERM now, SIGKILL after {kill_after:?}",
        one_line(&err),
    ));
    signal_cmd(libc::SIGTERM);
    if !ended.wait(kill_after) {
        signal_cmd(libc::SIGKILL);
    }
    Some(err)
}

/// Whether CMD has ended, for the watcher: a flag it can wait on, and a waker for its future.
#[derive(Default)]
struct Ended {
    ended: Mutex<bool>,
    changed: Condvar,
    waker: Mutex<Option<Waker>>,
}

impl Ended {
    fn set(&self) {
        *self.ended.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// True if ended; else `waker` is woken when it is.
    fn wake_me(&self, waker: &Waker) -> bool {
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
        *self.ended.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits at most `timeout` for the end; whether it came.
    fn wait(&self, timeout: Duration) -> bool {
        let ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        let (ended, _) = self
            .changed
            .wait_timeout_while(ended, timeout, |ended| !*ended)
            .unwrap_or_else(PoisonError::into_inner);
        *ended
    }
}

/// Runs a future to completion on this thread, parking between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
