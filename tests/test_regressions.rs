//! Regression tests for bugs found in review, one per bug, each named after what it pins.
//!
//! Each test drives the exact situation the bug needed and asserts what must hold whatever the
//! timing. Where another process would hold the lock, a second open of the lock file (its own
//! open file description, which flock treats exactly like another process) is locked with
//! flock(2) directly. Every test has its own temporary directory, and every wait is bounded by
//! [`PATIENCE`], a generous bound that only a hang reaches.

mod support;

use std::fs::File;
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use lockmacro_runtime::{exclusive, Error, Lock};
use support::{flock, locked_by_us, run_isolated, within, PATIENCE};
use tempfile::{tempdir, TempDir};

/// The lock file opened once more: its own open file description, so its flock locks conflict
/// with ours exactly as another process's would.
fn open_separately(path: &Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Held by the tests whose race needs the machine's cores to itself: the shared-try race needs
/// two threads running at the same instant, which the busy polling of the deadline test (or
/// anything else hogging a core) would otherwise prevent. Tests of this file run in parallel.
static CPU_HUNGRY: Mutex<()> = Mutex::new(());

fn cpu_to_ourselves() -> MutexGuard<'static, ()> {
    CPU_HUNGRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh lock directory for one test, and the lock `name` in it.
fn lock_in_tempdir(name: &str) -> (TempDir, Lock) {
    let dir = tempdir().expect("temporary directory");
    let lock = Lock::new(name).dir(dir.path());
    (dir, lock)
}

// --- 1. A timed async acquire polled at its deadline -----------------------------------------

/// The bug: with a proxy waiting in the kernel, `Acquire::poll` asked "timed out?" twice: "no"
/// before checking on the proxy (so it did not abandon it) and "yes" after, reporting a timeout
/// while the proxy was still wanted. The proxy's later success was then claimed by nobody: the
/// lock stayed held by this process, and admitted, for ever.
///
/// Each trial: another holder has the lock; a timed async acquire with a short timeout is polled
/// back to back (no pause, so the deadline passes in the middle of some poll, as it did in the
/// proof); it must time out; the other holder releases; then the lock must be ours to take
/// again (the abandoned proxy takes it for an instant and gives it back). With the bug, some
/// trial's `acquire_timeout(PATIENCE)` fails after [`PATIENCE`]: against the unfixed code, one of the
/// first five trials stranded the lock in every run.
#[test]
fn regression_timed_async_acquire_at_its_deadline_never_strands_the_lock() {
    const TRIALS: usize = 300;
    let _cpu = cpu_to_ourselves(); // it polls without pause
    let (_dir, lock) = lock_in_tempdir("deadline");
    drop(lock.try_acquire().expect("create the lock file"));
    let other = open_separately(lock.path());
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for trial in 0..TRIALS {
        assert!(
            flock(&other, libc::LOCK_EX | libc::LOCK_NB),
            "trial {trial}: the other holder cannot take the lock, which we released"
        );
        let started = Instant::now();
        let outcome = {
            let mut acquire = pin!(lock.acquire_timeout_async(Duration::from_micros(300)));
            loop {
                if let Poll::Ready(outcome) = acquire.as_mut().poll(&mut cx) {
                    break outcome;
                }
                assert!(
                    started.elapsed() < PATIENCE,
                    "trial {trial}: never timed out"
                );
            }
        };
        match outcome {
            Err(Error::Timeout { .. }) => {}
            other => panic!("trial {trial}: expected a timeout, got {other:?}"),
        }
        assert!(flock(&other, libc::LOCK_UN), "trial {trial}: unlock");
        match lock.acquire_timeout(PATIENCE) {
            Ok(guard) => drop(guard),
            Err(e) => panic!(
                "trial {trial}: after a timed-out async acquire and the other holder's release, \
                 the lock is stranded: {e}"
            ),
        }
    }
}

// --- 2. Shared waiters woken when a shared hold begins ---------------------------------------

/// One shared holder of [`regression_shared_waiters_join_as_soon_as_a_shared_hold_begins`]: says
/// it is about to acquire, acquires (`timed`: with `acquire_timeout`, else `acquire`), reports
/// the outcome, and holds until `release` says so or is dropped.
fn shared_holder(
    lock: Lock,
    timed: bool,
    about_to: mpsc::Sender<()>,
    holding: mpsc::Sender<Result<(), String>>,
    release: mpsc::Receiver<()>,
) {
    let _ = about_to.send(());
    let got = if timed {
        // Longer than the test waits for it, so that it cannot join late, at its own deadline.
        lock.acquire_timeout(2 * PATIENCE)
    } else {
        lock.acquire()
    };
    let guard = match got {
        Ok(guard) => guard,
        Err(e) => {
            let _ = holding.send(Err(e.to_string()));
            return;
        }
    };
    let _ = holding.send(Ok(()));
    // Until told, or until the test gives up (the sender is dropped): never on a timer of its
    // own, which would let the other holder in late and hide the bug.
    let _ = release.recv();
    drop(guard);
}

/// The bug: the first thread of a process to take a shared lock is admitted alone while it
/// takes the kernel lock; becoming a shared holder did not wake the shared requests of other
/// threads that had queued behind it meanwhile, so they slept until it *released*: shared
/// holders were serialized (and shared `acquire_timeout`s timed out).
///
/// Another holder has the lock exclusively; two threads ask for it shared, one after the other
/// (the first waits in the kernel or through the proxy, the second behind it in the process);
/// the exclusive holder releases. Both must then hold the lock at once: the first keeps it
/// until the second has it too. Run with each kind of wait first. The short sleeps only make it
/// likely that both are waiting before the release; the assertion holds whatever the timing.
/// With the bug, the second never gets in while the first holds and the test fails after
/// [`PATIENCE`].
#[test]
fn regression_shared_waiters_join_as_soon_as_a_shared_hold_begins() {
    const SETTLE: Duration = Duration::from_millis(50);
    let (_dir, lock) = lock_in_tempdir("readers");
    let lock = lock.shared();
    drop(lock.try_acquire().expect("create the lock file"));
    for first_timed in [false, true] {
        let writer = locked_by_us(lock.path());
        thread::scope(|s| {
            let (holding_tx, holding) = mpsc::channel();
            let mut releases = Vec::new();
            for timed in [first_timed, !first_timed] {
                let (about_to_tx, about_to) = mpsc::channel();
                let (release, release_rx) = mpsc::channel();
                releases.push(release);
                let (lock, holding_tx) = (lock.clone(), holding_tx.clone());
                s.spawn(move || shared_holder(lock, timed, about_to_tx, holding_tx, release_rx));
                about_to
                    .recv_timeout(PATIENCE)
                    .expect("the holder thread started");
                thread::sleep(SETTLE);
            }
            assert!(flock(&writer, libc::LOCK_UN), "unlock");
            for n in ["first", "second"] {
                match holding.recv_timeout(PATIENCE) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        panic!("(first timed: {first_timed}) a shared request failed: {e}")
                    }
                    Err(_) => panic!(
                        "(first timed: {first_timed}) the {n} shared holder did not get in within \
                         {PATIENCE:?} while the other held the lock shared"
                    ),
                }
            }
            drop(releases); // both held at once: let them go
        });
    }
}

