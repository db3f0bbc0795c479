use lockmacro_runtime::exclusive;

#[exclusive(on_conflict = "panic", exit_code = 2)]
fn main() {}
