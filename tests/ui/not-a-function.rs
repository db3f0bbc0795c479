use lockmacro_runtime::exclusive;

#[exclusive(wait)]
struct Backup {
    path: String,
}

fn main() {
    let backup = Backup {
        path: String::new(),
    };
    let _ = backup.path;
}
