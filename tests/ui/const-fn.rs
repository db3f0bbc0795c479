use lockmacro_runtime::exclusive;

#[exclusive(wait)]
const fn answer() -> u32 {
    42
}

fn main() {
    let _ = answer();
}
