//! The `#[exclusive]` attribute. This crate is an implementation detail of
//! [`lockmacro-runtime`](https://docs.rs/lockmacro-runtime), which re-exports the attribute and
//! documents it: depend on that crate, not on this one.
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]

mod args;
mod expand;
mod item;

use proc_macro::TokenStream;

/// Runs the function's body under an inter-process lock. See the documentation in
/// `lockmacro-runtime`, which re-exports this attribute.
#[proc_macro_attribute]
pub fn exclusive(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::exclusive(args.into(), item.into()).into()
}
