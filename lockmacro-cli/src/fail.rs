//! How lockmacro fails: one line on stderr, `lockmacro: what happened (hint: what to do)`, and
//! an exit status a script can tell apart.

use lockmacro_runtime::Error;

/// A usage error (clap's convention).
pub(crate) const USAGE: i32 = 2;
/// The lock could not be used at all: its directory or file is unsafe or unreachable, the server
/// is down (`EX_OSERR`). Distinct from "held by another process", which is 1 or `--exit-code`.
pub(crate) const FAILED: i32 = 71;
/// CMD exists but cannot be executed (as the shell says).
pub(crate) const CANNOT_EXECUTE: i32 = 126;
/// CMD was not found (as the shell says).
pub(crate) const NOT_FOUND: i32 = 127;

/// A failure to report: the exit status and the one line (none: exit silently).
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) code: i32,
    pub(crate) line: Option<String>,
}

impl Fail {
    pub(crate) fn new(code: i32, what: impl std::fmt::Display, hint: Option<&str>) -> Fail {
        let line = match hint {
            Some(hint) => format!("{what} (hint: {hint})"),
            None => what.to_string(),
        };
        Fail {
            code,
            line: Some(line),
        }
    }

    #[cfg_attr(feature = "postgres", allow(dead_code))] // only `--postgres` without the feature
    pub(crate) fn usage(what: &str, hint: &str) -> Fail {
        Fail::new(USAGE, what, Some(hint))
    }

    /// Exit silently with `code`.
    pub(crate) fn silent(code: i32) -> Fail {
        Fail { code, line: None }
    }

    /// A lock error other than "held elsewhere": status [`FAILED`], the runtime's message and a
    /// hint for the kind of failure.
    pub(crate) fn lock(err: &Error) -> Fail {
        let hint = match err {
            Error::UnsafeDir { .. } => Some(
                "a lock directory must be yours or root's, and sticky if others may write to it; \
                 pick another with --dir",
            ),
            Error::UnsafeFile { .. } => {
                Some("a lock file must have one link and belong to you or root")
            }
            Error::Io { .. } => {
                Some("check that the lock directory can be created and written, or use --dir")
            }
            Error::Postgres { .. } => Some(
                "check the URL and that the server (PostgreSQL 14 or later) is reachable, \
                 e.g. with psql",
            ),
            _ => None,
        };
        Fail::new(FAILED, one_line(err), hint)
    }

    /// Prints the line, if any; the status to exit with.
    pub(crate) fn report(self) -> i32 {
        if let Some(line) = self.line {
            say(&line);
        }
        self.code
    }
}

/// Prints `lockmacro: {line}` on stderr in one write, so that no other thread's output (the
/// runtime's waiting notice, a panic) lands inside it.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let text = format!("{}: {line}\n", program_name());
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// This program's file name, as the runtime prints it before its own lines (`lockmacro: ...`).
pub(crate) fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "lockmacro".to_owned())
}

/// The error and its causes on one line (`a: b: c`), as `#[exclusive] fn main` prints it.
pub(crate) fn one_line(err: &Error) -> String {
    let mut line = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}

/// A command-line error as one line with a hint, and status 2; `--help` and `--version` as
/// clap prints them.
pub(crate) fn usage_error(err: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit()
    }
    let text = err.render().to_string();
    // "error: the following required arguments were not provided:\n  <NAME>\n\nUsage: ..."
    let mut lines = text.lines();
    let mut what = lines
        .next()
        .unwrap_or("invalid command line")
        .trim_start_matches("error: ")
        .trim_end_matches('.')
        .to_owned();
    for more in lines.take_while(|line| !line.trim().is_empty()) {
        what.push(' ');
        what.push_str(more.trim());
    }
    let tip = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("tip: "))
        .map(str::to_owned);
    // The subcommand asked for, to point at its help.
    let subcommand = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .filter(|arg| {
            use clap::CommandFactory;
            crate::Cli::command().find_subcommand(arg).is_some()
        });
    let tip = match (tip, subcommand.as_deref(), err.kind()) {
        (None, Some("run"), ErrorKind::UnknownArgument) => {
            Some("the command goes after `--`: lockmacro run NAME -- CMD ARGS...".to_owned())
        }
        (tip, ..) => tip,
    };
    let help = match subcommand {
        Some(sub) => format!("see `lockmacro {sub} --help`"),
        None => "see `lockmacro --help`".to_owned(),
    };
    let hint = match tip {
        Some(tip) => format!("{tip}; {help}"),
        None => help,
    };
    std::process::exit(Fail::new(USAGE, what, Some(&hint)).report())
}
