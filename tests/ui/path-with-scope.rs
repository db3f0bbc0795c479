use lockmacro_runtime::exclusive;

#[exclusive(path = "/var/lock/mailsync.lock", scope = "system")]
fn main() {}
