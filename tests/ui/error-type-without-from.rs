use lockmacro_runtime::exclusive;

#[derive(Debug)]
struct BackupError;

// The default policy for a `Result` function returns the lock error through `From`.
#[exclusive(name = "backup")]
fn backup() -> Result<(), BackupError> {
    Ok(())
}

fn main() {
    let _ = backup();
}
