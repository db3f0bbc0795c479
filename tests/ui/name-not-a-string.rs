use lockmacro_runtime::exclusive;

#[exclusive(name = 5, wait)]
fn backup() {}

fn main() {
    backup();
}
