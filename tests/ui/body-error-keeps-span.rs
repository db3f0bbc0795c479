use lockmacro_runtime::exclusive;

// rustc's errors in the body must still point at the user's code, not at the attribute.
#[exclusive(wait)]
fn backup() -> u32 {
    let count: u32 = "three";
    count
}

fn main() {
    backup();
}
