//! Hostile directories, the environment-independent default directory and network
//! filesystems.
//!
//! Permission checks mean nothing as root, so every child facing an attack runs as user
//! `nobody` (uid 65534) through `setpriv`; root plays the other user who prepared the trap.
//! Each attack is faced twice: through the runtime API (`lm-child hold`, which reports the
//! `Error` variant and message) and by a real single-instance program (`lm-child single`, an
//! `#[exclusive]` function named `main`, which must print exactly one line on stderr and exit
//! non-zero).

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use lockmacro_runtime::Lock;
use support::{
    child, chown, lock_path as path_of, nobody_default_dir, output, require_setpriv, set_mode,
    show, tempdir_for_nobody, NOBODY,
};

/// The lock name of `lm-child single` (its `#[exclusive(name = ...)]`).
const MAIN_LOCK: &str = "single";

/// `lm-child hold <dir> <name> --block` as nobody: must fail (never hang, though it was told to
/// wait) with an error of `variant` whose message contains every one of `words`.
fn nobody_api_refused(dir: &str, name: &str, variant: &str, words: &[&str]) -> String {
    let done = child(["hold", dir, name, "--block"]).under_nobody().run();
    let err = done.refused("nobody got a lock it must be refused");
    assert_eq!(err.kind, variant, "{err:#?}");
    for word in words {
        assert!(
            err.msg.contains(word),
            "{word:?} missing from {:?}",
            err.msg
        );
    }
    err.msg
}

/// `lm-child single` as nobody with `LOCKMACRO_DIR=dir` (or the default directory): one line,
/// non-zero status, containing every one of `words`.
fn nobody_main_refused(dir: Option<&Path>, words: &[&str]) -> String {
    let mut spec = child(["single"]).under_nobody().env("RUST_BACKTRACE", "1");
    if let Some(dir) = dir {
        spec = spec.dir(dir);
    }
    let line = spec.run().one_line_refusal();
    for word in words {
        assert!(line.contains(word), "{word:?} missing from {line:?}");
    }
    line
}

// ---------------------------------------------------------------------------------------------
// (a) A symlink planted at the lock file's path.

#[test]
fn planted_symlink_is_refused_and_the_victim_is_untouched_as_nobody() {
    require_setpriv();
    let shared = tempdir_for_nobody();
    set_mode(shared.path(), 0o1777); // a shared sticky directory, like /tmp
    let victim = shared.path().join("victim.txt");
    fs::write(&victim, "precious data\n").expect("write victim");
    chown(&victim, NOBODY); // nobody could write it, if tricked into opening it
    let before = fs::metadata(&victim).expect("stat victim");
    let dangling = shared.path().join("would-be-created");
    let dir = show(shared.path());

    let planted = path_of(shared.path(), "planted");
    std::os::unix::fs::symlink(&victim, &planted).expect("plant symlink");
    let msg = nobody_api_refused(&dir, "planted", "Io", &["symbolic link", &show(&planted)]);
    eprintln!("[figures] symlink, API: {msg}");

    let dangling_link = path_of(shared.path(), "dangling");
    std::os::unix::fs::symlink(&dangling, &dangling_link).expect("plant dangling symlink");
    nobody_api_refused(&dir, "dangling", "Io", &["symbolic link"]);
    assert!(
        !dangling.exists(),
        "the target of a dangling symlink must not be created"
    );

    let main_link = path_of(shared.path(), MAIN_LOCK);
    std::os::unix::fs::symlink(&victim, &main_link).expect("plant symlink");
    let line = nobody_main_refused(Some(shared.path()), &["symbolic link", &show(&main_link)]);
    eprintln!("[figures] symlink, #[exclusive] main: {line}");

    let after = fs::metadata(&victim).expect("stat victim");
    assert_eq!(fs::read(&victim).expect("read victim"), b"precious data\n");
    assert_eq!(
        (after.mtime(), after.mtime_nsec(), after.len()),
        (before.mtime(), before.mtime_nsec(), before.len()),
        "the victim must not be written"
    );
    for link in [&planted, &main_link, &dangling_link] {
        assert!(
            fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()),
            "the planted symlink {} should be left alone",
            link.display()
        );
    }
}

