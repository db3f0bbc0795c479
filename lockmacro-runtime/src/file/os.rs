//! The lock file itself: opening it safely, checking its identity, the PID inside it, and who
//! holds it according to the kernel.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::request::Share;

/// What a lock file holds, written by its owner only: the holder's PID and a newline at
/// [`PID_OFFSET`], then the lock's name and a newline (for listings, see `file::inspect`; a
/// name may itself contain newlines: it runs to the last byte before the final newline).
/// Readers that know only the PID read the first line.
///
/// Where the holder's PID is written. fd-lock's Windows lock covers byte 0 with a mandatory
/// lock, which would stop other processes from reading it, so the PID starts after it there.
#[cfg(unix)]
const PID_OFFSET: u64 = 0;
#[cfg(not(unix))]
const PID_OFFSET: u64 = 1;

/// Opens (creating if missing, with `mode`, see `dir::Opened`) the lock file `name` in the open,
/// checked directory `dir`, without following a symlink, without truncating, close-on-exec. Read-write if we may,
/// else read-only (flock works on a read-only descriptor: another user's lock file, created by
/// root in a shared directory, can still be locked; no PID is written then). `O_NONBLOCK` keeps
/// a planted FIFO from hanging the open; anything but a regular file, with one link, owned by
/// us or root, is refused by [`stamp`], whose `fstat` sees all of it anyway.
#[cfg(unix)]
pub(crate) fn open_at(
    dir: &rustix::fd::OwnedFd,
    name: &std::ffi::OsStr,
    mode: u32,
) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};

    let base = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(mode as rustix::fs::RawMode);
    let open = |flags: OFlags| rustix::fs::openat(dir, name, base | flags, mode);
    let opened = match open(OFlags::RDWR | OFlags::CREATE) {
        // Another user's file in a sticky directory (`fs.protected_regular` refuses `O_CREAT`
        // there), or one we may only read: open what exists, read-write if we may.
        Err(rustix::io::Errno::ACCESS) => match open(OFlags::RDWR) {
            Err(rustix::io::Errno::ACCESS) => open(OFlags::RDONLY),
            Err(rustix::io::Errno::NOENT) => Err(rustix::io::Errno::ACCESS),
            other => other,
        },
        other => other,
    };
    match opened {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::LOOP) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the lock file is a symbolic link; refusing to follow it",
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(unix))]
pub(crate) fn open(path: &Path) -> io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    require_regular(file)
}

#[cfg(not(unix))]
fn require_regular(file: File) -> io::Result<File> {
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the lock file is not a regular file",
        ))
    }
}

/// Checks a lock file just opened against the rules of [`Seen::trusted`]: `Ok(Err(why))` if it
/// breaks them. With `fix_mode`, a file of our own still empty (just created, or never written)
/// gets exactly that mode, whatever the umask took away (the system directory's files must be
/// readable by all, who lock them through read-only descriptors).
pub(crate) fn trusted(file: &File, fix_mode: Option<u32>) -> io::Result<Result<(), String>> {
    let seen = Seen::of(file)?;
    let mine = match seen.trusted() {
        Ok(mine) => mine,
        Err(why) => return Ok(Err(why)),
    };
    #[cfg(unix)]
    if let (Some(mode), true, 0) = (fix_mode, mine, seen.len) {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o7777 != mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (fix_mode, mine);
    Ok(Ok(()))
}

/// What a status call says about the open lock file: its type, which file it is, how many names
/// it has, its length and its change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    regular: bool,
    dev: u64,
    ino: u64,
    nlink: u64,
    uid: u32,
    len: u64,
    ctime: (i64, i64),
}

