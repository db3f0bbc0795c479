//! A bounded randomized torture test: several `lm-child torture-worker` processes (two threads each)
//! loop on random operations on two locks for `LOCKMACRO_TORTURE_SECS` seconds (default 45),
//! from a seed (`LOCKMACRO_TORTURE_SEED`, printed so that a failure can be replayed; the
//! scheduling is not replayed, the choices are).
//!
//! - Lock `A` (lockmacro only): default and `cleanup` modes, shared and exclusive, try,
//!   blocking, timed, async and timed async waits, through two spellings of one directory:
//!   `base/current/locks` (`current` is a symlink that a switcher thread here moves between
//!   `v1` and `v2` by renaming a new symlink over it) and `base/v1/locks`. Workers fork without
//!   exec while holding `A`; the child drops its copy of the guard, exits at once, lingers (until
//!   its parent's next rounds, or 25 s if the parent has gone), or takes `A` itself. Each worker
//!   ends its life holding `A` (exit, or SIGKILL from here) and is replaced.
//! - Lock `B` (default mode only): also taken by a foreign `flock(1)`.
//!
//! Detectors: the oracle of `tests/support/oracle.rs` (`OVERLAP`, per real directory; a round
//! through `current` counts only if the switch generation was the same even number before and
//! after the acquisition, else it is `ambiguous` and unchecked); forked children that outlive
//! their bound (`HANG`); unexpected errors (`ERR`); and here a progress watchdog (`STRANDED`):
//! some process has been waiting for lock `L` for `STRANDED_AFTER` and nobody acquired `L` in
//! that time. Every process group is killed at the end. Shared tries refused naming our own PID
//! while no thread of ours held or wanted the lock exclusively are counted (`spurious`), not
//! fatal: a timed-out wait's helper thread may still take the lock for an instant, so the count
//! is an upper bound.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{Line, Oracle, SplitMix, CHILD};
const WORKERS: usize = 5;
const DEFAULT_SECS: u64 = 45;
/// No acquisition of a lock for this long while a process waits for it: the lock is stranded.
const STRANDED_AFTER: Duration = Duration::from_secs(10);
/// How long the workers may take to finish after the end of the run.
const GRACE: Duration = Duration::from_secs(20);
/// After a switch of `current`, the generation stays odd this long: an acquisition may rely on
/// a path lookup up to 10 ms old (plus a coarse clock tick), so only after this is the new
/// target certain.
const SETTLE: Duration = Duration::from_millis(40);

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

/// SplitMix64's output for state `z`: a seed derived from `z`.
fn splitmix(z: u64) -> u64 {
    SplitMix(z).next_u64()
}

/// Publishes the switch generation atomically (write a new file, rename it over).
fn write_gen(base: &Path, gen: u64) {
    let tmp = base.join("gen.tmp");
    std::fs::write(&tmp, gen.to_string()).expect("write gen");
    std::fs::rename(&tmp, base.join("gen")).expect("rename gen");
}

