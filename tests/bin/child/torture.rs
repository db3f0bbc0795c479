//! The worker of the randomized multi-process torture test (`tests/test_torture.rs`).
//!
//! - `torture-worker <base> <seed> <end unix ms> <id>`: two threads loop on random operations
//!   until the end time, on lock `A` (through `<base>/current/locks` or `<base>/v1/locks`,
//!   default or `cleanup` mode, shared or exclusive, try / blocking / timed / async / timed
//!   async) and on lock `B` (`<base>/b/locks`, default mode only, also taken by a foreign
//!   `flock(1)` running `torture-oracle`). The main thread forks without exec while holding
//!   `A`. After a random lifetime the worker leaves holding `A` (prints `bye` and exits, or
//!   prints `killme` and waits for the test's SIGKILL). At the end time it prints `done` and
//!   exits 0.
//! - `torture-oracle <oracle dir> <ex|sh> <hold µs> <tag> <how>`: the critical section of a
//!   foreign locker (run by `flock(1)` while it holds the file).
//!
//! Lines (forked children and `flock(1)`'s children share the worker's pipe; each line is one
//! write):
//!
//! - `w t=<thread> lock=<L>`: thread `t` starts a wait that may block on lock `L` (`A1`, `A2`,
//!   `A?`, `B`);
//! - `x t=<thread>`: that wait ended without the lock;
//! - `a t=<thread> lock=<L> how=<how> mode=<mode> [cur=1]`: an acquisition (after the oracle
//!   admitted it; `A?`: through `current` while it was being switched, so unchecked; `cur=1`:
//!   through `current`; thread `f`: a forked child);
//! - `spur t=<thread> msg=<error>`: a shared `try_acquire` refused naming our own PID while no
//!   thread of ours held or wanted anything exclusively;
//! - `fork kind=<kind>`; `bye`; `killme`; `done`;
//! - failures: `OVERLAP msg=...`, `HANG msg=...`, `ERR msg=...`.
//!
//! The oracle is `tests/support/oracle.rs`, one per lock and real directory (`A1` is
//! `v1/locks/A`, `A2` is `v2/locks/A`) in `<base>/oracle/<L>`: every overlap is seen at the
//! start of whichever critical section starts second.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lockmacro_runtime::{Error, Lock, LockGuard};

use crate::oracle::Oracle;
use crate::protocol::say;
use crate::rng::SplitMix as Rng;
use crate::{block_on, Args, Outcome};

/// How long a lingering forked child lives at most (it is told to go earlier, at its parent's
/// next rounds, unless the parent has gone). Longer than the test's stranding bound.
const LINGER: Duration = Duration::from_secs(25);
/// How long past its own bound a forked child may take before it counts as hung.
const HANG_SLACK: Duration = Duration::from_secs(10);

pub fn worker(args: &Args) -> Outcome {
    let [base, seed, end, id] = args.positional("<base> <seed> <end unix ms> <id>")?;
    args.only(&[])?;
    let seed = seed.parse().map_err(|e| format!("seed: {e}"))?;
    let end = end.parse().map_err(|e| format!("end: {e}"))?;
    Ok(run_worker(Path::new(base), seed, end, id))
}

pub fn foreign_oracle(args: &Args) -> Outcome {
    let [dir, mode, hold, tag, how] =
        args.positional("<oracle dir> <ex|sh> <hold us> <tag> <how>")?;
    args.only(&[])?;
    let hold = hold.parse().map_err(|e| format!("hold: {e}"))?;
    Ok(run_foreign_oracle(
        Path::new(dir),
        mode == "sh",
        hold,
        tag,
        how,
    ))
}

// ---------------------------------------------------------------------------------------------
// Critical sections (the oracle is `tests/support/oracle.rs`).

/// The time inside a critical section: spinning or sleeping, a few hundred µs to a few ms.
fn hold(rng: &mut Rng) {
    let us = rng.between(200, 2500);
    if rng.chance(50) {
        let until = Instant::now() + Duration::from_micros(us);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    } else {
        thread::sleep(Duration::from_micros(us));
    }
}

