//! Nested calls: an annotated function called, directly or not, from inside another one holding
//! the same lock on the same call chain runs without acquiring again (recursion, functions
//! sharing the per-file default name, async awaiting async, shared inside exclusive); requests
//! that could never succeed (a runtime acquisition of a lock the chain holds, exclusive inside
//! shared) fail at once with `Error::Nested`; and threads or other tasks are never mistaken for
//! the call chain.
//!
//! Annotated functions need a literal `dir`: each test has its own fixed directory under /tmp,
//! emptied at the start of the test. Anything that would hang on a bug runs under `within`,
//! which fails the test after a generous bound instead. Tests that check the lock is free right
//! after an in-process hold ends hold `no_forks()`, so no child spawned meanwhile by another
//! test copies the descriptor.

mod support;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::task::Poll;
use std::time::{Duration, Instant};

use lockmacro_runtime::{default_name, exclusive, Error, Lock, LockGuard};
use support::{fresh_dir, hold, holder_of, no_forks, within, yield_once, SignalPending, PATIENCE};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Who holds the lock `name` in `dir`, and whether another thread (never on our call chain)
/// could take it shared right now.
fn observe(name: &str, dir: &str) -> (Option<u32>, bool) {
    let lock = Lock::new(name).dir(dir);
    let holder = holder_of(&lock);
    let shared = lock.shared();
    let other_thread_gets_it = std::thread::spawn(move || shared.try_acquire().is_ok())
        .join()
        .expect("probe thread");
    (holder, other_thread_gets_it)
}

/// This process, as `Lock::holder` reports it.
fn me() -> Option<u32> {
    Some(std::process::id())
}

// --- recursion --------------------------------------------------------------------------------

const RECURSION: &str = "/tmp/lockmacro-test_nested-recursion";

#[exclusive(name = "recursion", dir = "/tmp/lockmacro-test_nested-recursion", wait)]
fn recurse(depth: u32, seen: &mut Vec<(Option<u32>, bool)>) -> u32 {
    seen.push(observe("recursion", RECURSION));
    if depth == 0 {
        0
    } else {
        1 + recurse(depth - 1, seen)
    }
}

#[test]
fn sync_recursion_three_deep_completes_under_one_hold() {
    let _forks = no_forks();
    fresh_dir(RECURSION);
    let seen = within("recursion", || {
        let mut seen = Vec::new();
        assert_eq!(recurse(3, &mut seen), 3);
        seen
    });
    // Four levels, each seeing the lock held by this process and closed to other threads.
    assert_eq!(seen, vec![(me(), false); 4]);
    assert_eq!(observe("recursion", RECURSION), (None, true));
}

// --- default names ----------------------------------------------------------------------------

const DEFAULT_SYNC: &str = "/tmp/lockmacro-test_nested-default_sync";

#[exclusive(dir = "/tmp/lockmacro-test_nested-default_sync", wait)]
fn ping(n: u32, trace: &mut Vec<(&'static str, Option<u32>, bool)>) {
    let (holder, free) = observe(default_name!(), DEFAULT_SYNC);
    trace.push(("ping", holder, free));
    if n > 0 {
        pong(n - 1, trace);
    }
}

#[exclusive(dir = "/tmp/lockmacro-test_nested-default_sync", wait)]
fn pong(n: u32, trace: &mut Vec<(&'static str, Option<u32>, bool)>) {
    let (holder, free) = observe(default_name!(), DEFAULT_SYNC);
    trace.push(("pong", holder, free));
    if n > 0 {
        ping(n - 1, trace);
    }
}

/// The lock files in `dir`: one, if the functions really share the default-named lock.
fn lock_files(dir: &str) -> usize {
    std::fs::read_dir(dir).expect("lock directory").count()
}

#[test]
fn default_named_functions_of_one_file_call_each_other() {
    let _forks = no_forks();
    fresh_dir(DEFAULT_SYNC);
    let trace = within("ping/pong", || {
        let mut trace = Vec::new();
        ping(3, &mut trace);
        trace
    });
    let me = me();
    assert_eq!(
        trace,
        [
            ("ping", me, false),
            ("pong", me, false),
            ("ping", me, false),
            ("pong", me, false)
        ]
    );
    assert_eq!(lock_files(DEFAULT_SYNC), 1);
    assert_eq!(observe(default_name!(), DEFAULT_SYNC), (None, true));
}

const DEFAULT_ASYNC: &str = "/tmp/lockmacro-test_nested-default_async";

#[exclusive(dir = "/tmp/lockmacro-test_nested-default_async", wait)]
async fn ping_async(n: u32) -> Vec<(Option<u32>, bool)> {
    yield_once().await;
    let mut trace = vec![observe(default_name!(), DEFAULT_ASYNC)];
    if n > 0 {
        trace.extend(Box::pin(pong_async(n - 1)).await);
    }
    trace
}

#[exclusive(dir = "/tmp/lockmacro-test_nested-default_async", wait)]
async fn pong_async(n: u32) -> Vec<(Option<u32>, bool)> {
    let mut trace = vec![observe(default_name!(), DEFAULT_ASYNC)];
    yield_once().await;
    if n > 0 {
        trace.extend(Box::pin(ping_async(n - 1)).await);
    }
    trace
}

#[test]
fn default_named_async_functions_of_one_file_await_each_other() {
    let _forks = no_forks();
    fresh_dir(DEFAULT_ASYNC);
    let trace = within("ping_async/pong_async", || {
        futures::executor::block_on(ping_async(3))
    });
    assert_eq!(trace, vec![(me(), false); 4]);
    assert_eq!(lock_files(DEFAULT_ASYNC), 1);
    assert_eq!(observe(default_name!(), DEFAULT_ASYNC), (None, true));
}

// --- async awaiting async ---------------------------------------------------------------------

const ASYNC_NESTED: &str = "/tmp/lockmacro-test_nested-async_nested";

#[exclusive(
    name = "async-nested",
    dir = "/tmp/lockmacro-test_nested-async_nested",
    wait
)]
async fn outer_async() -> Vec<(Option<u32>, bool)> {
    tokio::task::yield_now().await;
    let mut seen = inner_async().await;
    seen.push(observe("async-nested", ASYNC_NESTED));
    seen
}

