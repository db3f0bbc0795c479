//! A single-instance program for the multi-process tests: `#[exclusive] fn main` that prints
//! `ready <pid>` once it holds its lock and keeps it until its stdin is closed.
use std::io::{Read, Write};

use lockmacro_runtime::exclusive;

#[exclusive(name = "single")]
fn main() {
    println!("ready {}", std::process::id());
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
