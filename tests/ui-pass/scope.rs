#![deny(warnings)]
// `scope = "system"`: the system-wide directory (`Lock::system()`); `scope = "user"`: the
// default, spelled out. Waits for `Lock::system` in the runtime: not yet run by tests/test_ui.rs.

use lockmacro_runtime::{exclusive, Lock};

#[exclusive(name = "lockmacro-ui-pass-next-user", scope = "user", on_conflict = "skip")]
fn per_user() -> Option<u32> {
    Some(1)
}

#[exclusive(name = "lockmacro-ui-pass-next-system", scope = "system", on_conflict = "skip")]
fn system_wide() -> Option<u32> {
    Some(2)
}

fn main() {
    let held = Lock::new("lockmacro-ui-pass-next-user")
        .try_acquire()
        .expect("free");
    assert_eq!(per_user(), None);
    drop(held);
    assert_eq!(per_user(), Some(1));
    // The system directory may not be usable here (permissions): checked only when it is.
    let held = Lock::new("lockmacro-ui-pass-next-system").system().try_acquire();
    if let Ok(held) = held {
        assert_eq!(system_wide(), None);
        drop(held);
        assert_eq!(system_wide(), Some(2));
    }
}
