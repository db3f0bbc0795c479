//! `lockmacro who`, `lockmacro path` (and `lockmacro list`): what the runtime knows about a lock,
//! with what `/proc` adds about its holders (mode, start time, command line).

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use lockmacro_runtime::Location;
use serde_json::{json, Value};

use crate::fail::Fail;
use crate::time;
use crate::{PathArgs, WhoArgs};

pub(crate) fn path(args: PathArgs) -> Result<i32, Fail> {
    let lock = args.place.lock(args.name.as_deref())?;
    let location = lock.location();
    if args.json {
        let out = json!({
            "name": lock.name(),
            "path": location.path().map(lossy),
            "location": location.to_string(),
        });
        println!("{out}");
    } else {
        println!("{location}");
    }
    Ok(0)
}

/// Shared or exclusive, as the kernel's lock table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Exclusive,
    Shared,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }
}

/// Where a holder's "since" comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The holder process's start time (`/proc/PID/stat`): it has held the lock since at most
    /// then (a `lockmacro run` takes it right after starting, unless it waited).
    ProcessStart,
    /// The lock file's modification time: when a holder last wrote its PID into it.
    FileModified,
}

/// One process holding the lock.
#[derive(Debug)]
struct Holder {
    pid: u32,
    since: Option<(u64, Source)>,
    command: Option<Vec<String>>,
}

impl Holder {
    fn of(pid: u32, file: Option<&Path>) -> Holder {
        let since = process_start(pid)
            .map(|t| (t, Source::ProcessStart))
            .or_else(|| {
                let modified = fs::metadata(file?).ok()?.modified().ok()?;
                Some((time::unix_seconds(modified), Source::FileModified))
            });
        Holder {
            pid,
            since,
            command: command_line(pid),
        }
    }

    fn json(&self) -> Value {
        json!({
            "pid": self.pid,
            "since": self.since.map(|(t, _)| t),
            "since_utc": self.since.map(|(t, _)| time::utc(t)),
            "since_source": self.since.map(|(_, source)| match source {
                Source::ProcessStart => "process_start",
                Source::FileModified => "lock_file_mtime",
            }),
            "command": self.command,
        })
    }
}

