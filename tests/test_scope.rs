//! Where a lock is, beyond a name in the user's directory: a lock on an exact path
//! (`Lock::at`), shared with `flock(1)` and shell scripts; a lock for every user of the machine
//! (`Lock::system`), with the rules that keep other users from squatting it; and the lock's
//! name recorded in its file, listed by `inspect`.
//!
//! Multi-user tests run `lm-child` children (`tests/bin/child/hold.rs`) as root and, through
//! `setpriv`, as `nobody` (65534) or a second unprivileged uid (65533, which needs no account),
//! all with `umask 077` (the strictest a service may have: what is created must still be usable
//! by the others). The system directory is moved into a temporary sticky directory with the test
//! hook `LOCKMACRO_TEST_SYSTEM_DIR` (see `lockmacro-runtime/src/hooks.rs`), so the machine's
//! `/run/lock/lockmacro` is never touched. Children report events as lines; the test waits for
//! the line, never for a while; a deadline (`support::PATIENCE`) only turns a hang into a failure.
//!
//! Each test says at its top what it failed with when its feature was broken on purpose.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use lockmacro_runtime::{inspect, Error, Lock};
use support::{child, probe, require_setpriv, set_mode, Finished, Proc, Reported, Seen, NOBODY};
use tempfile::TempDir;

/// The test hook that moves the system directory (never inherited by a child: `support::proc`).
const SYSTEM_ENV: &str = "LOCKMACRO_TEST_SYSTEM_DIR";

/// A second unprivileged user (no account needed for `setpriv`).
const OTHER: u32 = 65533;

// --- children and files ---------------------------------------------------------------------

/// `lm-child args...` as `uid` (root if `None`), with `umask 077`, the system directory
/// moved to `system` (if given) and the working directory `cwd` (if given).
fn as_user(uid: Option<u32>, system: Option<&Path>, cwd: Option<&Path>, args: &[&str]) -> Proc {
    let mut wrapper: Vec<String> =
        vec!["sh".into(), "-c".into(), "umask 077 && exec \"$@\"".into()];
    wrapper.push("sh".into());
    if let Some(uid) = uid {
        wrapper.extend([
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ]);
    }
    let mut spec = child(args).wrapped(wrapper);
    if let Some(system) = system {
        spec = spec.env(SYSTEM_ENV, system);
    }
    if let Some(cwd) = cwd {
        spec = spec.cwd(cwd);
    }
    spec.spawn()
}

/// A system-scope lock `name` held by a child running as `uid`; returns it and its PID.
fn hold_system(uid: Option<u32>, system: &Path, name: &str) -> (Proc, u32) {
    let mut kid = as_user(uid, Some(system), None, &["hold", "-", name, "--system"]);
    let pid = kid.expect_pid("locked");
    (kid, pid)
}

/// A child as `uid` trying the system-scope lock `name` once; it must be refused.
fn refused_system(uid: Option<u32>, system: &Path, name: &str, flags: &[&str]) -> Reported {
    let mut args = vec!["hold", "-", name, "--system"];
    args.extend(flags);
    let done: Finished = as_user(uid, Some(system), None, &args).exited();
    done.refused("a second holder of the system lock")
}

/// A fresh directory shared by all users like `/run/lock` (root's, mode 1777), readable by all;
/// the system directory will be `lockmacro` inside it.
fn run_lock() -> (TempDir, PathBuf) {
    let base = tempfile::tempdir().expect("temporary directory");
    set_mode(base.path(), 0o1777);
    let system = base.path().join("lockmacro");
    (base, system)
}

/// The file of system-scope lock `name` in `system`.
fn system_path(system: &Path, name: &str) -> PathBuf {
    let file = Lock::new(name)
        .dir("/")
        .path()
        .file_name()
        .unwrap()
        .to_owned();
    system.join(file)
}

/// What an independent open and `flock(LOCK_EX|LOCK_NB)` say: true if somebody holds `path`.
fn held(path: &Path) -> bool {
    probe(path) == Seen::Held
}

/// `flock -n <path> true`: its exit status (1: the lock was taken).
fn flock_n(path: &Path) -> Option<i32> {
    Command::new("flock")
        .arg("-n")
        .arg(path)
        .arg("true")
        .status()
        .expect("run flock(1) (util-linux)")
        .code()
}

/// `flock <path> -c 'echo locked; cat >/dev/null'` (as `uid`, if given), holding until its stdin
/// is closed, once it said `locked`.
fn flock_holder(path: &Path, uid: Option<u32>) -> Proc {
    let mut cmd = match uid {
        Some(uid) => {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
                "flock".into(),
            ]);
            cmd
        }
        None => Command::new("flock"),
    };
    cmd.arg(path).args(["-c", "echo locked; cat >/dev/null"]);
    let mut holder = Proc::start(format!("flock {} -c ...", path.display()), cmd);
    holder.expect("locked");
    holder
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn owner(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .uid()
}

