#![deny(warnings)]

use lockmacro_runtime::exclusive;

#[exclusive(name = "lockmacro-ui-pass-inner-attributes", wait)]
fn quiet() -> u32 {
    #![allow(unused)]
    //! An inner doc comment is an inner attribute too.
    let never_read = 1;
    2
}

fn main() {
    assert_eq!(quiet(), 2);
}
