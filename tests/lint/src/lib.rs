//! Every shape of function `#[exclusive]` accepts, as public API of a library that denies
//! warnings, `clippy::all` and `clippy::pedantic`. Any lint here is either the fixture's own
//! fault or the expansion's; the fixture is written to be clean without the attribute.
#![deny(warnings, clippy::all, clippy::pedantic)]
#![deny(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]

use std::error::Error as StdError;
use std::fmt::{self, Display};
use std::future::Future;
use std::io;

use lockmacro_runtime::exclusive;

// `crate = "..."`: the runtime reached through a re-export.
use lockmacro_runtime as rt;

/// The fixture's own error type.
#[derive(Debug)]
pub enum AppError {
    /// The lock was not obtained.
    Busy(lockmacro_runtime::Error),
    /// The input was not a number.
    Parse(std::num::ParseIntError),
}

impl From<lockmacro_runtime::Error> for AppError {
    fn from(err: lockmacro_runtime::Error) -> Self {
        AppError::Busy(err)
    }
}

impl From<std::num::ParseIntError> for AppError {
    fn from(err: std::num::ParseIntError) -> Self {
        AppError::Parse(err)
    }
}

impl Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Busy(err) => write!(f, "busy: {err}"),
            AppError::Parse(err) => write!(f, "parse: {err}"),
        }
    }
}

impl StdError for AppError {}

/// Plain function, `wait`.
#[exclusive(name = "lint-plain", wait)]
#[must_use]
pub fn plain(a: u32, b: u32) -> u32 {
    a.wrapping_add(b)
}

/// No return value, `on_conflict = "panic"`.
///
/// # Panics
///
/// When the lock is held elsewhere.
#[exclusive(name = "lint-unit", on_conflict = "panic")]
pub fn unit() {
    println!("unit");
}

/// No return value, `on_conflict = "exit"` with `exit_code`.
#[exclusive(name = "lint-exit", on_conflict = "exit", exit_code = 75)]
pub fn exits() {
    println!("exits");
}

/// Default name (crate and file), `Result` with the default `"error"` policy.
///
/// # Errors
///
/// When the lock is held elsewhere, or `text` is not a number.
#[exclusive]
pub fn default_name(text: &str) -> Result<u32, AppError> {
    Ok(text.parse()?)
}

/// `Result` whose error type is the runtime's own `Error`.
///
/// # Errors
///
/// When the lock is held elsewhere.
#[exclusive(name = "lint-runtime-error")]
pub fn runtime_error(n: u32) -> Result<u32, lockmacro_runtime::Error> {
    Ok(n)
}

/// `Result` with a boxed error.
///
/// # Errors
///
/// When the lock is held elsewhere, or `text` is not a number.
#[exclusive(name = "lint-boxed")]
pub fn boxed(text: &str) -> Result<u32, Box<dyn StdError + Send + Sync>> {
    Ok(text.parse::<u32>()?)
}

/// `io::Result`, explicit `on_conflict = "error"`, `timeout`.
///
/// # Errors
///
/// When the lock is still held after a second, or the file cannot be read.
#[exclusive(name = "lint-io", on_conflict = "error", timeout = "1s")]
pub fn io_result(path: &str) -> io::Result<String> {
    std::fs::read_to_string(path)
}

/// `io::Result` with `on_conflict = "panic"` and an hour-long timeout.
///
/// # Errors
///
/// When the file cannot be read.
///
/// # Panics
///
/// When the lock is still held after an hour.
#[exclusive(name = "lint-io-panic", on_conflict = "panic", timeout = "1h")]
pub fn io_result_panics(path: &str) -> io::Result<String> {
    std::fs::read_to_string(path)
}

/// `shared`, `cleanup`, `dir` and `timeout` together.
///
/// # Errors
///
/// When the lock is still held exclusively after 250 ms.
#[exclusive(
    name = "lint-shared",
    shared,
    cleanup,
    dir = "/tmp/lockmacro-lint-fixture",
    timeout = "250ms"
)]
pub fn shared_cleanup(text: &str) -> Result<usize, AppError> {
    Ok(text.len())
}

/// `crate = "..."`: the attribute and runtime through a renamed path.
///
/// # Errors
///
/// When the lock is held elsewhere.
#[rt::exclusive(name = "lint-crate", crate = "rt")]
pub fn crate_override(n: u32) -> Result<u32, rt::Error> {
    Ok(n)
}

