#![deny(warnings)]

// No `name`: the lock is named after the crate and the file.
#[lockmacro_runtime::exclusive]
fn main() {}
