use lockmacro_runtime::exclusive;

#[exclusive(crate = "lockmacro", wait)]
fn backup() {}

fn main() {
    backup();
}
