use lockmacro_runtime::exclusive;

#[exclusive(name = "report", scope = "host")]
fn main() {}
