//! Start-up bench (`benches/startup.rs`): the yardstick, a program that does nothing.

fn main() {}
