//! PostgreSQL locks over TLS, a Unix socket and the libpq environment, end to end through
//! `Lock` (the connection rules themselves are unit-tested in the runtime's
//! `postgres::connect`). Needs the server that `.ci/pg-tls-setup` prepares (its certificate
//! directory in `LOCKMACRO_TEST_PG_TLS`: a test CA, role `lm_tls` allowed only over TLS, role
//! `lm_peer` by peer authentication on the socket). Feature `postgres` only.
//!
//! - `verify_full_lock_excludes_and_a_wrong_ca_is_refused_clearly`: two locks over
//!   `sslmode=verify-full` exclude each other; with another CA the error names the server and
//!   key and says why, and shows no password; an unreadable `sslrootcert` is an error even with
//!   `sslmode=require`.
//! - `socket_lock_with_peer_authentication`: `postgres:///test?host=/var/run/postgresql`.
//! - `lock_from_the_libpq_environment`: no URL; `PGHOST`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`,
//!   `PGSSLROOTCERT`, `PGDATABASE` (in a child process, so the environment is its own); and
//!   with neither `LOCKMACRO_POSTGRES_URL` nor `PGHOST`, a clear error rather than a default
//!   local server.
#![cfg(feature = "postgres")]

use std::path::PathBuf;
use std::process::Command;

use lockmacro_runtime::{Error, Lock};

const CHILD: &str = "LOCKMACRO_TEST_PG_TLS_CHILD";

fn certs() -> PathBuf {
    match std::env::var_os("LOCKMACRO_TEST_PG_TLS") {
        Some(dir) => PathBuf::from(dir),
        None => panic!("LOCKMACRO_TEST_PG_TLS is not set: run .ci/pg-tls-setup (as .ci/run does)"),
    }
}

fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

#[test]
fn verify_full_lock_excludes_and_a_wrong_ca_is_refused_clearly() {
    let dir = certs();
    let url = format!(
        "postgres://lm_tls:lm-tls-password@localhost:5432/test?sslmode=verify-full&sslrootcert={}",
        dir.join("ca.crt").display()
    );
    let name = unique("tls");
    let first = Lock::new(&name).postgres(&url);
    let guard = first.try_acquire().expect("over TLS, verified");
    match Lock::new(&name).postgres(&url).try_acquire() {
        Err(Error::Held { .. }) => {}
        other => panic!("expected Held, got {other:?}"),
    }
    drop(guard);

    let wrong = format!(
        "postgres://lm_tls:lm-tls-password@localhost:5432/test?sslmode=verify-full&sslrootcert={}",
        dir.join("other-ca.crt").display()
    );
    let err = Lock::new(&name)
        .postgres(wrong)
        .try_acquire()
        .expect_err("another CA");
    let text = err.to_string();
    let mut chain = text.clone();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain.push_str(&format!(": {c}"));
        cause = c.source();
    }
    assert!(matches!(err, Error::Postgres { .. }), "{err:?}");
    assert!(
        text.contains("localhost:5432/test"),
        "names the server: {text}"
    );
    assert!(text.contains("advisory lock"), "names the key: {text}");
    assert!(
        chain.to_lowercase().contains("certificate"),
        "says it is the certificate: {chain}"
    );
    assert!(
        !chain.contains("lm-tls-password"),
        "never the password: {chain}"
    );
}

#[test]
fn socket_lock_with_peer_authentication() {
    let url = "postgres:///test?host=/var/run/postgresql&user=lm_peer";
    let name = unique("socket");
    let guard = Lock::new(&name)
        .postgres(url)
        .try_acquire()
        .expect("over the socket, as root mapped to lm_peer");
    assert!(Lock::new(&name)
        .postgres(url)
        .try_acquire()
        .unwrap_err()
        .is_contended());
    drop(guard);
}

#[test]
fn lock_from_the_libpq_environment() {
    if let Ok(task) = std::env::var(CHILD) {
        let result = Lock::new(unique("env")).postgres_from_env().try_acquire();
        match (task.as_str(), result) {
            ("env", Ok(_)) => std::process::exit(0),
            ("none", Err(e))
                if std::error::Error::source(&e)
                    .is_some_and(|c| c.to_string().contains("PGHOST")) =>
            {
                std::process::exit(0)
            }
            (_, other) => {
                eprintln!("{task}: {other:?}");
                std::process::exit(1)
            }
        }
    }
    let dir = certs();
    let run = |task: &str, env: &[(&str, String)]| {
        let mut cmd = Command::new(std::env::current_exe().expect("exe"));
        cmd.args(["lock_from_the_libpq_environment", "--exact", "--nocapture"])
            .env(CHILD, task);
        for var in [
            "LOCKMACRO_POSTGRES_URL",
            "PGHOST",
            "PGHOSTADDR",
            "PGUSER",
            "PGPASSWORD",
            "PGDATABASE",
            "PGSSLMODE",
            "PGSSLROOTCERT",
        ] {
            cmd.env_remove(var);
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        let status = cmd.status().expect("child");
        assert!(status.success(), "child {task}: {status:?}");
    };
    run(
        "env",
        &[
            ("PGHOST", "localhost".into()),
            ("PGUSER", "lm_tls".into()),
            ("PGPASSWORD", "lm-tls-password".into()),
            ("PGDATABASE", "test".into()),
            ("PGSSLMODE", "verify-full".into()),
            ("PGSSLROOTCERT", dir.join("ca.crt").display().to_string()),
        ],
    );
    run("none", &[]);
}