impl Seen {
    /// `fstat` of the open file.
    #[cfg(unix)]
    // The field types differ between platforms; some of these casts are no-ops on this one.
    #[allow(clippy::unnecessary_cast)]
    fn of(file: &File) -> io::Result<Seen> {
        let st = rustix::fs::fstat(file)?;
        Ok(Seen {
            regular: rustix::fs::FileType::from_raw_mode(st.st_mode as rustix::fs::RawMode)
                .is_file(),
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            uid: st.st_uid as u32,
            len: st.st_size as u64,
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        })
    }

    /// Windows (untested): std exposes no file identity or link count.
    #[cfg(not(unix))]
    fn of(file: &File) -> io::Result<Seen> {
        Ok(Seen {
            regular: true, // checked when opened
            dev: 0,
            ino: 0,
            nlink: 1,
            uid: 0,
            len: file.metadata()?.len(),
            ctime: (0, 0),
        })
    }

    /// The rules for a lock file, past being a regular file: one link (a second name would be a
    /// hard link planted at the lock path, perhaps to a file that is not ours to write), and owned
    /// by us or root (the owner of a file in a sticky directory may rename or remove it at any
    /// time, letting a second holder in). `Ok(true)` if it is ours, `Ok(false)` if root's (we
    /// lock it but never write it), else why not.
    pub(crate) fn trusted(&self) -> Result<bool, String> {
        if self.nlink > 1 {
            return Err(format!(
                "it has {} links (a hard link to another file?); remove it",
                self.nlink
            ));
        }
        let me = euid();
        if self.uid != me && self.uid != 0 {
            return Err(format!(
                "it is owned by uid {}, who could remove or replace it while we hold it; remove \
                 it, or use a directory only you (uid {me}) or root can write",
                self.uid
            ));
        }
        Ok(self.uid == me)
    }

    /// True if `path` still names this file: it has not been unlinked, and a no-follow `stat` of
    /// the path finds the same device and inode.
    #[cfg(unix)]
    #[allow(clippy::unnecessary_cast)]
    pub(crate) fn named_by(&self, path: &Path) -> io::Result<bool> {
        use rustix::fs::{statat, AtFlags, CWD};
        if self.nlink == 0 {
            return Ok(false);
        }
        match statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(st.st_dev as u64 == self.dev && st.st_ino as u64 == self.ino),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Windows (untested): we can only see that the path exists.
    #[cfg(not(unix))]
    pub(crate) fn named_by(&self, path: &Path) -> io::Result<bool> {
        Ok(path.exists())
    }
}

/// What the previous acquisition through a cached descriptor established, to spare the next one
/// the path lookup (a no-follow `stat`, the costliest step of a repeated acquisition) and the
/// PID read.
///
/// Both are skipped when `fstat` finds the file exactly as seen then (same inode, link count,
/// length and change time) and the last path lookup was less than [`FRESH`] ago. The kernel
/// moves the change time on every rename, link, unlink, write or truncation of the file, so a
/// file that an unlink, a replacement, a rename or another holder touched is caught at once and
/// gets the full check. Left unseen is a rename of
/// a *directory above* the file, which does not touch the file: hence the full check at least
/// every [`FRESH`] (measured on the coarse monotonic clock, so up to one clock tick more), which
/// also bounds the effect of anything odd about file times (a clock stepped back).
///
/// Change times come from the kernel's coarse clock, in ticks of a few milliseconds (or whole
/// seconds on filesystems that keep only seconds), so two changes within one tick can carry the
/// same time; and the kernel skips moving a change time that is ahead of that clock when nobody
/// has looked at it since. A memo is therefore only trusted (`settled`) if the coarse clock had
/// already passed the change time seen, at the granularity of the filesystem's times, when the
/// memo was made: every later change then carries a later time.
///
/// Linux only, and only on local filesystems known to keep exact change times (see
/// `fstype::keeps_change_times`); elsewhere every acquisition makes the full check. (A third
/// party renaming the file while it is held, in the instant between the holder's `fstat` and
/// its clock read, could go unseen for those 10 ms; such a rename defeats any file lock anyway.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Memo {
    pub(crate) seen: Seen,
    /// CLOCK_MONOTONIC_COARSE at the last path lookup.
    looked_up: std::time::Duration,
    /// Any later change will show in the change time.
    settled: bool,
    /// At `seen`, the file held our PID.
    ours: bool,
    /// The file is owned by us (we write our PID into it).
    mine: bool,
}

