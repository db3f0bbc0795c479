use lockmacro_runtime::exclusive;

#[exclusive(exit_code = 3)]
fn backup() -> Result<(), lockmacro_runtime::Error> {
    Ok(())
}

fn main() {
    let _ = backup();
}