/// A FIFO or a directory planted at the lock file's path: a clear error naming the path, never a
/// hang (opening a FIFO blocks without `O_NONBLOCK`), and the planted thing left alone. The type
/// is checked by the status call made after locking, so a FIFO is even locked for a moment (and
/// one that its planter keeps locked makes waiters wait, like a planted regular file would).
#[test]
fn planted_fifo_or_directory_is_refused_as_nobody() {
    require_setpriv();
    let shared = tempdir_for_nobody();
    set_mode(shared.path(), 0o1777);
    let dir = show(shared.path());

    let fifo = path_of(shared.path(), "fifo");
    let made = output(Command::new("mkfifo").args(["-m", "666"]).arg(&fifo)).expect("run mkfifo");
    assert!(made.status.success(), "mkfifo failed: {made:?}");
    let msg = nobody_api_refused(&dir, "fifo", "Io", &["not a regular file", &show(&fifo)]);
    eprintln!("[figures] FIFO, API: {msg}");
    assert!(fs::symlink_metadata(&fifo).is_ok_and(|m| !m.is_file() && !m.is_dir()));

    let planted_dir = path_of(shared.path(), "dir");
    fs::create_dir(&planted_dir).expect("plant directory");
    set_mode(&planted_dir, 0o777);
    let msg = nobody_api_refused(&dir, "dir", "Io", &[&show(&planted_dir)]);
    eprintln!("[figures] directory, API: {msg}");
    assert!(planted_dir.is_dir());
}

// ---------------------------------------------------------------------------------------------
// (b) The default directory of uid 65534 prepared by somebody else. All cases use the one real
// directory, so they run in this one test, which removes whatever it made.

/// `mkdir -m <mode> <path>` run as nobody.
fn mkdir_as_nobody(path: &Path, mode: u32) {
    let made = output(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "mkdir",
                "-m",
            ])
            .arg(format!("{mode:o}"))
            .arg(path),
    )
    .expect("run setpriv mkdir");
    assert!(
        made.status.success(),
        "mkdir -m {mode:o} {} as nobody: {made:?}",
        path.display()
    );
    let meta = fs::symlink_metadata(path).expect("stat");
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (NOBODY, mode));
}

#[test]
fn unsafe_default_directory_is_refused_as_nobody() {
    require_setpriv();
    let guard = nobody_default_dir();
    let default = guard.0.clone();
    let shown = show(&default);
    let name = "hostile-default";

    // Owned by root (another user), whatever its mode.
    for mode in [0o700, 0o755, 0o777] {
        fs::create_dir(&default).expect("mkdir default");
        set_mode(&default, mode);
        let msg = nobody_api_refused("-", name, "UnsafeDir", &[&shown, "owned by uid 0"]);
        let line = nobody_main_refused(None, &[&shown, "owned by uid 0"]);
        eprintln!("[figures] default dir owned by root, mode {mode:o}: {msg} | {line}");
        guard.clear();
    }

    // Made by nobody itself, but open to others.
    for mode in [0o777, 0o770, 0o1777] {
        mkdir_as_nobody(&default, mode);
        let msg = nobody_api_refused("-", name, "UnsafeDir", &[&shown, "writable by other users"]);
        let line = nobody_main_refused(None, &[&shown, "writable by other users"]);
        eprintln!("[figures] default dir owned by nobody, mode {mode:o}: {msg} | {line}");
        guard.clear();
    }

    // A symlink, even to a directory that would pass every other check.
    let elsewhere = tempdir_for_nobody();
    let target = elsewhere.path().join("target");
    fs::create_dir(&target).expect("mkdir target");
    chown(&target, NOBODY);
    set_mode(&target, 0o700);
    for owner in [0, NOBODY] {
        std::os::unix::fs::symlink(&target, &default).expect("symlink default");
        std::os::unix::fs::lchown(&default, Some(owner), Some(owner)).expect("lchown");
        let msg = nobody_api_refused("-", name, "UnsafeDir", &[&shown, "symbolic link"]);
        let line = nobody_main_refused(None, &[&shown, "symbolic link"]);
        eprintln!("[figures] default dir is a symlink owned by uid {owner}: {msg} | {line}");
        guard.clear();
    }
    assert_eq!(
        fs::read_dir(&target).expect("list target").count(),
        0,
        "nothing may be created through the symlink"
    );

    // Control: absent, nobody creates it private and uses it. Proves the refusals above come
    // from the traps, not from nobody being unable to use the default directory at all.
    let mut holder = child(["hold", "-", name]).under_nobody().spawn();
    holder.expect_pid("locked");
    let meta = fs::symlink_metadata(&default).expect("default dir created");
    assert!(meta.is_dir());
    assert_eq!(meta.uid(), NOBODY);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
    let file = fs::metadata(path_of(&default, name)).expect("lock file");
    assert_eq!(
        (file.uid(), file.permissions().mode() & 0o777),
        (NOBODY, 0o600)
    );
    let done = holder.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    let mut main = child(["single"]).under_nobody().spawn();
    main.expect_pid("locked");
    let done = main.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    drop(guard);
    assert!(fs::symlink_metadata(&default).is_err(), "left behind");
}

