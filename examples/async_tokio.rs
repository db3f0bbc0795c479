//! Async functions and shared locks on one current-thread tokio runtime:
//!
//! ```text
//! cargo run --example async_tokio
//! ```
//!
//! A writer rebuilds a cache under an exclusive lock while readers wait for a shared one. The
//! waiting never blocks the executor: a ticker task keeps ticking on the same thread. Then the
//! readers hold the shared lock together.

use std::time::Duration;

use lockmacro_runtime::{exclusive, Error};

#[exclusive(name = "async-example-cache", wait)]
async fn rebuild_cache() {
    println!("writer: rebuilding the cache (exclusive) for 300 ms");
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("writer: done");
}

#[exclusive(name = "async-example-cache", shared, timeout = "5s")]
async fn read_cache(reader: u32) -> Result<(), Error> {
    println!("reader {reader}: reading (shared)");
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("reader {reader}: done");
    Ok(())
}

// Above `#[tokio::main]`, `#[exclusive]` guards the async main itself: one copy at a time.
#[exclusive(name = "async-example-main")]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let ticker = tokio::spawn(async {
        for tick in 1.. {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if tick % 4 == 0 {
                println!("ticker: tick {tick} (the executor is not blocked)");
            }
        }
    });
    let writer = tokio::spawn(rebuild_cache());
    tokio::task::yield_now().await; // let the writer take the lock first
    let (a, b) = tokio::join!(read_cache(1), read_cache(2));
    a?;
    b?;
    writer.await.ok();
    ticker.abort();
    Ok(())
}
