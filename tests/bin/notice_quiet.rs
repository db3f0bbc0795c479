//! `lm-notice-quiet`: a single-instance `main` that waits (`wait, notice = false`) for the lock that `lm-single`
//! holds, for `tests/test_notice.rs`. Prints `ready <pid>` once it holds the lock, then exits.

#[lockmacro_runtime::exclusive(name = "single", wait, notice = false)]
fn main() {
    println!("ready {}", std::process::id());
}
