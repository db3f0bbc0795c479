use lockmacro_runtime::exclusive;

#[exclusive(name = "render", slots = 0)]
fn main() {}
