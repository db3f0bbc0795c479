//! `lm-notice-timeout`: a single-instance `main` that waits (`timeout = "1h"`) for the lock that `lm-single`
//! holds, for `tests/test_notice.rs`. Prints `ready <pid>` once it holds the lock, then exits.

#[lockmacro_runtime::exclusive(name = "single", timeout = "1h")]
fn main() {
    println!("ready {}", std::process::id());
}
