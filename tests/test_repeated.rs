//! Repeated acquisitions through the cached descriptor, where the runtime may skip the path
//! lookup and the PID read on what it saw the previous time (`file::Memo`). Whatever happens to
//! the lock file between two quick acquisitions, the second one must end up holding the file the
//! path names, with our PID in it.
//!
//! Each scenario first acquires and releases in a loop for [`WARM`], long enough for the kernel's
//! coarse clock to pass the file's change time (so the fast path is fully armed), then disturbs
//! the file and acquires once more. A scenario runs [`ROUNDS`] times on tmpfs and on the disk,
//! and every test asserts, through the test-hooks counter, that the fast path was actually
//! taken: a test that never reaches it would prove nothing.

mod support;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use lockmacro_runtime::__private::memo_vouched;
use lockmacro_runtime::{Lock, LockGuard};
use support::{file_content, hold, probe, Seen, PATIENCE};

/// Acquire-release loop before each disturbance. Any length works for correctness; this one
/// spans a few ticks of the coarse clock, so the fast path is armed when the loop ends.
const WARM: Duration = Duration::from_millis(25);
const ROUNDS: usize = 20;

/// A fresh directory on tmpfs and one on the disk (ext4 on CI).
fn dirs() -> [tempfile::TempDir; 2] {
    [
        tempfile::tempdir_in("/dev/shm").expect("tmpfs dir"),
        tempfile::tempdir_in("/var/tmp").expect("disk dir"),
    ]
}

/// Acquires and releases for [`WARM`]; true if the last acquisition took the fast path.
fn warm(lock: &Lock) -> bool {
    let start = Instant::now();
    loop {
        let before = memo_vouched();
        drop(lock.try_acquire().expect("free while warming"));
        if start.elapsed() >= WARM {
            return memo_vouched() > before;
        }
    }
}

/// True if the file at `path` is locked by someone: a new open file description cannot lock it.
/// False if there is no file there.
fn locked(path: &Path) -> bool {
    probe(path) == Seen::Held
}

/// What a correct acquisition guarantees: the path names a file that is locked (by the guard)
/// and holds our PID.
fn assert_holds_the_named_file(guard: &LockGuard, what: &str) {
    let path = guard.path();
    assert!(
        locked(path),
        "{what}: the file at {} is not locked, so the guard holds a file the path no longer \
         names and a newcomer would get in",
        path.display()
    );
    assert_eq!(
        file_content(path),
        std::process::id().to_string(),
        "{what}: our PID is not in the lock file"
    );
}

/// Runs `disturb` between a warm-up and one more acquisition, `ROUNDS` times per directory.
fn scenario(what: &str, disturb: impl Fn(&Lock, &Path)) {
    let mut armed = 0;
    for dir in dirs() {
        let lock = Lock::new("repeated").dir(dir.path());
        for round in 0..ROUNDS {
            armed += usize::from(warm(&lock));
            disturb(&lock, dir.path());
            let guard = lock.try_acquire().expect("free after the disturbance");
            assert_holds_the_named_file(&guard, &format!("{what}, round {round}"));
        }
    }
    eprintln!(
        "[figures] {what}: fast path armed before {armed} of {} disturbances",
        2 * ROUNDS
    );
    assert!(
        armed > 0,
        "{what}: the fast path was never armed before a disturbance"
    );
}

#[test]
fn lock_file_renamed_away_between_quick_acquisitions_is_noticed() {
    scenario("renamed away", |lock, dir| {
        std::fs::rename(lock.path(), dir.join("moved")).expect("rename");
    });
}

#[test]
fn lock_file_unlinked_between_quick_acquisitions_is_noticed() {
    scenario("unlinked", |lock, _| {
        std::fs::remove_file(lock.path()).expect("unlink");
    });
}

#[test]
fn lock_file_replaced_between_quick_acquisitions_is_noticed() {
    scenario("replaced by a rename over it", |lock, dir| {
        let other = dir.join("other");
        std::fs::write(&other, "").expect("other file");
        std::fs::rename(&other, lock.path()).expect("rename over");
    });
}

#[test]
fn lock_file_hard_linked_and_unlinked_between_quick_acquisitions_is_noticed() {
    // The inode keeps a name elsewhere, so its link count alone would not show the path lost it.
    scenario("linked elsewhere, then unlinked", |lock, dir| {
        let alias = dir.join("alias");
        let _ = std::fs::remove_file(&alias); // the previous round's
        std::fs::hard_link(lock.path(), &alias).expect("link");
        std::fs::remove_file(lock.path()).expect("unlink");
    });
}

