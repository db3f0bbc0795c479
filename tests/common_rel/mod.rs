//! Shared by the reliability tests (`tests/test_reliability.rs`, `tests/test_rel_*.rs`): the
//! `lm-attack` child (`tests/bin/attack.rs`), optionally run as user `nobody` through
//! `setpriv`, run as a `common::Proc` (killed and reaped when dropped, stdout read line by line
//! with a deadline); and directories a `nobody` child can use.
//!
//! Children report events as lines on stdout; the test waits for the line, never for a while.
//! A deadline only turns a hang into a failure that shows the child's stderr.

#![allow(dead_code)] // Each test crate uses its own subset.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub use crate::common::{Finished, Proc};

pub const ATTACK: &str = env!("CARGO_BIN_EXE_lm-attack");

/// The unprivileged user the permission tests run their children as.
pub const NOBODY: u32 = 65534;

/// Environment variables of the runtime that a child must not inherit by accident.
const RUNTIME_ENV: [&str; 4] = [
    "LOCKMACRO_DIR",
    "LOCKMACRO_TEST_BREAK",
    "LOCKMACRO_TEST_FS_MAGIC",
    "LOCKMACRO_ALLOW_NETWORK_FS",
];

/// How to start one `lm-attack` child.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    args: Vec<String>,
    env: Vec<(String, String)>,
    nobody: bool,
    /// Replaces the program: the child is `wrapper... lm-attack args`.
    wrapper: Vec<String>,
}

/// `lm-attack args...` as root (the test's user), with a clean runtime environment.
pub fn attack<I, S>(args: I) -> Spec
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    Spec {
        args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
        ..Spec::default()
    }
}

impl Spec {
    /// Sets an environment variable for the child.
    #[must_use]
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Spec {
        self.env.push((
            key.to_owned(),
            value.as_ref().to_string_lossy().into_owned(),
        ));
        self
    }

    /// Runs the child as `nobody` (uid and gid 65534, no supplementary groups).
    #[must_use]
    pub fn under_nobody(mut self) -> Spec {
        self.nobody = true;
        self
    }

    /// Runs the child as `wrapper... lm-attack args` (for example `env -i PATH=...`).
    #[must_use]
    pub fn wrapped<I, S>(mut self, wrapper: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.wrapper = wrapper.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    pub fn spawn(&self) -> Proc {
        let mut argv: Vec<String> = Vec::new();
        if self.nobody {
            argv.extend(
                [
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                ]
                .map(String::from),
            );
        }
        argv.extend(self.wrapper.iter().cloned());
        argv.push(ATTACK.to_owned());
        argv.extend(self.args.iter().cloned());
        let label = format!("lm-attack {}", self.args.join(" "));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        for key in RUNTIME_ENV {
            cmd.env_remove(key);
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        Proc::start(label, cmd)
    }

    /// Spawns the child, closes its stdin at once and waits for it to exit.
    pub fn run(&self) -> Finished {
        self.spawn().finish()
    }
}

/// A failed acquisition as `lm-attack` reports it:
/// `error <Variant> holder=<pid|-> path=<path> msg=<message>`.
#[derive(Debug)]
pub struct Reported {
    pub variant: String,
    pub holder: Option<u32>,
    pub path: PathBuf,
    pub msg: String,
}

/// Parses the `error` line of a child that failed to get its lock (exit status 1).
pub fn reported_error(done: &Finished) -> Reported {
    assert_eq!(
        done.code(),
        Some(1),
        "`{}` should fail to get its lock: {done:#?}",
        done.label
    );
    let line = done.line("error");
    let (head, msg) = line
        .split_once(" msg=")
        .unwrap_or_else(|| panic!("no msg= in {line:?}"));
    let (head, path) = head
        .split_once(" path=")
        .unwrap_or_else(|| panic!("no path= in {line:?}"));
    let mut words = head.split_whitespace().skip(1);
    let variant = words.next().unwrap_or_default().to_owned();
    let holder = words
        .next()
        .and_then(|w| w.strip_prefix("holder="))
        .and_then(|p| p.parse().ok());
    Reported {
        variant,
        holder,
        path: PathBuf::from(path),
        msg: msg.to_owned(),
    }
}

/// Checks what a `#[exclusive] fn main` refused by the exit policy must look like: a non-zero
/// status and exactly one line on stderr, with no panic and no backtrace. Returns that line.
pub fn one_line_refusal(done: &Finished) -> String {
    assert!(
        matches!(done.code(), Some(c) if c != 0),
        "`{}` should exit with a non-zero status: {done:#?}",
        done.label
    );
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "`{}` should print exactly one line on stderr: {done:#?}",
        done.label
    );
    let line = lines[0];
    for bad in [
        "panicked at",
        "backtrace",
        "RUST_BACKTRACE",
        "stack backtrace",
    ] {
        assert!(!line.contains(bad), "{bad:?} in {line:?}");
    }
    assert!(
        line.starts_with("lm-attack: "),
        "the line should start with the program's name: {line:?}"
    );
    line.to_owned()
}

/// A temporary directory that user `nobody` can enter and write (mode 0777).
pub fn tempdir_for_nobody() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    set_mode(dir.path(), 0o777);
    dir
}

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

pub fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {uid} {}: {e}", path.display()));
}

/// Fails clearly unless the tests can switch to `nobody` (they must run as root, as in CI).
pub fn require_setpriv() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "id",
            "-u",
        ])
        .output()
        .unwrap_or_else(|e| panic!("run setpriv (util-linux): {e}"));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "65534",
        "these tests switch to user nobody with setpriv and must run as root (CI does): {out:?}"
    );
}

/// Sends SIGKILL to a process we did not spawn (a grandchild) when dropped.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0) {
            // SAFETY: kill(2) on a PID; at worst it no longer exists.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// True if `pid` exists and is not a zombie; also returns its command name.
pub fn running(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
    let state = rest.split_whitespace().next()?;
    (state != "Z" && state != "X").then(|| comm.to_owned())
}

/// The lock file's exact bytes.
pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Times a block and prints the duration (visible with `--nocapture`; kept in the report).
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    eprintln!("[timing] {what}: {:.2?}", start.elapsed());
    out
}
