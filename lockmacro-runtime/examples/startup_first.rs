//! Start-up bench (`benches/startup.rs`): the first acquisition and release in a fresh process,
//! timed inside it. `startup_first lockmacro` times `Lock::try_acquire` + release of a lock in
//! the default directory, `startup_first raw` an `open` + `flock` + unlock + `close` of a file
//! in the same directory; each prints nanoseconds.

use std::time::Instant;

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let lock = lockmacro_runtime::Lock::new("lockmacro-startup-bench-first");
    let elapsed = match what.as_str() {
        "lockmacro" => {
            let start = Instant::now();
            let guard = lock.try_acquire();
            drop(guard);
            start.elapsed()
        }
        "raw" => {
            // Beside the lock file (the directory exists once a `lockmacro` run made it).
            let mut path = lock.path().as_os_str().to_owned();
            path.push(".raw\0");
            let path = path.into_encoded_bytes();
            let start = Instant::now();
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
            start.elapsed()
        }
        _ => {
            eprintln!("usage: startup_first lockmacro|raw");
            std::process::exit(2);
        }
    };
    println!("{}", elapsed.as_nanos());
}
