//! Child process for the async, shared and nested tests (`lm-async`). The lock directory comes
//! from `LOCKMACRO_DIR`, which every test sets to its own temporary directory.
//!
//! - `hold <name> [--shared] [--cleanup]`: takes the lock through the runtime API (waiting if
//!   needed), prints `locked <pid>`, keeps it until stdin is closed, releases it and prints
//!   `released`.
//! - `stress reader|writer <name> <iterations> <markers dir> [--cleanup]`: prints `ready`, waits
//!   for one line on stdin (the start signal), then takes the lock `iterations` times (readers
//!   shared, writers exclusive) and checks, through marker files, that no writer ever overlaps
//!   anybody. Prints `done <acquisitions> <violations> <most other readers seen at once>`.
//!   Readers use `#[exclusive(shared, wait)]` and writers `#[exclusive(wait)]`; with `--cleanup`
//!   both use the runtime API with `cleanup`, so the lock file is deleted and re-created all the
//!   time.
#[path = "protocol.rs"]
mod protocol;

use protocol::say;
use std::fs;
use std::io::{BufRead, Read};
use std::path::Path;
use std::process::ExitCode;

use lockmacro_runtime::{exclusive, Lock};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let words: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    match words.as_slice() {
        ["hold", name] => hold(name, flag("--shared"), flag("--cleanup")),
        ["stress", role, name, iterations, markers] => {
            let Ok(iterations) = iterations.parse() else {
                return usage();
            };
            let writer = match *role {
                "reader" => false,
                "writer" => true,
                _ => return usage(),
            };
            stress(
                name,
                writer,
                iterations,
                Path::new(markers),
                flag("--cleanup"),
            )
        }
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: lm-async hold <name> [--shared] [--cleanup]\n       \
         lm-async stress reader|writer <name> <iterations> <markers dir> [--cleanup]"
    );
    ExitCode::from(2)
}

fn hold(name: &str, shared: bool, cleanup: bool) -> ExitCode {
    let mut lock = Lock::new(name);
    if shared {
        lock = lock.shared();
    }
    if cleanup {
        lock = lock.cleanup();
    }
    let guard = match lock.acquire() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("lm-async: {e}");
            return ExitCode::from(1);
        }
    };
    say(&format!("locked {}", std::process::id()));
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    match guard.release() {
        Ok(()) => {
            say("released");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lm-async: release failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// What one pass inside the lock saw.
struct Seen {
    violation: bool,
    other_readers: usize,
}

fn stress(name: &str, writer: bool, iterations: u32, markers: &Path, cleanup: bool) -> ExitCode {
    if name != "stress" && !cleanup {
        // The annotated functions below are bound to the name "stress".
        eprintln!("lm-async: stress without --cleanup uses the lock name `stress`");
        return ExitCode::from(2);
    }
    say("ready");
    let mut go = String::new();
    let _ = std::io::stdin().lock().read_line(&mut go);
    let lock = Lock::new(name).cleanup();
    let reader_lock = lock.clone().shared();
    let mut violations = 0u32;
    let mut max_readers = 0;
    for i in 0..iterations {
        let seen = match (writer, cleanup) {
            (false, false) => annotated_read(markers, i),
            (true, false) => annotated_write(markers, i),
            (false, true) => {
                let guard = reader_lock.acquire().unwrap_or_else(|e| panic!("{e}"));
                let seen = read_pass(markers, i);
                guard.release().unwrap_or_else(|e| panic!("{e}"));
                seen
            }
            (true, true) => {
                let guard = lock.acquire().unwrap_or_else(|e| panic!("{e}"));
                let seen = write_pass(markers, i);
                guard.release().unwrap_or_else(|e| panic!("{e}"));
                seen
            }
        };
        violations += u32::from(seen.violation);
        max_readers = max_readers.max(seen.other_readers);
    }
    say(&format!("done {iterations} {violations} {max_readers}"));
    ExitCode::SUCCESS
}

#[exclusive(name = "stress", shared, wait)]
fn annotated_read(markers: &Path, i: u32) -> Seen {
    read_pass(markers, i)
}

#[exclusive(name = "stress", wait)]
fn annotated_write(markers: &Path, i: u32) -> Seen {
    write_pass(markers, i)
}

/// Marker names present in `markers`.
fn entries(markers: &Path) -> Vec<String> {
    fs::read_dir(markers)
        .unwrap_or_else(|e| panic!("read {}: {e}", markers.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{e}"))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// A reader's turn: its marker is there for the whole hold; no writer marker may ever be seen.
fn read_pass(markers: &Path, i: u32) -> Seen {
    let me = markers.join(format!("reader-{}", std::process::id()));
    let mut violation = fs::File::options()
        .write(true)
        .create_new(true)
        .open(&me)
        .is_err();
    let mut other_readers = 0;
    // Look several times, with yields between, so a writer sneaking in has a window to be seen.
    for _ in 0..4 {
        let names = entries(markers);
        violation |= names.iter().any(|n| n.starts_with("writer-"));
        other_readers =
            other_readers.max(names.iter().filter(|n| n.starts_with("reader-")).count());
        std::thread::yield_now();
    }
    if i & 63 == 0 {
        // Now and then (every 64th turn) hold a little longer, so readers really overlap.
        for _ in 0..200 {
            std::thread::yield_now();
        }
    }
    violation |= fs::remove_file(&me).is_err();
    Seen {
        violation,
        other_readers: other_readers.saturating_sub(1),
    }
}

/// A writer's turn: the directory must be empty on entry and hold only its marker throughout.
fn write_pass(markers: &Path, _i: u32) -> Seen {
    let mut violation = !entries(markers).is_empty();
    let me = markers.join(format!("writer-{}", std::process::id()));
    violation |= fs::File::options()
        .write(true)
        .create_new(true)
        .open(&me)
        .is_err();
    for _ in 0..2 {
        std::thread::yield_now();
        violation |= entries(markers) != [format!("writer-{}", std::process::id())];
    }
    violation |= fs::remove_file(&me).is_err();
    Seen {
        violation,
        other_readers: 0,
    }
}
