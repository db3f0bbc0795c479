//! `main` with `on_conflict = "skip"` and a timeout: a second copy exits 0 without a word.
#![deny(warnings, clippy::all, clippy::pedantic)]

use lockmacro_runtime::exclusive;

#[exclusive(name = "lint-main-skip", on_conflict = "skip", timeout = "1s")]
fn main() {
    println!("ran");
}
