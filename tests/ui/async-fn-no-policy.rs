use lockmacro_runtime::exclusive;

#[exclusive(name = "backup")]
async fn backup() -> u32 {
    0
}

fn main() {
    let _ = backup();
}
