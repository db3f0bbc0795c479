//! `main` returning `ExitCode`, `on_conflict = "exit"` with `exit_code = 0`, `shared`.
#![deny(warnings, clippy::all, clippy::pedantic)]

use std::process::ExitCode;

use lockmacro_runtime::exclusive;

#[exclusive(
    name = "lint-main-exit-code",
    on_conflict = "exit",
    exit_code = 0,
    shared,
    wait
)]
fn main() -> ExitCode {
    if std::env::args().count() > 100 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
