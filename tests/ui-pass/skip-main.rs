#![deny(warnings)]
// A skipping `main` with another return type: it exits 0 when skipped (tests/test_features.rs
// checks that with a held lock); here, free, it runs.

use std::process::ExitCode;

use lockmacro_runtime::exclusive;

#[exclusive(
    name = "lockmacro-ui-pass-skip-main",
    on_conflict = "skip",
    timeout = "1s"
)]
fn main() -> ExitCode {
    ExitCode::SUCCESS
}