// --- Lock::at -------------------------------------------------------------------------------

/// A shell recipe `flock -n /var/lock/mailsync.lock ...` and `Lock::at` of the same path
/// exclude each other both ways, and the file is exactly that path (no name mapping).
///
/// Broken on purpose (`at` naming the file after the lock, like `Lock::new`): "flock -n must
/// be refused while we hold the lock: exit Some(0)".
#[test]
fn at_path_and_flock_1_exclude_each_other_both_ways() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("mailsync.lock");
    let lock = Lock::at(&path);
    assert_eq!(lock.path(), path, "the file is the path given");

    // We hold it: `flock -n` fails (exit 1), and the file holds our PID, then the name.
    let guard = lock.try_acquire().expect("free: ours");
    assert_eq!(
        flock_n(&path),
        Some(1),
        "flock -n must be refused while we hold the lock: exit {:?}",
        flock_n(&path)
    );
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        format!("{}\n{}\n", std::process::id(), path.display()),
        "our PID, then the lock's name (the path as given)"
    );
    drop(guard);
    assert_eq!(flock_n(&path), Some(0), "free again for flock(1)");

    // flock(1) holds it: we are refused with Held, naming flock's PID (from the kernel).
    let holder = flock_holder(&path, None);
    match Lock::at(&path).try_acquire() {
        Err(Error::Held { pid, at, .. }) => {
            assert_eq!(pid, Some(holder.id()), "the holder is flock(1)");
            assert_eq!(at.path(), Some(path.as_path()));
        }
        other => panic!(
            "flock(1) holds {}: expected Held, got {other:?}",
            path.display()
        ),
    }
    // `inspect` lists it held by flock(1), with the name the last lockmacro holder recorded.
    let entries = inspect(dir.path()).expect("inspect");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].path, path);
    assert_eq!(entries[0].holders, [holder.id()], "{entries:?}");
    assert_eq!(entries[0].name.as_deref(), Some(path.to_str().unwrap()));
    holder.finish_ok();
    let _guard = Lock::at(&path)
        .try_acquire()
        .expect("free once flock(1) is done");
}

/// A symbolic link at the exact path is refused and its target left untouched; a missing
/// directory is not created, and the error names it.
///
/// Broken on purpose (`at` resolving the path with `canonicalize` first): "a symbolic link at
/// the path must be refused, got Ok(..)" (and the victim got our PID). With `at` naming the file
/// after the lock: the same.
#[test]
fn at_symlink_refused_and_directory_never_created() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").expect("victim");
    let link = dir.path().join("job.lock");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    match Lock::at(&link).try_acquire() {
        Err(Error::Io { path, source, .. }) => {
            assert_eq!(path, link, "the error names the lock file");
            assert!(source.to_string().contains("symbolic link"), "{source}");
        }
        other => panic!("a symbolic link at the path must be refused, got {other:?}"),
    }
    assert_eq!(fs::read_to_string(&victim).expect("read"), "precious\n");

    let missing = dir.path().join("missing");
    let err = Lock::at(missing.join("job.lock"))
        .try_acquire()
        .expect_err("a missing directory must be an error");
    assert_eq!(err.path(), Some(missing.as_path()), "{err}");
    assert!(err.to_string().contains("never creates it"), "{err}");
    assert!(!missing.exists(), "the directory must not be created");
}

/// A relative path is made absolute when the `Lock` is made: a child started in another
/// directory locks the file there; `dir` and `system` do not move an exact path.
///
/// Broken on purpose (`canonicalize` instead of `absolute`, which keeps a missing file's path
/// relative): "the path must be absolute: \"rel.lock\"".
#[test]
fn at_relative_path_is_made_absolute() {
    let lock = Lock::at("rel.lock");
    let cwd = std::env::current_dir().expect("cwd");
    assert!(
        lock.path().is_absolute(),
        "the path must be absolute: {:?}",
        lock.path()
    );
    assert_eq!(lock.path(), cwd.join("rel.lock"));
    assert_eq!(lock.name(), "rel.lock", "the name is the path as given");
    assert_eq!(Lock::at("rel.lock").dir("/elsewhere").path(), lock.path());
    assert_eq!(Lock::at("rel.lock").system().path(), lock.path());

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut kid = as_user(
        None,
        None,
        Some(dir.path()),
        &["hold", "-", "rel.lock", "--at"],
    );
    kid.expect_pid("locked");
    let file = dir.path().join("rel.lock");
    assert!(held(&file), "the child's lock is {}", file.display());
    kid.finish_ok();
}

