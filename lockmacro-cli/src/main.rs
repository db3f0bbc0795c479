//! `lockmacro`: the locks of `#[exclusive]` from the shell.
//!
//! `lockmacro run NAME -- CMD` runs CMD while holding the lock NAME, the same lock as
//! `#[exclusive(name = "NAME")]` in a Rust program of the same scope (same directory, same file
//! name mapping: both use `lockmacro_runtime::Lock::new(NAME)`). `who` tells who holds a lock,
//! `path` where it is, `list` what locks a directory holds. Built only on the public API of
//! `lockmacro-runtime`.

mod fail;
mod run;
mod sys;
mod time;
mod who;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lockmacro_runtime::Lock;

use crate::fail::Fail;

const CRON_EXAMPLE: &str = "\
Examples:
  # crontab: mail sync every 5 minutes, never two at a time. Instead of
  #   */5 * * * * flock -n /tmp/mailsync.lock mailsync.sh
  */5 * * * * lockmacro run mailsync -- mailsync.sh

  lockmacro run backup --timeout 30s -- backup.sh   # wait at most 30 s for a running backup
  lockmacro run report --skip -- report.sh          # already running: exit 0, say nothing
  lockmacro who mailsync                            # who holds it, since when, doing what
  lockmacro list                                    # every lock of mine, and who holds it
";

/// Run a command while holding a lockmacro lock; see who holds one.
///
/// The locks are those of `#[exclusive]` (crate lockmacro-runtime): `lockmacro run NAME` and
/// `#[exclusive(name = "NAME")]` exclude each other when they use the same directory (the
/// default per-user directory, `$LOCKMACRO_DIR`, or the same --dir / `dir = "..."`).
#[derive(Debug, Parser)]
#[command(name = "lockmacro", version, after_help = CRON_EXAMPLE)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(RunArgs),
    Who(WhoArgs),
    Path(PathArgs),
    List(ListArgs),
}

/// Where a lock is: the default directory, another directory, or a PostgreSQL server.
#[derive(Debug, Clone, Args)]
#[group(id = "place", multiple = false)]
struct Place {
    /// Keep the lock file in DIR (as `dir = "DIR"` in the attribute; created if missing).
    /// Default: $LOCKMACRO_DIR, else the per-user default directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Use the system-wide lock directory shared by all users (as `Lock::system()`).
    #[arg(long)]
    system: bool,
    /// Lock the file FILE itself instead of a named lock in a directory (as `Lock::at(FILE)`).
    #[arg(long, value_name = "FILE")]
    path: Option<PathBuf>,
    /// Hold the lock in PostgreSQL (a session-level advisory lock at URL) instead of a file,
    /// to exclude processes on other hosts too. Needs the `postgres` feature.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Like --postgres, with the URL from $LOCKMACRO_POSTGRES_URL (keeps a password off the
    /// command line).
    #[arg(long)]
    postgres_env: bool,
}

/// Run CMD while holding the lock NAME.
///
/// The lock is held by this process, not by CMD: CMD and its children never keep it once
/// lockmacro is gone (the lock file is opened close-on-exec). SIGINT, SIGTERM, SIGHUP and
/// SIGQUIT sent to lockmacro are passed on to CMD (not those a terminal sends, which CMD gets
/// already). Exit status: CMD's, or 128+N if it was killed by signal N; 1 (or --exit-code) if
/// the lock is held by another process; 75 if the lock was lost while CMD ran (CMD is sent
/// SIGTERM, then SIGKILL after --kill-after); 126/127 if CMD cannot be run; 71 if the lock
/// cannot be used at all; 2 on a usage error.
#[derive(Debug, Args)]
#[command(after_help = CRON_EXAMPLE)]
struct RunArgs {
    /// The lock's name: the same lock as `#[exclusive(name = "NAME")]`.
    #[arg(required_unless_present = "path", conflicts_with = "path")]
    name: Option<String>,
    /// Wait until the lock is free (a line on stderr says so after a second).
    #[arg(long, conflicts_with = "timeout")]
    wait: bool,
    /// Wait at most DURATION (`30s`, `250ms`, `5m`, `1h`; a bare number is seconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Take a shared (reader) lock: shared holders run together; an exclusive one excludes them.
    #[arg(long)]
    shared: bool,
    /// When the lock is held elsewhere (or --timeout runs out), exit 0 without a word.
    #[arg(long)]
    skip: bool,
    /// Exit status when the lock is held elsewhere (or --timeout runs out).
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "skip")]
    exit_code: u8,
    /// After the lock is lost and CMD was sent SIGTERM, wait this long before SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    kill_after: Duration,
    #[command(flatten)]
    place: Place,
    /// The command to run, after `--`.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Who holds the lock NAME: PID, mode, since when, command line. Exit 0 if held, 1 if free.
