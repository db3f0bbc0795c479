//! Where lock files live, and checking that the directory is safe.
//!
//! The default directory must be the same for the same user in every environment (cron, a login
//! shell, `su`, a systemd service): if two runs of one program picked different directories they
//! would both run, which is the bug a lock exists to prevent. So it depends on no environment
//! variable: on Linux and other Unix systems it is `/run/lock/lockmacro-<uid>` when `/run/lock` is
//! a world-writable sticky directory (Debian, Ubuntu, Arch: a tmpfs that is neither affected by
//! systemd's `PrivateTmp=` nor aged by temp cleaners), otherwise `/tmp/lockmacro-<uid>`.
//!
//! # The rules, checked at every open of a lock file
//!
//! A directory is never trusted from an earlier check: it can be removed and re-created by
//! somebody else while a program runs. So every time a lock file is opened by name, the
//! directory is opened first (`O_DIRECTORY`), the checks below are made on that descriptor
//! (`fstat`, `fstatfs`), and the file is opened relative to it (`openat`): what was checked is
//! what is used, whatever happens to the path in between.
//!
//! - **The private default directory** (created mode 0700, only its last component): a real
//!   directory (not a symbolic link), owned by the current user, writable by nobody else.
//! - **A shared directory** (`LOCKMACRO_DIR`, `Lock::dir`, `dir = "..."`): chosen by the user
//!   and possibly shared with other users on purpose. Whoever owns a directory can rename or
//!   remove any file in it, and so let a second holder in; so it must be owned by the current
//!   user or root. If other users may write to it, it must have the sticky bit (like `/tmp` and
//!   `/run/lock`), so that they cannot rename or remove files they do not own.
//!   `LOCKMACRO_DIR` must be an absolute path, and only its last component is created (a typo
//!   would otherwise create an unshared directory); `Lock::dir` creates missing parents.
//! - **The system directory** (`Lock::system`, [`system_dir`]): one directory for every user
//!   of the machine, so the shared rules, and never a symbolic link (whoever could plant one
//!   would choose where everybody's locks go). Only its last component is created, mode 1777
//!   (set explicitly, whatever the umask). Owned by another user than you or root, it is
//!   squatting (that user made it first and could remove anyone's lock file in it): refused
//!   with what to run as root.
//! - **The directory of an exact path** (`Lock::at`): the shared rules; never created (a lock
//!   file shared with other programs is where they expect it, and a typo must not invent one).
//! - **Not a network filesystem** (see `fstype`).
//!
//! The rules for the lock files themselves are in `file::stamp`: a regular file with one link,
//! owned by the current user or root.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::error::Error;

/// The environment variable that replaces the default lock directory. It must be an absolute
/// path; only its last component is created if missing.
///
/// An explicit [`Lock::dir`](crate::Lock::dir) (or `dir = "..."`) still takes precedence.
///
/// ```
/// use std::process::Command;
/// use lockmacro_runtime::DIR_ENV;
///
/// assert_eq!(DIR_ENV, "LOCKMACRO_DIR");
/// // Run a program with its locks in a directory of our choosing (not spawned here).
/// let mut backup = Command::new("backup");
/// backup.env(DIR_ENV, std::env::temp_dir().join("lockmacro-doc-dir-env"));
/// ```
pub const DIR_ENV: &str = "LOCKMACRO_DIR";

/// Which rules a lock directory must meet, and how it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The private default directory.
    Private,
    /// `LOCKMACRO_DIR`: shared rules, absolute, last component only.
    Env,
    /// `Lock::dir`: shared rules, parents created.
    Explicit,
    /// `Lock::system`: shared rules, no symlink, last component created mode 1777.
    System,
    /// The directory of `Lock::at`'s file: shared rules, never created.
    Exact,
}

/// Where a lock file is, as the `Lock`s of one slot spell it.
#[derive(Debug)]
pub(crate) struct Place {
    /// The lock's name, for messages.
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) kind: Kind,
    /// `dir` joined with the file name.
    pub(crate) path: PathBuf,
}

/// Picks the directory for a lock: the explicit one, else `LOCKMACRO_DIR`, else the default.
/// A relative explicit directory is made absolute now, so that a later `chdir` does not move it.
pub(crate) fn resolve(explicit: Option<PathBuf>) -> (PathBuf, Kind) {
    if let Some(dir) = explicit {
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        return (dir, Kind::Explicit);
    }
    match std::env::var_os(DIR_ENV) {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), Kind::Env),
        _ => (default_dir(), Kind::Private),
    }
}

