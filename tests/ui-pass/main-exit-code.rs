#![deny(warnings)]

use std::process::ExitCode;

use lockmacro_runtime::exclusive;

#[exclusive(
    name = "lockmacro-ui-pass-main-exit-code",
    on_conflict = "exit",
    exit_code = 0
)]
fn main() -> ExitCode {
    if std::env::args().count() > 100 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