/// Points `base/current` at `target` by renaming a new symlink over it.
fn point_current(base: &Path, target: &str) {
    let tmp = base.join("current.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, base.join("current")).expect("rename symlink");
}

fn switcher(base: PathBuf, seed: u64, stop: Arc<AtomicBool>) -> u64 {
    let mut rng = seed;
    let mut gen = 0u64;
    let mut switches = 0;
    while !stop.load(Ordering::SeqCst) {
        rng = splitmix(rng);
        // Stable for a while (pacing only: the workers read the generation, never the time).
        std::thread::sleep(Duration::from_millis(150 + rng % 650));
        gen += 1; // odd: switching
        write_gen(&base, gen);
        point_current(&base, if gen % 4 == 1 { "v2" } else { "v1" });
        std::thread::sleep(SETTLE);
        gen += 1; // even: stable on the new target
        write_gen(&base, gen);
        switches += 1;
    }
    switches
}

/// One worker process (one incarnation of a worker slot).
struct Worker {
    child: Child,
    /// Set once it said `bye` or `killme` (it leaves holding; a new one takes its place).
    leaving: bool,
    killed: bool,
    done: bool,
    /// When it was first seen exited without having said `bye`: its last lines may still be on
    /// their way through the reader thread, so it is judged a moment later.
    exited_at: Option<Instant>,
}

/// What a reader thread forwards: (incarnation, line).
type Msg = (usize, String);

fn spawn_worker(
    base: &Path,
    seed: u64,
    end_ms: u64,
    inc: usize,
    tx: &Sender<Msg>,
    stderr: &Arc<Mutex<Vec<String>>>,
) -> Worker {
    let mut cmd = Command::new(CHILD);
    cmd.args([
        "torture-worker".to_owned(),
        base.display().to_string(),
        seed.to_string(),
        end_ms.to_string(),
        inc.to_string(),
    ])
    .env_remove("LOCKMACRO_DIR")
    .env_remove("LOCKMACRO_TEST_BREAK")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = support::spawn(&mut cmd).expect("spawn lm-child torture-worker");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send((inc, line)).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::clone(stderr);
    let pid = child.id();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            stderr
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("[worker {inc} pid {pid}] {line}"));
        }
    });
    Worker {
        child,
        leaving: false,
        killed: false,
        exited_at: None,
        done: false,
    }
}

#[derive(Default, Debug)]
struct Totals {
    /// (lock, how, mode) -> count
    acquisitions: BTreeMap<(String, String, String), u64>,
    forks: BTreeMap<String, u64>,
    overlaps: u64,
    stranded: u64,
    hangs: u64,
    errors: u64,
    ambiguous: u64,
    current_rounds: u64,
    spurious_shared_tries: u64,
    exits: u64,
    kills: u64,
    switches: u64,
    max_wait: Duration,
}

/// Waits per lock label: (incarnation, thread) -> since.
#[derive(Default)]
struct Watch {
    waiting: HashMap<(usize, String), (String, Instant)>,
    last_acquired: HashMap<String, Instant>,
}

impl Watch {
    /// A lock whose waiter has waited `STRANDED_AFTER` with no acquisition of it meanwhile.
    fn stranded(&self, now: Instant, start: Instant) -> Option<String> {
        self.waiting.iter().find_map(|((inc, t), (lock, since))| {
            let last = self.last_acquired.get(lock).copied().unwrap_or(start);
            let quiet = now.duration_since(last.max(*since));
            (lock != "A?"
                && now.duration_since(*since) >= STRANDED_AFTER
                && quiet >= STRANDED_AFTER)
                .then(|| {
                    format!(
                        "STRANDED lock {lock}: worker {inc} thread {t} has waited {:.1?}, no \
                         acquisition of {lock} for {quiet:.1?}",
                        now.duration_since(*since)
                    )
                })
        })
    }
}

