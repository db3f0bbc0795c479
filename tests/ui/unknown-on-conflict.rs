use lockmacro_runtime::exclusive;

#[exclusive(on_conflict = "retry")]
fn backup() {}

fn main() {
    backup();
}
