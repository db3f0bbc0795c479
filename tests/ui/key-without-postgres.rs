use lockmacro_runtime::exclusive;

#[exclusive(name = "report", key = 42)]
fn main() {}
