use lockmacro_runtime::exclusive;

#[exclusive(nmae = "backup", wait)]
fn backup() {}

fn main() {
    backup();
}
