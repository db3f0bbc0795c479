//! `lockmacro who` and `lockmacro path` against real holders.
//!
//! - `who_names_an_exclusive_holder`: text and `--json` for a `lockmacro run` holder: its PID,
//!   `exclusive`, its start time from `/proc/PID/stat`, its command line; exit 0.
//! - `who_names_every_shared_holder`: a shared `lockmacro run` and a shared holder in this
//!   process: `shared`, both PIDs, the runtime's holder first.
//! - `who_says_free_with_status_1`, `path_prints_the_lock_file`.

mod common;

use common::{finish, lockmacro, Running, Stream};
use lockmacro_runtime::Lock;
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn who_names_an_exclusive_holder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("UTF-8").to_owned();
    let lock = Lock::new("cli-who").dir(dir.path());
    let mut held = Running::start(&mut lockmacro(&[
        "run",
        "cli-who",
        "--dir",
        &d,
        "--",
        "sh",
        "-c",
        "echo holding; exec cat",
    ]));
    held.expect(Stream::Out, "holding");
    let pid = held.pid();

    let text = finish(&mut lockmacro(&["who", "cli-who", "--dir", &d]));
    assert_eq!(text.code(), Some(0), "{text:?}");
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("lock `cli-who` is held by pid {pid} (exclusive)")
    );
    assert_eq!(lines[1], format!("  where:     {}", lock.path().display()));
    assert_eq!(lines[2], format!("  pid {pid}:"));
    assert!(
        lines[3].starts_with("    since:   ")
            && lines[3].ends_with(&format!("ago (the holder's start time, /proc/{pid}/stat)")),
        "{}",
        text.stdout
    );
    assert_eq!(
        lines[4],
        format!(
            "    command: {} run cli-who --dir {d} -- sh -c 'echo holding; exec cat'",
            common::LOCKMACRO
        )
    );

    let out = finish(&mut lockmacro(&["who", "cli-who", "--dir", &d, "--json"]));
    assert_eq!(out.code(), Some(0), "{out:?}");
    let v = json(&out.stdout);
    assert_eq!(v["held"], true);
    assert_eq!(v["name"], "cli-who");
    assert_eq!(v["pid"], pid);
    assert_eq!(v["mode"], "exclusive");
    assert_eq!(v["path"], lock.path().to_str().expect("UTF-8"));
    let holders = v["holders"].as_array().expect("holders");
    assert_eq!(holders.len(), 1, "{v}");
    assert_eq!(holders[0]["pid"], pid);
    assert_eq!(holders[0]["since_source"], "process_start");
    let since = holders[0]["since"].as_u64().expect("since");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(since <= now && now - since < 3600, "{since} vs {now}");
    assert!(holders[0]["since_utc"]
        .as_str()
        .expect("utc")
        .ends_with('Z'));
    let command: Vec<&str> = holders[0]["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|w| w.as_str().expect("word"))
        .collect();
    assert_eq!(
        command,
        [
            common::LOCKMACRO,
            "run",
            "cli-who",
            "--dir",
            &d,
            "--",
            "sh",
            "-c",
            "echo holding; exec cat"
        ]
    );
    assert!(held.finish().status.success());
}

#[test]
fn who_names_every_shared_holder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("UTF-8").to_owned();
    let mut held = Running::start(&mut lockmacro(&[
        "run",
        "cli-shared",
        "--dir",
        &d,
        "--shared",
        "--",
        "sh",
        "-c",
        "echo holding; exec cat",
    ]));
    held.expect(Stream::Out, "holding");
    let reader = Lock::new("cli-shared").dir(dir.path()).shared();
    let guard = reader.try_acquire().expect("shared with lockmacro");
    let runtime_says = reader.holder().expect("holder").expect("held");
    let mut pids = [held.pid(), std::process::id()];
    pids.sort_unstable_by_key(|&p| (p != runtime_says, p));

    let text = finish(&mut lockmacro(&["who", "cli-shared", "--dir", &d]));
    assert_eq!(text.code(), Some(0), "{text:?}");
    assert_eq!(
        text.stdout.lines().next(),
        Some(
            format!(
                "lock `cli-shared` is held by pids {}, {} (shared)",
                pids[0], pids[1]
            )
            .as_str()
        )
    );
    assert!(
        text.stdout.contains(&format!("  pid {}:", pids[1])),
        "{}",
        text.stdout
    );

    let out = finish(&mut lockmacro(&[
        "who",
        "cli-shared",
        "--dir",
        &d,
        "--json",
    ]));
    let v = json(&out.stdout);
    assert_eq!(v["mode"], "shared");
    assert_eq!(v["pid"], runtime_says);
    let listed: Vec<u64> = v["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .map(|h| h["pid"].as_u64().expect("pid"))
        .collect();
    assert_eq!(listed, pids.map(u64::from));

    // An exclusive request is refused while they hold it.
    let refused = finish(&mut lockmacro(&[
        "run",
        "cli-shared",
        "--dir",
        &d,
        "--",
        "true",
    ]));
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    drop(guard);
    assert!(held.finish().status.success());
}

#[test]
fn who_says_free_with_status_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("UTF-8").to_owned();
    let lock = Lock::new("cli-free").dir(dir.path());
    drop(lock.try_acquire().expect("free")); // the file exists, nobody holds it
    let text = finish(&mut lockmacro(&["who", "cli-free", "--dir", &d]));
    assert_eq!(text.code(), Some(1), "{text:?}");
    assert_eq!(
        text.stdout,
        format!("lock `cli-free` is free ({})", lock.path().display())
    );
    let out = finish(&mut lockmacro(&[
        "who",
        "never-used",
        "--dir",
        &d,
        "--json",
    ]));
    assert_eq!(out.code(), Some(1), "{out:?}");
    let v = json(&out.stdout);
    assert_eq!(
        (&v["held"], &v["pid"], &v["mode"]),
        (&Value::Bool(false), &Value::Null, &Value::Null)
    );
    assert_eq!(v["holders"], Value::Array(Vec::new()));
}

#[test]
fn path_prints_the_lock_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("UTF-8").to_owned();
    let lock = Lock::new("Reports/2024 Q1").dir(dir.path());
    let text = finish(&mut lockmacro(&["path", "Reports/2024 Q1", "--dir", &d]));
    assert_eq!(text.code(), Some(0), "{text:?}");
    assert_eq!(text.stdout, lock.path().display().to_string());
    let out = finish(&mut lockmacro(&[
        "path",
        "Reports/2024 Q1",
        "--dir",
        &d,
        "--json",
    ]));
    let v = json(&out.stdout);
    assert_eq!(v["path"], lock.path().to_str().expect("UTF-8"));
    assert_eq!(v["name"], "Reports/2024 Q1");

    // Without --dir: $LOCKMACRO_DIR, as for `#[exclusive]`.
    let text = finish(lockmacro(&["path", "x"]).env("LOCKMACRO_DIR", dir.path()));
    assert_eq!(
        text.stdout,
        Lock::new("x").dir(dir.path()).path().display().to_string()
    );
}
