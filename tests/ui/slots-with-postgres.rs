use lockmacro_runtime::exclusive;

#[exclusive(name = "render", backend = "postgres", slots = 4)]
fn main() {}
