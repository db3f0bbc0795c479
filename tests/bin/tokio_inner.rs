//! Single-instance async `main` with `#[exclusive]` written *inside* `#[tokio::main]`
//! (`lm-tokio-inner`): tokio turns `main` into a synchronous function first, so the lock is
//! taken before the runtime starts. Prints `ready <pid>` once it holds the lock and keeps it
//! until its stdin is closed. A second copy exits with status 1 and one line on stderr naming
//! the lock and this copy's PID.
use std::io::{Read, Write};

use lockmacro_runtime::exclusive;

#[tokio::main]
#[exclusive(name = "lm-tokio-inner")]
async fn main() {
    println!("ready {}", std::process::id());
    let _ = std::io::stdout().flush();
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
        .await
        .expect("stdin reader")
        .expect("read stdin");
}