/// The directory of system-wide locks ([`Lock::system`](crate::Lock::system)), the same for
/// every user and every process of the machine: `/run/lock/lockmacro` when `/run/lock` is a
/// world-writable sticky directory, else `/var/lock/lockmacro` when `/var/lock` is one, else
/// `/tmp/lockmacro`. Neither `LOCKMACRO_DIR` nor any other environment variable moves it.
///
/// ```
/// let dir = lockmacro_runtime::system_dir();
/// assert!(dir.is_absolute());
/// assert!(dir.ends_with("lockmacro"));
/// ```
pub fn system_dir() -> PathBuf {
    if let Some(dir) = crate::hooks::system_dir() {
        return dir;
    }
    imp::system_dir()
}

/// The default lock directory for the current user on this machine.
///
/// ```
/// let dir = lockmacro_runtime::default_dir();
/// assert!(dir.is_absolute());
/// ```
pub fn default_dir() -> PathBuf {
    // Computed once; no lock is taken (two threads may both compute it), so that a child forked
    // while another thread computes it cannot wait forever.
    static DEFAULT: AtomicPtr<PathBuf> = AtomicPtr::new(std::ptr::null_mut());
    let known = DEFAULT.load(Ordering::Acquire);
    if !known.is_null() {
        // SAFETY: published pointers come from `Box::leak` below and are never freed.
        return unsafe { &*known }.clone();
    }
    let dir = imp::default_dir();
    let leaked: *mut PathBuf = Box::leak(Box::new(dir.clone()));
    if DEFAULT
        .compare_exchange(
            std::ptr::null_mut(),
            leaked,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // SAFETY: ours lost the race and was never published.
        drop(unsafe { Box::from_raw(leaked) });
    }
    dir
}

/// The lock directory, opened and checked (see the module docs).
#[derive(Debug)]
pub(crate) struct Opened {
    #[cfg(unix)]
    pub(crate) fd: rustix::fd::OwnedFd,
    /// Whether repeated acquisitions may trust `fstat` alone (see `file::Memo`).
    pub(crate) memos: bool,
    /// The mode for new lock files: 0600 in the private directory (nobody else can reach it
    /// anyway), 0644 in a shared one, so that other users can open them to lock them.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) file_mode: u32,
}

/// Opens `dir` (creating it if missing) and checks it against the rules of `kind`.
pub(crate) fn open(name: &str, dir: &Path, kind: Kind) -> Result<Opened, Error> {
    imp::open(name, dir, kind)
}

fn unsafe_dir(name: &str, dir: &Path, reason: String) -> Error {
    Error::UnsafeDir {
        name: name.to_owned(),
        path: dir.to_owned(),
        reason,
    }
}

#[cfg(unix)]
mod imp {
    use std::fs::DirBuilder;
    use std::io::ErrorKind;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    use rustix::fd::OwnedFd;
    use rustix::fs::{Mode, OFlags};

    use super::{unsafe_dir, Kind, Opened};
    use crate::error::Error;

