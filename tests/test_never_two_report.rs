//! Issue 12, item 7, with the `OnLost::Report` policy: a file lock whose file is replaced while
//! held is reported lost by its guard; one whose file is only removed is put back by its holder
//! and is not lost. (The default `OnLost::Exit` policy is tested in `tests/test_never_two.rs`.)
//!
//! This file uses API that is new in the default build with the fix: `Lock::on_lost`,
//! `OnLost` and `LOST_EXIT_CODE` were PostgreSQL-only before. On b4e6cd3 it does not compile
//! without the `postgres` feature ("no method named `on_lost`", "no `OnLost` in the root"); with
//! `--features postgres` it compiles, but `on_lost` turns the lock into a PostgreSQL lock and
//! both tests fail at their first acquisition ("LOCKMACRO_POSTGRES_URL is not set").
//!
//! Oracles do not trust the lock: "is it held?" is asked with an independent open of the file
//! and `flock(LOCK_EX|LOCK_NB)`, which conflicts with our own lock exactly as another process's
//! would.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use lockmacro_runtime::{Error, Lock, OnLost, LOST_EXIT_CODE};

/// Only a hang reaches it.
const BOUND: Duration = Duration::from_secs(20);

/// True if nobody holds the file at `path` (an independent open and a non-blocking exclusive
/// flock, released at once by closing).
fn free_now(path: &Path) -> bool {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: flock(2) on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Waits until `path` names a file again, looking every millisecond (this observes a state; the
/// pause only paces the looking). False if it did not within `within`.
fn reappears(path: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while fs::symlink_metadata(path).is_err() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Issue 12, item 7, replacement, `OnLost::Report`. Seen: a lock file replaced while held let a
/// second holder in while the guard's `is_lost()` said false and `check()` said Ok. With
/// `Report`, both must tell the truth at once (they look the path up at every call), and the
/// process goes on.
///
/// On b4e6cd3: does not compile in the default build; with `--features postgres`, fails at
/// "acquire with OnLost::Report" (the lock became a PostgreSQL lock without a URL).
#[test]
fn replaced_7_report_policy_guard_says_lost() {
    assert_eq!(LOST_EXIT_CODE, 75);
    let dir = tempfile::tempdir().expect("temporary directory");
    let lock = Lock::new("replaced-report")
        .dir(dir.path())
        .on_lost(OnLost::Report);
    let guard = lock.try_acquire().expect("acquire with OnLost::Report");
    assert!(!guard.is_lost(), "lost before anything happened");
    guard.check().expect("check before anything happened");

    // Another locker's file, held, renamed over ours.
    let intruder_path = dir.path().join("intruder");
    let intruder = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&intruder_path)
        .expect("create the intruder's file");
    // SAFETY: flock(2) on a descriptor we own.
    let rc = unsafe { libc::flock(intruder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "lock the intruder's file");
    let intruder_ino = intruder.metadata().expect("stat").ino();
    fs::rename(&intruder_path, lock.path()).expect("replace the held lock file");

    assert!(
        guard.is_lost(),
        "is_lost() is false right after the lock file was replaced by another locker's"
    );
    match guard.check() {
        Err(Error::Lost { .. }) => {}
        other => panic!("check() after the lock file was replaced: expected Lost, got {other:?}"),
    }
    drop(guard);
    // Releasing a lost lock touches nothing at the path: the intruder's file stays, still held.
    let meta = fs::symlink_metadata(lock.path()).expect("the intruder's file is at the path");
    assert_eq!(
        meta.ino(),
        intruder_ino,
        "the file at the path was replaced"
    );
    assert!(
        !free_now(lock.path()),
        "the intruder's lock was released by our release"
    );
}

/// Issue 12, item 7, removal, `OnLost::Report`. Seen: after `rm` of a held lock file, a second
/// process got in while `is_lost()` said false, `check()` said Ok and `holder()` said None. The
/// holder must put the file back already locked: then nothing is lost, and the answers are true.
///
/// On b4e6cd3: does not compile in the default build; with `--features postgres`, fails at
/// "acquire with OnLost::Report".
#[test]
fn removed_7_report_policy_file_is_put_back_and_not_lost() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let lock = Lock::new("removed-report")
        .dir(dir.path())
        .on_lost(OnLost::Report);
    let guard = lock.try_acquire().expect("acquire with OnLost::Report");
    wait_until_watched(std::process::id(), lock.path());
    fs::remove_file(lock.path()).expect("rm the held lock file");
    assert!(
        reappears(lock.path(), BOUND),
        "the lock file was not re-created within {BOUND:?} after `rm` while held"
    );
    assert!(
        !free_now(lock.path()),
        "the re-created lock file is not locked: a second holder could get in"
    );
    assert_eq!(
        lock.holder().expect("holder"),
        Some(std::process::id()),
        "holder() after the rm"
    );
    assert!(!guard.is_lost(), "is_lost() after the file was put back");
    guard.check().expect("check() after the file was put back");
    guard.release().expect("release");
    assert!(free_now(lock.path()), "released");
}

/// Waits (bounded) until process `pid` watches the file at `path` (its inotify descriptor lists
/// the file's inode): the runtime starts watching a lock file only once its first hold has
/// lasted a moment, and a removal before that is lost rather than put back.
fn wait_until_watched(pid: u32, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let ino = format!(
        "ino:{:x} ",
        fs::metadata(path).expect("stat lock file").ino()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let watched = fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("list the holder's descriptors")
            .flatten()
            .filter(|fd| {
                fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().contains("inotify"))
            })
            .any(|fd| {
                let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
                fs::read_to_string(info).is_ok_and(|text| text.contains(&ino))
            });
        if watched {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never watched by pid {pid}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5)); // polling a condition, bounded above
    }
}
