//! `lockmacro run --postgres` and `lockmacro who --postgres` against a real server (feature
//! `postgres`): `LOCKMACRO_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`;
//! `psql` must be on `PATH`.
//!
//! - `refused_both_ways_against_the_runtime`: `lockmacro run --postgres` and
//!   `Lock::new(NAME).postgres(URL)` in this process exclude each other, with lockmacro's PID
//!   (from the session's `application_name`) in the runtime's error and the same one line.
//! - `who_names_the_holder_on_this_host`: text and JSON, exit 0; 1 once free.
//! - `a_lost_session_stops_the_command_with_75`: `pg_terminate_backend` of lockmacro's session
//!   ends CMD (SIGTERM) and lockmacro exits 75.
#![cfg(feature = "postgres")]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{finish, lockmacro, Running, Stream};
use lockmacro_runtime::{Error, Lock, LOST_EXIT_CODE};
use serde_json::Value;

fn url() -> String {
    std::env::var("LOCKMACRO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A lock name no other test (or run on the same server) uses.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("cli-{tag}-{}-{nanos}", std::process::id())
}

/// Runs one SQL statement with psql; its unaligned, tuples-only output.
fn sql(query: &str) -> String {
    let mut child = Command::new("psql")
        .args([url().as_str(), "-AtXq", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run psql (is the PostgreSQL client installed?): {e}"));
    let mut stdin = child.stdin.take().expect("psql stdin");
    stdin.write_all(query.as_bytes()).expect("write the query");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for psql");
    assert!(
        out.status.success(),
        "psql failed: {}\nquery: {query}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `lockmacro run NAME --postgres URL -- sh -c 'echo holding; exec cat'`, holding.
fn holding(name: &str) -> Running {
    let url = url();
    let mut held = Running::start(&mut lockmacro(&[
        "run",
        name,
        "--postgres",
        &url,
        "--",
        "sh",
        "-c",
        "echo holding; exec cat",
    ]));
    held.expect(Stream::Out, "holding");
    held
}

#[test]
fn refused_both_ways_against_the_runtime() {
    let name = unique("refused");
    let url = url();
    let lock = Lock::new(name.as_str()).postgres(url.as_str());

    let held = holding(&name);
    match lock.try_acquire() {
        Err(Error::Held { pid, .. }) => assert_eq!(pid, Some(held.pid())),
        other => panic!("expected Held, got {other:?}"),
    }
    assert!(held.finish().status.success());

    let guard = lock.try_acquire().expect("free once lockmacro is gone");
    let refused = finish(&mut lockmacro(&[
        "run",
        &name,
        "--postgres",
        &url,
        "--",
        "echo",
        "ran",
    ]));
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    assert_eq!(refused.stdout, "");
    assert_eq!(
        refused.stderr,
        format!(
            "lockmacro: lock `{name}` is already held by pid {} ({})",
            std::process::id(),
            lock.location()
        )
    );
    drop(guard);
    let ran = finish(&mut lockmacro(&[
        "run",
        &name,
        "--postgres",
        &url,
        "--",
        "echo",
        "ran",
    ]));
    assert_eq!(
        (ran.code(), ran.stdout.as_str()),
        (Some(0), "ran"),
        "{ran:?}"
    );
}

#[test]
fn who_names_the_holder_on_this_host() {
    let name = unique("who");
    let url = url();
    let held = holding(&name);
    let pid = held.pid();

    let text = finish(&mut lockmacro(&["who", &name, "--postgres", &url]));
    assert_eq!(text.code(), Some(0), "{text:?}");
    assert_eq!(
        text.stdout.lines().next(),
        Some(format!("lock `{name}` is held by pid {pid}").as_str())
    );
    assert!(text
        .stdout
        .contains(&format!("    command: {} run {name}", common::LOCKMACRO)));

    let out = finish(&mut lockmacro(&[
        "who",
        &name,
        "--postgres",
        &url,
        "--json",
    ]));
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(
        (&v["held"], &v["pid"]),
        (&Value::Bool(true), &Value::from(pid))
    );
    assert_eq!(v["path"], Value::Null);
    assert!(v["location"]
        .as_str()
        .expect("location")
        .starts_with("postgres://"));
    assert!(held.finish().status.success());

    let free = finish(&mut lockmacro(&["who", &name, "--postgres", &url]));
    assert_eq!(free.code(), Some(1), "{free:?}");
    assert!(
        free.stdout
            .contains("is not held by a process on this host"),
        "{free:?}"
    );
}

#[test]
fn a_lost_session_stops_the_command_with_75() {
    let name = unique("lost");
    let url = url();
    let mut running = Running::start(&mut lockmacro(&[
        "run",
        &name,
        "--postgres",
        &url,
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 1000",
    ]));
    running.expect(Stream::Out, "ready");
    let ended = sql(&format!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'lockmacro %:{} %') t",
        running.pid()
    ));
    assert_eq!(ended, "1", "lockmacro's session");
    let done = running.finish();
    assert_eq!(done.code(), Some(LOST_EXIT_CODE), "{done:?}");
    let lost = format!("lockmacro: lost lock `{name}` while holding it");
    assert!(
        done.stderr
            .lines()
            .any(|l| l.starts_with(&lost) && l.contains("stopping the command (pid")),
        "{done:?}"
    );
    // The lock is free for the next one.
    let next = finish(&mut lockmacro(&[
        "run",
        &name,
        "--postgres",
        &url,
        "--",
        "true",
    ]));
    assert_eq!(next.code(), Some(0), "{next:?}");
}

#[test]
fn postgres_env_reads_the_url_from_the_environment() {
    let name = unique("env");
    let done = finish(
        lockmacro(&["run", &name, "--postgres-env", "--", "echo", "ran"])
            .env("LOCKMACRO_POSTGRES_URL", url()),
    );
    assert_eq!(
        (done.code(), done.stdout.as_str()),
        (Some(0), "ran"),
        "{done:?}"
    );
    let unreachable = finish(&mut lockmacro(&[
        "run",
        &name,
        "--postgres",
        "postgres://postgres@127.0.0.1:1/none",
        "--",
        "true",
    ]));
    assert_eq!(unreachable.code(), Some(71), "{unreachable:?}");
    assert!(unreachable.stderr.contains("(hint: "), "{unreachable:?}");
}
