//! What an exclusive file lock records about its acquisitions when asked ([`Lock::fencing`],
//! [`Lock::once_per`]): a fencing counter and the time of the last start, kept in a file beside
//! the lock file (`<lock file>.state`) and read and written only by the holder of the exclusive
//! lock, so every holder sees the one before it.
//!
//! A separate file, not the lock file: `cleanup` removes the lock file at every release (a
//! counter kept there would start again from 1), and every acquisition rewrites the lock file's
//! PID line. The state file is opened by the same rules as a lock file (in the checked
//! directory, no symlink, a regular file with one link owned by us or root) and never removed.
//! Times are the machine's wall clock in milliseconds since the Unix epoch: one clock, since
//! every holder of a file lock runs on the machine that has the file.
//!
//! [`Lock::fencing`]: crate::Lock::fencing
//! [`Lock::once_per`]: crate::Lock::once_per

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::dir::{self, Kind};
use super::os;
use crate::error::{Error, Location};
use crate::request::Record;

/// The suffix of the state file's name.
const SUFFIX: &str = ".state";

/// Where the lock is, as the state needs it.
pub(crate) struct Place<'a> {
    pub(crate) name: &'a str,
    pub(crate) dir: &'a Path,
    pub(crate) kind: Kind,
    pub(crate) path: &'a Path,
}

/// Under the exclusive lock: refuses a start within `record.period` of the last one
/// ([`Error::TooSoon`]), else records this start and returns its fencing token (the previous
/// one plus 1; the first is 1).
pub(crate) fn record(place: &Place<'_>, record: Record) -> Result<u64, Error> {
    let state_path = {
        let mut name = place.path.file_name().unwrap_or_default().to_owned();
        name.push(SUFFIX);
        place.path.with_file_name(name)
    };
    let io_error = |action, e| Error::io(place.name, &state_path, action, e);
    let file = open(place, &state_path).map_err(|e| io_error("open the state file of", e))?;
    let (token, last) = read(&file).map_err(|e| io_error("read the state file of", e))?;
    let now = now_ms();
    if let (Some(period), Some(last)) = (record.period, last) {
        // A start in the future (the clock was set back) counts as just now.
        let since = Duration::from_millis(now.saturating_sub(last));
        if since < period {
            return Err(Error::TooSoon {
                name: place.name.to_owned(),
                at: Location::File(place.path.to_owned()),
                since,
                period,
            });
        }
    }
    let token = token + 1;
    let text = format!("{token} {now}\n");
    write(&file, text.as_bytes()).map_err(|e| io_error("write the state file of", e))?;
    Ok(token)
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(unix)]
fn open(place: &Place<'_>, state_path: &Path) -> io::Result<File> {
    let dir = dir::open(place.name, place.dir, place.kind)
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
    let name = state_path.file_name().unwrap_or_default();
    let file = os::open_at(&dir.fd, name, dir.file_mode)?;
    match os::own_writable(&file) {
        Ok(()) => Ok(file),
        Err(reason) => Err(io::Error::new(io::ErrorKind::PermissionDenied, reason)),
    }
}

#[cfg(not(unix))]
fn open(_place: &Place<'_>, _state_path: &Path) -> io::Result<File> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "fencing tokens and once_per need a Unix system",
    ))
}

/// The last token (0 if none yet) and the last start, if any.
fn read(file: &File) -> io::Result<(u64, Option<u64>)> {
    let mut buf = [0u8; 64];
    let n = os::read_at(file, &mut buf, 0)?;
    let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
    let mut fields = text.split_whitespace();
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, format!("unreadable: {text:?}"));
    match (fields.next(), fields.next()) {
        (None, _) => Ok((0, None)),
        (Some(token), Some(start)) => Ok((
            token.parse().map_err(|_| malformed())?,
            Some(start.parse().map_err(|_| malformed())?),
        )),
        (Some(_), None) => Err(malformed()),
    }
}

fn write(file: &File, text: &[u8]) -> io::Result<()> {
    os::write_at(file, text, 0)?;
    file.set_len(text.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back() {
        let dir = std::env::temp_dir().join(format!("lockmacro-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        assert_eq!(read(&file).unwrap(), (0, None));
        write(&file, b"41 1700000000000\n").unwrap();
        assert_eq!(read(&file).unwrap(), (41, Some(1_700_000_000_000)));
        write(&file, b"nonsense").unwrap();
        assert!(read(&file).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
