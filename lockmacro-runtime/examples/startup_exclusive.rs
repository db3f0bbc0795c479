//! Start-up bench (`benches/startup.rs`): the headline use, a whole program under one lock.

use lockmacro_runtime::exclusive;

#[exclusive(name = "lockmacro-startup-bench")]
fn main() {}
