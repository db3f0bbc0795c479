#![deny(warnings)]

use std::io::{self, Read};

use lockmacro_runtime::exclusive;

// With an explicit non-"error" policy the lock error never has to become an `io::Error`.
#[exclusive(
    name = "lockmacro-ui-pass-io-result-explicit-policy",
    on_conflict = "panic"
)]
fn read_all(mut input: impl Read) -> io::Result<String> {
    let mut text = String::new();
    input.read_to_string(&mut text)?;
    if text.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "empty"));
    }
    Ok(text)
}

fn main() {
    assert_eq!(read_all(&b"hello"[..]).unwrap(), "hello");
    assert_eq!(
        read_all(&b""[..]).unwrap_err().kind(),
        io::ErrorKind::UnexpectedEof
    );
}
