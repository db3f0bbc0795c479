//! `lockmacro list` against real holders, and `--system` across users.
//!
//! - `list_shows_each_lock_once_with_its_holders`: in a `--dir`, an exclusive `lockmacro run`
//!   holder, two shared ones, a free lock whose `.state` file (of `fencing`) is not listed apart,
//!   and a slots lock held twice by this process (one line for its two slot files); exact text,
//!   and `--json` (name, path, held, mode, slots, recorded_pid, holders with their command).
//! - `list_of_an_empty_or_missing_directory`: `DIR: no locks` / `[]`, status 0.
//! - `list_and_who_see_another_users_system_lock` (root only): `nobody` holds a `--system` lock
//!   (setpriv); root's `list --system` (text and `--json`) and `who --system NAME` name it.
//! - `system_locks_exclude_each_other_across_users` (root only): root holding refuses nobody's
//!   `run --system`, and nobody holding (in root's file) refuses root's.

mod common;

use common::{finish, lockmacro, lockmacro_as_nobody, lockmacro_system, Running, Stream};
use lockmacro_runtime::Lock;
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const HOLD: &str = "echo holding; exec cat";

fn pids_of(entry: &Value) -> Vec<u64> {
    entry["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .map(|h| h["pid"].as_u64().expect("pid"))
        .collect()
}

#[test]
fn list_shows_each_lock_once_with_its_holders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("UTF-8").to_owned();
    let run = |name: &str, shared: bool| {
        let mut args = vec!["run", name, "--dir", &d];
        if shared {
            args.push("--shared");
        }
        args.extend(["--", "sh", "-c", HOLD]);
        let mut held = Running::start(&mut lockmacro(&args));
        held.expect(Stream::Out, "holding");
        held
    };
    let excl = run("cli-list-excl", false);
    let shared_a = run("cli-list-shared", true);
    let shared_b = run("cli-list-shared", true);
    let fenced = Lock::new("cli-list-fenced").dir(dir.path()).fencing();
    drop(fenced.try_acquire().expect("free"));
    assert!(
        std::path::Path::new(&format!("{}.state", fenced.path().display())).exists(),
        "fencing leaves its .state file"
    );
    let pool = Lock::new("cli-list-pool").dir(dir.path()).slots(2);
    let slots = (
        pool.try_acquire().expect("slot 1"),
        pool.try_acquire().expect("slot 2"),
    );
    let me = std::process::id();
    let (e, mut s) = (excl.pid(), [shared_a.pid(), shared_b.pid()]);
    s.sort_unstable();
    let command = |name: &str, shared: &str| {
        format!(
            "{} run {name} --dir {d}{shared} -- sh -c 'echo holding; exec cat'",
            common::LOCKMACRO
        )
    };

    let text = finish(&mut lockmacro(&["list", "--dir", &d]));
    assert_eq!(text.code(), Some(0), "{text:?}");
    let lines: Vec<&str> = text.stdout.lines().collect();
    let expected = [
        format!("{d}:"),
        format!("  cli-list-excl    held by pid {e} (exclusive)"),
        format!("    pid {e}: {}", command("cli-list-excl", "")),
        "  cli-list-fenced  free".to_owned(),
        format!("  cli-list-pool    held by pids {me}, {me} (slots)"),
        format!("    pid {me}: "), // this test binary's command line
        format!(
            "  cli-list-shared  held by pids {}, {} (shared)",
            s[0], s[1]
        ),
        format!(
            "    pid {}: {}",
            s[0],
            command("cli-list-shared", " --shared")
        ),
        format!(
            "    pid {}: {}",
            s[1],
            command("cli-list-shared", " --shared")
        ),
    ];
    assert_eq!(lines.len(), expected.len(), "{}", text.stdout);
    for (line, want) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(want.as_str()),
            "{line:?} vs {want:?}\n{}",
            text.stdout
        );
        if !want.ends_with(": ") {
            assert_eq!(line, want);
        }
    }

    let out = finish(&mut lockmacro(&["list", "--dir", &d, "--json"]));
    assert_eq!(out.code(), Some(0), "{out:?}");
    let v = json(&out.stdout);
    let entries = v.as_array().expect("an array");
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "cli-list-excl",
            "cli-list-fenced",
            "cli-list-pool",
            "cli-list-shared"
        ]
    );
    let [excl_v, fenced_v, pool_v, shared_v] = &entries[..] else {
        unreachable!()
    };
    assert_eq!(
        excl_v["path"],
        Lock::new("cli-list-excl")
            .dir(dir.path())
            .path()
            .to_str()
            .expect("UTF-8")
    );
    assert_eq!(
        (&excl_v["held"], &excl_v["mode"]),
        (&Value::Bool(true), &Value::from("exclusive"))
    );
    assert_eq!(excl_v["slots"], Value::Null);
    assert_eq!(excl_v["recorded_pid"], e);
    assert_eq!(pids_of(excl_v), [u64::from(e)]);
    assert_eq!(excl_v["holders"][0]["since_source"], "process_start");
    assert_eq!(excl_v["holders"][0]["command"][1], "run");
    assert_eq!(
        (&fenced_v["held"], &fenced_v["mode"]),
        (&Value::Bool(false), &Value::Null)
    );
    assert_eq!(fenced_v["recorded_pid"], me);
    assert_eq!(pids_of(fenced_v), Vec::<u64>::new());
    assert_eq!(pool_v["path"], pool.path().to_str().expect("UTF-8"));
    assert_eq!(
        (&pool_v["mode"], &pool_v["slots"]),
        (&Value::from("slots"), &Value::from(2))
    );
    assert_eq!(pids_of(pool_v), [u64::from(me); 2]);
    assert_eq!(shared_v["mode"], "shared");
    assert_eq!(pids_of(shared_v), s.map(u64::from));

    drop(slots);
    for held in [excl, shared_a, shared_b] {
        assert!(held.finish().status.success());
    }
    let out = json(&finish(&mut lockmacro(&["list", "--dir", &d, "--json"])).stdout);
    assert!(
        out.as_array()
            .expect("array")
            .iter()
            .all(|e| e["held"] == false),
        "{out}"
    );
}

