//! Between processes: contended throughput, handoff latency and CPU spent waiting.
//!
//! `cargo bench -p lockmacro-runtime --bench contended`
//!
//! - Throughput: 4 processes acquiring one lock, each incrementing a counter file inside the
//!   lock (the final count is checked), for the floor (raw open + blocking flock + close), our
//!   default mode, our `cleanup` mode and the raw unlink-on-release protocol (with the PID
//!   written, as `cleanup` does; also shown without it, the earlier baseline), and the floor with
//!   the holder's PID written (what keeping the PID costs at least). Each round lasts
//!   about a second or more (see [`iters`]), long enough to weigh.
//! - Handoff: a holder releases while a waiter in another process waits (blocking `acquire`,
//!   `acquire_timeout`, `acquire_async`, and as the floor a bare blocking `flock` on the same
//!   file; `raw`); latency from the holder's release to the waiter's acquisition on
//!   CLOCK_MONOTONIC, p50 and p99 over 200 handoffs per mode, the modes taking turns.
//! - CPU: what a timed or async waiter burns while the lock is held for 2 s.
//!
//! The bench re-executes itself as the child processes (`LOCKMACRO_BENCH_CHILD`).

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use lockmacro_runtime::Lock;

const PROCS: usize = 4;

/// Acquisitions per process in one round: a round of each mode lasts about a second or more on
/// our 2-core machine (the unlink modes are about eight times slower than the others).
fn iters(mode: &str) -> u64 {
    match mode {
        "floor" | "floor-pid" | "default" => 50_000,
        _ => 6_000,
    }
}
const HANDOFFS: usize = 200;
const CHILD: &str = "LOCKMACRO_BENCH_CHILD";

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn cpu_ns() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
}

fn cstr(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL")
}

/// Non-atomic read-modify-write of an 8-byte counter inside the lock: cheap, so the lock is
/// what is measured.
fn bump(counter: &std::fs::File) {
    use std::os::unix::fs::FileExt;
    let mut n = [0u8; 8];
    let _ = counter.read_at(&mut n, 0);
    let n = u64::from_le_bytes(n) + 1;
    counter
        .write_all_at(&n.to_le_bytes(), 0)
        .expect("write counter");
}

fn read_counter(path: &Path) -> u64 {
    let bytes = std::fs::read(path).expect("counter");
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// The floor (`safe` false): open, blocking flock, the counter, close. With `safe`, the raw
/// unlink-on-release protocol that `cleanup` implements, exactly as in the uncontended bench and
/// the benchmark issue: no-follow open, identity check (start over if stale), the holder's PID
/// written, the counter, unlink while holding, close.
/// `pid` empty: the protocol without the PID write, for comparison with earlier runs of this
/// bench, which measured that. The floor with a `pid` writes it (the least a lock that keeps
/// its holder's PID in the file does).
fn raw_cycle(path: &CString, counter: &std::fs::File, safe: bool, pid: &[u8]) {
    unsafe {
        loop {
            let nofollow = if safe { libc::O_NOFOLLOW } else { 0 };
            let fd = libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | nofollow,
                0o600,
            );
            assert!(fd >= 0);
            while libc::flock(fd, libc::LOCK_EX) != 0 {}
            if !safe && !pid.is_empty() {
                libc::pwrite(fd, pid.as_ptr().cast(), pid.len(), 0);
            }
            if safe {
                let (mut a, mut b): (libc::stat, libc::stat) = std::mem::zeroed();
                libc::fstat(fd, &mut a);
                if libc::lstat(path.as_ptr(), &mut b) != 0
                    || (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino)
                {
                    libc::close(fd);
                    continue;
                }
                if pid.is_empty() {
                    // no PID: the earlier baseline
                } else if libc::pwrite(fd, pid.as_ptr().cast(), pid.len(), 0) >= 0
                    && a.st_size != pid.len() as i64
                {
                    libc::ftruncate(fd, pid.len() as i64);
                }
            }
            bump(counter);
            if safe {
                libc::unlink(path.as_ptr());
            }
            libc::close(fd);
            return;
        }
    }
}