/// Generic, with a const parameter and a `where` clause.
#[exclusive(name = "lint-generic", wait)]
#[must_use]
pub fn generic<T, const N: usize>(items: &[T; N]) -> String
where
    T: Display,
{
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `impl Trait` argument and return.
#[exclusive(name = "lint-impl-trait", wait)]
pub fn impl_trait(values: impl IntoIterator<Item = u32>) -> impl Iterator<Item = u32> {
    values.into_iter().filter(|n| n % 2 == 0)
}

/// A plain function returning a future (the lock is held while the future is created).
#[exclusive(name = "lint-returns-future", wait)]
pub fn returns_future(n: u32) -> impl Future<Output = u32> {
    async move { n }
}

/// Lifetimes, with a bound between them.
///
/// # Panics
///
/// When the lock is held elsewhere.
#[exclusive(name = "lint-lifetimes", on_conflict = "panic")]
#[must_use]
pub fn lifetimes<'a, 'b: 'a>(a: &'a str, b: &'b str) -> &'a str {
    if a.len() >= b.len() { a } else { b }
}

/// An `unsafe fn`.
///
/// # Safety
///
/// `ptr` must be valid for reads.
#[exclusive(name = "lint-unsafe", wait)]
#[must_use]
pub unsafe fn read(ptr: *const u32) -> u32 {
    // SAFETY: the caller guarantees `ptr` is valid for reads.
    unsafe { *ptr }
}

/// A body that starts with items and an inner attribute.
// Leading items stay ahead of the inserted lock statement (was `items_after_statements`).
#[exclusive(name = "lint-items-first", wait)]
#[must_use]
pub fn items_first(n: u32) -> String {
    #![allow(clippy::min_ident_chars)]
    use std::fmt::Write as _;
    const PREFIX: &str = "n=";
    let mut out = String::from(PREFIX);
    let _ = write!(out, "{n}");
    out
}

/// A body whose first statement is an item.
#[exclusive(name = "lint-items-first", wait)]
#[must_use]
pub fn item_first(n: u32) -> u32 {
    fn double(n: u32) -> u32 {
        n.wrapping_mul(2)
    }
    double(n)
}

/// Async, a body that starts with an item.
#[exclusive(name = "lint-async", wait)]
pub async fn async_item_first(n: u32) -> u32 {
    fn double(n: u32) -> u32 {
        n.wrapping_mul(2)
    }
    double(n)
}

/// Async, `impl Trait` return, a body that starts with an item.
#[exclusive(name = "lint-async", wait)]
pub async fn async_item_first_impl(n: u32) -> impl Display {
    fn double(n: u32) -> u32 {
        n.wrapping_mul(2)
    }
    double(n)
}

/// Async, `wait`.
#[exclusive(name = "lint-async", wait)]
pub async fn async_plain(n: u32) -> u32 {
    n.wrapping_add(1)
}

/// Async, `Result` with the default policy and `?` in the body.
///
/// # Errors
///
/// When the lock is held elsewhere, or `text` is not a number.
#[exclusive(name = "lint-async-result")]
pub async fn async_result(text: &str) -> Result<u32, AppError> {
    let n: u32 = text.parse()?;
    Ok(async_plain(n).await)
}

/// Async, `io::Result`, `timeout`, `shared`, `cleanup`, `dir`.
///
/// # Errors
///
/// When the lock is still held after a second.
#[exclusive(
    name = "lint-async-io",
    timeout = "1s",
    shared,
    cleanup,
    dir = "/tmp/lockmacro-lint-fixture"
)]
pub async fn async_io(n: u32) -> io::Result<u32> {
    Ok(n)
}

/// Async, `impl Trait` return, `on_conflict = "exit"`.
#[exclusive(name = "lint-async-impl", on_conflict = "exit")]
pub async fn async_impl_trait(n: u32) -> impl Display {
    n
}

/// Async, no return value, `on_conflict = "panic"` with a timeout.
///
/// # Panics
///
/// When the lock is still held after a second.
#[exclusive(name = "lint-async-unit", on_conflict = "panic", timeout = "1s")]
pub async fn async_unit() {
    println!("async unit");
}

/// The name of [`from_const`]'s lock.
pub const JOB: &str = "lint-const-name";

/// `name = <const>`: read once per process.
///
/// # Panics
///
/// When the lock is held elsewhere.
#[exclusive(name = JOB, on_conflict = "panic")]
pub fn from_const() {
    println!("const name");
}

/// `on_conflict = "skip"` on an `Option` function with a per-call name.
#[exclusive(name = format!("lint-tenant-{id}"), on_conflict = "skip")]
#[must_use]
pub fn skip_tenant(id: u32) -> Option<u32> {
    Some(id)
}

