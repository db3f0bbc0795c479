#![deny(warnings)]

use lockmacro_runtime::exclusive;

struct Counter {
    count: u32,
}

impl Counter {
    #[exclusive(name = "lockmacro-ui-pass-methods", on_conflict = "panic")]
    fn get(&self) -> u32 {
        self.count
    }

    #[exclusive(name = "lockmacro-ui-pass-methods", on_conflict = "panic")]
    fn bump(&mut self) {
        self.count += 1;
    }

    #[exclusive(name = "lockmacro-ui-pass-methods", on_conflict = "panic")]
    fn into_count(self) -> u32 {
        self.count
    }

    #[exclusive(name = "lockmacro-ui-pass-methods", on_conflict = "panic")]
    fn new() -> Self {
        Counter { count: 0 }
    }
}

trait Job {
    fn run(&self) -> u32;
}

impl Job for Counter {
    #[exclusive(name = "lockmacro-ui-pass-methods-trait", on_conflict = "panic")]
    fn run(&self) -> u32 {
        // Nested: the same lock is already held by this call chain.
        self.get() * 10
    }
}

fn main() {
    let mut counter = Counter::new();
    counter.bump();
    counter.bump();
    assert_eq!(counter.get(), 2);
    assert_eq!(counter.run(), 20);
    assert_eq!(counter.into_count(), 2);
}
