//! Start-up bench (`benches/startup.rs`): the same single-instance program with proc-lock's
//! attribute.

#[proc_lock::proc_lock(name = "lockmacro-startup-bench-proc-lock.lock")]
fn main() {}