pub(crate) fn who(args: WhoArgs) -> Result<i32, Fail> {
    let lock = args.place.lock(args.name.as_deref())?;
    let holder = lock.holder().map_err(|e| Fail::lock(&e))?;
    let location = lock.location();
    let file = location.path();
    let (mode, pids) = match (file, holder) {
        (Some(file), Some(pid)) => flock_holders(file, pid),
        (_, Some(pid)) => (None, vec![pid]),
        (_, None) => (None, Vec::new()),
    };
    let holders: Vec<Holder> = pids.iter().map(|&pid| Holder::of(pid, file)).collect();
    if args.json {
        let out = json!({
            "name": lock.name(),
            "location": location.to_string(),
            "path": file.map(lossy),
            "held": holder.is_some(),
            "pid": holder,
            "mode": mode.map(Mode::as_str),
            "holders": holders.iter().map(Holder::json).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        print_who(lock.name(), &location, mode, &holders);
    }
    Ok(if holder.is_some() { 0 } else { 1 })
}

fn print_who(name: &str, location: &Location, mode: Option<Mode>, holders: &[Holder]) {
    let pids: Vec<String> = holders.iter().map(|h| h.pid.to_string()).collect();
    let mode = mode.map_or(String::new(), |m| format!(" ({})", m.as_str()));
    match (pids.len(), location) {
        (0, Location::File(_)) => println!("lock `{name}` is free ({location})"),
        (0, _) => println!(
            "lock `{name}` is not held by a process on this host ({location}; a holder on \
             another host is not shown)"
        ),
        (1, _) => println!("lock `{name}` is held by pid {}{mode}", pids[0]),
        _ => println!("lock `{name}` is held by pids {}{mode}", pids.join(", ")),
    }
    if holders.is_empty() {
        return;
    }
    println!("  where:     {location}");
    let now = SystemTime::now();
    for holder in holders {
        println!("  pid {}:", holder.pid);
        if let Some((since, source)) = holder.since {
            let source = match source {
                Source::ProcessStart => {
                    format!("the holder's start time, /proc/{}/stat", holder.pid)
                }
                Source::FileModified => "the lock file's modification time".to_owned(),
            };
            println!(
                "    since:   {}, {} ago ({source})",
                time::utc(since),
                time::ago(since, now)
            );
        }
        if let Some(command) = &holder.command {
            println!("    command: {}", shell_words(command));
        }
    }
}

/// `lockmacro list`: the locks of a directory (`lockmacro_runtime::inspect`: one entry per
/// lock, companions such as `.gate` left out, a slots lock as one entry) and their holders.
pub(crate) fn list(args: crate::ListArgs) -> Result<i32, Fail> {
    use lockmacro_runtime::Lock;
    let dir = match args.dir {
        Some(dir) => std::path::absolute(&dir).unwrap_or(dir),
        None => {
            // The directory a named lock would use ($LOCKMACRO_DIR, the default, or --system).
            let probe = Lock::new("lockmacro-list");
            let probe = if args.system { probe.system() } else { probe };
            probe
                .path()
                .parent()
                .map_or_else(lockmacro_runtime::default_dir, Path::to_path_buf)
        }
    };
    // A directory nobody has used yet holds no locks: not an error.
    let entries = if fs::symlink_metadata(&dir).is_err() {
        Vec::new()
    } else {
        lockmacro_runtime::inspect(&dir).map_err(|e| Fail::lock(&e))?
    };
    if args.json {
        let out: Vec<Value> = entries.iter().map(entry_json).collect();
        println!("{}", Value::Array(out));
        return Ok(0);
    }
    if entries.is_empty() {
        println!("{}: no locks", dir.display());
        return Ok(0);
    }
    println!("{}:", dir.display());
    let width = entries
        .iter()
        .map(|e| label(e).chars().count())
        .max()
        .unwrap_or(0);
    for entry in &entries {
        let pids: Vec<String> = entry.holders.iter().map(u32::to_string).collect();
        let status = match (pids.len(), entry_mode(entry)) {
            (0, _) => "free".to_owned(),
            (1, mode) => format!("held by pid {} ({mode})", pids[0]),
            (_, mode) => format!("held by pids {} ({mode})", pids.join(", ")),
        };
        println!("  {:<width$}  {status}", label(entry));
        let mut seen = Vec::new();
        for &pid in &entry.holders {
            if seen.contains(&pid) {
                continue; // a process holding two slots
            }
            seen.push(pid);
            let command = command_line(pid).map_or_else(|| "?".to_owned(), |c| shell_words(&c));
            println!("    pid {pid}: {command}");
        }
    }
    Ok(0)
}

/// What `list` calls a lock: its recorded name, else its file's name.
fn label(entry: &lockmacro_runtime::Entry) -> String {
    match &entry.name {
        Some(name) => name.clone(),
        None => entry
            .path
            .file_name()
            .map_or_else(|| lossy(&entry.path), |n| n.to_string_lossy().into_owned()),
    }
}

/// `exclusive`, `shared`, or `slots` (a `Lock::slots` lock, whose holders each have one).
fn entry_mode(entry: &lockmacro_runtime::Entry) -> &'static str {
    if entry.slots > 0 {
        "slots"
    } else if entry.shared {
        Mode::Shared.as_str()
    } else {
        Mode::Exclusive.as_str()
    }
}

fn entry_json(entry: &lockmacro_runtime::Entry) -> Value {
    let held = !entry.holders.is_empty();
    let holders: Vec<Value> = entry
        .holders
        .iter()
        .map(|&pid| Holder::of(pid, Some(&entry.path)).json())
        .collect();
    json!({
        "name": entry.name,
        "path": lossy(&entry.path),
        "held": held,
        "mode": held.then(|| entry_mode(entry)),
        "slots": (entry.slots > 0).then_some(entry.slots),
        "recorded_pid": entry.recorded_pid,
        "holders": holders,
    })
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The command line, with the words that need it quoted for a POSIX shell.
fn shell_words(words: &[String]) -> String {
    let quote = |word: &String| {
        let plain = !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
        if plain {
            word.clone()
        } else {
            format!("'{}'", word.replace('\'', r"'\''"))
        }
    };
    words.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// The process's command line, from `/proc/PID/cmdline` (`None`: gone, a kernel thread, or no
/// `/proc` here).
fn command_line(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let words = match words.split_last() {
        Some((last, rest)) if last.is_empty() => rest.to_vec(),
        _ => words,
    };
    (!words.is_empty()).then_some(words)
}

/// When the process started, in seconds since the epoch: its start time in clock ticks after
/// boot (field 22 of `/proc/PID/stat`) plus the boot time (`btime` in `/proc/stat`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + ticks / crate::sys::clock_ticks()?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn process_start(_pid: u32) -> Option<u64> {
    None
}

/// The mode and PIDs of the flock(2) holders of `file`, from the kernel's lock table
/// (`/proc/locks`), `pid` (the runtime's answer) first. Without a table, just `pid`.
fn flock_holders(file: &Path, pid: u32) -> (Option<Mode>, Vec<u32>) {
    let table = fs::read_to_string("/proc/locks").unwrap_or_default();
    let (mode, mut pids) = match fs::metadata(file) {
        Ok(meta) => holders_in(&table, &meta, pid),
        Err(_) => (None, Vec::new()),
    };
    pids.retain(|&p| p != pid);
    pids.sort_unstable();
    pids.dedup();
    pids.insert(0, pid);
    (mode, pids)
}

/// The holders of the file `meta` describes in a `/proc/locks` text. On Btrfs the table's device
/// is the superblock's, not `stat`'s: then a line counts when its inode matches and the runtime's
/// holder `pid` is among those lines.
fn holders_in(table: &str, meta: &fs::Metadata, pid: u32) -> (Option<Mode>, Vec<u32>) {
    use std::os::unix::fs::MetadataExt;
    let dev = meta.dev();
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    // "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"; waiters have "->" after the number.
    let lines: Vec<(bool, Mode, u32)> = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) != Some(&"FLOCK") {
                return None;
            }
            let mode = match *fields.get(3)? {
                "WRITE" => Mode::Exclusive,
                "READ" => Mode::Shared,
                _ => return None,
            };
            let holder: u32 = fields.get(4)?.parse().ok()?;
            let mut place = fields.get(5)?.split(':');
            let maj = u64::from_str_radix(place.next()?, 16).ok()?;
            let min = u64::from_str_radix(place.next()?, 16).ok()?;
            let ino: u64 = place.next()?.parse().ok()?;
            (ino == meta.ino()).then_some((maj == major && min == minor, mode, holder))
        })
        .collect();
    let same_device: Vec<_> = lines.iter().filter(|(same, ..)| *same).collect();
    let chosen: Vec<_> = if !same_device.is_empty() {
        same_device
    } else if lines.iter().any(|&(_, _, p)| p == pid) {
        lines.iter().collect()
    } else {
        Vec::new()
    };
    let mode = if chosen.iter().any(|(_, m, _)| *m == Mode::Exclusive) {
        Some(Mode::Exclusive)
    } else if chosen.is_empty() {
        None
    } else {
        Some(Mode::Shared)
    };
    (mode, chosen.iter().map(|&&(_, _, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        let words = |w: &[&str]| shell_words(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            words(&["lockmacro", "run", "a", "--", "x.sh"]),
            "lockmacro run a -- x.sh"
        );
        assert_eq!(words(&["sh", "-c", "echo it's"]), r"sh -c 'echo it'\''s'");
        assert_eq!(words(&[""]), "''");
    }

    #[test]
    fn lock_table_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.lock");
        fs::write(&file, "").unwrap();
        let meta = fs::metadata(&file).unwrap();
        use std::os::unix::fs::MetadataExt;
        let dev = meta.dev();
        let (maj, min) = (
            ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff),
            ((dev >> 12) & 0xffff_ff00) | (dev & 0xff),
        );
        let ino = meta.ino();
        let table = format!(
            "1: FLOCK  ADVISORY  READ  10 {maj:02x}:{min:02x}:{ino} 0 EOF\n\
             1: -> FLOCK  ADVISORY  WRITE 11 {maj:02x}:{min:02x}:{ino} 0 EOF\n\
             2: FLOCK  ADVISORY  READ  12 {maj:02x}:{min:02x}:{ino} 0 EOF\n\
             3: POSIX  ADVISORY  WRITE 13 {maj:02x}:{min:02x}:{ino} 0 EOF\n\
             4: FLOCK  ADVISORY  WRITE 14 {maj:02x}:{min:02x}:{} 0 EOF\n",
            ino + 1
        );
        assert_eq!(
            holders_in(&table, &meta, 12),
            (Some(Mode::Shared), vec![10, 12])
        );
        // Btrfs: another device number, recognised through the runtime's holder.
        let other = format!("1: FLOCK  ADVISORY  WRITE 20 00:99:{ino} 0 EOF\n");
        assert_eq!(
            holders_in(&other, &meta, 20),
            (Some(Mode::Exclusive), vec![20])
        );
        assert_eq!(holders_in(&other, &meta, 21), (None, vec![]));
    }

    #[test]
    fn this_process_started_before_now() {
        let Some(start) = process_start(std::process::id()) else {
            return; // no /proc here
        };
        let now = time::unix_seconds(SystemTime::now());
        assert!(start <= now && now - start < 3600, "{start} vs {now}");
        let command = command_line(std::process::id()).unwrap();
        assert!(!command.is_empty());
    }
}
