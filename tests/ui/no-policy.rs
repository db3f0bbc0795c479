use lockmacro_runtime::exclusive;

#[exclusive(name = "backup")]
fn backup() -> u32 {
    0
}

fn main() {
    let _: u32 = backup();
}
