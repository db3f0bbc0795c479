use lockmacro_runtime::{exclusive, Error};

#[exclusive(name = "report", backend = "postgres", on_lost = "cancel")]
fn report() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = report();
}
