//! The fixture's `main`, itself annotated with the default name, calling every public shape and
//! a few private ones.
#![deny(warnings, clippy::all, clippy::pedantic)]
#![deny(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]

use lockmacro_lint_fixture::{self as fixture, Counter, Job};
use lockmacro_runtime::exclusive;

/// Private, `wait`.
#[exclusive(name = "lint-private", wait)]
fn private(n: u32) -> u32 {
    n.wrapping_add(1)
}

/// Private, `Result`, early return.
#[exclusive(name = "lint-private-result")]
fn private_result(text: &str) -> Result<u32, fixture::AppError> {
    if text.is_empty() {
        return Ok(0);
    }
    Ok(text.parse::<u32>()?)
}

/// Private async, `timeout`.
#[exclusive(name = "lint-private-async", timeout = "1s", on_conflict = "panic")]
async fn private_async(n: u32) -> u32 {
    fixture::async_plain(n).await
}

#[exclusive]
fn main() {
    let mut counter = Counter::new("c");
    counter.bump();
    let value = 7;
    // SAFETY: `value` is a live local.
    let read = unsafe { fixture::read(&raw const value) };
    let total = fixture::plain(1, 2)
        + private(1)
        + private_result("3").unwrap_or(0)
        + fixture::default_name("4").unwrap_or(0)
        + fixture::runtime_error(5).unwrap_or(0)
        + fixture::boxed("6").unwrap_or(0)
        + fixture::crate_override(7).unwrap_or(0)
        + fixture::impl_trait([1, 2, 3, 4]).sum::<u32>()
        + fixture::item_first(1)
        + counter.get()
        + counter.run().unwrap_or(0)
        + read;
    fixture::unit();
    fixture::exits();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let more = runtime.block_on(async {
        let mut counter = Counter::new("d");
        fixture::async_plain(1).await
            + fixture::async_result("2").await.unwrap_or(0)
            + fixture::async_io(3).await.unwrap_or(0)
            + counter.get_async().await
            + counter.bump_async().await.unwrap_or(0)
            + fixture::returns_future(4).await
            + private_async(5).await
            + fixture::async_item_first(6).await
    });
    runtime.block_on(fixture::async_unit());
    let shown = runtime.block_on(fixture::async_impl_trait(8)).to_string()
        + &runtime
            .block_on(fixture::async_item_first_impl(9))
            .to_string();
    println!(
        "{total} {more} {shown} {} {} {} {} {} {:?} {:?} {:?}",
        fixture::generic(&[1, 2]),
        fixture::lifetimes("a", "bb"),
        fixture::items_first(2),
        fixture::shared_cleanup("x").unwrap_or(0),
        counter.into_label().unwrap_or_default(),
        fixture::io_result("/dev/null").map(|s| s.len()),
        fixture::io_result_panics("/dev/null").map(|s| s.len()),
        private_result(""),
    );
}
