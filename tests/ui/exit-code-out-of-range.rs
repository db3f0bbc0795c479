use lockmacro_runtime::exclusive;

#[exclusive(exit_code = 256)]
fn main() {}
