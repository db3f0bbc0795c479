//! `main` returning `Result`, with `exit_code` and `timeout`.
#![deny(warnings, clippy::all, clippy::pedantic)]

use lockmacro_runtime::exclusive;

#[exclusive(name = "lint-main-result", timeout = "2m", exit_code = 75)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = "42".parse()?;
    println!("{n}");
    Ok(())
}
