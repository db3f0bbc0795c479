//! A program that must never run twice at once. Start it in two terminals:
//!
//! ```text
//! cargo run --example single_instance
//! ```
//!
//! The first copy works for 30 seconds. The second prints one line naming the lock, the first
//! copy's PID and the lock file, and exits with status 1. Kill the first with Ctrl-C (or
//! `kill -9`) and the next start succeeds at once: the kernel released the lock.

use std::time::Duration;

use lockmacro_runtime::exclusive;

#[exclusive(name = "single-instance-example")]
fn main() {
    println!(
        "pid {} holds the lock; start me again in another terminal (Ctrl-C to stop)",
        std::process::id()
    );
    for left in (1..=30).rev() {
        println!("working... {left}s left");
        std::thread::sleep(Duration::from_secs(1));
    }
}
