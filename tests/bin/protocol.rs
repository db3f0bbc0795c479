//! The line protocol shared by the test child binaries (each includes this file with
//! `#[path = "protocol.rs"] mod protocol;`).

use std::io::Write;

/// Prints one protocol line and flushes it at once: the test is waiting for it.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A test that went away cannot read us anyway; nothing better to do with the error.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
