#![deny(warnings)]
// `slots = N`: up to N holders at once (`Lock::slots(N)`). Waits for `Lock::slots` in the
// runtime: not yet run by tests/test_ui.rs.

use lockmacro_runtime::{exclusive, Lock};

#[exclusive(name = "lockmacro-ui-pass-next-slots", slots = 2, on_conflict = "skip")]
fn render() -> Option<u32> {
    Some(1)
}

#[exclusive(name = "lockmacro-ui-pass-next-slots-wait", slots = 3, wait)]
fn encode() -> u32 {
    3
}

fn main() {
    let lock = Lock::new("lockmacro-ui-pass-next-slots").slots(2);
    let first = lock.try_acquire().expect("a free slot");
    assert_eq!(render(), Some(1)); // the second slot
    let second = lock.try_acquire().expect("a free slot");
    assert_eq!(render(), None); // both taken
    drop((first, second));
    assert_eq!(encode(), 3);
}
