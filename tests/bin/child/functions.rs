//! Annotated functions called from a plain `main` (their locks live in `LOCKMACRO_DIR`).
//!
//! - `migrate`: call `#[exclusive(name = "migrate")] fn migrate() -> Result<(), AppError>`; print
//!   `ran` from its body, then `ok`; or, when the conversion into `AppError` carried an
//!   `Error::Held`, print `held holder=<pid|-> name=<name> path=<path>` and exit 3.
//! - `wait-acquire [--mark=<file>]`: print `waiting pid=<pid>`, then call an annotated `wait`
//!   function on lock `wait`; inside it, print
//!   `acquired pid=<pid> mark=<yes|no> holder=<holder()> file=<lock file's first line>` (`mark`:
//!   whether `<file>` exists; the file's first line is the PID, the lock's name follows it).
//! - `timeout`: call `#[exclusive(name = "timeout", timeout = "300ms")]`; print `acquired`, or
//!   `timeout holder=<pid|-> elapsed_ms=<ms> timeout_ms=<ms> name=<name> path=<path>` (exit 4).

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use lockmacro_runtime::{exclusive, Error, Location, Lock};

use crate::protocol::{me, pid_text, say};
use crate::{Args, Outcome};

/// The user's own error type; `#[exclusive]` converts the lock error into it with `From`.
#[derive(Debug)]
enum AppError {
    Lock(Error),
    #[allow(dead_code)] // Only here to show `AppError` is the user's type, not a lock error.
    Database(String),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Lock(e)
    }
}

#[exclusive(name = "migrate")]
fn migrate_locked() -> Result<(), AppError> {
    say("ran");
    Ok(())
}

pub fn migrate() -> Outcome {
    match migrate_locked() {
        Ok(()) => {
            say("ok");
            Ok(ExitCode::SUCCESS)
        }
        Err(AppError::Lock(Error::Held {
            name,
            at: Location::File(path),
            pid,
        })) => {
            say(&format!(
                "held holder={} name={name} path={}",
                pid_text(pid),
                path.display()
            ));
            Ok(ExitCode::from(3))
        }
        Err(other) => Err(format!("unexpected error: {other:?}")),
    }
}

#[exclusive(name = "wait", wait)]
fn wait_locked(mark: Option<&Path>) -> Result<String, Error> {
    let saw_mark = mark.is_some_and(Path::exists);
    let lock = Lock::new("wait");
    let holder = lock.holder()?;
    let content = fs::read_to_string(lock.path()).map_err(|e| format!("{e}"));
    Ok(format!(
        "acquired pid={} mark={} holder={} file={}",
        me(),
        if saw_mark { "yes" } else { "no" },
        pid_text(holder),
        // The PID line (the lock's name follows it).
        content
            .as_deref()
            .map_or("unreadable", |c| c.lines().next().unwrap_or_default()),
    ))
}

pub fn wait_acquire(args: &Args) -> Outcome {
    let [] = args.positional("no positional argument")?;
    args.only(&["mark"])?;
    say(&format!("waiting pid={}", me()));
    let line = wait_locked(args.value("mark").map(Path::new)).map_err(|e| e.to_string())?;
    say(&line);
    Ok(ExitCode::SUCCESS)
}

#[exclusive(name = "timeout", timeout = "300ms")]
fn bounded() -> Result<(), AppError> {
    say("acquired");
    Ok(())
}

pub fn timeout() -> Outcome {
    let start = Instant::now();
    let result = bounded();
    let elapsed = start.elapsed();
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(AppError::Lock(Error::Timeout {
            name,
            at: Location::File(path),
            timeout,
            pid,
        })) => {
            say(&format!(
                "timeout holder={} elapsed_ms={} timeout_ms={} name={name} path={}",
                pid_text(pid),
                elapsed.as_millis(),
                timeout.as_millis(),
                path.display()
            ));
            Ok(ExitCode::from(4))
        }
        Err(other) => Err(format!("unexpected error: {other:?}")),
    }
}
