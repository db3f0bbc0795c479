//! Shared by the reliability tests (`tests/test_reliability.rs`, `tests/test_rel_*.rs`): the
//! `lm-attack` child (`tests/bin/attack.rs`), optionally run as user `nobody` through
//! `setpriv`, always killed and reaped when dropped; line-by-line reading of its stdout with a
//! deadline; and directories a `nobody` child can use.
//!
//! Children report events as lines on stdout; the test waits for the line, never for a while.
//! A deadline only turns a hang into a failure that shows the child's stderr.

#![allow(dead_code)] // Each test crate uses its own subset.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single expected event may take before the test fails. Generous on purpose:
/// only a hang should ever reach it, even on a loaded two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(60);

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

/// A child process with piped stdio that is killed and reaped when dropped, so a failing
/// assertion never leaves a lock holder behind.
pub struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Proc {
    /// Starts any command with piped stdio (the `lm-attack` children go through [`Spec`]).
    pub fn start(label: String, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{label}`: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            // Ends at EOF (the child exited) or when the test stopped listening.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Proc {
            label,
            child,
            stdin,
            lines,
            stderr: Some(stderr),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next line on the child's stdout, waiting at most [`PATIENCE`].
    pub fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                self.fail(&format!("no output line within {PATIENCE:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.fail("stdout closed while a line was expected")
            }
        }
    }

    /// The next line on the child's stdout, which must start with the word `word`.
    pub fn expect(&mut self, word: &str) -> String {
        let line = self.next_line();
        if line.split_whitespace().next() != Some(word) {
            self.fail(&format!("expected a `{word}` line, got {line:?}"));
        }
        line
    }

    /// The next line, which must be `word <pid>`; returns the PID.
    pub fn expect_pid(&mut self, word: &str) -> u32 {
        let line = self.expect(word);
        line.split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("no pid in {line:?}")))
    }

    /// Writes one line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("write to `{}`: {e}", self.label));
    }

    /// Closes the child's stdin: the signal for a holder to release.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Sends SIGKILL now (the child is reaped by [`Proc::finish`] or on drop).
    pub fn kill(&mut self) {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("kill `{}`: {e}", self.label));
    }

    /// Closes stdin and waits (at most [`PATIENCE`]) for the child to exit. Returns its status,
    /// its remaining stdout lines and its whole stderr.
    pub fn finish(mut self) -> Finished {
        self.close_stdin();
        let deadline = Instant::now() + PATIENCE;
        let mut rest = Vec::new();
        // The child's stdout reaches EOF when it exits: no polling of its status needed.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => self.fail(&format!(
                    "did not exit within {PATIENCE:?}; printed {rest:?}"
                )),
            }
        }
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait for `{}`: {e}", self.label));
        let stderr = self.take_stderr();
        Finished {
            label: self.label.clone(),
            status,
            stdout: rest,
            stderr,
        }
    }

    fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Fails the test with the child's stderr; the child is killed by `Drop`.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.take_stderr();
        panic!("`{}`: {what}\n--- its stderr ---\n{stderr}", self.label)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child that has exited.
#[derive(Debug)]
pub struct Finished {
    pub label: String,
    pub status: ExitStatus,
    /// The stdout lines not consumed before [`Proc::finish`].
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Finished {
    /// The one line starting with `word` (for example `error`).
    pub fn line(&self, word: &str) -> &str {
        self.stdout
            .iter()
            .find(|l| l.split_whitespace().next() == Some(word))
            .unwrap_or_else(|| panic!("no `{word}` line from `{}`: {self:#?}", self.label))
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
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
