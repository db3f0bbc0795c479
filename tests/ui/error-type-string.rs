use lockmacro_runtime::exclusive;

// `String` cannot get `From<lockmacro_runtime::Error>` (neither type is ours).
#[exclusive(name = "backup")]
fn backup() -> Result<(), String> {
    Ok(())
}

fn main() {
    let _ = backup();
}