#[test]
fn torture_random_mix_of_processes_forks_spellings_and_foreign_lockers() {
    let secs = env_u64("LOCKMACRO_TORTURE_SECS").unwrap_or(DEFAULT_SECS);
    let seed = env_u64("LOCKMACRO_TORTURE_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "[torture] seed {seed} (replay with LOCKMACRO_TORTURE_SEED={seed}), {secs} s, \
         {WORKERS} workers"
    );
    let out = support::output(Command::new("flock").arg("--version"));
    assert!(
        out.is_ok_and(|o| o.status.success()),
        "this test needs flock(1) (util-linux)"
    );

    let tmp = tempfile::tempdir().expect("temp dir");
    let base = tmp.path().to_owned();
    for dir in ["v1/locks", "v2/locks", "b/locks"] {
        std::fs::create_dir_all(base.join(dir)).expect("mkdir");
    }
    for lock in ["A1", "A2", "B"] {
        Oracle::create(&base.join("oracle").join(lock));
    }
    write_gen(&base, 0);
    point_current(&base, "v1");

    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let end_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
        + secs * 1000;
    let stop = Arc::new(AtomicBool::new(false));
    let switch = {
        let base = base.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || switcher(base, splitmix(seed ^ 0x5157), stop))
    };

    let (tx, rx) = mpsc::channel::<Msg>();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let mut groups: Vec<i32> = Vec::new();
    let mut incarnations = 0usize;
    let mut slots: Vec<Worker> = Vec::new();
    let mut spawn = |groups: &mut Vec<i32>| {
        let inc = incarnations;
        incarnations += 1;
        let w = spawn_worker(
            &base,
            splitmix(seed.wrapping_add(inc as u64)),
            end_ms,
            inc,
            &tx,
            &stderr,
        );
        groups.push(w.child.id() as i32);
        (inc, w)
    };
    for _ in 0..WORKERS {
        let (_, w) = spawn(&mut groups);
        slots.push(w);
    }
    // Which slot each incarnation runs in.
    let mut slot_of: HashMap<usize, usize> = (0..WORKERS).map(|i| (i, i)).collect();

    let mut totals = Totals::default();
    let mut watch = Watch::default();
    let mut failure: Option<(Duration, String)> = None;
    let fail = |failure: &mut Option<(Duration, String)>, what: String| {
        if failure.is_none() {
            eprintln!("[torture] FAILED after {:.1?}: {what}", start.elapsed());
            *failure = Some((start.elapsed(), what));
        }
    };

    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((inc, text)) => {
                let now = Instant::now();
                let line = Line::from(text);
                let thread = |line: &Line| (inc, line.field("t").to_owned());
                match line.word() {
                    "w" => {
                        watch
                            .waiting
                            .insert(thread(&line), (line.field("lock").to_owned(), now));
                    }
                    "x" => {
                        if let Some((_, since)) = watch.waiting.remove(&thread(&line)) {
                            totals.max_wait = totals.max_wait.max(now.duration_since(since));
                        }
                    }
                    "a" => {
                        if let Some((_, since)) = watch.waiting.remove(&thread(&line)) {
                            totals.max_wait = totals.max_wait.max(now.duration_since(since));
                        }
                        let lock = line.field("lock");
                        watch.last_acquired.insert(lock.to_owned(), now);
                        if line.get("cur").is_some() {
                            totals.current_rounds += 1;
                        }
                        let key = (
                            lock.to_owned(),
                            line.field("how").to_owned(),
                            line.field("mode").to_owned(),
                        );
                        *totals.acquisitions.entry(key).or_default() += 1;
                        if lock == "A?" {
                            totals.ambiguous += 1;
                        }
                    }
                    "fork" => {
                        *totals
                            .forks
                            .entry(line.field("kind").to_owned())
                            .or_default() += 1;
                    }
                    "spur" => {
                        totals.spurious_shared_tries += 1;
                        if totals.spurious_shared_tries <= 3 {
                            eprintln!("[torture] spurious shared try: {line}");
                        }
                    }
                    word @ ("bye" | "killme") => {
                        if let Some(&slot) = slot_of.get(&inc) {
                            let w = &mut slots[slot];
                            if !w.leaving {
                                w.leaving = true;
                                if word == "killme" {
                                    let _ = w.child.kill();
                                    w.killed = true;
                                    totals.kills += 1;
                                } else {
                                    totals.exits += 1;
                                }
                            }
                        }
                        // Its waits are over.
                        watch.waiting.retain(|(i, _), _| *i != inc);
                    }
                    "done" => {
                        if let Some(&slot) = slot_of.get(&inc) {
                            slots[slot].done = true;
                        }
                    }
                    "OVERLAP" => {
                        totals.overlaps += 1;
                        fail(&mut failure, format!("worker {inc}: {line}"));
                    }
                    "HANG" => {
                        totals.hangs += 1;
                        fail(&mut failure, format!("worker {inc}: {line}"));
                    }
                    "ERR" => {
                        totals.errors += 1;
                        fail(&mut failure, format!("worker {inc}: {line}"));
                    }
                    _ => fail(
                        &mut failure,
                        format!("worker {inc}: unexpected line {line}"),
                    ),
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
        }
        let now = Instant::now();
        // Worker exits: replacements for those that left holding; anything else is a failure.
        for (slot, w) in slots.iter_mut().enumerate() {
            let Ok(Some(status)) = w.child.try_wait() else {
                continue;
            };
            if w.leaving {
                if now + Duration::from_secs(3) < end && failure.is_none() {
                    let (inc, next) = spawn(&mut groups);
                    *w = next;
                    slot_of.insert(inc, slot);
                } else {
                    w.done = true;
                }
            } else if status.success() && !w.done && !w.killed {
                let first = *w.exited_at.get_or_insert(now);
                if now.duration_since(first) < Duration::from_secs(2) {
                    continue; // its `bye` may be in flight
                }
                let what = format!("worker in slot {slot} exited unexpectedly: {status}");
                w.done = true;
                w.leaving = true; // reported once
                fail(&mut failure, what);
            } else if !w.done || !status.success() {
                let what = format!("worker in slot {slot} exited unexpectedly: {status}");
                w.done = true;
                w.leaving = true; // reported once
                fail(&mut failure, what);
            }
        }
        if let Some(what) = watch.stranded(now, start) {
            if failure.is_none() {
                totals.stranded += 1;
            }
            fail(&mut failure, what);
        }
        if failure.is_some() {
            break;
        }
        let finished = slots
            .iter_mut()
            .all(|w| w.done && w.child.try_wait().ok().flatten().is_some());
        if now >= end && finished {
            break;
        }
        if now >= end + GRACE {
            fail(
                &mut failure,
                format!("workers did not finish within {GRACE:?} after the end of the run"),
            );
            break;
        }
    }

    // Teardown: stop the switcher, kill every process group (forked children included).
    stop.store(true, Ordering::SeqCst);
    for &pgid in &groups {
        // SAFETY: kill(2) on process groups we created; at worst they no longer exist.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    for w in &mut slots {
        let _ = w.child.wait();
    }
    totals.switches = switch.join().expect("switcher");

    let mut by_how: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_lock: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_mode: BTreeMap<&str, u64> = BTreeMap::new();
    for ((lock, how, mode), n) in &totals.acquisitions {
        *by_how.entry(how).or_default() += n;
        *by_lock.entry(lock).or_default() += n;
        *by_mode.entry(mode).or_default() += n;
    }
    eprintln!(
        "[torture] {:.1?}, seed {seed}: acquisitions by lock {by_lock:?}, by kind {by_how:?}, \
         by mode {by_mode:?}; forks {:?}; workers left holding: {} by exit, {} killed; \
         {} switches of `current`; overlaps {}, stranded {}, hangs {}, errors {}; ambiguous \
         rounds {} (of {} through `current`, unchecked); spurious shared tries {}; longest \
         wait {:.1?}",
        start.elapsed(),
        totals.forks,
        totals.exits,
        totals.kills,
        totals.switches,
        totals.overlaps,
        totals.stranded,
        totals.hangs,
        totals.errors,
        totals.ambiguous,
        totals.current_rounds,
        totals.spurious_shared_tries,
        totals.max_wait,
    );
    if let Some((after, what)) = failure {
        let errs = stderr.lock().unwrap_or_else(|e| e.into_inner());
        let tail: Vec<&String> = errs.iter().rev().take(20).collect();
        panic!(
            "torture failed after {after:.1?} (seed {seed}): {what}\nworkers' stderr (last \
             lines, newest first): {tail:#?}"
        );
    }
    assert_eq!(totals.overlaps, 0);
    assert_eq!(totals.stranded, 0);
    assert!(
        totals.ambiguous * 4 <= totals.current_rounds.max(1),
        "too many ambiguous rounds: {} of {}",
        totals.ambiguous,
        totals.current_rounds
    );
    for how in ["try", "block", "timed", "async", "async-timed", "exit-hold"] {
        assert!(
            by_how.get(how).copied().unwrap_or(0) > 0,
            "no `{how}` acquisition at all: {by_how:?}"
        );
    }
    for lock in ["A1", "A2", "B"] {
        assert!(
            by_lock.get(lock).copied().unwrap_or(0) > 0,
            "no acquisition of {lock}: {by_lock:?}"
        );
    }
    drop(tmp);
}
