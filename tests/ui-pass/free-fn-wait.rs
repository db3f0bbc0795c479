#![deny(warnings)]

use lockmacro_runtime::exclusive;

#[exclusive(name = "lockmacro-ui-pass-free-fn-wait", wait)]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

fn main() {
    assert_eq!(add(2, 3), 5);
    // Released on return, so a second call takes it again.
    assert_eq!(add(1, 1), 2);
}
