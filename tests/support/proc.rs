//! Child processes: started through one guarded path, read line by line with a deadline, and
//! killed with everything they forked when dropped.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::PATIENCE;

/// The test child, `tests/bin/child`.
pub const CHILD: &str = env!("CARGO_BIN_EXE_lm-child");

/// Environment variables of the runtime (and its test hooks) that a child must not inherit by
/// accident.
const RUNTIME_ENV: [&str; 6] = [
    "LOCKMACRO_DIR",
    "LOCKMACRO_TEST_BREAK",
    "LOCKMACRO_TEST_FS_MAGIC",
    "LOCKMACRO_ALLOW_NETWORK_FS",
    "LOCKMACRO_TEST_SYSTEM_DIR",
    "LOCKMACRO_TEST_GATE_LOG",
];

/// Held while a child is being spawned, and by [`no_forks`].
static FORKS: Mutex<()> = Mutex::new(());

/// Keeps other tests of this process from spawning children until dropped.
///
/// Spawning forks this process, and the fork holds copies of *all* our descriptors until it
/// execs (close-on-exec only closes them then), lock files included: a lock this process has
/// just released can stay held for that instant, so `holder()` names us or a shared holder's
/// `cleanup` finds it is not the last. A test that checks the state right after an in-process
/// release holds this for the duration. ([`spawn`], the way these tests start processes,
/// holds the same mutex until `Command::spawn` returns, which it does only once the child has
/// exec'd, so no fork is in flight then.) Never start a process while holding it: the mutex is
/// not re-entrant.
pub fn no_forks() -> MutexGuard<'static, ()> {
    FORKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Spawns `cmd` in a process group of its own, with no fork of this process in flight for
/// another test (see [`no_forks`]).
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let _forking = no_forks();
    cmd.process_group(0).spawn()
}

/// Runs `cmd` to its end through [`spawn`], stdin closed and output captured.
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn(cmd)?.wait_with_output()
}

/// How to start one `lm-child`: its arguments, environment, user and working directory. The
/// runtime's environment variables are never inherited.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    args: Vec<String>,
    env: Vec<(String, PathBuf)>,
    nobody: bool,
    wrapper: Vec<String>,
    cwd: Option<PathBuf>,
}

/// `lm-child args...` as the test's user (root), in the test's working directory.
pub fn child<I, S>(args: I) -> Spec
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
        self.env
            .push((key.to_owned(), PathBuf::from(value.as_ref())));
        self
    }

    /// `LOCKMACRO_DIR=dir`: where the child's annotated functions and `-` directories lock.
    #[must_use]
    pub fn dir(self, dir: &Path) -> Spec {
        self.env("LOCKMACRO_DIR", dir)
    }

    /// Runs the child as `nobody` (uid and gid 65534, no supplementary groups) with `setpriv`.
    #[must_use]
    pub fn under_nobody(mut self) -> Spec {
        self.nobody = true;
        self
    }

    /// Runs the child as `wrapper... lm-child args` (for example `env -i PATH=...`).
    #[must_use]
    pub fn wrapped<I, S>(mut self, wrapper: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.wrapper = wrapper.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// Runs the child in `dir`.
    #[must_use]
    pub fn cwd(mut self, dir: &Path) -> Spec {
        self.cwd = Some(dir.to_owned());
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
        argv.push(CHILD.to_owned());
        argv.extend(self.args.iter().cloned());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        for key in RUNTIME_ENV {
            cmd.env_remove(key);
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let who = if self.nobody { " (as nobody)" } else { "" };
        Proc::start(format!("lm-child {}{who}", self.args.join(" ")), cmd)
    }

    /// Spawns the child, closes its stdin at once and waits for it to exit.
    pub fn run(&self) -> Finished {
        self.spawn().finish()
    }
}

/// One line of the child protocol (`tests/bin/child/protocol.rs`): `word key=value ...`, with
/// the free-text fields `path=` and `msg=` last.
#[derive(Clone, PartialEq, Eq)]
pub struct Line(String);

impl Line {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The event: the first word.
    pub fn word(&self) -> &str {
        self.0.split_whitespace().next().unwrap_or_default()
    }

    /// The value of `key=`, if the line has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        let text = self.0.as_str();
        let msg = text.find(" msg=");
        if key == "msg" {
            return msg.map(|i| &text[i + " msg=".len()..]);
        }
        let head = &text[..msg.unwrap_or(text.len())];
        let path = head.find(" path=");
        if key == "path" {
            return path.map(|i| &head[i + " path=".len()..]);
        }
        let prefix = format!("{key}=");
        head[..path.unwrap_or(head.len())]
            .split_whitespace()
            .skip(1)
            .find_map(|word| word.strip_prefix(prefix.as_str()))
    }

    /// The value of `key=`, which the line must have.
    pub fn field(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no `{key}=` in line {self}"))
    }

    /// The value of `key=` as a number (or anything else `FromStr`).
    pub fn number<T: FromStr>(&self, key: &str) -> T
    where
        T::Err: fmt::Debug,
    {
        let text = self.field(key);
        text.parse()
            .unwrap_or_else(|e| panic!("`{key}={text}` in line {self}: {e:?}"))
    }

    /// The PID of the process that printed the line (`pid=`).
    pub fn pid(&self) -> u32 {
        self.number("pid")
    }

    /// The process named by `key=` (`holder=`, `child=`): `None` for `-`.
    pub fn pid_of(&self, key: &str) -> Option<u32> {
        match self.field(key) {
            "-" => None,
            _ => Some(self.number(key)),
        }
    }
}

