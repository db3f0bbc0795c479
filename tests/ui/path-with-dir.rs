use lockmacro_runtime::exclusive;

#[exclusive(path = "/var/lock/mailsync.lock", dir = "/var/lock")]
fn main() {}
