#![deny(warnings)]

use lockmacro_runtime::exclusive;

#[exclusive(name = "lockmacro-ui-pass-main-result", exit_code = 75)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = "42".parse()?;
    assert_eq!(n, 42);
    Ok(())
}