/// How long a path lookup vouches for a file that nothing has touched since; see [`Memo`].
#[cfg(any(target_os = "linux", target_os = "android"))]
const FRESH: std::time::Duration = std::time::Duration::from_millis(10);

#[cfg(any(target_os = "linux", target_os = "android"))]
mod clock {
    use rustix::time::{clock_gettime, ClockId};

    /// CLOCK_MONOTONIC_COARSE, read through the vDSO (no system call).
    pub(super) fn monotonic() -> std::time::Duration {
        let now = clock_gettime(ClockId::MonotonicCoarse);
        std::time::Duration::new(
            u64::try_from(now.tv_sec).unwrap_or(0),
            u32::try_from(now.tv_nsec).unwrap_or(0),
        )
    }

    /// CLOCK_REALTIME_COARSE, which file times come from, as (seconds, nanoseconds).
    pub(super) fn realtime() -> (i64, i64) {
        let now = clock_gettime(ClockId::RealtimeCoarse);
        (now.tv_sec, now.tv_nsec)
    }
}

/// True if every change made after `now` (the coarse clock) will carry a change time other than
/// `time`. A time without nanoseconds is taken to come from a filesystem that keeps whole
/// seconds: then `now` must be in a later second. A time at or past 2038-01-19 may be one that
/// a filesystem with 32-bit times clamps every later change to, so it never counts as passed.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn passed(time: (i64, i64), now: (i64, i64)) -> bool {
    if time.0 >= i64::from(i32::MAX) {
        false
    } else if time.1 == 0 {
        time.0 < now.0
    } else {
        time < now
    }
}

