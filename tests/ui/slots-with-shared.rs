use lockmacro_runtime::exclusive;

#[exclusive(name = "render", slots = 4, shared)]
fn main() {}