fn child_throughput(mode: &str, dir: &Path) {
    let counter = std::fs::File::options()
        .read(true)
        .write(true)
        .open(dir.join("counter"))
        .expect("counter");
    let path = dir.join(format!("raw-{mode}"));
    let raw = cstr(&path);
    let lock = match mode {
        "cleanup" => Lock::new("contended").dir(dir).cleanup(),
        _ => Lock::new("contended").dir(dir),
    };
    let pid = format!("{}\n", std::process::id());
    let pid = pid.as_bytes();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("go"); // start barrier
    for _ in 0..iters(mode) {
        match mode {
            "floor" => raw_cycle(&raw, &counter, false, b""),
            "floor-pid" => raw_cycle(&raw, &counter, false, pid),
            "raw-unlink" => raw_cycle(&raw, &counter, true, pid),
            "raw-unlink-nopid" => raw_cycle(&raw, &counter, true, b""),
            _ => {
                let guard = lock.acquire().expect("acquire");
                bump(&counter);
                drop(guard);
            }
        }
    }
}

/// Waits for the lock once per line on stdin, reports the acquisition time, releases.
fn child_waiter(mode: &str, dir: &Path) {
    let lock = Lock::new("handoff").dir(dir);
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.expect("line");
        if line == "cpu" {
            // The holder keeps the lock for 2 s; report the CPU we spent waiting.
            let before = cpu_ns();
            let guard = wait_once(&lock, mode);
            let spent = cpu_ns() - before;
            drop(guard);
            writeln!(out, "{spent}").expect("report");
            continue;
        }
        writeln!(out, "waiting").expect("report");
        out.flush().expect("flush");
        let guard = wait_once(&lock, mode);
        let at = now_ns();
        drop(guard);
        writeln!(out, "{at}").expect("report");
        out.flush().expect("flush");
    }
}

