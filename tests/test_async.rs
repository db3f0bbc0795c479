//! `#[exclusive]` on `async fn` and the async runtime API: single-instance async `main` under
//! tokio (both attribute orders), `Result` errors naming the holder, waiting without blocking
//! the executor (tokio current-thread and `futures::executor::block_on`), cancellation that
//! leaves no descriptor or thread behind, and `Send` futures on a multi-thread runtime.
//!
//! Locks held by "somebody else" are held by a child process (`lm-child hold`), which says
//! `locked` when it holds the lock and releases it when its stdin is closed.

mod support;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use lockmacro_runtime::{exclusive, Error, Location, Lock};
use support::{
    child, fresh_dir, hold, holder_of, no_forks, run_isolated, within, Proc, SignalPending,
    PATIENCE,
};
use tempfile::TempDir;
use tokio::time::MissedTickBehavior;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

fn tempdir() -> TempDir {
    TempDir::new().expect("temporary directory")
}

// --- 1. single-instance async main -------------------------------------------------------------

/// Runs the program `lm-child <program>` (whose async `main` is `#[exclusive(name = <name>)]`)
/// twice: the second copy must exit with status 1 and one stderr line naming the lock and the
/// first PID.
fn async_main_is_single_instance(program: &str, name: &str) {
    let dir = tempdir();
    let copy = || child([program]).dir(dir.path()).spawn();
    let mut first = copy();
    let pid = first.expect_pid("locked");

    let second = copy().finish();
    assert_eq!(second.status.code(), Some(1), "second copy: {second:?}");
    assert!(second.stdout.is_empty(), "second copy ran: {second:?}");
    let stderr = second.stderr.trim_end();
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    assert!(stderr.contains(&format!("`{name}`")), "{stderr:?}");
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr:?}");

    let first = first.finish();
    assert!(first.status.success(), "first copy: {first:?}");
    // The lock went with the first copy: a third one runs.
    let mut third = copy();
    third.expect_pid("locked");
    let third = third.finish();
    assert!(third.status.success(), "third copy: {third:?}");
}

#[test]
fn async_main_exclusive_outside_tokio_main_is_single_instance() {
    async_main_is_single_instance("tokio-outer", "lm-tokio-outer");
}

#[test]
fn async_main_exclusive_inside_tokio_main_is_single_instance() {
    async_main_is_single_instance("tokio-inner", "lm-tokio-inner");
}

// --- 2. async fn -> Result --------------------------------------------------------------------

static HELD_RUNS: AtomicUsize = AtomicUsize::new(0);

#[exclusive(name = "held", dir = "/tmp/lockmacro-test_async-held")]
async fn held_job() -> Result<u32, Error> {
    HELD_RUNS.fetch_add(1, SeqCst);
    tokio::task::yield_now().await;
    Ok(std::process::id())
}

#[tokio::test]
async fn async_fn_returning_result_gets_held_with_the_holders_pid() {
    let dir = fresh_dir("/tmp/lockmacro-test_async-held");
    let mut holder = hold(dir, "held", &[]);

    match held_job().await {
        Err(Error::Held {
            name,
            at: Location::File(path),
            pid,
        }) => {
            assert_eq!(name, "held");
            assert!(path.starts_with(dir), "{}", path.display());
            assert_eq!(pid, Some(holder.id()));
        }
        other => panic!("expected Held, got {other:?}"),
    }
    assert_eq!(HELD_RUNS.load(SeqCst), 0, "the body ran without the lock");

    holder.release();
    assert_eq!(held_job().await.expect("free now"), std::process::id());
    assert_eq!(HELD_RUNS.load(SeqCst), 1);
}

// --- 3. waiting does not block the executor ----------------------------------------------------

/// What happened on the current-thread runtime while a task waited for a lock held by a child.
struct TickReport {
    /// Ticks of the ticker task between the waiter's start and the moment we released the child.
    before_release: usize,
    /// Ticks between the waiter's start and its acquisition.
    until_acquired: usize,
    /// What the waiter returned once it got the lock.
    out: Result<Option<u32>, Error>,
}