impl From<String> for Line {
    fn from(text: String) -> Line {
        Line(text)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl PartialEq<&str> for Line {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A child process with piped stdio, in a process group of its own. Dropping it kills the whole
/// group (the child and whatever it forked) and reaps the child, so a failing assertion never
/// leaves a lock holder behind.
pub struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// The child's stderr, line by line as it comes, and all of it so far.
    err_lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Disconnected once the child's stderr is closed.
    err_closed: Receiver<()>,
    reaped: Option<ExitStatus>,
}

impl Proc {
    /// Starts any command with piped stdio through [`spawn`]; `label` names it in failures.
    pub fn start(label: String, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn(&mut cmd).unwrap_or_else(|e| panic!("spawn `{label}`: {e}"));
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
        let (closed_tx, err_closed) = mpsc::channel::<()>();
        let text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&text);
        std::thread::spawn(move || {
            let _closed = closed_tx; // dropped at EOF: the child's stderr is closed
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut all = sink.lock().unwrap_or_else(PoisonError::into_inner);
                all.push_str(&line);
                all.push('\n');
                drop(all);
                let _ = err_tx.send(line);
            }
        });
        Proc {
            label,
            child,
            stdin,
            lines,
            err_lines,
            stderr: text,
            err_closed,
            reaped: None,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The next line on the child's stdout, waiting at most [`PATIENCE`].
    pub fn next_line(&mut self) -> Line {
        self.next_line_within(PATIENCE)
    }

    /// The next line on the child's stdout, waiting at most `patience`; fails (killing the
    /// child and showing its stderr) if none comes.
    pub fn next_line_within(&mut self, patience: Duration) -> Line {
        self.line_or_fail(patience, "expected a line")
    }

    /// The next line on the child's stdout, waiting at most [`PATIENCE`]; if none comes, fails
    /// saying `what` that means.
    pub fn next_line_for(&mut self, what: &str) -> Line {
        self.line_or_fail(PATIENCE, what)
    }

    fn line_or_fail(&mut self, patience: Duration, what: &str) -> Line {
        match self.lines.recv_timeout(patience) {
            Ok(line) => Line(line),
            Err(RecvTimeoutError::Timeout) => {
                self.fail(&format!("{what}: no line within {patience:?} (it hangs)"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                self.reaped = status;
                self.fail(&format!("{what}: stdout closed instead (exit {status:?})"))
            }
        }
    }

    /// The next line if one comes within `patience`; `None` if none does or stdout closed.
    pub fn poll_line(&mut self, patience: Duration) -> Option<Line> {
        self.lines.recv_timeout(patience).ok().map(Line)
    }

    /// True if the child has printed nothing more so far (it is still waiting, or busy).
    pub fn quiet(&self) -> bool {
        matches!(self.lines.try_recv(), Err(mpsc::TryRecvError::Empty))
    }

    /// The next line, which must be the event `word` (for example `locked`).
    pub fn expect(&mut self, word: &str) -> Line {
        self.expect_within(word, PATIENCE)
    }

    pub fn expect_within(&mut self, word: &str, patience: Duration) -> Line {
        let line = self.line_or_fail(patience, &format!("expected a `{word}` line"));
        if line.word() != word {
            self.fail(&format!("expected a `{word}` line, got {line}"));
        }
        line
    }

    /// The next line, which must be the event `word`, printed by the child itself: returns its
    /// `pid=`, checked to be the child's.
    pub fn expect_pid(&mut self, word: &str) -> u32 {
        let line = self.expect(word);
        let pid = line.pid();
        if pid != self.id() {
            self.fail(&format!(
                "{line} names pid {pid}, not the child {}",
                self.id()
            ));
        }
        pid
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

    /// For a holder: closes its stdin and waits until it says it has released the lock.
    pub fn release(&mut self) {
        self.close_stdin();
        self.expect("released");
    }

    /// Waits at most `within` for the child to exit by itself (stdin left as it is): its status,
    /// stdout lines not read before and whole stderr, or `None` if it is still running.
    pub fn exit_within(&mut self, within: Duration) -> Option<Finished> {
        let deadline = Instant::now() + within;
        let mut rest = Vec::new();
        // The child's stdout reaches EOF when it exits (children it forks point theirs
        // elsewhere, or exit first): no polling of its status needed.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => return None,
            }
        }
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait for `{}`: {e}", self.label));
        self.reaped = Some(status);
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(RecvTimeoutError::Timeout) = self.err_closed.recv_timeout(left) {
            self.fail("exited, but its stderr is still open");
        }
        Some(Finished {
            label: self.label.clone(),
            status,
            stdout: rest,
            stderr: self.stderr(),
        })
    }

    /// Waits (at most [`PATIENCE`]) for the child to exit by itself, stdin still open.
    pub fn exited(mut self) -> Finished {
        match self.exit_within(PATIENCE) {
            Some(done) => done,
            None => self.fail(&format!("did not exit within {PATIENCE:?}")),
        }
    }

    /// Closes stdin and waits (at most [`PATIENCE`]) for the child to exit.
    pub fn finish(mut self) -> Finished {
        self.close_stdin();
        self.exited()
    }

    /// [`Proc::finish`], asserting a successful exit.
    pub fn finish_ok(self) -> Finished {
        let done = self.finish();
        assert!(done.status.success(), "`{}` failed: {done:#?}", done.label);
        done
    }

    /// Sends SIGKILL now; [`Proc::finish`] (or drop) reaps the child.
    pub fn send_kill(&mut self) {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("kill `{}`: {e}", self.label));
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(mut self) -> ExitStatus {
        self.send_kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait for killed `{}`: {e}", self.label));
        self.reaped = Some(status);
        status
    }

    /// Waits until the kernel lists this child as blocked waiting for a flock on the file at
    /// `path` (`/proc/locks` marks waiters with `->`). This observes a state, with a deadline;
    /// the short pause between looks only paces the polling and decides nothing.
    pub fn wait_until_blocked_on(&mut self, path: &Path) {
        let pid = self.id();
        super::wait_until_blocked(pid, path, || match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("`{}` exited ({status})", self.label)),
            _ => None,
        })
        .unwrap_or_else(|why| self.fail(&why));
    }

    /// Kills the child's group, then panics with `what` and what the child wrote on stderr.
    pub fn fail(&mut self, what: &str) -> ! {
        self.kill_group();
        panic!(
            "`{}` (pid {}): {what}; its stderr:\n{}",
            self.label,
            self.child.id(),
            self.stderr()
        )
    }

    fn kill_group(&mut self) {
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this child leads; at worst it is empty.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        if self.reaped.is_none() {
            let _ = self.child.kill();
            self.reaped = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_group();
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

/// A failed acquisition as the child reports it:
/// `error kind=<Variant> holder=<pid|-> path=<path> msg=<message>`.
#[derive(Debug)]
pub struct Reported {
    pub kind: String,
    pub holder: Option<u32>,
    pub path: PathBuf,
    pub msg: String,
}

impl Finished {
    /// The first stdout line that is the event `word`.
    pub fn line(&self, word: &str) -> Line {
        self.stdout
            .iter()
            .map(|l| Line(l.clone()))
            .find(|l| l.word() == word)
            .unwrap_or_else(|| panic!("no `{word}` line from `{}`: {self:#?}", self.label))
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn signal(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(&self.status)
    }

    /// The `error` line of a child that failed to get its lock (which exits with status 1);
    /// `what` says what being accepted would mean.
    pub fn refused(&self, what: &str) -> Reported {
        assert_eq!(
            self.code(),
            Some(1),
            "{what}: `{}` should have been refused (status 1 and an `error` line): {self:#?}",
            self.label
        );
        let line = self.line("error");
        Reported {
            kind: line.field("kind").to_owned(),
            holder: line.pid_of("holder"),
            path: PathBuf::from(line.field("path")),
            msg: line.field("msg").to_owned(),
        }
    }

    /// What a single-instance program refused by the exit policy must look like: a non-zero
    /// status and exactly one line on stderr, starting with the program's name, with no panic
    /// and no backtrace. Returns that line.
    pub fn one_line_refusal(&self) -> String {
        assert!(
            matches!(self.code(), Some(c) if c != 0),
            "`{}` should exit with a non-zero status: {self:#?}",
            self.label
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "`{}` should print exactly one line on stderr: {self:#?}",
            self.label
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
            line.starts_with("lm-child: "),
            "the line should start with the program's name: {line:?}"
        );
        line.to_owned()
    }
}

/// Runs this test binary's test `name` alone in a copy of the process (`--exact`, one thread),
/// with `ISOLATED=1` in its environment (the test checks it to run its isolated part) and
/// `LOCKMACRO_DIR=dir`; fails unless it ran and passed. For tests that count the process's
/// descriptors and threads, or need their own `LOCKMACRO_DIR` for an annotated function.
pub fn run_isolated(name: &str, isolated: &str, dir: &Path) {
    let mut cmd = Command::new(std::env::current_exe().expect("this test binary"));
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(isolated, "1")
        .env("LOCKMACRO_DIR", dir);
    let done = Proc::start(format!("isolated test {name}"), cmd).finish();
    eprintln!("{}", done.stderr);
    assert!(done.status.success(), "isolated test failed: {done:#?}");
    let ran = format!("test {name} ... ok");
    assert!(
        done.stdout.contains(&ran),
        "the isolated test did not run: {done:#?}"
    );
}
