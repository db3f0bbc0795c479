use lockmacro_runtime::exclusive;

#[exclusive(name = "report", backend = "redis")]
fn main() {}
