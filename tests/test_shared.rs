//! Shared (reader) locks across processes: several shared holders at once, exclusive requests
//! refused meanwhile, `cleanup` removing the file only when the last shared holder leaves, a
//! stress run of readers and writers in separate processes checking, with the oracle of
//! `tests/support/oracle.rs`, that a writer never overlaps anybody, and `holder()` telling the
//! truth while other processes churn through flock locks.

mod support;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Barrier;

use lockmacro_runtime::{exclusive, Error, Lock};
use support::{child, fresh_dir, hold, holder_of, no_forks, within, Oracle, Proc};
use tempfile::TempDir;

const TASKS: &str = "/tmp/lockmacro-test_shared-tasks";

/// Waits inside its shared hold until all the readers (and the test) are there, then until the
/// test lets them go.
#[exclusive(
    name = "tasks",
    dir = "/tmp/lockmacro-test_shared-tasks",
    shared,
    cleanup,
    wait
)]
async fn read_together(all_in: Arc<Barrier>, leave: Arc<Barrier>) -> Option<u32> {
    all_in.wait().await;
    let seen = holder_of(&Lock::new("tasks").dir(TASKS));
    leave.wait().await;
    seen
}

#[exclusive(
    name = "tasks",
    dir = "/tmp/lockmacro-test_shared-tasks",
    timeout = "100ms"
)]
async fn write_alone() -> Result<(), Error> {
    Ok(())
}

