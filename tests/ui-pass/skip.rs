#![deny(warnings)]
// `on_conflict = "skip"`: a call that finds the lock taken returns at once without running the
// body: `None` for `Option<T>`, nothing for `()`; with `timeout`, after the timeout.

use std::time::{Duration, Instant};

use lockmacro_runtime::{exclusive, Lock};

#[exclusive(name = "lockmacro-ui-pass-skip-option", on_conflict = "skip")]
fn report(n: u32) -> Option<u32> {
    Some(n * 2)
}

#[exclusive(
    name = "lockmacro-ui-pass-skip-unit",
    on_conflict = "skip",
    timeout = "100ms"
)]
fn tick(count: &mut u32) {
    *count += 1;
}

#[exclusive(name = "lockmacro-ui-pass-skip-async", on_conflict = "skip")]
async fn refresh(n: u32) -> Option<u32> {
    Some(n + 1)
}

#[exclusive(name = "lockmacro-ui-pass-skip-async-unit", on_conflict = "skip", timeout = "50ms")]
async fn sweep(count: &mut u32) -> () {
    *count += 1;
}

fn main() {
    assert_eq!(report(2), Some(4));
    let held = Lock::new("lockmacro-ui-pass-skip-option")
        .try_acquire()
        .expect("free");
    assert_eq!(report(2), None);
    drop(held);
    assert_eq!(report(3), Some(6));

    let mut count = 0;
    tick(&mut count);
    let held = Lock::new("lockmacro-ui-pass-skip-unit")
        .try_acquire()
        .expect("free");
    let start = Instant::now();
    tick(&mut count);
    assert!(start.elapsed() >= Duration::from_millis(100), "skipped before the timeout");
    assert_eq!(count, 1);
    drop(held);
    tick(&mut count);
    assert_eq!(count, 2);

    futures::executor::block_on(async {
        assert_eq!(refresh(1).await, Some(2));
        let held = Lock::new("lockmacro-ui-pass-skip-async")
            .try_acquire()
            .expect("free");
        assert_eq!(refresh(1).await, None);
        drop(held);
        assert_eq!(refresh(2).await, Some(3));

        let mut count = 0;
        let held = Lock::new("lockmacro-ui-pass-skip-async-unit")
            .try_acquire()
            .expect("free");
        sweep(&mut count).await;
        assert_eq!(count, 0);
        drop(held);
        sweep(&mut count).await;
        assert_eq!(count, 1);
    });
}