#[test]
fn list_of_an_empty_or_missing_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    for d in [dir.path().to_owned(), dir.path().join("never-made")] {
        let d = d.to_str().expect("UTF-8").to_owned();
        let text = finish(&mut lockmacro(&["list", "--dir", &d]));
        assert_eq!(
            (text.code(), text.stdout.as_str()),
            (Some(0), format!("{d}: no locks").as_str())
        );
        let out = finish(&mut lockmacro(&["list", "--dir", &d, "--json"]));
        assert_eq!((out.code(), out.stdout.as_str()), (Some(0), "[]"));
    }
    // Without --dir: $LOCKMACRO_DIR, as for `run`.
    let text = finish(lockmacro(&["list"]).env("LOCKMACRO_DIR", dir.path()));
    assert_eq!(text.stdout, format!("{}: no locks", dir.path().display()));
}

#[test]
fn list_and_who_see_another_users_system_lock() {
    if !common::root() {
        return;
    }
    let system = common::system_dir();
    let sys = system.path();
    let mut held = Running::start(&mut lockmacro_as_nobody(
        sys,
        &["run", "--system", "cli-sys", "--", "sh", "-c", HOLD],
    ));
    held.expect(Stream::Out, "holding");
    let pid = held.pid();
    let lock_path = Lock::new("cli-sys").dir(sys).path().to_path_buf();
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&lock_path).expect("nobody made the lock file");
        assert_ne!(meta.uid(), 0, "the lock file is nobody's");
    }
    let command = format!(
        "{} run --system cli-sys -- sh -c 'echo holding; exec cat'",
        common::LOCKMACRO
    );

    let text = finish(&mut lockmacro_system(sys, &["list", "--system"]));
    assert_eq!(text.code(), Some(0), "{text:?}");
    assert_eq!(
        text.stdout,
        format!(
            "{}:\n  cli-sys  held by pid {pid} (exclusive)\n    pid {pid}: {command}",
            sys.display()
        )
    );
    let v = json(&finish(&mut lockmacro_system(sys, &["list", "--system", "--json"])).stdout);
    assert_eq!(v[0]["name"], "cli-sys");
    assert_eq!(v[0]["path"], lock_path.to_str().expect("UTF-8"));
    assert_eq!(v[0]["mode"], "exclusive");
    assert_eq!(pids_of(&v[0]), [u64::from(pid)]);
    assert_eq!(v.as_array().map(Vec::len), Some(1));

    let who = finish(&mut lockmacro_system(sys, &["who", "--system", "cli-sys"]));
    assert_eq!(who.code(), Some(0), "{who:?}");
    let lines: Vec<&str> = who.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("lock `cli-sys` is held by pid {pid} (exclusive)")
    );
    assert_eq!(lines[1], format!("  where:     {}", lock_path.display()));
    assert_eq!(lines[4], format!("    command: {command}"));
    let v = json(
        &finish(&mut lockmacro_system(
            sys,
            &["who", "--system", "cli-sys", "--json"],
        ))
        .stdout,
    );
    assert_eq!(
        (&v["held"], &v["pid"]),
        (&Value::Bool(true), &Value::from(pid))
    );

    // The per-user directory is another scope: not there.
    let mine = tempfile::tempdir().expect("temp dir");
    let text = finish(lockmacro_system(sys, &["list"]).env("LOCKMACRO_DIR", mine.path()));
    assert_eq!(text.stdout, format!("{}: no locks", mine.path().display()));
    assert!(held.finish().status.success());
}

#[test]
fn system_locks_exclude_each_other_across_users() {
    if !common::root() {
        return;
    }
    let system = common::system_dir();
    let sys = system.path();
    let try_run = |cmd: &mut std::process::Command| finish(cmd);
    let quick = ["run", "--system", "cli-sys-x", "--", "true"];
    let hold = ["run", "--system", "cli-sys-x", "--", "sh", "-c", HOLD];

    // Root holds (and so owns the file); nobody is refused.
    let mut held = Running::start(&mut lockmacro_system(sys, &hold));
    held.expect(Stream::Out, "holding");
    let refused = try_run(&mut lockmacro_as_nobody(sys, &quick));
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains(&format!("is already held by pid {}", held.pid())),
        "{refused:?}"
    );
    assert!(held.finish().status.success());

    // Nobody holds, in root's file (which nobody may lock but not write); root is refused.
    let mut held = Running::start(&mut lockmacro_as_nobody(sys, &hold));
    held.expect(Stream::Out, "holding");
    let refused = try_run(&mut lockmacro_system(sys, &quick));
    assert_eq!(refused.code(), Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("is already held by pid"),
        "{refused:?}"
    );
    assert!(held.finish().status.success());

    // Free again: both get it.
    assert_eq!(try_run(&mut lockmacro_system(sys, &quick)).code(), Some(0));
    assert_eq!(
        try_run(&mut lockmacro_as_nobody(sys, &quick)).code(),
        Some(0)
    );
}
