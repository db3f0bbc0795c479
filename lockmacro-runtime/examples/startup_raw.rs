//! Start-up bench (`benches/startup.rs`): the least a flock-based single-instance program does:
//! `open`, `flock`, unlock, `close`, in raw libc.

fn main() {
    let path = b"/tmp/lockmacro-startup-bench-raw.lock\0";
    // SAFETY: a NUL-terminated path; plain system calls on our own descriptor.
    unsafe {
        let fd = libc::open(
            path.as_ptr().cast(),
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC,
            0o600,
        );
        if fd < 0 || libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) != 0 {
            std::process::exit(1);
        }
        libc::flock(fd, libc::LOCK_UN);
        libc::close(fd);
    }
}
