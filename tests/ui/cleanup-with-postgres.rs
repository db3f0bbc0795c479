use lockmacro_runtime::exclusive;

#[exclusive(name = "report", backend = "postgres", cleanup)]
fn main() {}
