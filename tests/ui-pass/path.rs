#![deny(warnings)]
// `path = "..."`: exactly this lock file (`Lock::at(path)`).
// Waits for `Lock::at` in the runtime: not yet run by tests/test_ui.rs.

use lockmacro_runtime::{exclusive, Lock};

#[exclusive(path = "/tmp/lockmacro-ui-pass-next-path.lock", on_conflict = "skip")]
fn mailsync() -> Option<u32> {
    Some(1)
}

#[exclusive(path = "/tmp/lockmacro-ui-pass-next-path-main.lock")]
fn main() {
    assert_eq!(mailsync(), Some(1));
    let held = Lock::at("/tmp/lockmacro-ui-pass-next-path.lock")
        .try_acquire()
        .expect("free");
    assert_eq!(mailsync(), None);
    drop(held);
    assert!(std::path::Path::new("/tmp/lockmacro-ui-pass-next-path.lock").exists());
}