#[exclusive(
    name = "async-nested",
    dir = "/tmp/lockmacro-test_nested-async_nested",
    wait
)]
async fn inner_async() -> Vec<(Option<u32>, bool)> {
    let before = observe("async-nested", ASYNC_NESTED);
    tokio::task::yield_now().await;
    vec![before, observe("async-nested", ASYNC_NESTED)]
}

#[test]
fn async_fn_awaiting_an_async_fn_with_the_same_lock_completes() {
    let _forks = no_forks();
    fresh_dir(ASYNC_NESTED);
    let seen = within("outer_async", || current_thread().block_on(outer_async()));
    assert_eq!(seen, vec![(me(), false); 3]);
    assert_eq!(observe("async-nested", ASYNC_NESTED), (None, true));
}

// --- threads take turns -----------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static INSIDE: AtomicUsize = AtomicUsize::new(0);
static MAX_INSIDE: AtomicUsize = AtomicUsize::new(0);

#[exclusive(name = "counter", dir = "/tmp/lockmacro-test_nested-counter", wait)]
fn bump() {
    let inside = INSIDE.fetch_add(1, SeqCst) + 1;
    MAX_INSIDE.fetch_max(inside, SeqCst);
    // Read, give the others a chance to run, write: loses updates unless calls take turns.
    let value = COUNTER.load(SeqCst);
    std::thread::yield_now();
    COUNTER.store(value + 1, SeqCst);
    INSIDE.fetch_sub(1, SeqCst);
}

#[test]
fn eight_threads_calling_a_waiting_function_take_turns() {
    fresh_dir("/tmp/lockmacro-test_nested-counter");
    let took = within("8 threads x 500 calls", || {
        let start = Instant::now();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..500 {
                        bump();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        start.elapsed()
    });
    eprintln!("8 x 500 calls in {took:?}");
    assert_eq!(COUNTER.load(SeqCst), 8 * 500, "lost updates");
    assert_eq!(
        MAX_INSIDE.load(SeqCst),
        1,
        "two threads were inside at once"
    );
}

// --- runtime acquisitions inside a hold -------------------------------------------------------

const RUNTIME_INSIDE: &str = "/tmp/lockmacro-test_nested-runtime_inside";

type Attempts = Vec<(&'static str, Result<LockGuard, Error>)>;

/// Every runtime way of acquiring `lock` from inside a hold of it.
fn every_runtime_acquisition(lock: &Lock) -> Attempts {
    let hour = Duration::from_secs(3600);
    vec![
        ("acquire", lock.acquire()),
        ("try_acquire", lock.try_acquire()),
        ("acquire_timeout", lock.acquire_timeout(hour)),
        (
            "acquire_async",
            futures::executor::block_on(lock.acquire_async()),
        ),
        (
            "acquire_timeout_async",
            futures::executor::block_on(lock.acquire_timeout_async(hour)),
        ),
        ("shared acquire", lock.clone().shared().acquire()),
    ]
}

#[exclusive(
    name = "runtime-inside",
    dir = "/tmp/lockmacro-test_nested-runtime_inside",
    wait
)]
fn runtime_inside() -> Attempts {
    every_runtime_acquisition(&Lock::new("runtime-inside").dir(RUNTIME_INSIDE))
}

