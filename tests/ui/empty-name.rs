use lockmacro_runtime::exclusive;

#[exclusive(name = "", wait)]
fn backup() {}

fn main() {
    backup();
}