// --- 3. A cancelled async #[exclusive] body ---------------------------------------------------

/// Set in the copy of this test binary that runs the cancelled-body test alone with
/// `LOCKMACRO_DIR` pointing at its own temporary directory (an `#[exclusive]` lock's directory
/// can only be given as a literal, or through that variable).
const ISOLATED: &str = "LOCKMACRO_TEST_REGRESSIONS_ISOLATED";

/// The lock of [`body_cancelled_while_holding`].
const CANCELLED_BODY: &str = "cancelled-body";

/// What a local of the cancelled body saw from its destructor: the lock's holder, and whether
/// another thread could take the lock.
type Seen = (Option<u32>, Result<(), Error>);

/// A local of [`body_cancelled_while_holding`] whose destructor stands for cleanup that must
/// still be protected by the lock: it looks at the lock from another thread.
struct Witness(mpsc::Sender<Seen>);

impl Drop for Witness {
    fn drop(&mut self) {
        // No `dir`: `LOCKMACRO_DIR`, like the body's lock.
        let other = Lock::new(CANCELLED_BODY);
        let holder = other.holder().expect("holder");
        let taken = thread::spawn(move || other.try_acquire().map(drop))
            .join()
            .expect("the other thread");
        let _ = self.0.send((holder, taken));
    }
}

