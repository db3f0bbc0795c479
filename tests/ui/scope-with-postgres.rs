use lockmacro_runtime::exclusive;

#[exclusive(name = "report", backend = "postgres", scope = "system")]
fn main() {}
