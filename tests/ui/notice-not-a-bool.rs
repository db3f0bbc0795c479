use lockmacro_runtime::exclusive;

#[exclusive(name = "report", wait, notice = "off")]
fn main() {}
