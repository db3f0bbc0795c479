//! Single-instance async `main` with `#[exclusive]` written *outside* `#[tokio::main]`
//! (`lm-tokio-outer`): the lock is taken inside the runtime, by the async body. Prints
//! `ready <pid>` once it holds the lock and keeps it until its stdin is closed. A second copy
//! exits with status 1 and one line on stderr naming the lock and this copy's PID.
use std::io::{Read, Write};

use lockmacro_runtime::exclusive;

#[exclusive(name = "lm-tokio-outer")]
#[tokio::main]
async fn main() {
    println!("ready {}", std::process::id());
    let _ = std::io::stdout().flush();
    // Blocking stdin off the executor, as a real async program would.
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
        .await
        .expect("stdin reader")
        .expect("read stdin");
}
