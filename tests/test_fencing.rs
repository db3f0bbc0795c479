//! Fencing tokens and once per period (`Lock::fencing`, `Lock::once_per`), on each backend,
//! across processes (this test binary runs itself as the child: see `child`).
//!
//! - `fencing_tokens_increase_in_acquisition_order_*`: 8 processes × 25 acquisitions; each
//!   appends its token to a shared log while it holds the lock, so the log's order is the order
//!   of acquisition. The tokens there must strictly increase and never repeat. (The oracle does
//!   not trust the lock: two holders at once would interleave their appends out of order or
//!   repeat a token.) For PostgreSQL the server is then restarted and the next tokens are
//!   still higher.
//! - `once_per_period_*`: a process starts, records its start and exits; a second started 2 s
//!   later with a 5 s period skips (`Error::TooSoon`); one started after the period runs.
//! - `fencing_and_once_per_refuse_shared_and_slots`: both are for one exclusive holder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lockmacro_runtime::{Error, Lock};

const CHILD: &str = "LOCKMACRO_TEST_FENCING_CHILD";

/// The lock a child uses: `file:DIR` or `postgres:URL`, and its name.
fn lock_for(backend: &str, name: &str) -> Lock {
    match backend.split_once(':') {
        Some(("file", dir)) => Lock::new(name).dir(dir),
        Some(("file-cleanup", dir)) => Lock::new(name).dir(dir).cleanup(),
        #[cfg(feature = "postgres")]
        Some(("postgres", url)) => Lock::new(name).postgres(url),
        _ => panic!("unknown backend {backend}"),
    }
}

/// In a child process (`CHILD` set to `fence BACKEND NAME LOG COUNT` or `start BACKEND NAME
/// PERIOD_MS`), does that and exits; else returns.
fn child() {
    let Ok(task) = std::env::var(CHILD) else {
        return;
    };
    let words: Vec<&str> = task.split('\u{1f}').collect();
    match words.as_slice() {
        ["fence", backend, name, log, count] => {
            let lock = lock_for(backend, name).fencing();
            for _ in 0..count.parse::<u32>().expect("count") {
                let guard = lock.acquire().expect("acquire");
                let token = guard.fencing_token().expect("a token");
                let mut log = std::fs::OpenOptions::new()
                    .append(true)
                    .open(log)
                    .expect("log");
                writeln!(log, "{token} {}", std::process::id()).expect("append");
                drop(guard);
            }
            std::process::exit(0);
        }
        ["start", backend, name, period_ms] => {
            let period = Duration::from_millis(period_ms.parse().expect("period"));
            match lock_for(backend, name).once_per(period).try_acquire() {
                Ok(_guard) => {
                    println!("\nresult: ran");
                    std::process::exit(0)
                }
                Err(Error::TooSoon { .. }) => {
                    println!("\nresult: skipped");
                    std::process::exit(0)
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(2)
                }
            }
        }
        _ => panic!("bad child task {task:?}"),
    }
}

