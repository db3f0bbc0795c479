use lockmacro_runtime::exclusive;

#[exclusive(name = "backup", wait, name = "restore")]
fn backup() {}

fn main() {
    backup();
}
