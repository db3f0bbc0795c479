use lockmacro_runtime::exclusive;

#[exclusive(exit_code = "3")]
fn main() {}
