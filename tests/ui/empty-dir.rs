use lockmacro_runtime::exclusive;

#[exclusive(dir = "", wait)]
fn backup() {}

fn main() {
    backup();
}
