#![deny(warnings)]

use std::num::ParseIntError;

use lockmacro_runtime::exclusive;

#[derive(Debug)]
enum AppError {
    Busy,
    Parse,
}

impl From<lockmacro_runtime::Error> for AppError {
    fn from(_: lockmacro_runtime::Error) -> Self {
        AppError::Busy
    }
}

impl From<ParseIntError> for AppError {
    fn from(_: ParseIntError) -> Self {
        AppError::Parse
    }
}

async fn double(n: u32) -> u32 {
    n * 2
}

#[exclusive(name = "lockmacro-ui-pass-async-result")]
async fn parse(text: &str) -> Result<u32, AppError> {
    if text.is_empty() {
        return Ok(0);
    }
    let n: u32 = text.parse()?;
    Ok(double(n).await)
}

#[exclusive(name = "lockmacro-ui-pass-async-result-wait", wait)]
async fn total(texts: &[&str]) -> u32 {
    let mut sum = 0;
    for text in texts {
        sum += parse(text).await.unwrap_or(0);
    }
    sum
}

fn main() {
    assert_eq!(futures::executor::block_on(parse("21")).unwrap(), 42);
    assert_eq!(futures::executor::block_on(parse("")).unwrap(), 0);
    assert!(matches!(
        futures::executor::block_on(parse("x")),
        Err(AppError::Parse)
    ));
    assert_eq!(futures::executor::block_on(total(&["1", "x", "2"])), 6);
    // `Busy` is only built on a real conflict.
    let _ = AppError::Busy;
}