    /// World-writable with the sticky bit: any user may create their own entry there.
    fn open_to_all(dir: &Path) -> bool {
        std::fs::metadata(dir)
            .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o1777 == 0o1777)
    }

    pub(super) fn default_dir() -> PathBuf {
        let uid = rustix::process::geteuid().as_raw();
        let run_lock = Path::new("/run/lock");
        let base = if open_to_all(run_lock) {
            run_lock
        } else {
            Path::new("/tmp")
        };
        base.join(format!("lockmacro-{uid}"))
    }

    pub(super) fn system_dir() -> PathBuf {
        let base = ["/run/lock", "/var/lock"]
            .map(Path::new)
            .into_iter()
            .find(|base| open_to_all(base))
            .unwrap_or(Path::new("/tmp"));
        base.join("lockmacro")
    }

    pub(super) fn open(name: &str, dir: &Path, kind: Kind) -> Result<Opened, Error> {
        if kind == Kind::Env && !dir.is_absolute() {
            return Err(unsafe_dir(
                name,
                dir,
                format!(
                    "{} must be an absolute path (a relative one would name a different \
                     directory in every working directory)",
                    super::DIR_ENV
                ),
            ));
        }
        let fd = match open_dir(dir, kind) {
            Err(e) if e.kind() == ErrorKind::NotFound && kind == Kind::Exact => {
                return Err(Error::io(
                    name,
                    dir,
                    "open the lock file's directory (`Lock::at` never creates it)",
                    e,
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                create(dir, kind).map_err(|e| Error::io(name, dir, "create lock directory", e))?;
                open_dir(dir, kind)
            }
            other => other,
        };
        let fd = fd.map_err(|e| diagnose(name, dir, kind, e))?;
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| Error::io(name, dir, "inspect lock directory", e.into()))?;
        check(name, dir, kind, st.st_uid, st.st_mode)?;
        let magic = crate::file::fstype::magic_of(&fd);
        crate::file::fstype::check(name, dir, magic)?;
        Ok(Opened {
            fd,
            memos: crate::file::fstype::keeps_change_times(magic),
            file_mode: if kind == Kind::Private { 0o600 } else { 0o644 },
        })
    }

    /// Why `dir` could not be opened: a broken rule if a status call shows one (a directory we
    /// may not even open is often one that is not ours), else the error itself.
    fn diagnose(name: &str, dir: &Path, kind: Kind, e: std::io::Error) -> Error {
        use std::os::unix::fs::MetadataExt;
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() && matches!(kind, Kind::Private | Kind::System) => {
                unsafe_dir(name, dir, "it is a symbolic link".into())
            }
            Ok(m) if m.is_dir() => match check(name, dir, kind, m.uid(), m.mode()) {
                Err(broken) => broken,
                Ok(()) => Error::io(name, dir, "open lock directory", e),
            },
            Ok(m) if !m.file_type().is_symlink() => {
                unsafe_dir(name, dir, "it is not a directory".into())
            }
            _ => Error::io(name, dir, "open lock directory", e),
        }
    }

    fn open_dir(dir: &Path, kind: Kind) -> std::io::Result<OwnedFd> {
        let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if matches!(kind, Kind::Private | Kind::System) {
            flags |= OFlags::NOFOLLOW;
        }
        Ok(rustix::fs::open(dir, flags, Mode::empty())?)
    }

    fn create(dir: &Path, kind: Kind) -> std::io::Result<()> {
        let mut builder = DirBuilder::new();
        builder.mode(0o700).recursive(kind == Kind::Explicit);
        match builder.create(dir) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Ok(()) if kind == Kind::System => {
                // Made 0700 (nobody else can use it half-made), then opened to all users with
                // the sticky bit, through a descriptor of the directory we made (in a sticky
                // parent nobody else can have replaced it), whatever the umask.
                let fd = open_dir(dir, kind)?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o1777))?;
                Ok(())
            }
            other => other,
        }
    }

    /// The rules of the module docs, on what `fstat` of the open directory says.
    // The field types differ between platforms; some of these casts are no-ops on this one.
    #[allow(clippy::unnecessary_cast)]
    fn check(name: &str, dir: &Path, kind: Kind, uid: u32, mode: u32) -> Result<(), Error> {
        let me = rustix::process::geteuid().as_raw();
        let mode = mode as u32 & 0o7777;
        let writable_by_others = mode & 0o022 != 0;
        let reason = if kind == Kind::Private {
            if uid != me {
                Some(format!(
                    "it is owned by uid {uid}, not by the current user (uid {me}); remove it or \
                     set {}",
                    super::DIR_ENV
                ))
            } else if writable_by_others {
                Some(format!(
                    "it is writable by other users (mode {mode:o}); run `chmod 700` on it"
                ))
            } else {
                None
            }
        } else if kind == Kind::System && uid != me && uid != 0 {
            Some(format!(
                "it is owned by uid {uid}, not root: that user made it first and could remove or \
                 replace any lock file in it; as root, remove it and run `install -d -m 1777 -o \
                 root {}` (at boot: a tmpfiles.d line `d {} 1777 root root -`)",
                dir.display(),
                dir.display()
            ))
        } else if uid != me && uid != 0 {
            Some(format!(
                "it is owned by uid {uid}, who could remove or replace any lock file in it; use \
                 a directory owned by you (uid {me}) or root"
            ))
        } else if writable_by_others && mode & 0o1000 == 0 {
            Some(format!(
                "other users can write to it (mode {mode:o}) without the sticky bit, so they \
                 could remove or replace lock files they do not own; run `chmod +t` on it"
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(unsafe_dir(name, dir, reason)),
            None => Ok(()),
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::path::{Path, PathBuf};

    use super::{Kind, Opened};
    use crate::error::Error;

    pub(super) fn default_dir() -> PathBuf {
        // Windows (untested): the per-user temporary directory, which is private to the user.
        std::env::temp_dir().join("lockmacro")
    }

    pub(super) fn system_dir() -> PathBuf {
        // Windows (untested): the machine-wide application data directory.
        PathBuf::from(r"C:\ProgramData\lockmacro")
    }

    pub(super) fn open(name: &str, dir: &Path, _kind: Kind) -> Result<Opened, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(name, dir, "create lock directory", e))?;
        Ok(Opened {
            memos: false,
            file_mode: 0o644,
        })
    }
}