/// `on_conflict = "skip"` on a unit function, with a timeout.
#[exclusive(name = "lint-skip-unit", on_conflict = "skip", timeout = "1s")]
pub fn skip_unit() {
    println!("skip unit");
}

/// `on_conflict = "skip"` on an async function with a name from an argument.
#[exclusive(name = tenant, on_conflict = "skip")]
pub async fn skip_async(tenant: &str) -> Option<usize> {
    Some(tenant.len())
}

/// A counter with annotated methods.
#[derive(Debug)]
pub struct Counter {
    count: u32,
    label: String,
}

impl Counter {
    /// Associated function returning `Self`.
    ///
    /// # Panics
    ///
    /// When the lock is held elsewhere.
    #[exclusive(name = "lint-methods", on_conflict = "panic")]
    #[must_use]
    pub fn new(label: &str) -> Self {
        Counter {
            count: 0,
            label: label.to_owned(),
        }
    }

    /// `&self`.
    ///
    /// # Panics
    ///
    /// When the lock is held elsewhere.
    #[exclusive(name = "lint-methods", on_conflict = "panic")]
    #[must_use]
    pub fn get(&self) -> u32 {
        self.count
    }

    /// `&mut self`.
    ///
    /// # Panics
    ///
    /// When the lock is held elsewhere.
    #[exclusive(name = "lint-methods", on_conflict = "panic")]
    pub fn bump(&mut self) {
        self.count = self.count.wrapping_add(1);
    }

    /// `self`.
    ///
    /// # Errors
    ///
    /// When the lock is held elsewhere.
    #[exclusive(name = "lint-methods")]
    pub fn into_label(self) -> Result<String, AppError> {
        Ok(self.label)
    }

    /// Async `&self`.
    #[exclusive(name = "lint-methods-async", wait)]
    pub async fn get_async(&self) -> u32 {
        self.count
    }

    /// Async `&mut self`, `Result`.
    ///
    /// # Errors
    ///
    /// When the lock is held elsewhere.
    #[exclusive(name = "lint-methods-async")]
    pub async fn bump_async(&mut self) -> Result<u32, AppError> {
        self.count = self.count.wrapping_add(1);
        Ok(self.count)
    }
}

/// A trait whose implementations are annotated.
pub trait Job {
    /// Runs the job.
    ///
    /// # Errors
    ///
    /// When the job's lock is held elsewhere.
    fn run(&self) -> Result<u32, AppError>;
}

impl Job for Counter {
    #[exclusive(name = "lint-trait")]
    fn run(&self) -> Result<u32, AppError> {
        Ok(self.get())
    }
}

/// Negative control: a pedantic lint in an annotated function's own body must still be
/// reported, so the expansion does not hide the user's code from clippy.
#[cfg(feature = "control")]
#[exclusive(name = "lint-control", wait)]
#[must_use]
pub fn control_truncate(x: u64) -> u32 {
    x as u32
}

/// Negative control, async.
#[cfg(feature = "control")]
#[exclusive(name = "lint-control", wait)]
pub async fn control_truncate_async(x: u64) -> u32 {
    x as u32
}

/// A waiting notice asked for explicitly, and one switched off.
#[exclusive(name = "lint-notice", timeout = "1s", notice = true, on_conflict = "panic")]
pub fn noticed() {}

/// See [`noticed`].
#[exclusive(name = "lint-quiet", wait, notice = false)]
pub fn quiet() {}

#[cfg(test)]
mod tests {
    use lockmacro_runtime::exclusive;

    #[test]
    #[exclusive(name = "lint-test", wait)]
    fn test_above() {
        assert_eq!(super::plain(1, 2), 3);
    }

    #[exclusive(name = "lint-test", wait)]
    #[test]
    fn test_below() {
        assert_eq!(super::plain(2, 2), 4);
    }

    #[test]
    #[exclusive(name = "lint-test")]
    fn test_result() -> Result<(), super::AppError> {
        assert_eq!(super::default_name("5")?, 5);
        Ok(())
    }

    #[tokio::test]
    #[exclusive(name = "lint-test-async", wait)]
    async fn tokio_test_above() {
        assert_eq!(super::async_plain(1).await, 2);
    }

    #[exclusive(name = "lint-test-async", wait)]
    #[tokio::test]
    async fn tokio_test_below() {
        assert_eq!(super::async_plain(2).await, 3);
    }
}