/// On a current-thread tokio runtime (on its own thread), runs a ticker task and a task that
/// awaits `wait()`, a wait for the lock `holder` holds. Once 20 more timer ticks have passed
/// with the waiter still waiting, releases the holder; then the waiter must get the lock. If the
/// wait blocked the thread, nothing would tick: after [`PATIENCE`] the holder is killed and the
/// test fails.
fn tick_while_waiting<Fut>(
    mut holder: Proc,
    wait: impl FnOnce() -> Fut + Send + 'static,
) -> TickReport
where
    Fut: Future<Output = Result<Option<u32>, Error>> + Send + 'static,
{
    enum Msg {
        Waiting {
            pending: bool,
            ticks: usize,
        },
        Done {
            ticks: usize,
            out: Result<Option<u32>, Error>,
        },
    }
    let (tx, rx) = mpsc::channel();
    let runtime = std::thread::spawn(move || {
        current_thread().block_on(async move {
            let ticks = Arc::new(AtomicUsize::new(0));
            let ticker = tokio::spawn({
                let ticks = Arc::clone(&ticks);
                async move {
                    let mut interval = tokio::time::interval(Duration::from_millis(2));
                    // A blocked executor must not be made up for by a burst of late ticks.
                    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    loop {
                        interval.tick().await;
                        ticks.fetch_add(1, SeqCst);
                    }
                }
            });
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let waiter = tokio::spawn({
                let ticks = Arc::clone(&ticks);
                async move {
                    let _ = started_tx.send(ticks.load(SeqCst));
                    let out = wait().await;
                    (ticks.load(SeqCst), out)
                }
            });
            let start = started_rx.await.expect("waiter started");
            let mut interval = tokio::time::interval(Duration::from_millis(2));
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            for _ in 0..20 {
                interval.tick().await;
            }
            let pending = !waiter.is_finished();
            let _ = tx.send(Msg::Waiting {
                pending,
                ticks: ticks.load(SeqCst) - start,
            });
            let (end, out) = waiter.await.expect("waiter task");
            ticker.abort();
            let _ = tx.send(Msg::Done {
                ticks: end - start,
                out,
            });
        });
    });
    let before_release = match rx.recv_timeout(PATIENCE) {
        Ok(Msg::Waiting { pending, ticks }) => {
            assert!(pending, "the waiter finished while the child held the lock");
            ticks
        }
        Ok(Msg::Done { .. }) => unreachable!(),
        Err(e) => {
            drop(holder); // kills it, which lets a blocked waiter (and the runtime) go on
            panic!("the runtime made no progress while a task waited for the lock ({e})");
        }
    };
    holder.release();
    let (until_acquired, out) = match rx.recv_timeout(PATIENCE) {
        Ok(Msg::Done { ticks, out }) => (ticks, out),
        Ok(Msg::Waiting { .. }) => unreachable!(),
        Err(e) => panic!("the waiter did not get the released lock ({e})"),
    };
    runtime.join().expect("runtime thread");
    TickReport {
        before_release,
        until_acquired,
        out,
    }
}

#[exclusive(name = "ticker", dir = "/tmp/lockmacro-test_async-ticker", wait)]
async fn ticker_wait() -> Result<Option<u32>, Error> {
    Ok(holder_of(
        &Lock::new("ticker").dir("/tmp/lockmacro-test_async-ticker"),
    ))
}

#[test]
fn current_thread_runtime_keeps_ticking_while_an_annotated_fn_waits() {
    let dir = fresh_dir("/tmp/lockmacro-test_async-ticker");
    let holder = hold(dir, "ticker", &[]);
    let report = tick_while_waiting(holder, ticker_wait);
    eprintln!(
        "annotated wait: {} ticks before release, {} until acquired",
        report.before_release, report.until_acquired
    );
    assert!(report.before_release >= 5, "{}", report.before_release);
    assert_eq!(report.out.expect("holder"), Some(std::process::id()));
}

#[test]
fn current_thread_runtime_keeps_ticking_while_acquire_timeout_async_waits() {
    let dir = tempdir();
    let holder = hold(dir.path(), "ticker", &[]);
    let lock = Lock::new("ticker").dir(dir.path());
    let report = tick_while_waiting(holder, move || async move {
        let _guard = lock.acquire_timeout_async(PATIENCE).await?;
        Ok(holder_of(&lock))
    });
    eprintln!(
        "acquire_timeout_async: {} ticks before release, {} until acquired",
        report.before_release, report.until_acquired
    );
    assert!(report.before_release >= 5, "{}", report.before_release);
    assert_eq!(report.out.expect("holder"), Some(std::process::id()));
}

