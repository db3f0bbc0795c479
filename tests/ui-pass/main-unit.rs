#![deny(warnings)]

use lockmacro_runtime::exclusive;

#[exclusive(name = "lockmacro-ui-pass-main-unit")]
fn main() {
    let greeting = "locked";
    assert_eq!(greeting.len(), 6);
}
