use lockmacro_runtime::exclusive;

#[exclusive("nightly-backup")]
fn main() {}
