//! Shared by the multi-process tests: child processes that are always reaped, line-by-line
//! reading of their stdout with a deadline, and a few lock-file helpers.
//!
//! Children report events as lines on stdout (see `tests/bin/helper.rs`); the test waits for the
//! line, never for a while. A deadline only turns a hang into a failure with the child's stderr.

#![allow(dead_code)] // Each test crate uses its own subset.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lockmacro_runtime::Lock;

/// How long any single expected event may take before the test fails. Generous on purpose:
/// only a hang should ever reach it, even on a loaded two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub const HELPER: &str = env!("CARGO_BIN_EXE_lm-helper");
pub const SINGLE: &str = env!("CARGO_BIN_EXE_lm-single");

/// The lock file that lock `name` uses in `dir`, as both the children and the test compute it.
pub fn lock_path(dir: &Path, name: &str) -> PathBuf {
    Lock::new(name).dir(dir).path().to_owned()
}

/// The lock file's first line (the holder's PID, possibly stale; the lock's name follows it).
pub fn file_content(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read lock file {}: {e}", path.display()))
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The value of `key=value` in a protocol line; `path=` is always last and may contain spaces.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    if key == "path" {
        if let Some((_, path)) = line.split_once(" path=") {
            return path;
        }
    }
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no `{key}=` in line {line:?}"))
}

/// A `field` that must be a PID.
pub fn pid_field(line: &str, key: &str) -> u32 {
    let text = field(line, key);
    text.parse()
        .unwrap_or_else(|e| panic!("`{key}={text}` in {line:?} is not a pid: {e}"))
}

/// A child process with piped stdio that is killed and reaped when dropped, so a failing
/// assertion never leaves a lock holder behind.
pub struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// The child's stderr, line by line as it comes (also collected whole for `finish`).
    err_lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Proc {
    /// Starts `program args` with `LOCKMACRO_DIR=lock_dir`.
    pub fn spawn<I, S>(program: &str, args: I, lock_dir: &Path) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let label = format!(
            "{} {}",
            Path::new(program)
                .file_name()
                .map_or_else(|| program.into(), |n| n.to_string_lossy()),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut cmd = Command::new(program);
        cmd.args(&args).env("LOCKMACRO_DIR", lock_dir);
        Proc::start(label, cmd)
    }

    /// Starts any command with piped stdio; `label` names it in failures.
    pub fn start(label: String, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{label}`: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
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
        let (err_tx, err_lines) = mpsc::channel();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                text.push_str(&line);
                text.push('\n');
                let _ = err_tx.send(line);
            }
            text
        });
        Proc {
            label,
            child,
            stdin,
            lines,
            err_lines,
            stderr: Some(stderr),
        }
    }

    /// Starts `lm-helper args`.
    pub fn helper<I, S>(args: I, lock_dir: &Path) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Proc::spawn(HELPER, args, lock_dir)
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next line on the child's stdout, waiting at most [`PATIENCE`].
    pub fn next_line(&mut self) -> String {
        self.next_line_within(PATIENCE)
    }

    /// The next line, which must be `word <pid>`; returns the PID.
    pub fn expect_pid(&mut self, word: &str) -> u32 {
        let line = self.expect(word);
        line.split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("no pid in {line:?}")))
    }

    /// The next line on the child's stdout, waiting at most `patience`.
    pub fn next_line_within(&mut self, patience: Duration) -> String {
        match self.lines.recv_timeout(patience) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                self.fail(&format!("no output line within {patience:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.fail("stdout closed while a line was expected")
            }
        }
    }

    /// The next line, which must start with the word `word` (for example `locked`).
    pub fn expect(&mut self, word: &str) -> String {
        self.expect_within(word, PATIENCE)
    }

    pub fn expect_within(&mut self, word: &str, patience: Duration) -> String {
        let line = self.next_line_within(patience);
        if line.split_whitespace().next() != Some(word) {
            self.fail(&format!("expected a `{word}` line, got {line:?}"));
        }
        line
    }

    /// Waits (at most [`PATIENCE`]) for a line on the child's stderr containing `needle`.
    pub fn expect_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => self.fail(&format!(
                    "no stderr line with {needle:?} within {PATIENCE:?}"
                )),
            }
        }
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

    /// Closes stdin and waits (at most [`PATIENCE`]) for the child to exit. Returns its status,
    /// its remaining stdout lines and its whole stderr.
    pub fn finish(mut self) -> Finished {
        self.close_stdin();
        self.exited()
    }

    /// Waits (at most [`PATIENCE`]) for the child to exit by itself, stdin still open.
    pub fn exited(mut self) -> Finished {
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

    /// `finish`, asserting a successful exit.
    pub fn finish_ok(self) -> Finished {
        let label = self.label.clone();
        let done = self.finish();
        assert!(
            done.status.success(),
            "`{label}` failed with {}; stdout {:?}; stderr:\n{}",
            done.status,
            done.stdout,
            done.stderr
        );
        done
    }

    /// Sends SIGKILL now; [`Proc::finish`] (or drop) reaps the child.
    pub fn send_kill(&mut self) {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("kill `{}`: {e}", self.label));
    }

    /// Kills the child with SIGKILL (on Unix) and reaps it.
    pub fn kill(mut self) -> ExitStatus {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("kill `{}`: {e}", self.label));
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("wait for killed `{}`: {e}", self.label))
    }

    /// Waits until the kernel lists this child as blocked waiting for a flock on the file at
    /// `path` (Linux `/proc/locks` marks waiters with `->`). This observes a state, with a
    /// deadline; the short pause between looks only paces the polling and decides nothing.
    #[cfg(target_os = "linux")]
    pub fn wait_until_blocked_on(&mut self, path: &Path) {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
            .ino();
        let suffix = format!(":{ino}");
        let pid = self.id();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let table = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
            let blocked = table.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                matches!(
                    fields.as_slice(),
                    [_, "->", "FLOCK", _, _, p, id, ..]
                        if p.parse() == Ok(pid) && id.ends_with(&suffix)
                )
            });
            if blocked {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!(
                    "exited ({status}) instead of blocking on the lock"
                ));
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "never blocked on {} within {PATIENCE:?}; /proc/locks:\n{table}",
                    path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Kills the child, then panics with what it wrote on stderr.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.take_stderr();
        panic!("`{}`: {what}; its stderr:\n{stderr}", self.label)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already reaped children make these no-ops; errors are moot while unwinding.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child's end: exit status, stdout lines not read before, and all of stderr.
#[derive(Debug)]
pub struct Finished {
    pub label: String,
    pub status: ExitStatus,
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

    #[cfg(unix)]
    pub fn signal(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(&self.status)
    }
}