#[exclusive(
    name = "runtime-inside",
    dir = "/tmp/lockmacro-test_nested-runtime_inside",
    wait
)]
async fn runtime_inside_async() -> Attempts {
    let lock = Lock::new("runtime-inside").dir(RUNTIME_INSIDE);
    let mut attempts = vec![("acquire_async (awaited)", lock.acquire_async().await)];
    tokio::task::yield_now().await;
    attempts.push((
        "acquire_timeout_async (awaited)",
        lock.acquire_timeout_async(Duration::from_secs(3600)).await,
    ));
    attempts.extend(every_runtime_acquisition(&lock));
    attempts
}

fn all_nested(attempts: &Attempts, held_shared: bool) {
    assert!(!attempts.is_empty());
    for (how, result) in attempts {
        match result {
            Err(Error::Nested {
                name,
                held_shared: shared,
                ..
            }) => {
                assert_eq!(*shared, held_shared, "{how}");
                assert!(!name.is_empty());
            }
            other => panic!("{how}: expected Nested, got {other:?}"),
        }
    }
}

#[test]
fn runtime_acquire_inside_a_hold_of_the_same_lock_is_nested_at_once() {
    let _forks = no_forks();
    fresh_dir(RUNTIME_INSIDE);
    let (sync, after_sync, asynchronous, after_async, took) = within("runtime_inside", || {
        let start = Instant::now();
        let lock = Lock::new("runtime-inside").dir(RUNTIME_INSIDE);
        let sync = runtime_inside();
        // Off the chain again: the same thread acquires normally.
        let after_sync = lock.try_acquire().map(drop);
        let asynchronous = current_thread().block_on(runtime_inside_async());
        let after_async = lock.try_acquire().map(drop);
        (sync, after_sync, asynchronous, after_async, start.elapsed())
    });
    eprintln!(
        "{} nested attempts failed in {took:?}",
        sync.len() + asynchronous.len()
    );
    all_nested(&sync, false);
    all_nested(&asynchronous, false);
    after_sync.expect("acquire after the annotated fn returned");
    after_async.expect("acquire after the async annotated fn returned");
}

// --- shared and exclusive ---------------------------------------------------------------------

const SHARED_OUTER: &str = "/tmp/lockmacro-test_nested-shared_outer";
static EXCLUSIVE_INNER_RAN: AtomicBool = AtomicBool::new(false);

#[exclusive(
    name = "rw",
    dir = "/tmp/lockmacro-test_nested-shared_outer",
    shared,
    wait
)]
fn shared_outer() -> (Result<(), Error>, Result<bool, Error>, Attempts) {
    let lock = Lock::new("rw").dir(SHARED_OUTER);
    (
        exclusive_inner(),
        shared_inner(),
        vec![
            ("acquire", lock.acquire()),
            ("shared acquire", lock.clone().shared().acquire()),
        ],
    )
}

#[exclusive(name = "rw", dir = "/tmp/lockmacro-test_nested-shared_outer")]
fn exclusive_inner() -> Result<(), Error> {
    EXCLUSIVE_INNER_RAN.store(true, SeqCst);
    Ok(())
}

#[exclusive(name = "rw", dir = "/tmp/lockmacro-test_nested-shared_outer", shared)]
fn shared_inner() -> Result<bool, Error> {
    // Still only shared: another thread may join as a reader.
    Ok(observe("rw", SHARED_OUTER).1)
}

#[exclusive(
    name = "rw-async",
    dir = "/tmp/lockmacro-test_nested-shared_outer",
    shared,
    wait
)]
async fn shared_outer_async() -> Result<(), Error> {
    tokio::task::yield_now().await;
    exclusive_inner_async().await
}

#[exclusive(name = "rw-async", dir = "/tmp/lockmacro-test_nested-shared_outer")]
async fn exclusive_inner_async() -> Result<(), Error> {
    EXCLUSIVE_INNER_RAN.store(true, SeqCst);
    Ok(())
}

