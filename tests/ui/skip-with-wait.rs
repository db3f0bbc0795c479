use lockmacro_runtime::exclusive;

#[exclusive(name = "report", wait, on_conflict = "skip")]
fn report() {}

fn main() {
    report();
}
