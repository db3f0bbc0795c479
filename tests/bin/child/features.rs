//! What users reach for next, for `tests/test_features.rs` (`on_conflict = "skip"`, names from
//! code). Locks live in `LOCKMACRO_DIR`.
//!
//! - `skip-main [--timeout]`: run `skipping::main`, an `#[exclusive(name = "skip-main",
//!   on_conflict = "skip")] fn main()` (with `--timeout`, `timeout = "1500ms"`: longer than the
//!   wait notice's second, to show a skipping `main` prints no notice either). Inside, it prints
//!   `ran pid=<pid>` and holds the lock until stdin EOF. A skipped run exits 0 having printed
//!   nothing at all.
//! - `skip-option`: call `#[exclusive(name = "skip-option", on_conflict = "skip")] fn report()
//!   -> Option<u32>` and print `some n=<n>` or `none`.
//! - `tenant <id>`: call `#[exclusive(name = format!("tenant-{id}"), on_conflict = "skip")] fn
//!   tenant(id: &str) -> Option<()>`; inside it prints `ran id=<id>` and holds the lock until
//!   stdin EOF; a skipped call prints `skipped id=<id>`.

use std::process::ExitCode;

use lockmacro_runtime::exclusive;

use crate::protocol::{me, say};
use crate::{wait_for_eof, Args, Outcome};

pub fn skip_main(args: &Args) -> Outcome {
    let [] = args.positional("no positional argument")?;
    args.only(&["timeout"])?;
    if args.has("timeout") {
        skipping_after_timeout::main();
    } else {
        skipping::main();
    }
    Ok(ExitCode::SUCCESS)
}

pub fn skip_option(args: &Args) -> Outcome {
    let [] = args.positional("no positional argument")?;
    args.only(&[])?;
    say(&report().map_or_else(|| "none".to_owned(), |n| format!("some n={n}")));
    Ok(ExitCode::SUCCESS)
}

pub fn tenant_once(args: &Args) -> Outcome {
    let [id] = args.positional("<id>")?;
    args.only(&[])?;
    if tenant(id).is_none() {
        say(&format!("skipped id={id}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// A function named `main` is treated as the program's `main` (that is how the attribute
/// recognises it), so this is exactly the expansion a binary's `main` gets.
mod skipping {
    use super::*;

    #[exclusive(name = "skip-main", on_conflict = "skip")]
    pub fn main() {
        say(&format!("ran pid={}", me()));
        wait_for_eof();
    }
}

mod skipping_after_timeout {
    use super::*;

    #[exclusive(name = "skip-main", on_conflict = "skip", timeout = "1500ms")]
    pub fn main() {
        say(&format!("ran pid={}", me()));
        wait_for_eof();
    }
}

#[exclusive(name = "skip-option", on_conflict = "skip")]
fn report() -> Option<u32> {
    Some(7)
}

#[exclusive(name = format!("tenant-{id}"), on_conflict = "skip")]
fn tenant(id: &str) -> Option<()> {
    say(&format!("ran id={id}"));
    wait_for_eof();
    Some(())
}
