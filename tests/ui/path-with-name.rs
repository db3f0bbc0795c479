use lockmacro_runtime::exclusive;

#[exclusive(name = "mailsync", path = "/var/lock/mailsync.lock")]
fn main() {}
