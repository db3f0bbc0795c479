use lockmacro_runtime::exclusive;

const JOB: u32 = 7;

#[exclusive(name = JOB, wait)]
fn backup() {}

fn main() {
    backup();
}