#[test]
fn shared_async_fn_admits_tasks_together_and_the_last_one_removes_the_file() {
    // A fork holding a copy of the first reader's descriptor would keep the second from being
    // the last one out.
    let _forks = no_forks();
    fresh_dir(TASKS);
    let lock = Lock::new("tasks").dir(TASKS);
    let (seen, writer) = within("two readers", || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime")
            .block_on(async {
                let (all_in, leave) = (Arc::new(Barrier::new(3)), Arc::new(Barrier::new(3)));
                let readers = [
                    tokio::spawn(read_together(Arc::clone(&all_in), Arc::clone(&leave))),
                    tokio::spawn(read_together(Arc::clone(&all_in), Arc::clone(&leave))),
                ];
                // Both readers are inside together once this returns; a writer must not get in.
                all_in.wait().await;
                let writer = write_alone().await;
                leave.wait().await;
                let mut seen = Vec::new();
                for reader in readers {
                    seen.push(reader.await.expect("reader task"));
                }
                (seen, writer)
            })
    });
    assert_eq!(seen, [Some(std::process::id()); 2]);
    match writer {
        Err(Error::Timeout { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("exclusive during two shared holds: expected Timeout, got {other:?}"),
    }
    assert!(
        !lock.path().exists(),
        "the last reader left the lock file behind"
    );
}

fn tempdir() -> TempDir {
    TempDir::new().expect("temporary directory")
}

#[test]
fn two_processes_hold_a_shared_lock_together_and_the_last_one_removes_it() {
    let dir = tempdir();
    let lock = Lock::new("readers").dir(dir.path());
    let mut first = hold(dir.path(), "readers", &["--shared", "--cleanup"]);
    // The second child prints `locked` while the first still holds the lock: they share it.
    let mut second = hold(dir.path(), "readers", &["--shared", "--cleanup"]);
    let both = [first.id(), second.id()];

    match lock.try_acquire() {
        Err(Error::Held { pid, .. }) => {
            assert!(
                pid.is_some_and(|p| both.contains(&p)),
                "{pid:?} not in {both:?}"
            );
        }
        other => panic!("exclusive try_acquire during shared holds: expected Held, got {other:?}"),
    }
    // No timed wait here: a timed-out wait leaves its proxy waiting in the kernel until the next
    // release, and a waiter present at that moment rightly keeps the last shared holder from
    // removing the file (timeouts are covered in test_process and test_async).
    let seen = holder_of(&lock);
    assert!(seen.is_some_and(|p| both.contains(&p)), "{seen:?}");

    // The first leaves: the second still holds it, so the file stays.
    first.release();
    assert!(
        lock.path().exists(),
        "removed while the second child holds it"
    );
    assert_eq!(holder_of(&lock), Some(second.id()));
    match lock.try_acquire() {
        Err(Error::Held { pid, .. }) => assert_eq!(pid, Some(second.id())),
        other => panic!("expected Held by the second child, got {other:?}"),
    }

    // The last one leaves: it removes the file.
    second.release();
    assert!(
        !lock.path().exists(),
        "the last shared holder left the lock file behind"
    );
    assert_eq!(holder_of(&lock), None);
    lock.try_acquire()
        .expect("free now")
        .release()
        .expect("release");
}

/// Totals reported by the stress children.
#[derive(Debug, Default)]
struct Totals {
    acquisitions: u64,
    violations: u64,
    most_other_readers: u64,
    /// The writers' increments of the oracle's counter (`None`: torn).
    count: Option<u64>,
}

/// `readers` shared and `writers` exclusive holders, in separate `lm-child stress` processes,
/// each taking the lock `iterations` times, all started together. Readers use
/// `#[exclusive(shared, wait)]` and writers `#[exclusive(wait)]`; with `cleanup` both use the
/// runtime API with `cleanup`, so the lock file is deleted and re-created all the time.
fn stress(readers: usize, writers: usize, iterations: u32, cleanup: bool) -> Totals {
    let dir = tempdir();
    let locks = dir.path().join("locks");
    let oracle = Oracle::create(&dir.path().join("oracle"));
    let oracle_dir = oracle.dir().display().to_string();
    let iterations = iterations.to_string();
    let spawn = |shared: bool| {
        let mut args = vec!["stress", "-", "stress", &iterations, &oracle_dir];
        args.push(if cleanup { "--cleanup" } else { "--attr" });
        if shared {
            args.push("--shared");
        }
        let mut child = child(args).dir(&locks).spawn();
        child.expect_pid("ready");
        child
    };
    let mut children: Vec<Proc> = (0..readers)
        .map(|_| spawn(true))
        .chain((0..writers).map(|_| spawn(false)))
        .collect();
    let start = Instant::now();
    for child in &mut children {
        child.send("go");
    }
    let mut totals = Totals::default();
    for child in &mut children {
        let done = child.expect("done");
        totals.acquisitions += done.number::<u64>("acquisitions");
        totals.violations += done.number::<u64>("overlaps")
            + done.number::<u64>("corrupt")
            + done.number::<u64>("errors");
        totals.most_other_readers = totals.most_other_readers.max(done.number("readers"));
    }
    for child in children {
        child.finish_ok();
    }
    totals.count = oracle.count();
    eprintln!(
        "stress (cleanup: {cleanup}): {readers} readers + {writers} writers x {iterations}: \
         {totals:?} in {:?}",
        start.elapsed()
    );
    assert!(oracle.is_idle(), "marks left behind: {:?}", oracle.marks());
    totals
}

fn check(totals: &Totals, writers: u64, iterations: u64) {
    assert_eq!(totals.acquisitions, (4 + writers) * iterations);
    assert_eq!(totals.violations, 0, "a writer overlapped another holder");
    assert_eq!(
        totals.count,
        Some(writers * iterations),
        "a writer lost an increment"
    );
    // Readers did share: at least once a reader saw another reader's mark.
    assert!(totals.most_other_readers >= 1, "readers never overlapped");
}

#[test]
fn readers_and_writers_in_processes_never_overlap() {
    let totals = stress(4, 2, 1000, false);
    check(&totals, 2, 1000);
}

#[test]
fn readers_and_writers_with_cleanup_never_overlap() {
    let totals = stress(4, 2, 1000, true);
    check(&totals, 2, 1000);
}

/// Regression: `Lock::holder()` used to answer `None` now and then ("nobody holds it") for a
/// lock that was held, while other processes took and released flock locks, even on unrelated
/// files. It read `/proc/locks` in several `read(2)` calls; `/proc/locks` is a seq_file that
/// finds its place again by entry index at every call, so when entries listed before ours went
/// away between two calls, our line was skipped. The runtime now reads it in large reads, and
/// twice when it spans more than one, joining the two (a line one read skips is in the other);
/// this test asks 50 000 times while three processes churn, and any `None` fails it.
#[test]
fn regression_holder_reports_nobody_for_a_held_lock_while_others_lock() {
    let dir = tempdir();
    // Ours first, so the churners' newer entries come before it in the kernel's lists.
    let lock = Lock::new("held").dir(dir.path());
    let _guard = lock.try_acquire().expect("free");
    let churn = dir.path().join("churn");
    let oracle = Oracle::create(&dir.path().join("oracle"));
    let oracle_dir = oracle.dir().display().to_string();
    // Processes taking and releasing another lock (with cleanup) as fast as they can, until
    // they are killed at the end of the test.
    let mut churners: Vec<Proc> = (0..3)
        .map(|_| {
            let args = [
                "stress",
                "-",
                "stress",
                "4000000000",
                &oracle_dir,
                "--cleanup",
            ];
            let mut child = child(args).dir(&churn).spawn();
            child.expect_pid("ready");
            child
        })
        .collect();
    for child in &mut churners {
        child.send("go");
    }
    // Stops at the first wrong answer; a correct `holder` costs a few seconds here.
    let mut asked = 0;
    let mut nobody = false;
    while asked < 50_000 && !nobody {
        asked += 1;
        match lock.holder().expect("holder") {
            Some(pid) => assert_eq!(pid, std::process::id()),
            None => nobody = true,
        }
    }
    for child in &churners {
        assert!(child.quiet(), "a churner stopped");
    }
    assert!(
        !nobody,
        "holder() said nobody holds the lock we hold (answer {asked} of at most 50000)"
    );
}