// ---------------------------------------------------------------------------------------------
// (c) A lock file squatted by another user in a shared sticky directory.

#[test]
fn squatted_lock_file_in_sticky_dir_fails_fast_as_nobody() {
    require_setpriv();
    let shared = tempdir_for_nobody();
    set_mode(shared.path(), 0o1777);
    let dir = show(shared.path());

    // Squatted: created by root, mode 0600.
    let squatted = path_of(shared.path(), "squatted");
    fs::write(&squatted, "1\n").expect("squat");
    set_mode(&squatted, 0o600);
    let msg = nobody_api_refused(
        &dir,
        "squatted",
        "Io",
        &["Permission denied", &show(&squatted)],
    );
    eprintln!("[figures] squatted file: {msg}");

    // Created and held by root through the runtime: in a shared directory the file is 0644, so
    // nobody opens it read-only and is refused as a contender (cross-user exclusion), never
    // with a permission error.
    let held = Lock::new("held-squat").dir(shared.path());
    let guard = held.try_acquire().expect("root holds its file");
    let done = child(["hold", &dir, "held-squat"]).under_nobody().run();
    let err = done.refused("nobody took the lock root holds");
    assert_eq!(err.kind, "Held", "{err:#?}");
    guard.release().expect("release");

    let main_path = path_of(shared.path(), MAIN_LOCK);
    fs::write(&main_path, "1\n").expect("squat");
    set_mode(&main_path, 0o600);
    let line = nobody_main_refused(
        Some(shared.path()),
        &["Permission denied", &show(&main_path)],
    );
    eprintln!("[figures] squatted file, #[exclusive] main: {line}");

    for path in [&squatted, &main_path] {
        assert_eq!(fs::read(path).expect("read squatted file"), b"1\n");
    }
}

// ---------------------------------------------------------------------------------------------
// (d) An explicit directory nobody cannot write.

