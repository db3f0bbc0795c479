use lockmacro_runtime::exclusive;

#[exclusive(name = "report", on_conflict = exit)]
fn report() {}

fn main() {
    report();
}
