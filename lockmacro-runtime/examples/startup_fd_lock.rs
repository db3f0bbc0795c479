//! Start-up bench (`benches/startup.rs`): the same single-instance program with fd-lock alone
//! (no PID, no checks), the anchor for start-up time and binary size.

fn main() {
    let path = std::env::temp_dir().join("lockmacro-startup-bench-fd-lock.lock");
    let Ok(file) = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
    else {
        std::process::exit(2);
    };
    let mut lock = fd_lock::RwLock::new(file);
    let Ok(_guard) = lock.try_write() else {
        std::process::exit(1);
    };
}
