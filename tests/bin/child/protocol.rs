//! The line protocol between `lm-child` and the tests (which read it with
//! `tests/support/proc.rs`).
//!
//! The child reports every event it reaches as one line on stdout: the event's word, then
//! `key=value` fields separated by single spaces. Values contain no spaces, except the
//! free-text fields `path=` and `msg=`: they come last, `path=` before `msg=`; `msg=` runs to
//! the end of the line, `path=` to ` msg=` or to the end. `pid=` is always the PID of the process
//! that prints the line; other processes are named by their role (`holder=`, `child=`), and an
//! unknown one is `-`. The test waits for a line, never for a while; a process that holds a
//! lock keeps it until the test says so on its stdin (a line, or end of file).
//!
//! A failed acquisition through the runtime API is reported as
//! `error kind=<Variant> holder=<pid|-> path=<location> msg=<message: causes>` (`Error::location`:
//! the lock file's path, or the PostgreSQL lock), usually followed by exit status 1. Exit status 2
//! means a usage or unexpected error (details on stderr).

use lockmacro_runtime::Error;

/// Prints one protocol line with one `write(2)`: safe in a child forked from a multi-threaded
/// process (no lock of std's stdout is taken), never buffered, and never interleaved with the
/// lines of other processes that share the pipe (forked children, `flock(1)`'s children).
pub fn say(line: &str) {
    let mut buf = line.as_bytes().to_vec();
    buf.push(b'\n');
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: writes from a live buffer to our stdout.
        let n = unsafe { libc::write(1, buf[off..].as_ptr().cast(), buf.len() - off) };
        if n <= 0 {
            return; // the test went away: nobody to tell
        }
        off += usize::try_from(n).unwrap_or(buf.len());
    }
}

/// This process's PID, for `pid=`.
pub fn me() -> u32 {
    std::process::id()
}

/// A PID, or `-` for none.
pub fn pid_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "-".to_owned(), |p| p.to_string())
}

/// The name of `err`'s variant, for `kind=`.
pub fn kind(err: &Error) -> &'static str {
    match err {
        Error::Held { .. } => "Held",
        Error::Timeout { .. } => "Timeout",
        Error::Nested { .. } => "Nested",
        Error::UnsafeDir { .. } => "UnsafeDir",
        Error::UnsafeFile { .. } => "UnsafeFile",
        Error::Lost { .. } => "Lost",
        Error::Io { .. } => "Io",
        _ => "Other",
    }
}

/// The error and its causes on one line.
pub fn one_line(err: &Error) -> String {
    let mut msg = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}

/// The `error` line of a failed acquisition.
pub fn error_line(err: &Error) -> String {
    format!(
        "error kind={} holder={} path={} msg={}",
        kind(err),
        pid_text(err.holder_pid()),
        err.location(),
        one_line(err)
    )
}
