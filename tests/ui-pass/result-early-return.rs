#![deny(warnings)]

use std::fmt;
use std::num::ParseIntError;

use lockmacro_runtime::exclusive;

#[derive(Debug)]
enum AppError {
    Busy(lockmacro_runtime::Error),
    Parse(ParseIntError),
}

impl From<lockmacro_runtime::Error> for AppError {
    fn from(err: lockmacro_runtime::Error) -> Self {
        AppError::Busy(err)
    }
}

impl From<ParseIntError> for AppError {
    fn from(err: ParseIntError) -> Self {
        AppError::Parse(err)
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Busy(err) => write!(f, "busy: {err}"),
            AppError::Parse(err) => write!(f, "parse: {err}"),
        }
    }
}

// Default policy for a `Result` function: return the lock error.
#[exclusive(name = "lockmacro-ui-pass-result-early-return")]
fn parse(text: &str) -> Result<u32, AppError> {
    if text.is_empty() {
        return Ok(0);
    }
    let n: u32 = text.parse()?;
    Ok(n * 2)
}

#[exclusive(name = "lockmacro-ui-pass-result-early-return-boxed")]
fn boxed(text: &str) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    Ok(text.parse::<u32>()?)
}

fn main() {
    assert_eq!(parse("").unwrap(), 0);
    assert_eq!(parse("21").unwrap(), 42);
    assert!(matches!(parse("x"), Err(AppError::Parse(_))));
    assert_eq!(boxed("5").unwrap(), 5);
    assert!(boxed("five").is_err());
    assert!(parse("x").unwrap_err().to_string().starts_with("parse: "));
}
