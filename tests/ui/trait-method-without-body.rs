use lockmacro_runtime::exclusive;

trait Job {
    #[exclusive(wait)]
    fn run(&self);
}

struct Nightly;

impl Job for Nightly {
    fn run(&self) {}
}

fn main() {
    Nightly.run();
}