#[test]
fn block_on_acquire_timeout_async_times_out_naming_the_holder() {
    let dir = tempdir();
    let holder = hold(dir.path(), "block-on", &[]);
    let lock = Lock::new("block-on").dir(dir.path());
    let (took, result) = within("block_on(acquire_timeout_async)", move || {
        let start = Instant::now();
        let result =
            futures::executor::block_on(lock.acquire_timeout_async(Duration::from_millis(200)));
        (start.elapsed(), result)
    });
    match result {
        Err(Error::Timeout { timeout, pid, .. }) => {
            assert_eq!(timeout, Duration::from_millis(200));
            assert_eq!(pid, Some(holder.id()));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(took >= Duration::from_millis(200), "{took:?}");
}

#[exclusive(
    name = "block-on",
    dir = "/tmp/lockmacro-test_async-block_on_wait",
    wait
)]
async fn block_on_wait() -> Result<Option<u32>, Error> {
    Ok(holder_of(
        &Lock::new("block-on").dir("/tmp/lockmacro-test_async-block_on_wait"),
    ))
}

#[test]
fn block_on_annotated_wait_completes_after_the_holder_releases() {
    let dir = fresh_dir("/tmp/lockmacro-test_async-block_on_wait");
    let mut holder = hold(dir, "block-on", &[]);
    let (pending_tx, pending_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let out = futures::executor::block_on(SignalPending::new(block_on_wait(), pending_tx));
        let _ = done_tx.send(out);
    });
    pending_rx
        .recv_timeout(PATIENCE)
        .expect("the annotated fn should be waiting");
    assert!(
        done_rx.try_recv().is_err(),
        "it finished while the lock was held"
    );
    holder.release();
    let out = done_rx
        .recv_timeout(PATIENCE)
        .expect("the annotated fn should get the released lock");
    assert_eq!(out.expect("holder"), Some(std::process::id()));
}

// --- 4. cancellation --------------------------------------------------------------------------

/// Set in the copy of this test binary that runs the cancellation test alone, so no other test
/// opens descriptors or starts threads while we count them.
const ISOLATED: &str = "LOCKMACRO_TEST_ISOLATED";

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: line")
}

// No `dir`: the isolated copy gets `LOCKMACRO_DIR` from the parent test.
#[exclusive(name = "cancel", wait)]
async fn cancel_wait() {
    panic!("the lock is held by the child: this body must never run");
}

#[test]
fn cancelled_waits_leave_no_descriptor_thread_or_lock_behind() {
    const NAME: &str = "cancelled_waits_leave_no_descriptor_thread_or_lock_behind";
    if std::env::var_os(ISOLATED).is_some() {
        cancellations();
        return;
    }
    run_isolated(NAME, ISOLATED, tempdir().path());
}

/// Cancellations before the baseline is taken (all four kinds, twice).
const WARM_UP: usize = 8;

/// The isolated part: 200 waits on a lock a child holds, each dropped while waiting.
fn cancellations() {
    let dir = std::env::var_os("LOCKMACRO_DIR").expect("LOCKMACRO_DIR");
    let dir = Path::new(&dir);
    let mut child = hold(dir, "cancel", &[]);
    let lock = Lock::new("cancel");
    let runtime = current_thread();
    let (fds_before, threads_before) = (open_fds(), threads());
    let mut after_first = (0, 0);
    let short = Duration::from_millis(1);
    for i in 0..200 {
        let cancelled = runtime.block_on(async {
            match i % 4 {
                0 => tokio::time::timeout(short, lock.acquire_async())
                    .await
                    .is_err(),
                1 => tokio::time::timeout(short, lock.acquire_timeout_async(PATIENCE))
                    .await
                    .is_err(),
                2 => tokio::time::timeout(short, cancel_wait()).await.is_err(),
                _ => tokio::select! {
                    _ = lock.acquire_async() => false,
                    () = tokio::task::yield_now() => true,
                },
            }
        });
        assert!(cancelled, "wait {i} ended instead of being cancelled");
        // The first cancellations start the one-time helpers: the proxy that keeps waiting in
        // the kernel for the abandoned wait (one per lock) and the shared timer thread.
        if i == WARM_UP - 1 {
            after_first = (open_fds(), threads());
        }
    }
    let after_last = (open_fds(), threads());
    eprintln!(
        "fds: {fds_before} before, {} after {WARM_UP} cancellations, {} after the 200th; \
         threads: {threads_before} before, {} after {WARM_UP}, {} after the 200th",
        after_first.0, after_last.0, after_first.1, after_last.1
    );
    assert_eq!(after_last.0, after_first.0, "descriptors leaked");
    assert_eq!(after_last.1, after_first.1, "threads leaked");
    assert!(
        after_first.1 <= threads_before + 2,
        "more than the timer thread and one waiting proxy"
    );
    assert!(
        after_first.0 <= fds_before + 1,
        "more than the one cached descriptor"
    );

    // Nothing of ours holds the lock: the child does, then nobody, then another child gets it.
    assert_eq!(holder_of(&lock), Some(child.id()));
    child.release();
    assert_eq!(holder_of(&lock), None);
    let next = hold(dir, "cancel", &[]);
    assert_eq!(holder_of(&lock), Some(next.id()));
}

