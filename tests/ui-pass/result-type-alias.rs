#![deny(warnings)]

use lockmacro_runtime::exclusive;

#[derive(Debug)]
struct AppError;

impl From<lockmacro_runtime::Error> for AppError {
    fn from(_: lockmacro_runtime::Error) -> Self {
        AppError
    }
}

// A `Result` behind an alias whose name does not end in `Result`: the default policy cannot see
// it, but saying `on_conflict = "error"` explicitly must work, since the type is a `Result`.
type Outcome<T> = Result<T, AppError>;

#[exclusive(name = "lockmacro-ui-pass-result-type-alias", on_conflict = "error")]
fn run(n: u32) -> Outcome<u32> {
    Ok(n + 1)
}

fn main() {
    assert_eq!(run(1).unwrap(), 2);
}
