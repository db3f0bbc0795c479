use lockmacro_runtime::exclusive;

// `u32` has no value that says "skipped".
#[exclusive(name = "report", on_conflict = "skip")]
fn report() -> u32 {
    3
}

fn main() {
    let _ = report();
}