#[exclusive(name = "dropped", dir = "/tmp/lockmacro-test_async-dropped", wait)]
async fn hold_forever(entered: tokio::sync::oneshot::Sender<Option<u32>>) {
    let holder = holder_of(&Lock::new("dropped").dir("/tmp/lockmacro-test_async-dropped"));
    let _ = entered.send(holder);
    std::future::pending::<()>().await;
}

#[test]
fn dropping_an_async_fn_inside_its_hold_releases_the_lock() {
    let dir = fresh_dir("/tmp/lockmacro-test_async-dropped");
    let lock = Lock::new("dropped").dir(dir);
    let forks = no_forks(); // nothing may copy our lock descriptor while we check its release
    let inside = within("hold_forever", || {
        current_thread().block_on(async {
            let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
            tokio::select! {
                () = hold_forever(entered_tx) => unreachable!(),
                inside = entered_rx => inside.expect("entered"),
            }
        })
    });
    assert_eq!(inside, Some(std::process::id()), "it held the lock inside");
    // The future was dropped in the middle of its body: the lock went with it.
    assert_eq!(holder_of(&lock), None);
    drop(forks);
    let child = hold(dir, "dropped", &[]);
    assert_eq!(holder_of(&lock), Some(child.id()));
}

// --- 5. Send ---------------------------------------------------------------------------------

fn assert_send<T: Send>(_: &T) {}

static SEND_INSIDE: AtomicUsize = AtomicUsize::new(0);
static SEND_MAX_INSIDE: AtomicUsize = AtomicUsize::new(0);

#[exclusive(name = "send", dir = "/tmp/lockmacro-test_async-send", wait)]
async fn send_job(tag: String) -> usize {
    let inside = SEND_INSIDE.fetch_add(1, SeqCst) + 1;
    SEND_MAX_INSIDE.fetch_max(inside, SeqCst);
    // State kept across awaits, and awaits that may resume on another worker thread.
    let words: Vec<String> = tag.split('-').map(str::to_owned).collect();
    let lock = Lock::new("send").dir("/tmp/lockmacro-test_async-send");
    tokio::task::yield_now().await;
    let nested = send_nested(words.len()).await;
    tokio::task::yield_now().await;
    assert_eq!(holder_of(&lock), Some(std::process::id()));
    SEND_INSIDE.fetch_sub(1, SeqCst);
    nested + tag.len()
}

#[exclusive(name = "send", dir = "/tmp/lockmacro-test_async-send", wait)]
async fn send_nested(n: usize) -> usize {
    tokio::task::yield_now().await;
    n
}

#[test]
fn async_fn_and_acquire_async_futures_are_send() {
    fresh_dir("/tmp/lockmacro-test_async-send");
    let job = send_job("compile-time".to_owned());
    assert_send(&job);
    drop(job);
    let lock = Lock::new("send").dir("/tmp/lockmacro-test_async-send");
    let acquire = lock.acquire_async();
    assert_send(&acquire);
    drop(acquire);
    assert_send(&lock.acquire_timeout_async(PATIENCE));

    let sum = within("tokio::spawn on a multi-thread runtime", || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..8 {
                tasks.push(tokio::spawn(send_job(format!("task-{i}"))));
            }
            tasks.push(tokio::spawn(async {
                let lock = Lock::new("send").dir("/tmp/lockmacro-test_async-send");
                let guard = lock.acquire_async().await.expect("acquire_async");
                tokio::task::yield_now().await;
                drop(guard);
                0
            }));
            let mut sum = 0;
            for task in tasks {
                sum += task.await.expect("task");
            }
            sum
        })
    });
    // Each job returns 2 words + "task-i".len() = 2 + 6.
    assert_eq!(sum, 8 * 8);
    assert_eq!(
        SEND_MAX_INSIDE.load(SeqCst),
        1,
        "two tasks were inside at once"
    );
}
