use lockmacro_runtime::exclusive;

#[exclusive(wait, timeout = "30s")]
fn backup() {}

fn main() {
    backup();
}
