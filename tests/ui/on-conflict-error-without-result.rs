use lockmacro_runtime::exclusive;

#[exclusive(on_conflict = "error")]
fn backup() -> u32 {
    0
}

fn main() {
    let _ = backup();
}