/// Runs this test binary as a child doing `task` (words joined by U+001F).
fn spawn(test: &str, task: &[&str]) -> std::process::Child {
    Command::new(std::env::current_exe().expect("exe"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, task.join("\u{1f}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child")
}

fn run(test: &str, task: &[&str]) -> String {
    let out = spawn(test, task).wait_with_output().expect("child");
    assert!(out.status.success(), "child {task:?}: {:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    match stdout.lines().find_map(|l| l.strip_prefix("result: ")) {
        Some(result) => result.to_owned(),
        None => panic!("child {task:?} said no result: {stdout}"),
    }
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lockmacro-test_fencing-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// 8 processes × 25 acquisitions; returns the tokens in the log's (acquisition) order.
fn fence_round(test: &str, backend: &str, name: &str, log: &Path) -> Vec<u64> {
    std::fs::write(log, "").expect("log");
    let log_text = log.to_string_lossy().into_owned();
    let children: Vec<_> = (0..8)
        .map(|_| spawn(test, &["fence", backend, name, &log_text, "25"]))
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("child");
        assert!(
            out.status.success(),
            "a fencing child failed: {:?}",
            out.status
        );
    }
    let tokens: Vec<u64> = std::fs::read_to_string(log)
        .expect("log")
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().expect("token"))
        .collect();
    assert_eq!(tokens.len(), 200, "every acquisition logged its token");
    for pair in tokens.windows(2) {
        assert!(
            pair[1] > pair[0],
            "tokens not strictly increasing in acquisition order: {} then {} in {tokens:?}",
            pair[0],
            pair[1]
        );
    }
    tokens
}

#[test]
fn fencing_tokens_increase_in_acquisition_order_file() {
    child();
    let dir = fresh_dir("fence");
    let backend = format!("file:{}", dir.display());
    let log = dir.join("log");
    let test = "fencing_tokens_increase_in_acquisition_order_file";
    let first = fence_round(test, &backend, "fence", &log);
    assert_eq!(first[0], 1, "the first token is 1");
    // `cleanup` removes the lock file at every release; the counter lives beside it.
    let cleanup = format!("file-cleanup:{}", dir.display());
    let second = fence_round(test, &cleanup, "fence", &log);
    assert!(second[0] > *first.last().unwrap());
}

/// Where a once-per-period start is judged: 2 s apart with a 5 s period skips; after it runs.
fn once_per_period(test: &str, backend: &str, name: &str) {
    let period = "5000";
    let started = Instant::now();
    assert_eq!(run(test, &["start", backend, name, period]).trim(), "ran");
    while started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50)); // the subject: time passing
    }
    assert_eq!(
        run(test, &["start", backend, name, period]).trim(),
        "skipped",
        "a start 2 s after the last, within the 5 s period, must skip although the first exited"
    );
    while started.elapsed() < Duration::from_millis(5500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(run(test, &["start", backend, name, period]).trim(), "ran");
}

#[test]
fn once_per_period_file() {
    child();
    let dir = fresh_dir("period");
    once_per_period(
        "once_per_period_file",
        &format!("file:{}", dir.display()),
        "period",
    );
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    /// The restart would break the other test's sessions: one at a time.
    static SERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn url() -> String {
        std::env::var("LOCKMACRO_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A name no earlier run used, so the server's table has no row for it yet.
    fn unique(name: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{name}-{}-{nanos}", std::process::id())
    }

    fn restart_server() {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("a Debian PostgreSQL cluster")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
            .expect("a version");
        let status = Command::new("pg_ctlcluster")
            .args([&version, "main", "restart"])
            .status()
            .expect("pg_ctlcluster");
        assert!(status.success(), "restart the server");
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = Lock::new("probe").postgres(url());
        while probe.holder().is_err() {
            assert!(Instant::now() < deadline, "the server did not come back");
            std::thread::sleep(Duration::from_millis(200)); // polling the server's readiness
        }
    }

    #[test]
    fn fencing_tokens_increase_in_acquisition_order_postgres() {
        child();
        let _server = SERVER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let test = "postgres::fencing_tokens_increase_in_acquisition_order_postgres";
        let dir = fresh_dir("fence-pg");
        let backend = format!("postgres:{}", url());
        let name = unique("fence");
        let log = dir.join("log");
        let first = fence_round(test, &backend, &name, &log);
        assert_eq!(first[0], 1, "the first token is 1");
        restart_server();
        let second = fence_round(test, &backend, &name, &log);
        assert!(
            second[0] > *first.last().unwrap(),
            "tokens after a server restart ({}) must exceed those before ({})",
            second[0],
            first.last().unwrap()
        );
    }

    #[test]
    fn once_per_period_postgres() {
        child();
        let _server = SERVER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let backend = format!("postgres:{}", url());
        once_per_period(
            "postgres::once_per_period_postgres",
            &backend,
            &unique("period"),
        );
    }
}

#[test]
fn fencing_and_once_per_refuse_shared_and_slots() {
    child();
    let dir = fresh_dir("refused");
    let shared = Lock::new("shared").dir(&dir).shared().fencing();
    let err = shared
        .try_acquire()
        .expect_err("a shared lock with fencing");
    assert!(err.to_string().contains("record a start of"), "{err}");
    let slots = Lock::new("slots")
        .dir(&dir)
        .slots(2)
        .once_per(Duration::from_secs(1));
    let err = slots.try_acquire().expect_err("a slots lock with once_per");
    assert!(err.to_string().contains("record a start of"), "{err}");
    // Refused, and nothing was kept: the plain lock of the same name is free.
    drop(Lock::new("shared").dir(&dir).try_acquire().expect("free"));
}