/// Another holder writes its PID, and the lock file, free again, is renamed away at once: within
/// one tick of the kernel's coarse clock and with no status call in between, so the rename may
/// leave the change time where the write put it. The next quick acquisition must still notice.
/// The other holder is a second open of the file (its own open file description, which flock
/// treats exactly like another process), so that the rename follows its write within
/// microseconds.
///
/// Regression: the first version of the fast path also skipped the lookup when a change looked
/// like a write (modification time equal to change time) and held the renamed file here in
/// 198 of 200 rounds (found in review).
#[test]
fn lock_file_renamed_right_after_another_holders_write_is_noticed() {
    for dir in dirs() {
        let lock = Lock::new("repeated").dir(dir.path());
        let moved = dir.path().join("moved");
        warm(&lock);
        for round in 0..200 {
            // The memo is fresh: this acquisition made the path lookup itself.
            loop {
                let before = memo_vouched();
                drop(lock.try_acquire().expect("free"));
                if memo_vouched() == before {
                    break;
                }
            }
            let other = OpenOptions::new()
                .read(true)
                .write(true)
                .open(lock.path())
                .expect("open as the other holder");
            other.lock().expect("lock as the other holder");
            other.write_all_at(b"4242424\n", 0).expect("write");
            other.unlock().expect("unlock");
            drop(other);
            std::fs::rename(lock.path(), &moved).expect("rename");
            let guard = lock.try_acquire().expect("free after the rename");
            assert_holds_the_named_file(&guard, &format!("rename after a write, round {round}"));
            drop(guard);
            std::fs::remove_file(&moved).expect("remove the renamed file");
        }
    }
}

/// Another process takes and releases the lock between two quick acquisitions of ours: it writes
/// its PID, so ours must be written again although the file is the same.
#[test]
fn another_holder_in_between_gets_our_pid_written_back() {
    let mut armed = 0;
    for dir in dirs() {
        let lock = Lock::new("repeated").dir(dir.path());
        for round in 0..ROUNDS / 4 {
            armed += usize::from(warm(&lock));
            let other = hold(dir.path(), "repeated", &[]);
            let other_pid = other.id();
            assert_eq!(file_content(lock.path()), other_pid.to_string());
            other.finish_ok();
            let guard = lock.try_acquire().expect("free after the other holder");
            assert_holds_the_named_file(&guard, &format!("after pid {other_pid}, round {round}"));
        }
    }
    assert!(
        armed > 0,
        "the fast path was never armed before the other holder came"
    );
}

/// The one change `fstat` cannot show: the lock directory itself renamed away (a rename
/// changes the directory, not the file). The next path lookup, at most `FRESH` after the last,
/// must catch it; acquisitions go on until one does, bounded by a generous deadline.
#[test]
fn lock_directory_renamed_away_is_noticed_at_the_next_lookup() {
    for base in dirs() {
        let dir = base.path().join("locks");
        // Acquisitions made within the memo's bound after the rename hold the file in the moved
        // directory: the watch sees such a hold as lost (the path no longer names its file), and
        // the default policy would exit this test process. Here it is only reported.
        let lock = Lock::new("repeated")
            .dir(&dir)
            .on_lost(lockmacro_runtime::OnLost::Report);
        // Armed, so that the first acquisitions after the rename skip the lookup.
        let deadline = Instant::now() + PATIENCE;
        while !warm(&lock) {
            assert!(Instant::now() < deadline, "the fast path never armed");
        }
        std::fs::rename(&dir, base.path().join("moved")).expect("rename the directory");
        let deadline = Instant::now() + PATIENCE;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let guard = lock.try_acquire().expect("free");
            if lock.path().exists() && locked(lock.path()) {
                assert_holds_the_named_file(&guard, "after the directory was renamed");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after {tries} acquisitions the lock still holds the file in the renamed \
                 directory"
            );
        }
        eprintln!("[figures] renamed directory noticed after {tries} acquisitions");
    }
}

/// A `Lock` made anew for every call (a name worked out per call) finds the descriptor its
/// predecessor kept, and with it the fast path: the slot outlives its last `Lock` (one of the
/// eight most recently used for the first time).
#[test]
fn a_new_lock_each_time_keeps_the_fast_path() {
    for dir in dirs() {
        let start = Instant::now();
        let mut vouched = false;
        while start.elapsed() < WARM || !vouched {
            let before = memo_vouched();
            let lock = Lock::new("per-call").dir(dir.path());
            drop(lock.try_acquire().expect("free"));
            vouched = memo_vouched() > before;
            assert!(
                start.elapsed() < PATIENCE,
                "a new Lock each time never took the fast path in {PATIENCE:?} ({})",
                dir.path().display()
            );
        }
    }
}
