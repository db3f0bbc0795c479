use lockmacro_runtime::exclusive;

#[exclusive(timeout = "5s")]
fn backup() {}

fn main() {
    backup();
}
