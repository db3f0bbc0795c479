use lockmacro_runtime::exclusive;

#[exclusive(backend = "postgres", path = "/var/lock/mailsync.lock")]
fn main() {}