fn run_foreign_oracle(dir: &Path, shared: bool, hold_us: u64, tag: &str, how: &str) -> ExitCode {
    let who = format!("flock-{}", std::process::id());
    match Oracle::at(dir).enter(shared, &who) {
        Ok(mark) => {
            let mode = if shared { "sh" } else { "ex" };
            say(&format!("a t={tag} lock=B how={how} mode={mode}"));
            thread::sleep(Duration::from_micros(hold_us));
            if let Err(e) = mark.leave(&who) {
                say(&format!("OVERLAP msg=B {e}"));
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("OVERLAP msg=B {e}"));
            ExitCode::from(3)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The worker.

struct Ctx {
    base: PathBuf,
    exe: PathBuf,
    end: Instant,
    /// Exclusive acquisitions of this process under way or held (any lock).
    exclusive: AtomicUsize,
    /// Whether this worker uses `cleanup` at all (half of the workers do).
    cleanup: bool,
    /// Each operation holds it shared; leaving holding the lock takes it exclusively, so that
    /// the other thread is outside its critical section then.
    gate: RwLock<()>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum How {
    Try,
    Block,
    Timed,
    Async,
    AsyncTimed,
}

impl How {
    fn word(self) -> &'static str {
        match self {
            How::Try => "try",
            How::Block => "block",
            How::Timed => "timed",
            How::Async => "async",
            How::AsyncTimed => "async-timed",
        }
    }

    fn pick(rng: &mut Rng) -> How {
        match rng.below(100) {
            0..=24 => How::Try,
            25..=49 => How::Block,
            50..=69 => How::Timed,
            70..=84 => How::Async,
            _ => How::AsyncTimed,
        }
    }
}

/// The locks one thread keeps for its whole life (so their descriptors stay cached between
/// acquisitions and survive forks); fresh ones are made now and then too.
struct Kept {
    /// `[current spelling?][cleanup?][shared?]`
    a: [[[Lock; 2]; 2]; 2],
    /// `[shared?]`
    b: [Lock; 2],
}

fn a_dir(base: &Path, current: bool) -> PathBuf {
    base.join(if current { "current" } else { "v1" })
        .join("locks")
}

fn make_a(base: &Path, current: bool, cleanup: bool, shared: bool) -> Lock {
    let mut lock = Lock::new("A").dir(a_dir(base, current));
    if cleanup {
        lock = lock.cleanup();
    }
    if shared {
        lock = lock.shared();
    }
    if current {
        // The switcher moves `current` under holders: a hold through that spelling then no
        // longer names its file, which the runtime reports as lost when it notices (the switch
        // itself is not watched: it happens above the lock directory). That is the truth, not
        // an overlap; the oracle judges these rounds by the generation instead.
        lock = lock.on_lost(lockmacro_runtime::OnLost::Report);
    }
    lock
}

fn make_b(base: &Path, shared: bool) -> Lock {
    let lock = Lock::new("B").dir(base.join("b").join("locks"));
    if shared {
        lock.shared()
    } else {
        lock
    }
}

impl Kept {
    fn new(base: &Path) -> Kept {
        let a = |c: bool| {
            [
                [make_a(base, c, false, false), make_a(base, c, false, true)],
                [make_a(base, c, true, false), make_a(base, c, true, true)],
            ]
        };
        Kept {
            a: [a(false), a(true)],
            b: [make_b(base, false), make_b(base, true)],
        }
    }
}

/// The generation the switcher publishes: odd while `current` is being switched (and for a
/// while after), even when stable; `current` points at `v1` for 0, 4, 8... and `v2` for 2, 6...
fn generation(base: &Path) -> u64 {
    fs::read_to_string(base.join("gen"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1)
}

fn label_of(gen: u64) -> &'static str {
    match gen % 4 {
        0 => "A1",
        2 => "A2",
        _ => "A?",
    }
}

fn mode_word(shared: bool, cleanup: bool) -> &'static str {
    match (shared, cleanup) {
        (false, false) => "ex",
        (true, false) => "sh",
        (false, true) => "ex-c",
        (true, true) => "sh-c",
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn run_worker(base: &Path, seed: u64, end_ms: u64, id: &str) -> ExitCode {
    let left = end_ms.saturating_sub(now_unix_ms());
    let ctx = Arc::new(Ctx {
        base: base.to_owned(),
        exe: std::env::current_exe().expect("current exe"),
        end: Instant::now() + Duration::from_millis(left),
        exclusive: AtomicUsize::new(0),
        cleanup: seed.is_multiple_of(2),
        gate: RwLock::new(()),
    });
    let mut rng = Rng(seed);
    let other = {
        let ctx = Arc::clone(&ctx);
        let rng = Rng(rng.next_u64());
        thread::spawn(move || {
            let mut t = Thread1::new(&ctx, rng, "1");
            while Instant::now() < ctx.end {
                t.round();
            }
        })
    };
    // A lifetime after which this worker leaves holding lock A (then the test starts another).
    let lifetime = Duration::from_millis(rng.between(2000, 9000));
    let born = Instant::now();
    let mut t = Thread1::new(&ctx, rng, "0");
    let _ = id;
    while Instant::now() < ctx.end {
        if born.elapsed() >= lifetime
            && ctx.end.saturating_duration_since(Instant::now()).as_secs() >= 2
        {
            t.leave_holding();
        }
        t.round();
        t.forks.reap();
    }
    other.join().expect("second thread");
    t.forks.finish();
    say("done");
    ExitCode::SUCCESS
}

/// Children forked while holding, followed until they exit.
#[derive(Default)]
struct Forks {
    /// (pid, deadline, kind)
    running: Vec<(libc::pid_t, Instant, &'static str)>,
    /// Write ends of the pipes lingering children wait on, oldest first.
    lingering: VecDeque<(libc::c_int, libc::pid_t)>,
}

impl Forks {
    /// Reaps finished children; a child past its deadline hangs in the runtime.
    fn reap(&mut self) {
        let now = Instant::now();
        let mut hung = None;
        self.running.retain(|&(pid, deadline, kind)| {
            let mut status = 0;
            // SAFETY: waitpid on our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid || r < 0 {
                return false;
            }
            if now > deadline {
                hung = Some((pid, kind));
            }
            true
        });
        if let Some((pid, kind)) = hung {
            say(&format!(
                "HANG msg=forked child {pid} ({kind}) still running past its bound (+{HANG_SLACK:?})"
            ));
            std::process::exit(3);
        }
    }

    /// Lets the oldest lingering children go, keeping at most `keep`.
    fn release_lingering(&mut self, keep: usize) {
        while self.lingering.len() > keep {
            let Some((fd, _)) = self.lingering.pop_front() else {
                break;
            };
            // SAFETY: our own pipe's write end; one byte, then close.
            unsafe {
                libc::write(fd, b"g".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
    }

    fn finish(&mut self) {
        self.release_lingering(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.running.is_empty() && Instant::now() < deadline {
            self.reap();
            thread::sleep(Duration::from_millis(5)); // paces the polling only
        }
        self.reap();
    }
}

struct Thread1<'a> {
    ctx: &'a Ctx,
    rng: Rng,
    tag: &'static str,
    kept: Kept,
    forks: Forks,
    /// Only the main thread forks and leaves holding.
    main: bool,
}

/// What an acquisition attempt gave.
enum Got {
    Guard(LockGuard),
    Refused,
}

impl<'a> Thread1<'a> {
    /// Thread `tag` of a worker: "0", the main thread (which forks and leaves holding), or "1".
    fn new(ctx: &'a Ctx, rng: Rng, tag: &'static str) -> Thread1<'a> {
        Thread1 {
            ctx,
            rng,
            tag,
            kept: Kept::new(&ctx.base),
            forks: Forks::default(),
            main: tag == "0",
        }
    }

    fn who(&self) -> String {
        format!("{}.{}", std::process::id(), self.tag)
    }

    fn round(&mut self) {
        let gate = self.ctx.gate.read().unwrap_or_else(|e| e.into_inner());
        if self.rng.chance(12) {
            if self.rng.chance(30) {
                self.foreign();
            } else {
                self.op_b();
            }
        } else {
            self.op_a();
        }
        drop(gate);
        // A short random pause between rounds (pacing, not synchronisation).
        if self.rng.chance(30) {
            thread::sleep(Duration::from_micros(self.rng.between(50, 1500)));
        }
    }

    /// Acquires `lock` the way `how` says, reporting the wait; `label` names the lock waited on.
    fn acquire(&mut self, lock: &Lock, how: How, label: &str, shared: bool) -> Got {
        if how != How::Try {
            say(&format!("w t={} lock={label}", self.tag));
        }
        let timeout = Duration::from_millis(self.rng.between(1, 300));
        let result = match how {
            How::Try => lock.try_acquire(),
            How::Block => lock.acquire(),
            How::Timed => lock.acquire_timeout(timeout),
            How::Async => block_on(lock.acquire_async()),
            How::AsyncTimed => block_on(lock.acquire_timeout_async(timeout)),
        };
        match result {
            Ok(guard) => Got::Guard(guard),
            Err(e) => {
                if how != How::Try {
                    say(&format!("x t={}", self.tag));
                }
                self.refused(&e, how, shared);
                Got::Refused
            }
        }
    }

    fn refused(&self, e: &Error, how: How, shared: bool) {
        match e {
            Error::Held { pid, .. } => {
                let me = std::process::id();
                if how == How::Try
                    && shared
                    && *pid == Some(me)
                    && self.ctx.exclusive.load(Ordering::SeqCst) == 0
                {
                    say(&format!("spur t={} msg={e}", self.tag));
                }
            }
            Error::Timeout { .. } => {}
            other => {
                say(&format!("ERR msg={} {other:?}", self.tag));
                std::process::exit(4);
            }
        }
    }

    fn op_a(&mut self) {
        let current = self.rng.chance(50);
        let cleanup = self.ctx.cleanup && self.rng.chance(40);
        let shared = self.rng.chance(30);
        let fresh = self.rng.chance(15);
        let how = How::pick(&mut self.rng);
        let lock = if fresh {
            make_a(&self.ctx.base, current, cleanup, shared)
        } else {
            self.kept.a[usize::from(current)][usize::from(cleanup)][usize::from(shared)].clone()
        };
        let gen0 = if current {
            generation(&self.ctx.base)
        } else {
            0
        };
        if !shared {
            self.ctx.exclusive.fetch_add(1, Ordering::SeqCst);
        }
        let got = self.acquire(&lock, how, label_of(gen0), shared);
        if let Got::Guard(guard) = got {
            let label = if current {
                let gen1 = generation(&self.ctx.base);
                if gen1 == gen0 {
                    label_of(gen0)
                } else {
                    "A?"
                }
            } else {
                "A1"
            };
            self.critical(guard, label, how.word(), shared, cleanup, current);
        }
        if !shared {
            self.ctx.exclusive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn op_b(&mut self) {
        let shared = self.rng.chance(30);
        let how = How::pick(&mut self.rng);
        let lock = if self.rng.chance(15) {
            make_b(&self.ctx.base, shared)
        } else {
            self.kept.b[usize::from(shared)].clone()
        };
        if !shared {
            self.ctx.exclusive.fetch_add(1, Ordering::SeqCst);
        }
        if let Got::Guard(guard) = self.acquire(&lock, how, "B", shared) {
            self.critical(guard, "B", how.word(), shared, false, false);
        }
        if !shared {
            self.ctx.exclusive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The critical section: enter the oracle, report, hold (maybe forking), leave, release.
    fn critical(
        &mut self,
        guard: LockGuard,
        label: &str,
        how: &str,
        shared: bool,
        cleanup: bool,
        current: bool,
    ) {
        let mode = mode_word(shared, cleanup);
        let who = self.who();
        let mark = if label == "A?" {
            None // which real file we hold is not known: unchecked
        } else {
            Some(
                Oracle::at(&self.ctx.base.join("oracle").join(label))
                    .enter(shared, &who)
                    .unwrap_or_else(|e| {
                        say(&format!("OVERLAP msg={label} {how} {mode}: {e}"));
                        std::process::exit(3)
                    }),
            )
        };
        let spelling = if current { " cur=1" } else { "" };
        say(&format!(
            "a t={} lock={label} how={how} mode={mode}{spelling}",
            self.tag
        ));
        hold(&mut self.rng);
        if label.starts_with('A') && self.main && self.rng.chance(12) {
            self.fork_holding(&guard, shared);
            hold(&mut self.rng);
        }
        if let Some(mark) = mark {
            if let Err(e) = mark.leave(&who) {
                say(&format!("OVERLAP msg={label} {how} {mode}: {e}"));
                std::process::exit(3);
            }
        }
        if self.rng.chance(50) {
            if let Err(e) = guard.release() {
                say(&format!("ERR msg={} release: {e:?}", self.tag));
                std::process::exit(4);
            }
        } else {
            drop(guard);
        }
        if self.main && self.rng.chance(20) {
            self.forks.release_lingering(self.rng.below(3) as usize);
        }
    }

    /// Forks without exec while holding lock A through `guard`. The child drops its copy of the
    /// guard, keeps it and exits at once, keeps it and lingers, or takes lock A itself.
    fn fork_holding(&mut self, guard: &LockGuard, parent_shared: bool) {
        let kind = match self.rng.below(100) {
            0..=19 => "drop",
            20..=34 => "exit-now",
            35..=64 => "linger",
            _ => "take",
        };
        let mut fds = [0; 2];
        if kind == "linger" {
            // SAFETY: a new pipe into a two-int array.
            if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
                panic!("pipe: {}", std::io::Error::last_os_error());
            }
        }
        let child_rng = Rng(self.rng.next_u64());
        let take_timeout = Duration::from_millis(self.rng.between(50, 1500));
        say(&format!("fork kind={kind}"));
        // SAFETY: fork; the child only runs the code below and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            panic!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            // The child: never returns.
            // SAFETY: dropping our copies of the parent's lingering pipes.
            for &(fd, _) in &self.forks.lingering {
                unsafe { libc::close(fd) };
            }
            let code = match kind {
                "drop" => {
                    // A copy of the guard, dropped here: must not release the parent's lock.
                    // SAFETY: the parent's guard, read bitwise once in this child only.
                    let copy: LockGuard = unsafe { std::ptr::read(guard) };
                    drop(copy);
                    0
                }
                "exit-now" => 0,
                "linger" => {
                    // SAFETY: our end of the pipe.
                    unsafe { libc::close(fds[1]) };
                    linger(fds[0]);
                    0
                }
                _ => self.child_take(child_rng, take_timeout, parent_shared),
            };
            // SAFETY: leaving the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let bound = match kind {
            "linger" => LINGER,
            "take" => take_timeout,
            _ => Duration::ZERO,
        };
        self.forks
            .running
            .push((pid, Instant::now() + bound + HANG_SLACK, kind));
        if kind == "linger" {
            // SAFETY: the child's end, not ours.
            unsafe { libc::close(fds[0]) };
            self.forks.lingering.push_back((fds[1], pid));
        }
    }

    /// In a forked child: takes lock A through `v1` (inherited or fresh `Lock`, try, timed or
    /// timed async), checks it with the oracle, releases. Returns the exit status.
    fn child_take(&self, mut rng: Rng, timeout: Duration, parent_shared: bool) -> i32 {
        let shared = if rng.chance(50) {
            parent_shared
        } else {
            rng.chance(30)
        };
        let cleanup = self.ctx.cleanup && rng.chance(40);
        let lock = if rng.chance(60) {
            self.kept.a[0][usize::from(cleanup)][usize::from(shared)].clone()
        } else {
            make_a(&self.ctx.base, false, cleanup, shared)
        };
        let (how, result) = match rng.below(3) {
            0 => ("child-try", lock.try_acquire()),
            1 => ("child-timed", lock.acquire_timeout(timeout)),
            _ => (
                "child-async-timed",
                block_on(lock.acquire_timeout_async(timeout)),
            ),
        };
        let guard = match result {
            Ok(guard) => guard,
            Err(Error::Held { .. } | Error::Timeout { .. }) => return 0,
            Err(e) => {
                say(&format!("ERR msg=f {how} {e:?}"));
                return 4;
            }
        };
        let who = format!("{}.f", std::process::id());
        let mode = mode_word(shared, cleanup);
        let mark = match Oracle::at(&self.ctx.base.join("oracle").join("A1")).enter(shared, &who) {
            Ok(mark) => mark,
            Err(e) => {
                say(&format!("OVERLAP msg=A1 {how} {mode}: {e}"));
                return 3;
            }
        };
        say(&format!("a t=f lock=A1 how={how} mode={mode}"));
        hold(&mut rng);
        if let Err(e) = mark.leave(&who) {
            say(&format!("OVERLAP msg=A1 {how} {mode}: {e}"));
            return 3;
        }
        drop(guard);
        0
    }

    /// B through a foreign locker: `flock(1)` (non-blocking, timed or blocking) running our
    /// `oracle` subcommand while it holds the file.
    fn foreign(&mut self) {
        let path = self.kept.b[0].path().to_owned();
        let shared = self.rng.chance(30);
        let (how, wait): (&str, &[&str]) = match self.rng.below(3) {
            0 => ("foreign-n", &["-n"]),
            1 => ("foreign-w", &["-w", "0.2"]),
            _ => ("foreign-b", &[]),
        };
        if how != "foreign-n" {
            say(&format!("w t={} lock=B", self.tag));
        }
        let status = Command::new("flock")
            .arg(if shared { "-s" } else { "-x" })
            .args(wait)
            .args(["-E", "75"])
            .arg(&path)
            .arg(&self.ctx.exe)
            .arg("torture-oracle")
            .arg(self.ctx.base.join("oracle").join("B"))
            .arg(if shared { "sh" } else { "ex" })
            .arg(self.rng.between(200, 2500).to_string())
            .arg(self.tag)
            .arg(how)
            .stdin(Stdio::null())
            .status()
            .expect("run flock(1)");
        if how != "foreign-n" {
            say(&format!("x t={}", self.tag));
        }
        match status.code() {
            Some(0 | 75) => {}
            Some(3) => std::process::exit(3), // the oracle printed the overlap
            _ => {
                say(&format!("ERR msg={} flock(1): {status}", self.tag));
                std::process::exit(4);
            }
        }
    }

    /// The end of this worker's life: with the other thread kept out of its critical sections,
    /// takes A (default mode, through `v1`, the kept `Lock`), forks a child that lingers,
    /// releases, takes A again on the same cached state and leaves holding it: by exiting, or by
    /// asking the test for SIGKILL. The kernel must free the lock at once either way.
    fn leave_holding(&mut self) -> ! {
        let _gate = self.ctx.gate.write().unwrap_or_else(|e| e.into_inner());
        let shared = self.rng.chance(25);
        let lock = self.kept.a[0][0][usize::from(shared)].clone();
        let mode = mode_word(shared, false);
        let who = self.who();
        let oracle = self.ctx.base.join("oracle").join("A1");
        let rounds = if self.rng.chance(70) { 2 } else { 1 };
        for round in 1..=rounds {
            if !shared {
                self.ctx.exclusive.fetch_add(1, Ordering::SeqCst);
            }
            say(&format!("w t={} lock=A1", self.tag));
            let guard = lock.acquire().unwrap_or_else(|e| {
                say(&format!(
                    "ERR msg={} leave-holding acquire: {e:?}",
                    self.tag
                ));
                std::process::exit(4)
            });
            let mark = Oracle::at(&oracle).enter(shared, &who).unwrap_or_else(|e| {
                say(&format!("OVERLAP msg=A1 exit-hold {mode}: {e}"));
                std::process::exit(3)
            });
            say(&format!(
                "a t={} lock=A1 how=exit-hold mode={mode}",
                self.tag
            ));
            hold(&mut self.rng);
            if round < rounds || self.rng.chance(50) {
                self.fork_linger_only(); // it keeps its copy of `guard`
            }
            if let Err(e) = mark.leave(&who) {
                say(&format!("OVERLAP msg=A1 exit-hold {mode}: {e}"));
                std::process::exit(3);
            }
            if round < rounds {
                drop(guard);
                if !shared {
                    self.ctx.exclusive.fetch_sub(1, Ordering::SeqCst);
                }
            } else {
                guard.forever();
            }
        }
        if self.rng.chance(50) {
            say("bye");
            std::process::exit(0);
        }
        say("killme");
        loop {
            thread::park(); // until the test's SIGKILL
        }
    }

    fn fork_linger_only(&mut self) {
        let mut fds = [0; 2];
        // SAFETY: a new pipe into a two-int array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            panic!("pipe: {}", std::io::Error::last_os_error());
        }
        say("fork kind=linger");
        // SAFETY: fork; the child only lingers and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // The child keeps its copy of everything, the guard included.
            // SAFETY: our copies of the parent's pipes.
            unsafe {
                for &(fd, _) in &self.forks.lingering {
                    libc::close(fd);
                }
                libc::close(fds[1]);
            }
            linger(fds[0]);
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: the child's end.
        unsafe { libc::close(fds[0]) };
        self.forks.lingering.push_back((fds[1], pid));
    }
}

/// A lingering forked child: waits for a byte from its parent (its next rounds), or, if the
/// parent has gone (end of file), lives on until `LINGER` has passed since the fork.
fn linger(fd: libc::c_int) {
    let until = Instant::now() + LINGER;
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(LINGER.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll on one valid descriptor.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n == 1 {
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into `byte`.
        let r = unsafe { libc::read(fd, std::ptr::addr_of_mut!(byte).cast(), 1) };
        if r == 1 {
            return; // told to go
        }
    }
    // The parent is gone: a helper it started lives on for a while regardless.
    thread::sleep(until.saturating_duration_since(Instant::now()));
}