#[test]
fn exclusive_inside_shared_is_nested() {
    fresh_dir(SHARED_OUTER);
    let ((exclusive, shared, runtime), asynchronous) = within("shared_outer", || {
        (
            shared_outer(),
            current_thread().block_on(shared_outer_async()),
        )
    });
    match exclusive {
        Err(Error::Nested {
            held_shared: true, ..
        }) => {}
        other => panic!("exclusive inside shared: expected Nested, got {other:?}"),
    }
    match asynchronous {
        Err(Error::Nested {
            held_shared: true, ..
        }) => {}
        other => panic!("async exclusive inside shared: expected Nested, got {other:?}"),
    }
    assert!(!EXCLUSIVE_INNER_RAN.load(SeqCst), "the exclusive body ran");
    assert!(
        shared.expect("shared inside shared runs"),
        "a reader was refused"
    );
    all_nested(&runtime, true);
}

const EXCLUSIVE_OUTER: &str = "/tmp/lockmacro-test_nested-exclusive_outer";

#[exclusive(name = "wr", dir = "/tmp/lockmacro-test_nested-exclusive_outer", wait)]
fn exclusive_outer() -> Result<[(Option<u32>, bool); 2], Error> {
    let inner = shared_in_exclusive()?;
    // Back in the exclusive hold: the nested shared call must not have weakened it.
    Ok([inner, observe("wr", EXCLUSIVE_OUTER)])
}

#[exclusive(
    name = "wr",
    dir = "/tmp/lockmacro-test_nested-exclusive_outer",
    shared
)]
fn shared_in_exclusive() -> Result<(Option<u32>, bool), Error> {
    Ok(observe("wr", EXCLUSIVE_OUTER))
}

#[test]
fn shared_inside_exclusive_runs() {
    let _forks = no_forks();
    fresh_dir(EXCLUSIVE_OUTER);
    let seen = within("exclusive_outer", exclusive_outer).expect("shared inside exclusive");
    assert_eq!(seen, [(me(), false); 2]);
    assert_eq!(observe("wr", EXCLUSIVE_OUTER), (None, true));
}

// --- other tasks are not the call chain -------------------------------------------------------

const OTHER_TASK: &str = "/tmp/lockmacro-test_nested-other_task";
static TASKS_INSIDE: AtomicUsize = AtomicUsize::new(0);
static TASKS_MAX_INSIDE: AtomicUsize = AtomicUsize::new(0);

