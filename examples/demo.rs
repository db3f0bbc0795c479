//! The whole story in one command:
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! It takes a lock through `#[exclusive] fn main`, starts a second copy of itself (refused:
//! one line, exit status 1), then shows what a function returning `Result`, a `timeout` and a
//! `wait` do when another thread holds their lock.

use std::error::Error as StdError;
use std::process::Command;
use std::time::{Duration, Instant};

use lockmacro_runtime::{exclusive, Error, Lock};

#[exclusive(name = "lockmacro-demo")]
fn main() -> Result<(), Box<dyn StdError>> {
    if std::env::args().any(|arg| arg == "--second-copy") {
        // Never reached while the first copy holds the lock: `main` exits before its body.
        println!("   second copy: I got the lock. That must not happen!");
        std::process::exit(2);
    }
    let me = std::process::id();
    let path = Lock::new("lockmacro-demo").path().display().to_string();
    println!("1. I am pid {me}. #[exclusive] fn main took the lock `lockmacro-demo`:\n   {path}");

    println!("\n2. Starting a second copy of myself while I hold it...");
    let second = Command::new(std::env::current_exe()?)
        .arg("--second-copy")
        .output()?;
    for line in String::from_utf8_lossy(&second.stderr).lines() {
        println!("   second copy's stderr: {line}");
    }
    println!("   second copy's {}", second.status);

    println!("\n3. This thread now holds `report` through the runtime API.");
    let report = Lock::new("report");
    let held = report.try_acquire()?;
    println!("   `holder()` says: pid {:?}", report.holder()?);
    let refused = std::thread::spawn(build_report)
        .join()
        .map_err(|_| "thread panicked")?;
    match refused {
        Err(err) => println!(
            "   another thread calls build_report() -> Result: Err, holder pid {:?}:\n   {err}",
            err.holder_pid()
        ),
        Ok(_) => {
            println!("   build_report() ran although the lock was held. That must not happen!")
        }
    }

    let start = Instant::now();
    let timed = std::thread::spawn(build_report_within_300ms)
        .join()
        .map_err(|_| "thread panicked")?;
    if let Err(err) = timed {
        println!(
            "\n4. With timeout = \"300ms\", after {:?}:\n   {err}",
            start.elapsed()
        );
    }

    println!("\n5. With `wait`, another thread blocks until I release (in 500 ms)...");
    let waiter = std::thread::spawn(|| {
        let start = Instant::now();
        let what = build_report_eventually();
        (what, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500)); // a demo pause, not synchronisation
    held.release()?;
    let (what, waited) = waiter.join().map_err(|_| "thread panicked")?;
    println!("   released; the waiter ran right after: {what} (waited {waited:?})");

    println!("\n6. Done. The lock file stays (it is never stale: the kernel knows who holds");
    println!("   the lock), and when this process exits, however it exits, the lock is free.");
    Ok(())
}

#[exclusive(name = "report")]
fn build_report() -> Result<&'static str, Error> {
    Ok("report built")
}

#[exclusive(name = "report", timeout = "300ms")]
fn build_report_within_300ms() -> Result<&'static str, Error> {
    Ok("report built")
}

#[exclusive(name = "report", wait)]
fn build_report_eventually() -> &'static str {
    "report built"
}