// No `dir`: the isolated copy gets `LOCKMACRO_DIR` from the parent test.
#[exclusive(name = "cancelled-body", wait)]
async fn body_cancelled_while_holding(
    witness: Witness,
    entered: tokio::sync::oneshot::Sender<Option<u32>>,
) {
    let _witness = witness;
    let _ = entered.send(Lock::new(CANCELLED_BODY).holder().expect("holder"));
    std::future::pending::<()>().await;
}

/// The isolated part: cancel the body in the middle of its hold (as `tokio::select!` or a
/// timeout would) and look at what its local's destructor saw.
fn cancel_a_body_while_it_holds_the_lock() {
    let pid = std::process::id();
    let (seen_tx, seen) = mpsc::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let inside = runtime.block_on(async {
        let (entered_tx, entered) = tokio::sync::oneshot::channel();
        tokio::select! {
            () = body_cancelled_while_holding(Witness(seen_tx), entered_tx) => unreachable!(),
            inside = entered => inside.expect("the body was entered"),
        }
    });
    assert_eq!(inside, Some(pid), "the body ran with the lock held");
    // The destructor ran synchronously, when `select!` dropped the body.
    let (holder, taken) = seen.try_recv().expect("the body's local was dropped");
    match taken {
        Err(Error::Held { .. }) => {}
        Ok(()) => panic!(
            "another thread took the lock while the cancelled body's destructors were running: \
             it had been released before them"
        ),
        Err(e) => panic!("unexpected error from the other thread: {e}"),
    }
    assert_eq!(
        holder,
        Some(pid),
        "the lock was not held while the cancelled body's destructors ran"
    );
    // Once the body is gone, so is the lock.
    let after = Lock::new(CANCELLED_BODY).try_acquire();
    drop(after.expect("the lock is free after the cancellation"));
}

/// The bug: the future of an async `#[exclusive]` function kept its lock in a field declared
/// before the body's future, so when the future was dropped mid-hold (cancelled by
/// `tokio::select!`, a timeout, an aborted task) the lock was released *first* and the body's
/// locals were dropped after it: cleanup that the lock was meant to protect ran unprotected.
///
/// The body is cancelled while it holds the lock; its local's destructor checks, from another
/// thread, that the lock is still held by us and cannot be taken. Runs in a copy of this test
/// binary so that the `#[exclusive]` lock gets its own temporary directory.
#[test]
fn regression_cancelled_async_exclusive_body_runs_its_destructors_before_the_lock_is_released() {
    const NAME: &str =
        "regression_cancelled_async_exclusive_body_runs_its_destructors_before_the_lock_is_released";
    if std::env::var_os(ISOLATED).is_some() {
        cancel_a_body_while_it_holds_the_lock();
        return;
    }
    run_isolated(
        NAME,
        ISOLATED,
        tempdir().expect("temporary directory").path(),
    );
}

// --- 4. A cached descriptor of a deleted lock file -------------------------------------------

/// Leaves `lock`'s cached descriptor on a file that is no longer at the path, held for ever by
/// another holder: caches the current file, has the other holder lock it, deletes it (a temp
/// cleaner, an administrator). Returns the other holder, to be kept open.
fn strand_cached_file(lock: &Lock) -> File {
    drop(lock.try_acquire().expect("the lock is free"));
    let other = locked_by_us(lock.path());
    std::fs::remove_file(lock.path()).expect("delete the lock file");
    other
}

