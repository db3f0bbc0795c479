//! Running the real `lockmacro` binary (and other programs) and reading their output line by
//! line as it comes, with a deadline instead of sleeps.
#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const LOCKMACRO: &str = env!("CARGO_BIN_EXE_lockmacro");

/// How long anything may take before a test gives up (a bound, never a synchronisation).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// `lockmacro ARGS`.
pub fn lockmacro(args: &[&str]) -> Command {
    let mut cmd = Command::new(LOCKMACRO);
    cmd.args(args);
    cmd
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

enum Event {
    Line(Stream, String),
    Eof(Stream),
}

/// A running process whose stdout and stderr are read as lines arrive.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Event>,
    open: usize,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// A process that has ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl Running {
    pub fn start(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let (tx, events) = channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for (stream, pipe) in [
            (Stream::Out, Box::new(out) as Box<dyn std::io::Read + Send>),
            (Stream::Err, Box::new(err)),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(Event::Line(stream, line)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Event::Eof(stream));
            });
        }
        Running {
            stdin: child.stdin.take(),
            child,
            events,
            open: 2,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: a plain system call on our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(self.pid() as libc::pid_t, signal) }, 0);
    }

    /// Writes to its stdin.
    pub fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(text.as_bytes()).expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Takes the next event, if one comes before `deadline`; false at the deadline or when
    /// both streams are closed.
    fn pump(&mut self, deadline: Instant) -> bool {
        if self.open == 0 {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(Event::Line(Stream::Out, line)) => self.stdout.push(line),
            Ok(Event::Line(Stream::Err, line)) => self.stderr.push(line),
            Ok(Event::Eof(_)) => self.open -= 1,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
        }
        true
    }

    /// Waits for a line of `stream` containing `needle` (seen already or to come); returns it.
    pub fn expect(&mut self, stream: Stream, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let lines = match stream {
                Stream::Out => &self.stdout,
                Stream::Err => &self.stderr,
            };
            if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            if !self.pump(deadline) {
                let _ = self.child.kill();
                panic!(
                    "no line with {needle:?} on {stream:?}\nstdout: {:?}\nstderr: {:?}",
                    self.stdout, self.stderr
                );
            }
        }
    }

    /// Closes stdin, reads both streams to their end and waits for the process.
    pub fn finish(mut self) -> Finished {
        drop(self.stdin.take());
        let deadline = Instant::now() + PATIENCE;
        while self.pump(deadline) {}
        if self.open > 0 {
            let _ = self.child.kill();
            panic!(
                "output still open after {PATIENCE:?}\nstdout: {:?}\nstderr: {:?}",
                self.stdout, self.stderr
            );
        }
        let status = self.child.wait().expect("wait");
        Finished {
            status,
            stdout: self.stdout.join("\n"),
            stderr: self.stderr.join("\n"),
        }
    }
}

/// Runs `cmd` to its end (stdin closed at once).
pub fn finish(cmd: &mut Command) -> Finished {
    Running::start(cmd).finish()
}

/// Waits until `condition` holds, checking again and again until `PATIENCE` runs out.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10)); // a polling interval, not a synchronisation
    }
}

/// Whether a process with this PID exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The files a process has open, as `/proc/PID/fd` links name them.
pub fn open_files(pid: u32) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether this test runs as root, which the tests of other users' locks need (they run
/// lockmacro as `nobody` through setpriv(1)); they pass without checking anything otherwise.
pub fn root() -> bool {
    // SAFETY: a plain system call.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: not root (needs setpriv to run as nobody)");
    }
    root
}

/// A stand-in for the system lock directory (`LOCKMACRO_TEST_SYSTEM_DIR`, honoured by this
/// repository's builds of the runtime), made as the real one is: owned by root, mode 1777.
pub fn system_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod 1777");
    dir
}

/// `lockmacro ARGS` as this process's user, with `system` as the system directory.
pub fn lockmacro_system(system: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = lockmacro(args);
    cmd.env("LOCKMACRO_TEST_SYSTEM_DIR", system);
    cmd
}

/// `lockmacro ARGS` as the user `nobody` (setpriv(1)), with `system` as the system directory.
/// setpriv execs lockmacro, so the child's PID is lockmacro's.
pub fn lockmacro_as_nobody(system: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        LOCKMACRO,
    ])
    .args(args)
    .env("LOCKMACRO_TEST_SYSTEM_DIR", system)
    .current_dir(system);
    cmd
}
