//! `#[exclusive]` below `#[tokio::main]`: it sees the synchronous `main` tokio generates.
#![deny(warnings, clippy::all, clippy::pedantic)]

use lockmacro_runtime::exclusive;

#[tokio::main(flavor = "current_thread")]
#[exclusive(name = "lint-tokio-inner", exit_code = 3)]
async fn main() {
    println!("{}", lockmacro_lint_fixture::async_plain(1).await);
}
