#![deny(warnings)]
// Crate-root modules that shadow the standard crates for relative paths: the expansion must
// use absolute `::core::...` paths.
#![allow(dead_code)]

mod core {}
mod std {}

use lockmacro_runtime as lm;

#[lm::exclusive(name = "lockmacro-ui-pass-hygiene", crate = "lm", wait)]
fn shadowing() -> u32 {
    // Locals named like the expansion's own must neither clash nor be captured.
    let __lockmacro_scope = 1;
    let __lockmacro_err = 2;
    let lock = 3;
    let err = 4;
    let scope = 5;
    let guard = 6;
    __lockmacro_scope + __lockmacro_err + lock + err + scope + guard
}

#[lm::exclusive(
    name = "lockmacro-ui-pass-hygiene",
    crate = "::lockmacro_runtime",
    wait
)]
fn absolute() -> u32 {
    let __lockmacro_scope = "mine";
    __lockmacro_scope.len() as u32
}

#[lm::exclusive(name = "lockmacro-ui-pass-hygiene")]
fn result(text: &str) -> ::std::result::Result<u32, lm::Error> {
    let lock = text.len() as u32;
    let err = 1;
    Ok(lock + err)
}

mod nested {
    #[super::lm::exclusive(name = "lockmacro-ui-pass-hygiene", crate = "crate::lm", wait)]
    pub(crate) fn from_module() -> u32 {
        7
    }
}

#[lm::exclusive(name = "lockmacro-ui-pass-hygiene", crate = "lm")]
fn main() {
    #[allow(non_snake_case)]
    let __LOCKMACRO_SITE = 0;
    ::std::assert_eq!(shadowing(), 21);
    ::std::assert_eq!(absolute(), 4);
    ::std::assert_eq!(result("ab").unwrap(), 3);
    ::std::assert_eq!(nested::from_module(), 7);
    ::std::assert_eq!(__LOCKMACRO_SITE, 0);
}
