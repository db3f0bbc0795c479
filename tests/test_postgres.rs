//! The PostgreSQL backend against a real server (feature `postgres`): exclusion across
//! processes, the documented key SQL, kill -9 and `pg_terminate_backend` of the holder, a frozen
//! network path, and a stress test judged by the oracle of `tests/support/oracle.rs`. The
//! children are `lm-child pg-*` and `lm-child stress --postgres=<url>`. The server is
//! `LOCKMACRO_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`); `psql`
//! must be on `PATH`. `.ci/run` makes sure both are there.
#![cfg(feature = "postgres")]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockmacro_runtime::{postgres_key_for, KEY_SQL, LOST_EXIT_CODE};
use support::{child, Line, Oracle, Proc, PATIENCE};

fn url() -> String {
    std::env::var("LOCKMACRO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A lock name no other test (or concurrent CI run on the same server) uses.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// Runs one SQL statement with psql; its unaligned, tuples-only output.
fn sql(query: &str) -> String {
    // The query goes through stdin: it can be longer than a command line may be.
    let mut psql = Command::new("psql");
    psql.args([url().as_str(), "-AtXq", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = support::spawn(&mut psql)
        .unwrap_or_else(|e| panic!("run psql (is the PostgreSQL client installed?): {e}"));
    let mut stdin = child.stdin.take().expect("psql stdin");
    stdin
        .write_all(query.as_bytes())
        .expect("write the query to psql");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for psql");
    assert!(
        out.status.success(),
        "psql failed: {}\nquery: {query}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An `lm-child pg-<command>` child for lock `name` on the server at `url`.
fn pg(command: &str, url: &str, name: &str, extra: &[&str]) -> Proc {
    let command = format!("pg-{command}");
    child([command.as_str(), url, name].iter().chain(extra)).spawn()
}

/// Waits until the server shows a session of process `pid` (so it is connected and polling).
fn wait_for_session_of(pid: u32) {
    let deadline = Instant::now() + PATIENCE;
    let query = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lockmacro %:{pid} %'"
    );
    while sql(&query) == "0" {
        assert!(Instant::now() < deadline, "no session of pid {pid}");
        std::thread::sleep(Duration::from_millis(5)); // paces the polling; decides nothing
    }
}

fn t_field(line: &Line) -> u128 {
    line.number("t")
}

#[test]
fn exclusion_through_the_server_try_wait_timeout_and_pg_locks() {
    let name = unique("excl");
    let mut holder = pg("hold", &url(), &name, &[]);
    let pid = holder.expect_pid("locked");

    // try: refused, naming the holder's PID and the server.
    let mut other = pg("hold", &url(), &name, &[]);
    let line = other.expect("held");
    assert_eq!(line.pid_of("holder"), Some(pid), "{line}");
    let msg = line.field("msg");
    assert!(
        msg.contains(&format!("lock `{name}` is already held by pid {pid}")),
        "{line}"
    );
    assert!(
        msg.contains("postgres://127.0.0.1:5432/test advisory lock"),
        "{line}"
    );
    assert_eq!(other.finish().status.code(), Some(3));

    // timeout: gives up after the timeout, naming the holder.
    let mut timed = pg("timeout", &url(), &name, &["300"]);
    let line = timed.expect("timeout");
    assert_eq!(line.pid_of("holder"), Some(pid), "{line}");
    assert!(line.number::<u64>("elapsed_ms") >= 300, "{line}");
    assert_eq!(timed.finish().status.code(), Some(4));

    // The holder, as operators see it in pg_locks, with the documented key.
    let key = postgres_key_for(&name);
    let seen = sql(&format!(
        "SELECT a.application_name || '|' || l.mode FROM pg_locks l JOIN pg_stat_activity a \
         ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
         AND ((l.classid::bigint << 32) | l.objid::bigint) = {key}"
    ));
    let (app, mode) = seen.split_once('|').unwrap_or_else(|| panic!("{seen:?}"));
    assert!(
        app.starts_with("lockmacro ") && app.contains(&format!(":{pid} {name}")),
        "{app}"
    );
    assert_eq!(mode, "ExclusiveLock");

    // wait: gets it as soon as the holder leaves.
    let mut waiter = pg("wait", &url(), &name, &[]);
    waiter.expect("waiting");
    holder.finish_ok();
    waiter.expect("acquired");
    waiter.finish_ok();
}

#[test]
fn the_key_equals_the_documented_sql_for_1000_names() {
    let names: Vec<String> = (0..1000)
        .map(|i| match i % 4 {
            0 => format!("job-{i}"),
            1 => format!("Zürich café {i} ✓"),
            2 => "x".repeat(i),
            _ => format!("with 'quotes' and \\ {i}"),
        })
        .collect();
    let array = names
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",");
    let expr = KEY_SQL
        .strip_prefix("SELECT ")
        .expect("KEY_SQL is a SELECT")
        .replace("$1", "n");
    let keys = sql(&format!(
        "SELECT {expr} FROM unnest(ARRAY[{array}]::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i"
    ));
    let keys: Vec<i64> = keys
        .lines()
        .map(|k| k.parse().unwrap_or_else(|e| panic!("{k:?}: {e}")))
        .collect();
    assert_eq!(keys.len(), names.len());
    for (name, key) in names.iter().zip(keys) {
        assert_eq!(postgres_key_for(name), key, "{name:?}");
    }
}

#[test]
fn kill_9_of_the_holder_lets_a_waiter_in_within_a_second_20_times() {
    let name = unique("kill");
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        let mut holder = pg("hold", &url(), &name, &[]);
        holder.expect("locked");
        let mut waiter = pg("wait", &url(), &name, &[]);
        waiter.expect("waiting");
        wait_for_session_of(waiter.id());
        let killed = Instant::now();
        holder.kill();
        waiter.expect("acquired");
        let took = killed.elapsed();
        assert!(took < Duration::from_secs(1), "round {round}: {took:?}");
        slowest = slowest.max(took);
        waiter.finish_ok();
    }
    eprintln!("kill -9 to the waiter's `acquired` line: slowest of 20 rounds {slowest:?}");
}

#[test]
fn terminating_the_holders_session_exits_it_with_the_lost_code_within_a_heartbeat() {
    // Lease 5 s: one heartbeat is 1 s. The loss is seen when the connection ends, at once.
    let name = unique("term");
    let mut holder = pg("hold", &url(), &name, &["--lease=5000"]);
    let pid = holder.expect_pid("locked");
    let started = Instant::now();
    terminate_session_of(pid);
    let done = holder.exited();
    let took = started.elapsed();
    assert_eq!(done.status.code(), Some(LOST_EXIT_CODE), "{}", done.stderr);
    assert!(
        done.stderr
            .contains(&format!("lost lock `{name}` while holding it")),
        "{}",
        done.stderr
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn terminating_the_session_is_reported_with_on_lost_report_and_cancels_an_async_body() {
    let name = unique("report");
    let mut holder = pg("hold", &url(), &name, &["--lease=5000", "--report"]);
    let pid = holder.expect_pid("locked");
    terminate_session_of(pid);
    let line = holder.expect("lost");
    assert!(line.field("msg").contains("the connection ended"), "{line}");
    holder.finish_ok();

    let mut cancel = child(["pg-attr-cancel", &url()]).spawn();
    let pid = cancel.expect_pid("locked");
    terminate_session_of(pid);
    let line = cancel.expect("cancelled");
    assert!(
        line.field("msg").contains("lost lock `pg-attr-cancel`"),
        "{line}"
    );
    cancel.finish_ok();
}

fn terminate_session_of(pid: u32) {
    let ended = sql(&format!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'lockmacro %:{pid} %') t"
    ));
    assert_eq!(ended, "1", "the session of pid {pid}");
}

/// A loopback TCP proxy to the server that can freeze: stop forwarding in both directions
/// without closing anything, as a stuck network path does.
struct Proxy {
    port: u16,
    frozen: Arc<AtomicBool>,
}

impl Proxy {
    fn start() -> Proxy {
        let upstream = server_address();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&frozen);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    return;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (from, to) = (from.try_clone(), to.try_clone());
                    let (Ok(mut from), Ok(mut to)) = (from, to) else {
                        return;
                    };
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 8192];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if flag.load(Ordering::SeqCst) {
                                // Frozen: keep both sockets open, forward nothing, ever.
                                let _keep = (&from, &to);
                                loop {
                                    std::thread::park();
                                }
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Proxy { port, frozen }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

/// host:port of the test server, from its URL.
fn server_address() -> String {
    let url = url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next().unwrap_or("127.0.0.1:5432");
    if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    }
}

#[test]
fn a_frozen_network_path_is_declared_lost_before_the_server_lets_a_contender_in_20_of_20() {
    let name = unique("frozen");
    let mut leads = Vec::new();
    for round in 0..20 {
        let proxy = Proxy::start();
        // Lease 1 s: the holder gives up 0.5 s after its last answered heartbeat was sent; the
        // server ends its session after 1 s of silence, and only then lets the contender in.
        let mut holder = pg("hold", &proxy.url(), &name, &["--lease=1000", "--report"]);
        holder.expect("locked");
        let mut contender = pg("wait", &url(), &name, &[]);
        contender.expect("waiting");
        wait_for_session_of(contender.id());
        proxy.freeze();
        let lost = t_field(&holder.expect("lost"));
        let acquired = t_field(&contender.expect("acquired"));
        assert!(
            lost < acquired,
            "round {round}: the contender got in {} ms before the holder declared the loss",
            (lost - acquired) / 1_000_000
        );
        leads.push((acquired - lost) / 1_000_000);
        contender.finish_ok();
        holder.kill();
    }
    leads.sort_unstable();
    eprintln!(
        "the holder declared the loss {}..{} ms (median {}) before the contender got in",
        leads[0],
        leads[leads.len() - 1],
        leads[leads.len() / 2]
    );
}

#[test]
fn stress_8_processes_25_acquisitions_each_through_the_server_never_overlap() {
    let name = unique("stress");
    let work = tempfile::tempdir().expect("tempdir");
    let oracle = Oracle::create(work.path());
    let dir = oracle.dir().display().to_string();
    let server = format!("--postgres={}", url());
    let mut children: Vec<Proc> = (0..8)
        .map(|_| child(["stress", "-", &name, "25", &dir, &server]).spawn())
        .collect();
    for child in &mut children {
        child.expect_pid("ready");
    }
    for child in &mut children {
        child.send("go");
    }
    let (mut overlaps, mut failures) = (0, 0);
    for child in &mut children {
        let done = child.expect("done");
        overlaps += done.number::<u32>("overlaps");
        failures += done.number::<u32>("corrupt") + done.number::<u32>("errors");
    }
    for child in children {
        child.finish_ok();
    }
    assert_eq!(overlaps, 0);
    assert_eq!(failures, 0, "torn counter reads or failed acquisitions");
    assert_eq!(oracle.count(), Some(200));
}

#[test]
fn the_attribute_with_backend_postgres_keeps_its_exit_policy() {
    let mut first = child(["pg-attr-main", &url()]).spawn();
    let pid = first.expect_pid("ran");
    let second = child(["pg-attr-main", &url()]).spawn().finish();
    assert_eq!(second.status.code(), Some(1), "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains(&format!("lock `pg-attr-main` is already held by pid {pid}")),
        "{}",
        second.stderr
    );
    first.finish_ok();
}

#[test]
fn an_unreachable_server_is_an_error_never_a_file_lock() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed); // nothing listens there now
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let done = pg("hold", &url, &unique("down"), &[]).finish();
    assert_eq!(done.status.code(), Some(2), "{}", done.stderr);
    assert!(
        done.stderr.contains("cannot connect to the server of"),
        "{}",
        done.stderr
    );
}

/// The runtime API in one process: sessions exclude each other like processes do, the async
/// forms work on any executor, and a cancelled async wait leaves nothing held.
#[test]
fn async_acquisition_timeout_and_cancellation_in_one_process() {
    use std::future::Future as _;

    use futures::executor::block_on;
    use lockmacro_runtime::{Error, Lock};

    let name = unique("async");
    let lock = Lock::new(name.as_str()).postgres(url());
    let guard = block_on(lock.acquire_async()).expect("acquire_async");
    assert!(!guard.is_lost());
    guard.check().expect("held");

    let other = Lock::new(name.as_str()).postgres(url());
    match other.try_acquire() {
        Err(Error::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        x => panic!("expected Held, got {x:?}"),
    }
    match block_on(other.acquire_timeout_async(Duration::from_millis(200))) {
        Err(Error::Timeout { .. }) => {}
        x => panic!("expected Timeout, got {x:?}"),
    }

    // A waiter whose future is dropped while it waits: nothing may stay held by it.
    {
        let mut waiting = Box::pin(other.acquire_async());
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
    }
    guard.release().expect("release");
    let again = Lock::new(name.as_str()).postgres(url());
    let guard = again
        .acquire_timeout(Duration::from_secs(10))
        .expect("free again after the cancelled wait");
    assert_eq!(again.holder().expect("holder"), Some(std::process::id()));
    drop(guard);
    assert_eq!(again.holder().expect("holder"), None);
}