#[derive(Debug, Args)]
struct WhoArgs {
    /// The lock's name.
    #[arg(required_unless_present = "path", conflicts_with = "path")]
    name: Option<String>,
    #[command(flatten)]
    place: Place,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Print where the lock NAME is: its file (or PostgreSQL server and key).
#[derive(Debug, Args)]
struct PathArgs {
    /// The lock's name.
    #[arg(required_unless_present = "path", conflicts_with = "path")]
    name: Option<String>,
    #[command(flatten)]
    place: Place,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// List the locks of a directory and who holds each (PID, mode, command line).
///
/// One line per lock, named as its holders named it (else by its file's name), then one line per
/// holding process. A lock's own extra files (`.gate`, `.state`) are not listed apart, and a
/// lock of N slots is one line with all its holders. Exit 0, even when there is no lock.
#[derive(Debug, Args)]
struct ListArgs {
    /// The directory (default: $LOCKMACRO_DIR, else the per-user default directory).
    #[arg(long, value_name = "DIR", conflicts_with = "system")]
    dir: Option<PathBuf>,
    /// The system-wide lock directory shared by all users (that of `run --system`).
    #[arg(long)]
    system: bool,
    /// Print one JSON array (one object per lock) instead of text.
    #[arg(long)]
    json: bool,
}

impl Place {
    /// The lock these options describe, named `name`.
    fn lock(&self, name: Option<&str>) -> Result<Lock, Fail> {
        if let Some(path) = &self.path {
            return Ok(Lock::at(path));
        }
        // clap requires NAME unless --path is given.
        let lock = Lock::new(name.unwrap_or_default());
        let lock = if self.system { lock.system() } else { lock };
        let lock = match &self.dir {
            Some(dir) => lock.dir(dir),
            None => lock,
        };
        if self.postgres.is_some() || self.postgres_env {
            return self.postgres(lock);
        }
        Ok(lock)
    }

    #[cfg(feature = "postgres")]
    fn postgres(&self, lock: Lock) -> Result<Lock, Fail> {
        Ok(match &self.postgres {
            Some(url) => lock.postgres(url.as_str()),
            None => lock.postgres_from_env(),
        })
    }

    #[cfg(not(feature = "postgres"))]
    fn postgres(&self, _lock: Lock) -> Result<Lock, Fail> {
        Err(Fail::usage(
            "this lockmacro was built without PostgreSQL support",
            "cargo install lockmacro-cli --features postgres",
        ))
    }
}

/// `30s`, `250ms`, `1.5s`, `5m`, `1h`, or a bare number of seconds (as `flock -w`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    number
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "expected a duration like 30s, 250ms, 5m, 1h or 10 (seconds)".to_owned())
}

fn main() {
    let cli = match Cli::try_parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err) => fail::usage_error(err),
    };
    let code = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Who(args) => who::who(args),
        Command::Path(args) => who::path(args),
        Command::List(args) => who::list(args),
    };
    let code = code.unwrap_or_else(|fail| fail.report());
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("10"), Duration::from_secs(10));
        assert_eq!(ok("0"), Duration::ZERO);
        for bad in ["", "s", "-1s", "5x", "1e3", "1..2s", "ms5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_needs_a_name_and_a_command_after_the_double_dash() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        let cli = parse(&["lockmacro", "run", "job", "--wait", "--", "sh", "-c", "x"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.name.as_deref(), Some("job"));
        assert!(run.wait);
        assert_eq!(run.command, ["sh", "-c", "x"]);
        assert!(parse(&["lockmacro", "run", "job"]).is_err());
        assert!(parse(&["lockmacro", "run", "job", "sh"]).is_err());
        assert!(parse(&["lockmacro", "run", "--", "sh"]).is_err());
        assert!(parse(&[
            "lockmacro",
            "run",
            "j",
            "--wait",
            "--timeout",
            "1s",
            "--",
            "x"
        ])
        .is_err());
        assert!(parse(&[
            "lockmacro",
            "run",
            "j",
            "--skip",
            "--exit-code",
            "3",
            "--",
            "x"
        ])
        .is_err());
        assert!(parse(&[
            "lockmacro",
            "run",
            "j",
            "--dir",
            "d",
            "--postgres",
            "u",
            "--",
            "x"
        ])
        .is_err());
    }
}
