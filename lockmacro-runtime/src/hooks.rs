//! Test-only switches, compiled only with `--cfg lockmacro_test_hooks`, which this repository's
//! `.cargo/config.toml` sets for its own builds (no dependent crate can set it for us). They let the reliability suite prove its detectors work by breaking the protocol
//! on purpose, and mock the filesystem-type probe. Read once per process from the environment:
//!
//! - `LOCKMACRO_TEST_BREAK=unlock-before-unlink`: `cleanup` releases, then unlinks.
//! - `LOCKMACRO_TEST_BREAK=no-identity-check`: acquirers skip the device/inode re-check.
//! - `LOCKMACRO_TEST_FS_MAGIC=0x6969`: pretend the lock directory has this `statfs` type.
//! - `LOCKMACRO_TEST_SYSTEM_DIR=/some/dir`: use this as the system directory (`Lock::system`),
//!   so that tests never touch the machine's `/run/lock/lockmacro`.
//! - `LOCKMACRO_TEST_BREAK=no-gate`: waiters neither hold nor pass the gate (`file::fair`).
//! - `LOCKMACRO_TEST_GATE_LOG=<file>`: a waiter appends `queued <pid>` when it announces itself
//!   (holds the gate, or would with `no-gate`) and `entered <pid>` once it holds the lock,
//!   before it lets go of the gate, so a test can count who entered in between.
//!
//! It also counts the acquisitions that skipped the path lookup on a memo (`file::Memo`), so
//! that the tests of that fast path can show they exercised it.

#[cfg(lockmacro_test_hooks)]
mod imp {
    use std::cell::Cell;
    use std::sync::OnceLock;

    thread_local! {
        // Per thread, so that tests running in parallel do not count each other's.
        static VOUCHED: Cell<u64> = const { Cell::new(0) };
    }

    pub(crate) fn vouched() {
        VOUCHED.with(|n| n.set(n.get() + 1));
    }

    pub(crate) fn vouched_count() -> u64 {
        VOUCHED.with(Cell::get)
    }

    pub(crate) fn broken(what: &str) -> bool {
        static BREAK: OnceLock<Option<String>> = OnceLock::new();
        BREAK
            .get_or_init(|| std::env::var("LOCKMACRO_TEST_BREAK").ok())
            .as_deref()
            == Some(what)
    }

    pub(crate) fn system_dir() -> Option<std::path::PathBuf> {
        std::env::var_os("LOCKMACRO_TEST_SYSTEM_DIR")
            .filter(|dir| !dir.is_empty())
            .map(Into::into)
    }

    pub(crate) fn gate_log(event: &str) {
        use std::io::Write;
        static LOG: OnceLock<Option<String>> = OnceLock::new();
        let Some(path) = LOG
            .get_or_init(|| std::env::var("LOCKMACRO_TEST_GATE_LOG").ok())
            .as_deref()
        else {
            return;
        };
        let line = format!("{event} {}\n", std::process::id());
        // One `write` on an `O_APPEND` file: lines of several processes never interleave.
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }

    pub(crate) fn fs_magic() -> Option<u64> {
        let text = std::env::var("LOCKMACRO_TEST_FS_MAGIC").ok()?;
        u64::from_str_radix(text.trim_start_matches("0x"), 16).ok()
    }
}

#[cfg(not(lockmacro_test_hooks))]
mod imp {
    #[inline(always)]
    pub(crate) fn broken(_what: &str) -> bool {
        false
    }

    #[inline(always)]
    pub(crate) fn fs_magic() -> Option<u64> {
        None
    }

    #[inline(always)]
    pub(crate) fn vouched() {}

    #[inline(always)]
    pub(crate) fn system_dir() -> Option<std::path::PathBuf> {
        None
    }

    pub(crate) fn gate_log(_event: &str) {}
}

#[cfg(lockmacro_test_hooks)]
pub(crate) use imp::vouched_count;
pub(crate) use imp::{broken, fs_magic, gate_log, system_dir, vouched};