#[test]
fn unwritable_directory_is_a_clear_error_as_nobody() {
    require_setpriv();
    let root_only = tempfile::tempdir().expect("temp dir");
    set_mode(root_only.path(), 0o755);
    let dir = show(root_only.path());
    let msg = nobody_api_refused(
        &dir,
        "unwritable",
        "Io",
        &["open lock file", "Permission denied", &dir],
    );
    eprintln!("[figures] unwritable dir: {msg}");

    // A directory to be created inside it.
    let sub = root_only.path().join("sub");
    let msg = nobody_api_refused(
        &show(&sub),
        "unwritable",
        "Io",
        &["create lock directory", "Permission denied", &show(&sub)],
    );
    eprintln!("[figures] unwritable parent: {msg}");
    assert!(!sub.exists());

    let line = nobody_main_refused(Some(root_only.path()), &["Permission denied", &dir]);
    eprintln!("[figures] unwritable dir, #[exclusive] main: {line}");
    assert_eq!(fs::read_dir(root_only.path()).expect("list").count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Trap 6: the same program started from two different environments must pick the same lock.

#[test]
fn default_directory_does_not_depend_on_the_environment() {
    let name = "lockmacro-rel-env-independence"; // `lm-child env-main`'s lock, with cleanup
    let path = Lock::new(name)
        .dir(lockmacro_runtime::default_dir())
        .path()
        .to_owned();
    // Started like cron would: an empty environment.
    let mut first = child(["env-main"])
        .wrapped(["env", "-i", "PATH=/usr/bin:/bin"])
        .spawn();
    let pid = first.expect_pid("locked"); // the child's own pid: env(1) execs the program

    // Started like a login shell would, with every variable a naive default could follow
    // pointing elsewhere.
    let xdg = tempfile::tempdir().expect("temp dir");
    let tmp = tempfile::tempdir().expect("temp dir");
    let home = tempfile::tempdir().expect("temp dir");
    let second = child(["env-main"])
        .env("XDG_RUNTIME_DIR", xdg.path())
        .env("TMPDIR", tmp.path())
        .env("HOME", home.path())
        .env("RUST_BACKTRACE", "1")
        .run();
    assert_eq!(second.code(), Some(1), "{second:#?}");
    let line = second.one_line_refusal();
    assert!(
        line.contains(&format!("held by pid {pid}")) && line.contains(&show(&path)),
        "the refusal should name the first copy's PID and the lock file: {line}"
    );
    eprintln!("[figures] env independence: {line}");

    // And the other way round: the first copy in a rich environment, a second one in none.
    let done = first.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    let mut rich = child(["env-main"])
        .env("XDG_RUNTIME_DIR", xdg.path())
        .env("TMPDIR", tmp.path())
        .env("HOME", home.path())
        .spawn();
    let rich_pid = rich.expect_pid("locked");
    let bare = child(["env-main"])
        .wrapped(["env", "-i", "PATH=/usr/bin:/bin"])
        .run();
    assert_eq!(bare.code(), Some(1), "{bare:#?}");
    assert!(
        bare.one_line_refusal()
            .contains(&format!("held by pid {rich_pid}")),
        "{bare:#?}"
    );
    let done = rich.finish();
    assert_eq!(done.code(), Some(0), "{done:#?}");
    for dir in [&xdg, &tmp, &home] {
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
    }
    assert!(
        !path.exists(),
        "`cleanup` should have removed {}",
        path.display()
    );
}

// ---------------------------------------------------------------------------------------------
// Trap 12: network filesystems are refused unless the user opts in. The filesystem type is
// mocked with the runtime's `LOCKMACRO_TEST_FS_MAGIC` hook.

#[test]
fn network_filesystems_are_refused_unless_allowed() {
    let base = tempfile::tempdir().expect("temp dir");
    let dir = show(base.path());
    for (magic, kind) in [
        ("0x6969", "NFS"),
        ("0xff534d42", "SMB/CIFS"),
        ("0x65735546", "FUSE"),
        ("0x01021997", "9p"),
    ] {
        let refused = child(["hold", &dir, "netfs"])
            .env("LOCKMACRO_TEST_FS_MAGIC", magic)
            .run();
        let err = refused.refused("a network filesystem was used");
        assert_eq!(err.kind, "UnsafeDir", "{magic}: {err:#?}");
        assert_eq!(
            err.path,
            base.path(),
            "{magic}: the error names the directory"
        );
        for word in [kind, "LOCKMACRO_ALLOW_NETWORK_FS"] {
            assert!(
                err.msg.contains(word),
                "{magic}: {word:?} missing: {err:#?}"
            );
        }
        // Only "1" opts in.
        let not_one = child(["hold", &dir, "netfs"])
            .env("LOCKMACRO_TEST_FS_MAGIC", magic)
            .env("LOCKMACRO_ALLOW_NETWORK_FS", "0")
            .run();
        assert_eq!(
            not_one
                .refused("LOCKMACRO_ALLOW_NETWORK_FS=0 opted in")
                .kind,
            "UnsafeDir"
        );

        let mut allowed = child(["hold", &dir, "netfs"])
            .env("LOCKMACRO_TEST_FS_MAGIC", magic)
            .env("LOCKMACRO_ALLOW_NETWORK_FS", "1")
            .spawn();
        allowed.expect_pid("locked");
        let done = allowed.finish();
        assert_eq!(done.code(), Some(0), "{magic} with opt-in: {done:#?}");
        eprintln!(
            "[figures] fs magic {magic}: refused ({}), allowed with opt-in",
            err.msg
        );
    }

    // A local type passes without opt-in (the mock itself is not what refuses).
    let mut local = child(["hold", &dir, "netfs"])
        .env("LOCKMACRO_TEST_FS_MAGIC", "0xef53")
        .spawn();
    local.expect_pid("locked");
    assert_eq!(local.finish().code(), Some(0));

    // The `#[exclusive] fn main` refusal is one line too.
    let line = child(["single"])
        .dir(base.path())
        .env("LOCKMACRO_TEST_FS_MAGIC", "0x6969")
        .env("RUST_BACKTRACE", "1")
        .run()
        .one_line_refusal();
    assert!(
        line.contains("NFS") && line.contains("LOCKMACRO_ALLOW_NETWORK_FS"),
        "{line}"
    );
}
