#![deny(warnings)]

use std::io::{self, Read};

use lockmacro_runtime::exclusive;

// Default policy for a `Result` function: the lock error is converted with `From`
// into `io::Error`.
#[exclusive(name = "lockmacro-ui-pass-io-result")]
fn read_all(mut input: impl Read) -> io::Result<String> {
    let mut text = String::new();
    input.read_to_string(&mut text)?;
    Ok(text)
}

fn main() {
    assert_eq!(read_all(&b"hello"[..]).unwrap(), "hello");
}
