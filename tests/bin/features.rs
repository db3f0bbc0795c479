//! The `lm-helper` subcommands of `tests/test_features.rs` (`on_conflict = "skip"`, names from
//! code), kept in their own file so the helper's dispatch needs one line for them:
//!
//! - `skip-main [--timeout]`: run `skipping::main`, an `#[exclusive(name = "skip-main",
//!   on_conflict = "skip")] fn main()` (with `timeout = "1500ms"`: longer than the wait notice's
//!   second, to show a skipping `main` prints no notice either). Inside, it prints `ran pid=<pid>`
//!   and holds the lock until stdin EOF. A skipped run exits 0 having printed nothing at all.
//! - `skip-option`: call `#[exclusive(name = "skip-option", on_conflict = "skip")] fn report()
//!   -> Option<u32>` and print `some <n>` or `none`.
//! - `tenant <id>`: call `#[exclusive(name = format!("tenant-{id}"), on_conflict = "skip")] fn
//!   tenant(id: &str) -> Option<()>`; inside it prints `ran id=<id>` and holds the lock until
//!   stdin EOF; a skipped call prints `skipped id=<id>`.

use std::process::ExitCode;

use lockmacro_runtime::exclusive;

use crate::protocol::say;
use crate::{wait_for_eof, Outcome};

/// Runs subcommand `command`, or returns `None` if it is not one of these.
pub fn run(command: &str, args: &[String]) -> Option<Outcome> {
    Some(match (command, args) {
        ("skip-main", []) => {
            skipping::main();
            Ok(ExitCode::SUCCESS)
        }
        ("skip-main", [flag]) if flag == "--timeout" => {
            skipping_after_timeout::main();
            Ok(ExitCode::SUCCESS)
        }
        ("skip-option", []) => {
            say(&report().map_or_else(|| "none".to_owned(), |n| format!("some {n}")));
            Ok(ExitCode::SUCCESS)
        }
        ("tenant", [id]) => {
            if tenant(id).is_none() {
                say(&format!("skipped id={id}"));
            }
            Ok(ExitCode::SUCCESS)
        }
        ("skip-main" | "skip-option" | "tenant", _) => Err("wrong arguments".into()),
        _ => return None,
    })
}

/// A function named `main` is treated as the program's `main` (that is how the attribute
/// recognises it), so this is exactly the expansion a binary's `main` gets.
mod skipping {
    use super::*;

    #[exclusive(name = "skip-main", on_conflict = "skip")]
    pub fn main() {
        say(&format!("ran pid={}", std::process::id()));
        let _ = wait_for_eof();
    }
}

mod skipping_after_timeout {
    use super::*;

    #[exclusive(name = "skip-main", on_conflict = "skip", timeout = "1500ms")]
    pub fn main() {
        say(&format!("ran pid={}", std::process::id()));
        let _ = wait_for_eof();
    }
}

#[exclusive(name = "skip-option", on_conflict = "skip")]
fn report() -> Option<u32> {
    Some(7)
}

#[exclusive(name = format!("tenant-{id}"), on_conflict = "skip")]
fn tenant(id: &str) -> Option<()> {
    say(&format!("ran id={id}"));
    let _ = wait_for_eof();
    Some(())
}
