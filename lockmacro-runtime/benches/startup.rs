//! What a single-instance program pays for its lock, measured as whole processes.
//!
//! `cargo bench -p lockmacro-runtime --bench startup` (`-- --runs N` for N pairs, default 400).
//!
//! It builds the `startup_*` examples of this crate (release), then:
//!
//! 1. starts each program and the empty one (`startup_empty`) in alternation, one pair at a
//!    time, timing each whole process from spawn to exit, and prints the median time of each
//!    and the median of the pair ratios (alternation keeps each ratio fair when the machine's
//!    speed drifts during the run);
//! 2. runs `startup_first lockmacro` and `startup_first raw` in alternation: the first
//!    acquisition + release in a fresh process, and a raw `open` + `flock` + unlock + `close`,
//!    each timed inside its process;
//! 3. prints the size of each binary;
//! 4. if `strace` is on the PATH, lists the system calls `#[exclusive] fn main` makes beyond the
//!    empty program's.
//!
//! Each example is a few lines: read them for what is compared (`examples/startup_*.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const PROGRAMS: [&str; 5] = [
    "startup_exclusive",
    "startup_fd_lock",
    "startup_proc_lock",
    "startup_raw",
    "startup_empty",
];

fn main() {
    let mut runs = 400usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--runs" {
            runs = args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--runs takes a number");
        }
        // Anything else (`--bench`, filters) is cargo's and ignored.
    }
    let bins = build();
    let bin = |name: &str| bins[name].as_path();
    let empty = bin("startup_empty");

    println!("whole process, each program and the empty one in alternation, {runs} pairs");
    println!(
        "{:<20} {:>12} {:>12} {:>22}",
        "program", "median µs", "empty µs", "pair ratio p25/50/75"
    );
    for name in &PROGRAMS[..4] {
        let (a, b, r) = alternate(runs, || spawn(bin(name)), || spawn(empty));
        println!(
            "{:<20} {:>12.1} {:>12.1} {:>8.3} {:.3} {:.3}",
            name, a, b, r.0, r.1, r.2
        );
    }

    println!();
    println!("first acquisition + release in a fresh process, timed inside it, {runs} pairs");
    let first = bin("startup_first");
    let inner = |what: &str| -> f64 {
        let out = Command::new(first)
            .arg(what)
            .stderr(Stdio::null())
            .output()
            .expect("run startup_first");
        let text = String::from_utf8_lossy(&out.stdout);
        let ns: f64 = text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("startup_first {what} printed {text:?}"));
        ns / 1000.0
    };
    let (ours, raw, r) = alternate(runs, || inner("lockmacro"), || inner("raw"));
    println!(
        "lockmacro {:.1} µs, raw open+flock+unlock+close {:.1} µs (medians); pair ratio p25/50/75 {:.2} {:.2} {:.2}",
        ours,
        raw,
        r.0,
        r.1,
        r.2
    );

    println!();
    println!("binary size (release, not stripped)");
    for name in PROGRAMS {
        let size = std::fs::metadata(bin(name)).map(|m| m.len()).unwrap_or(0);
        println!("{name:<20} {:>8.1} KiB", size as f64 / 1024.0);
    }

    println!();
    match (syscalls(empty), syscalls(bin("startup_exclusive"))) {
        (Some(base), Some(ours)) => {
            let mut added = ours.clone();
            for (call, n) in &base {
                if let Some(m) = added.get_mut(call) {
                    *m = m.saturating_sub(*n);
                }
            }
            added.retain(|_, n| *n > 0);
            let total: usize = added.values().sum();
            let removed: usize = base
                .iter()
                .map(|(call, n)| n.saturating_sub(*ours.get(call).unwrap_or(&0)))
                .sum();
            println!(
                "system calls startup_exclusive adds over startup_empty: {total} (and makes {removed} fewer)"
            );
            for (call, n) in added {
                println!("  {call} ×{n}");
            }
        }
        _ => println!("system calls: strace not found, not counted"),
    }
}

/// Builds the examples as a user's build would (without this repository's test hooks, in a
/// target directory of their own); their paths by name.
fn build() -> BTreeMap<String, PathBuf> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.env("RUSTFLAGS", "")
        .args(["--config", "build.rustflags=[]", "build"]);
    cmd.arg("--target-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("startup"));
    cmd.args([
        "--release",
        "--quiet",
        "--message-format=json",
        "-p",
        "lockmacro-runtime",
    ]);
    for name in PROGRAMS.iter().chain(&["startup_first"]) {
        cmd.args(["--example", name]);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(out.status.success(), "building the examples failed");
    let mut bins = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(name), Some(exe)) =
            (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            bins.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    bins
}

/// `a` and `b` in alternation, `runs` pairs after 20 not counted (page cache, the lock
/// directory): the median of each, and the quartiles of the pair ratios a/b.
fn alternate(
    runs: usize,
    mut a: impl FnMut() -> f64,
    mut b: impl FnMut() -> f64,
) -> (f64, f64, (f64, f64, f64)) {
    for _ in 0..20 {
        a();
        b();
    }
    let (mut xs, mut ys, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (x, y) = (a(), b());
        xs.push(x);
        ys.push(y);
        ratios.push(x / y);
    }
    (
        quartiles(&mut xs).1,
        quartiles(&mut ys).1,
        quartiles(&mut ratios),
    )
}

/// Wall time of one whole run of `bin`, in µs.
fn spawn(bin: &Path) -> f64 {
    let start = Instant::now();
    let status = Command::new(bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    let elapsed = start.elapsed();
    assert!(status.success(), "{} failed: {status}", bin.display());
    elapsed.as_secs_f64() * 1e6
}

fn quartiles(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

/// The system calls of one run of `bin` (every thread), by name, if `strace` can run it.
fn syscalls(bin: &Path) -> Option<BTreeMap<String, usize>> {
    let log = std::env::temp_dir().join(format!("lockmacro-startup-{}.strace", std::process::id()));
    let status = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&log)
        .arg(bin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let text = std::fs::read_to_string(&log).ok()?;
    let _ = std::fs::remove_file(&log);
    if !status.success() {
        return None;
    }
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        // `[pid N] name(...`, `N name(...` or `name(...`; "resumed" halves are not new calls.
        let line = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        let line = line.strip_prefix("[pid").map_or(line, |rest| {
            rest.split_once(']').map_or(rest, |(_, r)| r.trim_start())
        });
        if line.starts_with("<...") || line.starts_with("+++") || line.starts_with("---") {
            continue;
        }
        if let Some((name, _)) = line.split_once('(') {
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                *calls.entry(name.to_owned()).or_insert(0) += 1;
            }
        }
    }
    Some(calls)
}