// --- Lock::system ---------------------------------------------------------------------------

/// Root and `nobody` exclude each other both ways through the system directory, which root's
/// first lock creates mode 1777 owned by root, with a 0644 file nobody may lock read-only
/// (whatever the umask); `nobody` never writes root's file.
///
/// Broken on purpose (`system()` leaving the lock in the user's own directory): "stat
/// <system>: No such file or directory" (nobody ever makes the system directory). With the
/// name left out of the file instead: "nobody must not write root's file" (the content is not
/// root's record).
#[test]
fn system_root_and_nobody_exclude_each_other_both_ways() {
    require_setpriv();
    let (_base, system) = run_lock();
    let name = "firmware-update";
    let (mut root, root_pid) = hold_system(None, &system, name);
    let path = system_path(&system, name);
    assert_eq!(
        (owner(&system), mode(&system)),
        (0, 0o1777),
        "the system dir"
    );
    assert_eq!((owner(&path), mode(&path)), (0, 0o644), "root's lock file");

    let refused = refused_system(Some(NOBODY), &system, name, &[]);
    assert_eq!(
        (refused.kind.as_str(), refused.holder),
        ("Held", Some(root_pid)),
        "nobody should be refused while root holds the system lock: {refused:?}"
    );
    root.send("release");
    root.expect("released");

    let (nobody, nobody_pid) = hold_system(Some(NOBODY), &system, name);
    assert!(held(&path));
    let refused = refused_system(None, &system, name, &[]);
    assert_eq!(
        (refused.kind.as_str(), refused.holder),
        ("Held", Some(nobody_pid)),
        "root should be refused while nobody holds the system lock: {refused:?}"
    );
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        format!("{root_pid}\n{name}\n"),
        "nobody must not write root's file"
    );
    nobody.finish_ok();
    root.finish_ok();
}

/// A file planted in the system directory by another user (empty, and held by that user's
/// `flock(1)` forever) is refused at once, even by a blocking acquisition, and never written; the
/// planter's own lockmacro process may use it, so there are never two holders.
///
/// Broken on purpose (the owner checked only after locking, as before this change): the blocking
/// acquisition hangs: "did not exit within 30s; printed []". (With `system()` a no-op: the same,
/// after "locked": root took a lock of its own.)
#[test]
fn system_file_planted_by_another_user_neither_blocks_nor_lets_two_in() {
    require_setpriv();
    let (_base, system) = run_lock();
    fs::create_dir(&system).expect("system dir");
    set_mode(&system, 0o1777);
    let name = "planted";
    let path = system_path(&system, name);
    let made = as_user(
        Some(NOBODY),
        None,
        None,
        &["create-file", path.to_str().unwrap(), "644"],
    );
    made.finish_ok();
    let flock = flock_holder(&path, Some(NOBODY));

    for flags in [&["--block"][..], &[]] {
        let refused = refused_system(None, &system, name, flags);
        assert_eq!(refused.kind, "UnsafeFile", "{flags:?}: {refused:?}");
        assert!(
            refused.msg.contains("owned by uid 65534"),
            "{flags:?}: {refused:?}"
        );
    }
    flock.finish_ok();
    assert_eq!(fs::read(&path).expect("read"), b"", "never written by root");

    // The planter's own lockmacro process takes it; root is still refused, never let in.
    let (planter, _) = hold_system(Some(NOBODY), &system, name);
    let refused = refused_system(None, &system, name, &["--block"]);
    assert_eq!(refused.kind, "UnsafeFile", "{refused:?}");
    planter.finish_ok();
}

/// Two non-root users share a system lock only through a file root made: a file the first of
/// them created is refused to the second (its owner could remove it while the second holds it);
/// once root made the file, each excludes the other.
///
/// Broken on purpose (`system()` leaving the lock in the user's own directory): "stat
/// <system>/shared-by-users-....lock: No such file or directory" (each user locks a file of
/// their own).
#[test]
fn system_non_root_users_share_only_a_file_root_made() {
    require_setpriv();
    let (_base, system) = run_lock();
    let (first, _) = hold_system(None, &system, "setup"); // root makes the directory
    first.finish_ok();

    let name = "shared-by-users";
    let (nobody, _) = hold_system(Some(NOBODY), &system, name);
    nobody.finish_ok();
    let path = system_path(&system, name);
    assert_eq!(owner(&path), NOBODY);
    let refused = refused_system(Some(OTHER), &system, name, &[]);
    assert_eq!(
        refused.kind, "UnsafeFile",
        "uid {OTHER} should be refused nobody's file: {refused:?}"
    );

    // Root replaces it (root may remove any file in the sticky directory) by taking the lock.
    fs::remove_file(&path).expect("remove nobody's file");
    let (root, _) = hold_system(None, &system, name);
    root.finish_ok();
    assert_eq!(owner(&path), 0);
    let (nobody, nobody_pid) = hold_system(Some(NOBODY), &system, name);
    let refused = refused_system(Some(OTHER), &system, name, &[]);
    assert_eq!(
        (refused.kind.as_str(), refused.holder),
        ("Held", Some(nobody_pid)),
        "{refused:?}"
    );
    nobody.finish_ok();
    let (other, other_pid) = hold_system(Some(OTHER), &system, name);
    let refused = refused_system(Some(NOBODY), &system, name, &[]);
    assert_eq!(
        (refused.kind.as_str(), refused.holder),
        ("Held", Some(other_pid)),
        "{refused:?}"
    );
    other.finish_ok();
}