/// What a waiter holds: our guard, or (the floor) a raw descriptor locked with flock.
enum Held {
    Guard(#[allow(dead_code)] lockmacro_runtime::LockGuard),
    Raw(std::fs::File),
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Held::Raw(file) = self {
            use std::os::fd::AsRawFd;
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

fn wait_once(lock: &Lock, mode: &str) -> Held {
    if mode == "raw" {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .open(lock.path())
            .expect("open lock file");
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {}
        return Held::Raw(file);
    }
    Held::Guard(
        match mode {
            "blocking" => lock.acquire(),
            "timeout" => lock.acquire_timeout(Duration::from_secs(30)),
            "async" => futures_lite_block_on(lock.acquire_timeout_async(Duration::from_secs(30))),
            other => panic!("unknown mode {other}"),
        }
        .expect("acquire"),
    )
}

/// A minimal executor (no dependency): park the thread until the waker unparks it.
fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

struct Kid {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Kid {
    fn spawn(role: &str, mode: &str, dir: &Path) -> Kid {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .env(CHILD, format!("{role}:{mode}:{}", dir.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Kid {
            child,
            stdin,
            stdout,
        }
    }
    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("send");
        self.stdin.flush().expect("flush");
    }
    fn line(&mut self) -> String {
        let mut s = String::new();
        self.stdout.read_line(&mut s).expect("read");
        s.trim().to_owned()
    }
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/var/tmp/lockmacro-contended-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn throughput(mode: &str) -> f64 {
    let dir = fresh_dir(mode);
    std::fs::write(dir.join("counter"), [0u8; 8]).expect("counter");
    let mut kids: Vec<Kid> = (0..PROCS)
        .map(|_| Kid::spawn("throughput", mode, &dir))
        .collect();
    std::thread::sleep(Duration::from_millis(100)); // let them start; a bench, not a test
    let start = Instant::now();
    for k in &mut kids {
        k.send("go");
    }
    for mut k in kids {
        assert!(k.child.wait().expect("wait").success());
    }
    let secs = start.elapsed().as_secs_f64();
    let count = read_counter(&dir.join("counter"));
    assert_eq!(count, PROCS as u64 * iters(mode), "{mode}: lost increments");
    println!("    {mode}: {count} acquisitions in {secs:.2} s");
    count as f64 / secs
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Handoffs to one waiter per mode, taking turns round by round (so that a slow moment of the
/// machine hits every mode alike), then the CPU each burns while waiting 2 s. Returns p50, p99
/// and CPU per mode.
fn handoffs(modes: &[&str]) -> Vec<(u64, u64, u64)> {
    let dir = fresh_dir("handoff");
    let lock = Lock::new("handoff").dir(&dir);
    let mut kids: Vec<Kid> = modes
        .iter()
        .map(|mode| Kid::spawn("waiter", mode, &dir))
        .collect();
    let mut lat = vec![Vec::with_capacity(HANDOFFS); modes.len()];
    for _ in 0..HANDOFFS {
        for (kid, lat) in kids.iter_mut().zip(&mut lat) {
            let guard = lock.acquire().expect("holder acquires");
            kid.send("next");
            assert_eq!(kid.line(), "waiting");
            std::thread::sleep(Duration::from_millis(3)); // the waiter is now waiting
            let released = now_ns();
            drop(guard);
            let acquired: u64 = kid.line().parse().expect("ns");
            lat.push(acquired.saturating_sub(released));
        }
    }
    kids.into_iter()
        .zip(lat)
        .map(|(mut kid, mut lat)| {
            lat.sort_unstable();
            let guard = lock.acquire().expect("holder acquires");
            kid.send("cpu");
            std::thread::sleep(Duration::from_secs(2));
            drop(guard);
            let cpu: u64 = kid.line().parse().expect("cpu ns");
            drop(kid.stdin);
            let _ = kid.child.wait();
            (percentile(&lat, 0.5), percentile(&lat, 0.99), cpu)
        })
        .collect()
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let mut parts = spec.splitn(3, ':');
        let (role, mode, dir) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        match role {
            "throughput" => child_throughput(mode, Path::new(dir)),
            _ => child_waiter(mode, Path::new(dir)),
        }
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` support
    }
    // Round-robin over the modes, median per mode: one slow moment of the machine then hits
    // every mode alike instead of deciding a ratio.
    const ROUNDS: usize = 5;
    println!(
        "contended throughput: {PROCS} processes x {} acquisitions ({} for the unlink modes), \
         counter verified, median of {ROUNDS} interleaved rounds",
        iters("floor"),
        iters("cleanup")
    );
    let modes = [
        "floor",
        "floor-pid",
        "default",
        "raw-unlink",
        "cleanup",
        "raw-unlink-nopid",
    ];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for _ in 0..ROUNDS {
        for (i, mode) in modes.iter().enumerate() {
            runs[i].push(throughput(mode));
        }
    }
    let [floor, floor_pid, default, unlink, cleanup, nopid] = [0, 1, 2, 3, 4, 5].map(|i| {
        runs[i].sort_by(f64::total_cmp);
        runs[i][ROUNDS / 2]
    });
    println!("  floor (open + flock + close)     {floor:>9.0} cycles/s  1.00x");
    println!(
        "  floor + the PID written          {floor_pid:>9.0} cycles/s  {:.2}x floor",
        floor_pid / floor
    );
    println!(
        "  lockmacro default                {default:>9.0} cycles/s  {:.2}x floor, {:.2}x floor + PID",
        default / floor,
        default / floor_pid
    );
    println!(
        "  raw unlink-on-release protocol   {unlink:>9.0} cycles/s  {:.2}x floor",
        unlink / floor
    );
    println!(
        "  lockmacro cleanup                {cleanup:>9.0} cycles/s  {:.2}x raw unlink",
        cleanup / unlink
    );
    println!(
        "  (raw unlink protocol, no PID     {nopid:>9.0} cycles/s: cleanup {:.2}x that)",
        cleanup / nopid
    );
    println!(
        "\nhandoff after release ({HANDOFFS} rounds, modes taking turns) and CPU while waiting 2 s"
    );
    let modes = ["raw", "blocking", "timeout", "async"];
    for (mode, (p50, p99, cpu)) in modes.iter().zip(handoffs(&modes)) {
        println!(
            "  {mode:<9} p50 {:>7.1} us  p99 {:>8.1} us  CPU {:>6.2} ms / 2 s",
            p50 as f64 / 1e3,
            p99 as f64 / 1e3,
            cpu as f64 / 1e6
        );
    }
}
