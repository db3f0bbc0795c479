use lockmacro_runtime::exclusive;

#[exclusive(timeout = "1.5s", on_conflict = "panic")]
fn backup() {}

fn main() {
    backup();
}