/// The bug: each acquisition first locked the process's cached descriptor and only checked that
/// it was still the file at the path once it had the lock. When the file had been deleted while
/// someone held that old file, `try_acquire` reported `Held` and `acquire` (or a proxy, for
/// timed and async waits) waited on the old file as long as that holder lived, although the
/// lock at the path was free: nobody else would ever contend for that file again.
///
/// For every way to acquire, the cached file is deleted while another holder keeps it locked;
/// the acquisition must then succeed at once on a new file at the path. With the bug,
/// `try_acquire` fails with `Held` right away (and the waits below it would run into
/// [`PATIENCE`]).
#[test]
fn regression_a_cached_descriptor_of_a_deleted_lock_file_is_never_waited_on() {
    let (_dir, lock) = lock_in_tempdir("deleted");
    let pid = std::process::id();
    let mut old_holders = Vec::new();
    type Acquisition = fn(&Lock) -> Result<lockmacro_runtime::LockGuard, Error>;
    let ways: [(&str, Acquisition); 5] = [
        ("try_acquire", Lock::try_acquire),
        ("acquire", Lock::acquire),
        ("acquire_timeout", |lock| lock.acquire_timeout(PATIENCE)),
        ("acquire_async", |lock| {
            futures::executor::block_on(lock.acquire_async())
        }),
        ("acquire_timeout_async", |lock| {
            futures::executor::block_on(lock.acquire_timeout_async(PATIENCE))
        }),
    ];
    for (what, acquire) in ways {
        old_holders.push(strand_cached_file(&lock));
        let worker_lock = lock.clone();
        let got = within(what, move || {
            acquire(&worker_lock).map_err(|e| e.to_string())
        });
        let guard = got.unwrap_or_else(|e| {
            panic!("{what}: the lock file was deleted and nobody holds the new one, yet: {e}")
        });
        assert!(lock.path().exists(), "{what}: no lock file at the path");
        assert_eq!(lock.holder().expect("holder"), Some(pid), "{what}");
        drop(guard);
    }
}

// --- 5. Concurrent shared try_acquire ---------------------------------------------------------

/// A start line for threads that must go at the same instant: each arrival spins until all
/// `threads` have arrived for the `round`th time (0-based). A sleeping barrier would release
/// them one wake-up apart, tens of microseconds, far longer than the race it is meant to start.
fn start_line(arrived: &AtomicUsize, threads: usize, round: usize) {
    arrived.fetch_add(1, Ordering::SeqCst);
    let mut spins = 0u32;
    while arrived.load(Ordering::SeqCst) < threads * (round + 1) {
        spins += 1;
        if spins == 64 {
            spins = 0;
            thread::yield_now(); // more threads than cores, or a busy machine
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The bug: while one thread of the process was taking a shared lock (admitted alone until it
/// has the kernel lock), a shared `try_acquire` of another thread found the lock "taken" and
/// failed with `Held`, although shared holders coexist and nothing held the lock exclusively.
///
/// Threads try a shared lock at the same instant, hold on until all have tried, release, and
/// go again. No exclusive holder exists anywhere, so every single try must succeed, however the
/// threads interleave.
#[test]
fn regression_shared_try_acquire_never_fails_while_another_thread_takes_the_shared_lock() {
    const THREADS: usize = 2;
    const TRIALS: usize = 20_000;
    let _cpu = cpu_to_ourselves();
    let (_dir, lock) = lock_in_tempdir("shared-try");
    let lock = lock.shared();
    let failures = within("shared try_acquire trials", move || {
        let arrived = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (lock, arrived, barrier) =
                    (lock.clone(), Arc::clone(&arrived), Arc::clone(&barrier));
                thread::spawn(move || {
                    let mut failures = Vec::new();
                    for trial in 0..TRIALS {
                        start_line(&arrived, THREADS, trial);
                        let got = lock.try_acquire();
                        barrier.wait(); // all have tried while the others held or were taking it
                        match got {
                            Ok(guard) => drop(guard),
                            Err(e) => failures.push(format!("trial {trial}: {e}")),
                        }
                        barrier.wait(); // all released: the next trial starts from a free lock
                    }
                    failures
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("try thread"))
            .collect::<Vec<_>>()
    });
    assert!(
        failures.is_empty(),
        "{} of {} shared try_acquire calls failed with only shared holders around; first: {}",
        failures.len(),
        THREADS * TRIALS,
        failures[0]
    );
}
