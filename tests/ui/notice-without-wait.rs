use lockmacro_runtime::exclusive;

#[exclusive(name = "report", notice = true)]
fn main() {}
