use lockmacro_runtime::exclusive;

#[exclusive(crate = "lockmacro runtime", wait)]
fn backup() {}

fn main() {
    backup();
}