#[exclusive(
    name = "tasks",
    dir = "/tmp/lockmacro-test_nested-other_task",
    timeout = "200ms"
)]
async fn section(
    entered: Option<tokio::sync::oneshot::Sender<()>>,
    leave: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Result<(), Error> {
    let inside = TASKS_INSIDE.fetch_add(1, SeqCst) + 1;
    TASKS_MAX_INSIDE.fetch_max(inside, SeqCst);
    if let Some(entered) = entered {
        let _ = entered.send(());
    }
    if let Some(leave) = leave {
        let _ = leave.await;
    }
    TASKS_INSIDE.fetch_sub(1, SeqCst);
    Ok(())
}

fn expect_timeout(result: Result<(), Error>, took: Duration, who: &str) {
    match result {
        Err(Error::Timeout { pid, timeout, .. }) => {
            assert_eq!(pid, me(), "{who}");
            assert_eq!(timeout, Duration::from_millis(200), "{who}");
        }
        other => panic!("{who}: expected Timeout, got {other:?}"),
    }
    assert!(took >= Duration::from_millis(200), "{who}: {took:?}");
}

#[test]
fn another_task_on_the_same_thread_is_not_nested() {
    fresh_dir(OTHER_TASK);
    within("tasks", || {
        current_thread().block_on(async {
            let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
            let (leave_tx, leave_rx) = tokio::sync::oneshot::channel();
            // Task A enters and stays suspended inside, holding the lock.
            let a = tokio::spawn(section(Some(entered_tx), Some(leave_rx)));
            entered_rx.await.expect("task A entered");

            // Task B, same thread, same function: it must wait and time out, not enter.
            let start = Instant::now();
            let b = tokio::spawn(section(None, None)).await.expect("task B");
            expect_timeout(b, start.elapsed(), "spawned task B");
            // The block_on future itself is another task too.
            let start = Instant::now();
            let c = section(None, None).await;
            expect_timeout(c, start.elapsed(), "block_on task");
            assert!(!a.is_finished());

            let _ = leave_tx.send(());
            a.await.expect("task A").expect("task A's section");
            section(None, None).await.expect("free again");
        });
    });
    assert_eq!(
        TASKS_MAX_INSIDE.load(SeqCst),
        1,
        "two tasks were inside at once"
    );
}

// --- regressions ------------------------------------------------------------------------------

const ESCAPE: &str = "/tmp/lockmacro-test_nested-escape";

/// Starts `escape_inner` inside its hold (as a poll-once helper, `select!` over a pinned future
/// or a `FuturesUnordered` kept outside would) and hands it back unfinished.
#[allow(clippy::async_yields_async)] // on purpose: the unfinished future is the point
#[exclusive(name = "escape", dir = "/tmp/lockmacro-test_nested-escape", wait)]
async fn escape_outer() -> Pin<Box<dyn Future<Output = Option<u32>> + Send>> {
    let mut inner: Pin<Box<dyn Future<Output = Option<u32>> + Send>> = Box::pin(escape_inner());
    let first = std::future::poll_fn(|cx| Poll::Ready(inner.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "escape_inner yields once");
    inner
}

/// Returns the holder of its own lock as seen from inside its body.
#[exclusive(name = "escape", dir = "/tmp/lockmacro-test_nested-escape", wait)]
async fn escape_inner() -> Option<u32> {
    yield_once().await;
    holder_of(&Lock::new("escape").dir(ESCAPE))
}

/// Regression (mutual exclusion): whether an async annotated call was nested used to be decided
/// once, at its first poll, so a future first polled inside a hold of its lock never acquired
/// it, even when it went on running after that hold had ended: its body then ran while another
/// process held the lock. Resumed after the outer hold, with another process holding the lock,
/// the rest of its body must wait for the lock (or, if it finishes without waiting, must not
/// have run while the other process held it).
#[test]
fn regression_nested_future_resumed_after_the_outer_hold_runs_without_the_lock() {
    fresh_dir(ESCAPE);
    let inner = within("escape_outer", || {
        futures::executor::block_on(escape_outer())
    });
    // The outer hold is over; another process takes the lock.
    let mut child = hold(Path::new(ESCAPE), "escape", &[]);
    let (pending_tx, pending_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let seen = futures::executor::block_on(SignalPending::new(inner, pending_tx));
        let _ = done_tx.send(seen);
    });
    match pending_rx.recv_timeout(PATIENCE) {
        // Correct: the rest of the body waits for the lock.
        Ok(()) => {
            child.release();
            let seen = done_rx
                .recv_timeout(PATIENCE)
                .expect("escape_inner finishes");
            assert_eq!(seen, me());
        }
        // It finished without ever waiting: look at what its body saw.
        Err(RecvTimeoutError::Disconnected) => {
            let seen = done_rx
                .recv_timeout(PATIENCE)
                .expect("escape_inner finished");
            assert_ne!(
                seen,
                Some(child.id()),
                "escape_inner's body ran while another process (pid {}) held its lock",
                child.id()
            );
            assert_eq!(seen, me());
        }
        Err(RecvTimeoutError::Timeout) => panic!("escape_inner neither waited nor finished"),
    }
}

const ALIAS: &str = "/tmp/lockmacro-test_nested-alias";
const ALIAS_LINK: &str = "/tmp/lockmacro-test_nested-alias-link";

#[exclusive(name = "alias", dir = "/tmp/lockmacro-test_nested-alias", wait)]
fn alias_outer() -> Result<LockGuard, Error> {
    // The same lock file, through a symlink to the directory (like /var/lock -> /run/lock).
    // A bounded wait, so the bug shows as a timeout instead of the hang `acquire()` gives.
    Lock::new("alias")
        .dir(ALIAS_LINK)
        .acquire_timeout(Duration::from_secs(2))
}

/// Regression (self-deadlock): the call chain used to identify a lock by the spelling of its
/// path, so a runtime acquisition of the very lock file an enclosing `#[exclusive]` holds,
/// reached through another spelling of the directory (a symlink, `..`, relative vs absolute),
/// was not `Nested`: `acquire()` hung forever on its own lock, and `acquire_timeout` timed out
/// naming our own PID. It must be `Nested`.
#[test]
fn regression_same_lock_file_through_a_symlinked_dir_waits_for_itself() {
    fresh_dir(ALIAS);
    match std::fs::remove_file(ALIAS_LINK) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("remove {ALIAS_LINK}: {e}"),
        _ => {}
    }
    std::fs::create_dir(ALIAS).expect("create dir");
    std::os::unix::fs::symlink(ALIAS, ALIAS_LINK).expect("symlink");
    let lock = Lock::new("alias").dir(ALIAS);
    let via_link = Lock::new("alias").dir(ALIAS_LINK);
    assert_eq!(
        std::fs::canonicalize(via_link.path().parent().expect("dir")).expect("canonical"),
        std::fs::canonicalize(lock.path().parent().expect("dir")).expect("canonical"),
    );
    match within("alias_outer", alias_outer) {
        Err(Error::Nested { .. }) => {}
        other => panic!(
            "a nested acquisition of the lock file {} through {ALIAS_LINK}: expected Nested, \
             got {other:?}",
            lock.path().display()
        ),
    }
}
