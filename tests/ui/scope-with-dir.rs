use lockmacro_runtime::exclusive;

#[exclusive(dir = "/srv/locks", scope = "system")]
fn main() {}
