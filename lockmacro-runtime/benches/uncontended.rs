//! One uncontended acquire + release, side by side on tmpfs and on the disk, as ratios to the
//! floor: a raw `open` + `flock` + `flock(LOCK_UN)` + `close` of a kept file, in libc.
//!
//! `cargo bench -p lockmacro-runtime --bench uncontended` (add `-- --quick` for a fast look).
//! After criterion: an interleaved pass (every case round-robin) and calls 20 ms apart.
//! Absolute times drift 15-20 % between runs on a shared machine; ratios within one run do not.

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

type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Every case for one directory, as closures that do one acquire + release.
fn cases(fs: &str, dir: &Path) -> Vec<Case<'static>> {
    std::fs::create_dir_all(dir).expect("bench directory");
    let file = |name: &str| dir.join(name);
    let floor = cstr(&file("floor"));
    let kept = open_kept(&file("kept"));
    let safe = cstr(&file("safe"));
    let unlinking = cstr(&file("unlinking"));
    let lock = Lock::new("default").dir(dir);
    let through_macro: fn() = if fs == "tmpfs" {
        through_macro_tmpfs
    } else {
        through_macro_disk
    };
    let dir_owned = dir.to_owned();
    let cleanup = Lock::new("cleanup").dir(dir).cleanup();
    let fd_lock_path = file("fd-lock");
    let std_path = file("std");
    let fslock_path = file("fslock");
    let proc_path = file("proc-lock");
    let named_path = file("named-lock");
    vec![
        ("floor", Box::new(move || raw_cycle(&floor))),
        (
            "kernel_limit_kept_fd",
            Box::new(move || kept_fd_cycle(&kept)),
        ),
        (
            "raw_safe_protocol",
            Box::new(move || raw_safe_cycle(&safe, false)),
        ),
        (
            "raw_safe_protocol_unlink",
            Box::new(move || raw_safe_cycle(&unlinking, true)),
        ),
        (
            "lockmacro_default",
            Box::new(move || drop(lock.try_acquire().expect("free"))),
        ),
        ("lockmacro_macro", Box::new(through_macro)),
        (
            "lockmacro_new_lock_each_time",
            Box::new(move || {
                drop(
                    Lock::new("oneshot")
                        .dir(&dir_owned)
                        .try_acquire()
                        .expect("free"),
                )
            }),
        ),
        (
            "lockmacro_cleanup",
            Box::new(move || drop(cleanup.try_acquire().expect("free"))),
        ),
        (
            "fd_lock",
            Box::new(move || {
                let mut lock = fd_lock::RwLock::new(open_kept(&fd_lock_path));
                drop(lock.try_write().expect("free"));
            }),
        ),
        (
            "std_file_lock",
            Box::new(move || {
                let f = open_kept(&std_path);
                f.try_lock().expect("free");
                f.unlock().expect("unlock");
            }),
        ),
        (
            "fslock",
            Box::new(move || {
                let mut l = fslock::LockFile::open(&fslock_path).expect("open");
                assert!(l.try_lock().expect("lock"));
                l.unlock().expect("unlock");
            }),
        ),
        (
            "proc_lock",
            Box::new(move || {
                let path = proc_lock::LockPath::FullPath(&proc_path);
                drop(proc_lock::try_lock(&path).expect("free"));
            }),
        ),
        (
            "named_lock",
            Box::new(move || {
                let l = named_lock::NamedLock::with_path(&named_path).expect("create");
                drop(l.try_lock().expect("free"));
            }),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    for (fs, dir) in DIRS {
        let mut group = c.benchmark_group(fs);
        for (name, mut case) in cases(fs, Path::new(dir)) {
            group.bench_function(name, |b| b.iter(&mut case));
        }
        group.finish();
    }
}

/// Ratios that survive a noisy machine: all cases measured round-robin in short batches, so a
/// burst of load hits them alike; the median batch per case, divided by the floor's.
fn interleaved_ratios() {
    const ROUNDS: usize = 60;
    const BATCH: u32 = 300;
    for (fs, dir) in DIRS {
        let mut cases = cases(fs, Path::new(dir));
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        for _ in 0..ROUNDS {
            for (i, (_, case)) in cases.iter_mut().enumerate() {
                let start = std::time::Instant::now();
                for _ in 0..BATCH {
                    case();
                }
                times[i].push(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
            }
        }
        let medians: Vec<f64> = times
            .iter_mut()
            .map(|t| {
                t.sort_by(f64::total_cmp);
                t[t.len() / 2]
            })
            .collect();
        let floor = medians[0];
        let mut rows: Vec<(&str, f64)> = cases.iter().map(|c| c.0).zip(medians).collect();
        rows.sort_by(|a, b| a.1.total_cmp(&b.1));
        println!(
            "\n{fs}, interleaved ({ROUNDS} rounds x {BATCH}): median ns and ratio to the floor"
        );
        for (name, m) in rows {
            println!("  {name:<32} {m:>9.0} ns  {:>5.2}x", m / floor);
        }
    }
}

/// Calls that come far apart (20 ms: past the 10 ms for which a lookup vouches, so each makes
/// the full check): a `Lock` kept between calls against the floor, one pair at a time, 150
/// pairs, the median of the pair ratios. Cold caches make both slower than in a loop.
fn spaced_ratios() {
    const PAIRS: usize = 150;
    const GAP: Duration = Duration::from_millis(20);
    for (fs, dir) in DIRS {
        let dir = Path::new(dir);
        std::fs::create_dir_all(dir).expect("bench directory");
        let floor = cstr(&dir.join("floor"));
        let lock = Lock::new("spaced").dir(dir);
        drop(lock.try_acquire().expect("free"));
        let (mut ours, mut raw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..PAIRS {
            std::thread::sleep(GAP);
            let start = std::time::Instant::now();
            drop(lock.try_acquire().expect("free"));
            let x = start.elapsed().as_nanos() as f64;
            std::thread::sleep(GAP);
            let start = std::time::Instant::now();
            raw_cycle(&floor);
            let y = start.elapsed().as_nanos() as f64;
            ours.push(x);
            raw.push(y);
            ratios.push(x / y);
        }
        for v in [&mut ours, &mut raw, &mut ratios] {
            v.sort_by(f64::total_cmp);
        }
        println!(
            "\n{fs}, calls {GAP:?} apart ({PAIRS} pairs): lockmacro_default {:.0} ns, floor {:.0} ns, \
             median pair ratio {:.2}x",
            ours[PAIRS / 2],
            raw[PAIRS / 2],
            ratios[PAIRS / 2]
        );
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
    interleaved_ratios();
    spaced_ratios();
}
