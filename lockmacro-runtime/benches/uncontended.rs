//! One uncontended acquire + release, side by side on tmpfs and on the disk, as ratios to the
//! floor: a raw `open` + `flock` + `flock(LOCK_UN)` + `close` of a kept file, in libc.
//!
//! `cargo bench -p lockmacro-runtime --bench uncontended` (add `-- --quick` for a fast look).
//! Absolute times drift 15-20 % between runs on a shared machine; ratios within one run do not.

// Benchmarks only: std's `File::lock` (a peer we measure) needs Rust 1.89, above the library's MSRV.
#![allow(clippy::incompatible_msrv)]

use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::Criterion;
use lockmacro_runtime::{exclusive, Lock};

/// The two directories: tmpfs and an on-disk filesystem (ext4 on our CI machine).
const DIRS: [(&str, &str); 2] = [
    ("tmpfs", "/dev/shm/lockmacro-bench"),
    ("disk", "/var/tmp/lockmacro-bench"),
];

fn cstr(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in bench paths")
}

/// The floor: what every flock-based lock must at least do, file kept.
fn raw_cycle(path: &CString) {
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC,
            0o600,
        );
        assert!(fd >= 0);
        assert_eq!(libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB), 0);
        libc::flock(fd, libc::LOCK_UN);
        libc::close(fd);
    }
}

/// The safe protocol done by hand: no-follow open, lock, identity check, PID, file kept.
fn raw_safe_cycle(path: &CString, unlink: bool) {
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o600,
        );
        assert!(fd >= 0);
        assert_eq!(libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB), 0);
        let mut open: libc::stat = std::mem::zeroed();
        let mut named: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut open);
        libc::lstat(path.as_ptr(), &mut named);
        assert!(open.st_ino == named.st_ino && open.st_dev == named.st_dev);
        let pid = b"12345\n";
        libc::pwrite(fd, pid.as_ptr().cast(), pid.len(), 0);
        if open.st_size != pid.len() as i64 {
            libc::ftruncate(fd, pid.len() as i64);
        }
        if unlink {
            libc::unlink(path.as_ptr());
        } else {
            libc::flock(fd, libc::LOCK_UN);
        }
        libc::close(fd);
    }
}

/// The kernel limit: lock and unlock a descriptor kept open.
fn open_kept(path: &Path) -> File {
    File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open")
}

fn kept_fd_cycle(file: &File) {
    use std::os::fd::AsRawFd;
    unsafe {
        assert_eq!(
            libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB),
            0
        );
        libc::flock(file.as_raw_fd(), libc::LOCK_UN);
    }
}

#[exclusive(
    name = "macro",
    dir = "/dev/shm/lockmacro-bench",
    on_conflict = "panic"
)]
fn through_macro_tmpfs() {}

#[exclusive(
    name = "macro",
    dir = "/var/tmp/lockmacro-bench",
    on_conflict = "panic"
)]
fn through_macro_disk() {}

fn bench(c: &mut Criterion) {
    for (fs, dir) in DIRS {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("bench directory");
        let mut group = c.benchmark_group(fs);
        let file = |name: &str| dir.join(name);

        let floor = cstr(&file("floor"));
        group.bench_function("floor", |b| b.iter(|| raw_cycle(&floor)));

        let kept = open_kept(&file("kept"));
        group.bench_function("kernel_limit_kept_fd", |b| b.iter(|| kept_fd_cycle(&kept)));

        let safe = cstr(&file("safe"));
        group.bench_function("raw_safe_protocol", |b| {
            b.iter(|| raw_safe_cycle(&safe, false))
        });
        let unlinking = cstr(&file("unlinking"));
        group.bench_function("raw_safe_protocol_unlink", |b| {
            b.iter(|| raw_safe_cycle(&unlinking, true))
        });

        let lock = Lock::new("default").dir(&dir);
        group.bench_function("lockmacro_default", |b| {
            b.iter(|| drop(lock.try_acquire().expect("free")))
        });
        let through_macro: fn() = if fs == "tmpfs" {
            through_macro_tmpfs
        } else {
            through_macro_disk
        };
        group.bench_function("lockmacro_macro", |b| b.iter(through_macro));
        group.bench_function("lockmacro_new_lock_each_time", |b| {
            b.iter(|| drop(Lock::new("oneshot").dir(&dir).try_acquire().expect("free")))
        });
        let cleanup = Lock::new("cleanup").dir(&dir).cleanup();
        group.bench_function("lockmacro_cleanup", |b| {
            b.iter(|| drop(cleanup.try_acquire().expect("free")))
        });

        let fd_lock_path = file("fd-lock");
        group.bench_function("fd_lock", |b| {
            b.iter(|| {
                let mut lock = fd_lock::RwLock::new(open_kept(&fd_lock_path));
                drop(lock.try_write().expect("free"));
            })
        });
        let std_path = file("std");
        group.bench_function("std_file_lock", |b| {
            b.iter(|| {
                let f = open_kept(&std_path);
                f.try_lock().expect("free");
                f.unlock().expect("unlock");
            })
        });
        let fslock_path = file("fslock");
        group.bench_function("fslock", |b| {
            b.iter(|| {
                let mut l = fslock::LockFile::open(&fslock_path).expect("open");
                assert!(l.try_lock().expect("lock"));
                l.unlock().expect("unlock");
            })
        });
        let proc_path = file("proc-lock");
        group.bench_function("proc_lock", |b| {
            b.iter(|| {
                let path = proc_lock::LockPath::FullPath(&proc_path);
                drop(proc_lock::try_lock(&path).expect("free"));
            })
        });
        let named_path = file("named-lock");
        group.bench_function("named_lock", |b| {
            b.iter(|| {
                let l = named_lock::NamedLock::with_path(&named_path).expect("create");
                drop(l.try_lock().expect("free"));
            })
        });
        group.finish();
    }
}

fn output_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion-lockmacro")
}

/// Prints every median as a ratio to the floor of its group, from criterion's own estimates.
fn print_ratios() {
    for (fs, _) in DIRS {
        let group = output_dir().join(fs);
        let median = |id: &str| -> Option<f64> {
            let text = std::fs::read_to_string(group.join(id).join("new/estimates.json")).ok()?;
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            json["median"]["point_estimate"].as_f64()
        };
        let Some(floor) = median("floor") else {
            continue;
        };
        println!("\n{fs}: median ns per acquire+release, and ratio to the floor");
        let mut rows: Vec<(String, f64)> = std::fs::read_dir(&group)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let id = e.file_name().to_string_lossy().into_owned();
                median(&id).map(|m| (id, m))
            })
            .collect();
        rows.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (id, m) in rows {
            println!("  {id:<32} {m:>9.0} ns  {:>5.2}x", m / floor);
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .output_directory(&output_dir())
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    print_ratios();
}
