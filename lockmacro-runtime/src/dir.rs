//! Where lock files live, and checking that the directory is safe.
//!
//! The default directory must be the same for the same user in every environment (cron, a login
//! shell, `su`, a systemd service): if two runs of one program picked different directories they
//! would both run, which is the bug a lock exists to prevent. So it depends on no environment
//! variable: on Linux and other Unix systems it is `/run/lock/lockmacro-<uid>` when `/run/lock` is
//! a world-writable sticky directory (Debian, Ubuntu, Arch: a tmpfs that is neither affected by
//! systemd's `PrivateTmp=` nor aged by temp cleaners), otherwise `/tmp/lockmacro-<uid>`. Because
//! those parents are shared with other users, the per-user directory is created with mode 0700
//! and then verified: a real directory (not a symlink), owned by us, not writable by anyone else.
//! Anything else is refused with [`Error::UnsafeDir`].
//!
//! `LOCKMACRO_DIR` replaces the default, and `Lock::dir` / `dir = "..."` replace both. Such a
//! directory is the user's choice and may be shared on purpose (for example `/run/lock` for
//! machine-wide exclusion across users), so it is created if missing (mode 0700) but not
//! required to be private; lock files in it are still opened without following symlinks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::Error;

/// The environment variable that replaces the default lock directory.
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

/// Picks the directory for a lock: the explicit one, else `LOCKMACRO_DIR`, else the default.
/// Returns the directory and whether it is the private default (which gets the strict checks).
pub(crate) fn resolve(explicit: Option<PathBuf>) -> (PathBuf, bool) {
    if let Some(dir) = explicit {
        return (dir, false);
    }
    match std::env::var_os(DIR_ENV) {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), false),
        _ => (default_dir(), true),
    }
}

/// The default lock directory for the current user on this machine.
///
/// ```
/// let dir = lockmacro_runtime::default_dir();
/// assert!(dir.is_absolute());
/// ```
pub fn default_dir() -> PathBuf {
    static DEFAULT: OnceLock<PathBuf> = OnceLock::new();
    DEFAULT.get_or_init(imp::default_dir).clone()
}

/// Directories already checked by this process.
static READY: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();

/// Makes sure `dir` exists and is safe, once per process and directory (again after [`forget`],
/// which the opener calls when a lock file could not be created because the directory is gone).
pub(crate) fn ensure(name: &str, dir: &Path, private: bool) -> Result<(), Error> {
    let ready = READY.get_or_init(Default::default);
    if ready.lock().is_ok_and(|set| set.contains(dir)) {
        return Ok(());
    }
    imp::prepare(name, dir, private)?;
    crate::fstype::check(name, dir)?;
    if let Ok(mut set) = ready.lock() {
        set.insert(dir.to_owned());
    }
    Ok(())
}

/// Forgets that `dir` was checked, so the next [`ensure`] checks (and creates) it again.
pub(crate) fn forget(dir: &Path) {
    if let Some(Ok(mut set)) = READY.get().map(Mutex::lock) {
        set.remove(dir);
    }
}

#[cfg(unix)]
mod imp {
    use std::fs::DirBuilder;
    use std::io::ErrorKind;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    use crate::error::Error;

    pub(super) fn default_dir() -> PathBuf {
        let uid = rustix::process::geteuid().as_raw();
        let run_lock = Path::new("/run/lock");
        let base = match std::fs::metadata(run_lock) {
            // World-writable with the sticky bit: any user may create their own entry there.
            Ok(m) if m.is_dir() && m.permissions().mode() & 0o1777 == 0o1777 => run_lock,
            _ => Path::new("/tmp"),
        };
        base.join(format!("lockmacro-{uid}"))
    }

    pub(super) fn prepare(name: &str, dir: &Path, private: bool) -> Result<(), Error> {
        let mut builder = DirBuilder::new();
        builder.mode(0o700).recursive(!private);
        match builder.create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(name, dir, "create lock directory", e)),
        }
        if private {
            verify_private(name, dir)?;
        }
        Ok(())
    }

    fn verify_private(name: &str, dir: &Path) -> Result<(), Error> {
        let unsafe_dir = |reason: String| Error::UnsafeDir {
            name: name.to_owned(),
            path: dir.to_owned(),
            reason,
        };
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| Error::io(name, dir, "inspect lock directory", e))?;
        if meta.file_type().is_symlink() {
            return Err(unsafe_dir("it is a symbolic link".into()));
        }
        if !meta.is_dir() {
            return Err(unsafe_dir("it is not a directory".into()));
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(unsafe_dir(format!(
                "it is owned by uid {}, not by the current user (uid {me}); remove it or set {}",
                meta.uid(),
                super::DIR_ENV
            )));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(unsafe_dir(format!(
                "it is writable by other users (mode {mode:o}); run `chmod 700` on it"
            )));
        }
        Ok(())
    }
}

#[cfg(not(unix))]
mod imp {
    use std::path::{Path, PathBuf};

    use crate::error::Error;

    pub(super) fn default_dir() -> PathBuf {
        // Windows (untested): the per-user temporary directory, which is private to the user.
        std::env::temp_dir().join("lockmacro")
    }

    pub(super) fn prepare(name: &str, dir: &Path, _private: bool) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(name, dir, "create lock directory", e))
    }
}
