use lockmacro_runtime::exclusive;

#[exclusive(wait = true)]
fn backup() {}

fn main() {
    backup();
}