impl Memo {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn new(seen: Seen, looked_up: Option<std::time::Duration>, ours: bool, mine: bool) -> Memo {
        Memo {
            seen,
            looked_up: looked_up.unwrap_or_else(clock::monotonic),
            settled: passed(seen.ctime, clock::realtime()),
            ours,
            mine,
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn fresh(&self) -> bool {
        clock::monotonic().saturating_sub(self.looked_up) < FRESH
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn new(seen: Seen, _looked_up: Option<std::time::Duration>, ours: bool, mine: bool) -> Memo {
        Memo {
            seen,
            looked_up: std::time::Duration::ZERO,
            settled: false,
            ours,
            mine,
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn fresh(&self) -> bool {
        false
    }
}

/// The effective user ID (0 where there is none).
fn euid() -> u32 {
    #[cfg(unix)]
    {
        rustix::process::geteuid().as_raw()
    }
    #[cfg(not(unix))]
    {
        0
    }
}

impl Memo {
    /// Whether this memo can spare the next acquisition its path lookup, if `fstat` then shows
    /// the file untouched (see [`stamp`]).
    pub(crate) fn may_vouch(&self) -> bool {
        self.settled && self.fresh()
    }
}

/// The outcome of [`stamp`].
#[derive(Debug)]
pub(crate) enum Stamped {
    /// The path no longer names the file we locked.
    Stale,
    /// Ours, with our PID recorded; what to remember for the next acquisition.
    Held(Option<Memo>),
    /// The file breaks the rules for lock files (see [`Seen::trusted`]): why.
    Untrusted(String),
}

/// A file of ours that we may write (the lock file's rules, and owned by us): why not if not.
pub(crate) fn own_writable(file: &File) -> Result<(), String> {
    let seen = Seen::of(file).map_err(|e| e.to_string())?;
    if !seen.regular {
        return Err("it is not a regular file".to_owned());
    }
    match seen.trusted()? {
        true => Ok(()),
        false => Err("it is root's, and only its owner may write it".to_owned()),
    }
}

/// Whether `stamp` checks that the path still names the file (only a test hook says `Trust`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    Check,
    Trust,
}

/// After locking: checks that `path` still names the open `file` (same device and inode, not
/// unlinked) and, if so, records our PID in it. A waiter that was blocked on a file which a
/// `cleanup` holder then unlinked wakes up holding a lock on a dead inode; this check sends it
/// round again. `memo` is what the previous acquisition through this descriptor established, if
/// it may be used (see [`Memo`]). The PID (and the lock's `name`, see [`PID_OFFSET`]) is written
/// first and the length set after, so the file never passes through an empty state (which would
/// force a flush on ext4).
pub(crate) fn stamp(
    file: &File,
    path: &Path,
    identity: Identity,
    pid: u32,
    name: &str,
    memo: Option<Memo>,
) -> io::Result<Stamped> {
    let seen = Seen::of(file)?;
    if !seen.regular {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the lock file is not a regular file",
        ));
    }
    // Untouched since the previous acquisition (which any later change would show), and that
    // acquisition's lookup is recent: skip the lookup and the PID read.
    let vouched = memo.filter(|memo| memo.seen == seen && memo.may_vouch());
    if let Some(memo) = vouched.filter(|memo| memo.ours || !memo.mine) {
        // Nothing to write, and nothing new to remember: the memo stands as it is.
        crate::hooks::vouched();
        return Ok(Stamped::Held(Some(memo)));
    }
    let looked_up = match vouched {
        Some(memo) => {
            crate::hooks::vouched();
            Some(memo.looked_up)
        }
        None if identity == Identity::Check && !seen.named_by(path)? => return Ok(Stamped::Stale),
        None => None,
    };
    // (A vouched file is exactly as trusted before.)
    let mine = match vouched {
        Some(memo) => memo.mine,
        None => match seen.trusted() {
            Ok(mine) => mine,
            Err(reason) => return Ok(Stamped::Untrusted(reason)),
        },
    };
    let mut buf = [0u8; 11];
    let text = pid_line(pid, &mut buf);
    let len = PID_OFFSET + (text.len() + name.len() + 1) as u64;
    let ours = match memo {
        Some(memo) if vouched.is_some() => memo.ours,
        // Changed since it held our PID: most likely another holder wrote theirs.
        Some(memo) if memo.ours && memo.seen != seen => false,
        // Untouched since it held our PID (a settled memo: any write since would show in the
        // change time), though the lookup is due: it still does.
        Some(memo) if memo.ours && memo.seen == seen && memo.settled => true,
        // Read it back: cheaper than rewriting it, which on ext4 journals an mtime update.
        Some(_) => seen.len == len && contains(file, &[text, name.as_bytes(), b"\n"]),
        // A descriptor just opened (a process's first acquisition, most often): the file was
        // last written by another process, with another PID, so reading it back would only
        // cost a system call before the write.
        None => false,
    };
    if !ours && mine {
        // The PID is information, never authority: failing to record it (a full disk, a
        // quota) must not fail the lock, which we hold. Only written into a file of our own.
        // Only a longer previous record needs cutting; a fresh (empty) file already has the
        // length.
        if write_at(file, &record(text, name), PID_OFFSET).is_ok() && seen.len > len {
            let _ = file.set_len(len);
        }
    }
    Ok(Stamped::Held(Some(Memo::new(seen, looked_up, ours, mine))))
}

/// True if the file holds `parts`, one after the other, from the PID's offset on.
fn contains(file: &File, parts: &[&[u8]]) -> bool {
    let mut offset = PID_OFFSET;
    const CHUNK: usize = 64;
    let mut current = [0u8; CHUNK];
    for chunk in parts.iter().flat_map(|part| part.chunks(CHUNK)) {
        let current = &mut current[..chunk.len()];
        if read_at(file, current, offset).ok() != Some(chunk.len()) || current != chunk {
            return false;
        }
        offset += chunk.len() as u64;
    }
    true
}

/// The file's record (see [`PID_OFFSET`]): the PID line `pid_text`, then `name` and a newline.
fn record(pid_text: &[u8], name: &str) -> Vec<u8> {
    let mut record = Vec::with_capacity(pid_text.len() + name.len() + 1);
    record.extend_from_slice(pid_text);
    record.extend_from_slice(name.as_bytes());
    record.push(b'\n');
    record
}

/// The PID and the lock's name recorded in the file, as far as they can be read (see
/// [`PID_OFFSET`]; a file written by a version that recorded no name has none). At most 64 kB
/// is read.
pub(crate) fn read_record(file: &File) -> (Option<u32>, Option<String>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    while len < buf.len() {
        match read_at(file, &mut buf[len..], PID_OFFSET + len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let buf = &buf[..len];
    let (pid, name) = match buf.iter().position(|&b| b == b'\n') {
        Some(end) => (&buf[..end], Some(&buf[end + 1..])),
        None => (buf, None),
    };
    let pid = std::str::from_utf8(pid)
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let name = name
        .and_then(|name| name.strip_suffix(b"\n"))
        .filter(|name| !name.is_empty())
        .and_then(|name| String::from_utf8(name.to_vec()).ok());
    (pid, name)
}

/// `pid` as decimal text and a newline, without allocating (this is on every acquisition).
fn pid_line(mut pid: u32, buf: &mut [u8; 11]) -> &[u8] {
    let mut start = buf.len() - 1;
    buf[start] = b'\n';
    loop {
        start -= 1;
        buf[start] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            return &buf[start..];
        }
    }
}

/// False once `file` has been unlinked (Unix; elsewhere always true).
pub(crate) fn linked(file: &File) -> io::Result<bool> {
    Ok(Seen::of(file)?.nlink > 0)
}

/// True if `path` still names the open `file`; see [`stamp`].
pub(crate) fn still_named(file: &File, path: &Path) -> io::Result<bool> {
    Seen::of(file)?.named_by(path)
}

/// Takes the kernel lock on `file`, blocking until it is free; `EINTR` is retried, never
/// reported (a signal handler installed without `SA_RESTART` must not fail the wait).
pub(crate) fn lock_blocking(file: &File, share: Share) -> io::Result<()> {
    let mut lock = fd_lock::RwLock::new(file);
    loop {
        // The guard is forgotten: see `LockGuard` for how the lock is released.
        let res = if share.is_shared() {
            lock.read().map(std::mem::forget)
        } else {
            lock.write().map(std::mem::forget)
        };
        match res {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Tries to take the kernel lock on `file` without blocking: `Ok(false)` if it is held.
pub(crate) fn try_lock(file: &File, share: Share) -> io::Result<bool> {
    let mut lock = fd_lock::RwLock::new(file);
    loop {
        let res = if share.is_shared() {
            lock.try_read().map(std::mem::forget)
        } else {
            lock.try_write().map(std::mem::forget)
        };
        match res {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Releases the kernel lock but keeps the descriptor open for the next acquisition. Returns
/// false where that is not possible (then closing the descriptor releases it).
pub(crate) fn unlock(file: &File) -> bool {
    #[cfg(unix)]
    {
        rustix::fs::flock(file, rustix::fs::FlockOperation::Unlock).is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        false
    }
}

/// The PID recorded in the file, if it parses. Information, never authority: it may be stale.
pub(crate) fn read_pid(file: &File) -> Option<u32> {
    let mut buf = [0u8; 24];
    let n = read_at(file, &mut buf, PID_OFFSET).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(unix)]
pub(crate) fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}
#[cfg(unix)]
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}
#[cfg(not(unix))]
pub(crate) fn write_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}
#[cfg(not(unix))]
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// Who holds a lock on `file` according to the kernel, as `Some(pids)` (empty: nobody), or
/// `None` where the kernel cannot be asked. On Linux `/proc/locks` lists every flock holder with
/// its PID, without us having to take (and so disturb) the lock.
///
/// A line names the file by `MAJOR:MINOR:INODE` of its *superblock's* device. That is `fstat`'s
/// `st_dev` on most filesystems, but not on Btrfs (every subvolume, the top level included, has
/// a device of its own) nor on an overlayfs over several filesystems. So when no line names our
/// `st_dev` but one has our inode under another device, the superblock's device is found in
/// `/proc/self/mountinfo` for the file's mount (which prints the same number), and since on
/// Btrfs that device and inode can name files in several subvolumes, a candidate that has no
/// descriptor of our file open (seen through `/proc/PID/fd`) is dropped. Candidates we cannot
/// inspect (another user's, or exited) are kept: a holder is information, never authority.
#[cfg(target_os = "linux")]
pub(crate) fn kernel_holders(file: &File) -> Option<Vec<u32>> {
    Some(
        kernel_holds(file)?
            .into_iter()
            .map(|(pid, _)| pid)
            .collect(),
    )
}

/// [`kernel_holders`], with how each holds the lock.
#[cfg(target_os = "linux")]
pub(crate) fn kernel_holds(file: &File) -> Option<Vec<(u32, Share)>> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let (dev, ino) = (meta.dev(), meta.ino());
    let id = |major: u32, minor: u32| format!("{major:02x}:{minor:02x}:{ino}");
    let table = read_proc_locks()?;
    // A line: `1: FLOCK  ADVISORY  WRITE 4242 00:1b:1234 0 EOF`; waiters have `->` after `1:`.
    let flocks = || {
        table.lines().filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            if fields.next()? != "FLOCK" {
                return None;
            }
            let mut fields = fields.skip(1);
            let share = match fields.next()? {
                "READ" => Share::Shared,
                _ => Share::Exclusive,
            };
            Some((fields.next()?, fields.next()?, share))
        })
    };
    let ours = id(rustix::fs::major(dev), rustix::fs::minor(dev));
    let ino_text = ino.to_string();
    let elsewhere = !flocks().any(|(_, id, _)| id == ours)
        && flocks().any(|(_, id, _)| id.rsplit(':').next() == Some(ino_text.as_str()));
    let want = if elsewhere {
        let (major, minor) = superblock_device(file)?;
        id(major, minor)
    } else {
        ours
    };
    let pids = flocks()
        .filter(|(_, id, _)| *id == want)
        .filter_map(|(pid, _, share)| Some((pid.parse().ok()?, share)));
    if !elsewhere {
        return Some(pids.collect());
    }
    let has_open =
        |pid: u32| -> Option<bool> {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
            Some(fds.flatten().any(|fd| {
                std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
            }))
        };
    Some(
        pids.filter(|(pid, _)| has_open(*pid) != Some(false))
            .collect(),
    )
}

/// The device of the superblock of `file`'s filesystem, as `/proc/locks` prints it: the
/// `MAJOR:MINOR` of its mount in `/proc/self/mountinfo` (mount ID from `statx`, Linux 5.8, or
/// from `/proc/self/fdinfo`, Linux 3.15).
#[cfg(target_os = "linux")]
fn superblock_device(file: &File) -> Option<(u32, u32)> {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    use std::os::fd::AsRawFd;
    let sx = statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID).ok()?;
    let mount = if sx.stx_mask & StatxFlags::MNT_ID.bits() != 0 {
        sx.stx_mnt_id
    } else {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd()));
        info.ok()?
            .lines()
            .find_map(|l| l.strip_prefix("mnt_id:")?.trim().parse().ok())?
    };
    let mount = mount.to_string();
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // `46 27 0:40 / /mnt/x rw,relatime - btrfs /dev/loop0 rw`: ID PARENT MAJOR:MINOR ...
    table.lines().find_map(|line| {
        let mut fields = line.split(' ');
        (fields.next()? == mount).then_some(())?;
        let (major, minor) = fields.nth(1)?.split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

/// `/proc/locks`, whole. The kernel produces it about a page per `read` and finds its place
/// again by position, so an entry that disappears between two reads can make another be
/// skipped: a holder could be missed. So it is read whole twice when it spans more than one
/// read, and the two are joined (a line skipped in one read is in the other, unless the table
/// shifted exactly there both times).
#[cfg(target_os = "linux")]
fn read_proc_locks() -> Option<String> {
    use std::io::Read;
    let read = || -> Option<(String, bool)> {
        let mut file = File::open("/proc/locks").ok()?;
        let mut text = Vec::with_capacity(8192);
        let mut reads = 0;
        loop {
            let start = text.len();
            text.resize(start + 65536, 0);
            let n = file.read(&mut text[start..]).ok()?;
            text.truncate(start + n);
            if n == 0 {
                break;
            }
            reads += 1;
        }
        Some((String::from_utf8(text).ok()?, reads > 1))
    };
    let (first, paged) = read()?;
    if !paged {
        return Some(first);
    }
    let (second, _) = read()?;
    Some(first + &second)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn kernel_holders(_file: &File) -> Option<Vec<u32>> {
    None
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn kernel_holds(_file: &File) -> Option<Vec<(u32, Share)>> {
    None
}

/// Best knowledge of who holds a lock that is taken.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Holder {
    /// The PID in the file if the kernel confirms it holds the lock, else one of the kernel's
    /// holders, else the file's PID.
    pub(crate) pid: Option<u32>,
    /// The kernel names holders, none of which recorded its PID in the file: a locker other
    /// than lockmacro (`flock(1)`, a script), or one that could not write the file.
    pub(crate) foreign: bool,
}

pub(crate) fn holder(file: &File) -> Holder {
    let recorded = read_pid(file);
    match kernel_holders(file) {
        Some(pids) if pids.is_empty() => Holder {
            pid: recorded,
            foreign: false,
        },
        Some(pids) => match recorded {
            Some(pid) if pids.contains(&pid) => Holder {
                pid: Some(pid),
                foreign: false,
            },
            _ => Holder {
                pid: pids.into_iter().min(),
                foreign: true,
            },
        },
        None => Holder {
            pid: recorded,
            foreign: false,
        },
    }
}

pub(crate) fn holder_pid(file: &File) -> Option<u32> {
    holder(file).pid
}

/// Writes `pid` as the holder's, and the lock's `name` (a new file that nobody else can have
/// yet).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn write_record(file: &File, pid: u32, name: &str) {
    let mut buf = [0u8; 11];
    let _ = write_at(file, &record(pid_line(pid, &mut buf), name), PID_OFFSET);
}

#[cfg(test)]
mod tests {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn change_times_pass_at_their_granularity() {
        use super::passed;
        assert!(passed((100, 5), (100, 6)));
        assert!(!passed((100, 5), (100, 5)));
        // A fine-grained time ahead of the coarse clock.
        assert!(!passed((100, 7), (100, 5)));
        // Whole seconds (no nanoseconds): a change later in the same second keeps the time.
        assert!(!passed((100, 0), (100, 999_999_999)));
        assert!(passed((100, 0), (101, 0)));
        // 32-bit times clamp every change past 2038-01-19 to the same time.
        let max = i64::from(i32::MAX);
        assert!(!passed((max, 0), (max + 100, 0)));
    }

    #[test]
    fn pid_lines() {
        let mut buf = [0u8; 11];
        for pid in [0, 7, 10, 4242, u32::MAX] {
            assert_eq!(
                super::pid_line(pid, &mut buf),
                format!("{pid}\n").as_bytes()
            );
        }
    }
}
