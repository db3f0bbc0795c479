//! `#[exclusive]` above `#[tokio::main]`: it sees the `async fn main`.
#![deny(warnings, clippy::all, clippy::pedantic)]

use lockmacro_runtime::exclusive;

#[exclusive(name = "lint-tokio-outer")]
#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("{}", lockmacro_lint_fixture::async_plain(1).await);
}