/// A system directory made first by another user (here `nobody`, who may use it itself) is
/// refused to root with a message saying what to run as root; a symbolic link there is refused.
///
/// Broken on purpose (the system directory checked like any shared one): "\"install -d -m 1777
/// -o root <system>\" not in Reported { ..., msg: \"... use a directory owned by you (uid 0) or
/// root\" }".
#[test]
fn system_dir_squatted_or_symlinked_is_refused_with_what_to_run() {
    require_setpriv();
    let (base, system) = run_lock();
    let (squatter, _) = hold_system(Some(NOBODY), &system, "mine");
    assert_eq!((owner(&system), mode(&system)), (NOBODY, 0o1777));
    let refused = refused_system(None, &system, "mine", &[]);
    assert_eq!(refused.kind, "UnsafeDir", "{refused:?}");
    assert_eq!(refused.path, system, "{refused:?}");
    let fix = format!("install -d -m 1777 -o root {}", system.display());
    assert!(refused.msg.contains("owned by uid 65534"), "{refused:?}");
    assert!(refused.msg.contains(&fix), "{fix:?} not in {refused:?}");
    squatter.finish_ok();

    // A symbolic link to a directory that would pass every other rule (root's, sticky).
    let elsewhere = base.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    set_mode(&elsewhere, 0o1777);
    fs::remove_dir_all(&system).expect("remove the squatted directory");
    std::os::unix::fs::symlink(&elsewhere, &system).expect("symlink");
    let refused = refused_system(None, &system, "mine", &[]);
    assert_eq!(refused.kind, "UnsafeDir", "{refused:?}");
    assert!(refused.msg.contains("symbolic link"), "{refused:?}");
    assert_eq!(fs::read_dir(&elsewhere).expect("ls").count(), 0);
}

// --- the name in the file, and inspect --------------------------------------------------------

/// The lock's name is recorded after the PID (the PID stays the first line, where readers of
/// 0.1 look), and `inspect` lists each file with its name, recorded PID and holders.
///
/// Broken on purpose (the PID written without the name): "our PID, then the name".
#[test]
fn name_recorded_after_the_pid_and_listed_by_inspect() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let name = "nightly backup\nof /srv";
    let lock = Lock::new(name).dir(dir.path());
    let guard = lock.try_acquire().expect("free");
    let me = std::process::id();
    assert_eq!(
        fs::read_to_string(lock.path()).expect("read"),
        format!("{me}\n{name}\n"),
        "our PID, then the name"
    );
    let reader = Lock::new("catalog").dir(dir.path()).shared();
    let shared = reader.try_acquire().expect("free");
    fs::write(dir.path().join("other-tool.lock"), "").expect("a file of another tool");

    let entries = inspect(dir.path()).expect("inspect");
    let find = |path: &Path| {
        entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{} not listed: {entries:?}", path.display()))
    };
    let entry = find(lock.path());
    assert_eq!(entry.name.as_deref(), Some(name));
    assert_eq!(
        (entry.recorded_pid, &entry.holders[..], entry.shared),
        (Some(me), &[me][..], false)
    );
    let entry = find(reader.path());
    assert_eq!(
        (entry.name.as_deref(), entry.shared),
        (Some("catalog"), true)
    );
    let entry = find(&dir.path().join("other-tool.lock"));
    assert_eq!((entry.name.as_deref(), entry.holders.len()), (None, 0));
    assert_eq!(entries.len(), 3, "{entries:?}");

    drop((guard, shared));
    let entries = inspect(dir.path()).expect("inspect");
    assert!(entries.iter().all(|e| e.holders.is_empty()), "{entries:?}");
    let err = inspect(&dir.path().join("missing")).expect_err("no such directory");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}
