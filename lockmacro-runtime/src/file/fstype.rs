//! Refusing network filesystems for the lock directory. flock over NFS is emulated with POSIX
//! record locks through the lock manager; over some FUSE and SMB mounts it is a no-op or hangs.
//! A lock that silently does not lock is worse than an error, so such directories are refused
//! unless the user opts in with `LOCKMACRO_ALLOW_NETWORK_FS=1` (for example on an NFS setup
//! known to support flock across clients).

use std::path::Path;

use crate::error::Error;

/// Set this environment variable to `1` to allow lock directories on network filesystems.
///
/// ```
/// use std::process::Command;
/// use lockmacro_runtime::{ALLOW_NETWORK_FS_ENV, DIR_ENV};
///
/// assert_eq!(ALLOW_NETWORK_FS_ENV, "LOCKMACRO_ALLOW_NETWORK_FS");
/// // Run a program with its locks on an NFS mount known to support flock (not spawned here).
/// let mut backup = Command::new("backup");
/// backup.env(DIR_ENV, "/mnt/shared/locks").env(ALLOW_NETWORK_FS_ENV, "1");
/// ```
pub const ALLOW_NETWORK_FS_ENV: &str = "LOCKMACRO_ALLOW_NETWORK_FS";

/// Refuses a lock directory on a network filesystem; `magic` is its `statfs` type (see
/// [`magic_of`]).
pub(crate) fn check(name: &str, dir: &Path, magic: Option<u64>) -> Result<(), Error> {
    let Some(kind) = magic.and_then(network_kind) else {
        return Ok(());
    };
    if std::env::var_os(ALLOW_NETWORK_FS_ENV).is_some_and(|v| v == "1") {
        return Ok(());
    }
    Err(Error::UnsafeDir {
        name: name.to_owned(),
        path: dir.to_owned(),
        reason: format!(
            "it is on {kind}, a network filesystem where flock is emulated or unreliable; use \
             a local directory, or set {ALLOW_NETWORK_FS_ENV}=1 to lock there anyway"
        ),
    })
}

/// True if `magic` is a local filesystem known to move a file's change time on every change
/// and to answer `fstat` exactly: tmpfs, ext2/3/4, XFS, Btrfs, F2FS. Only there may repeated
/// acquisitions trust what `fstat` shows (`file::Memo`). Not overlayfs, whose times come from
/// whatever filesystem is underneath. Known on Linux only; elsewhere false.
pub(crate) fn keeps_change_times(magic: Option<u64>) -> bool {
    magic.is_some_and(|magic| {
        matches!(
            magic,
            0x0102_1994 | 0xef53 | 0x5846_5342 | 0x9123_683e | 0xf2f5_2010
        )
    })
}

/// The `statfs` type of the filesystem of the open directory `dir` (or the test hook's), where
/// known (Linux only).
#[cfg(unix)]
pub(crate) fn magic_of(dir: &rustix::fd::OwnedFd) -> Option<u64> {
    crate::hooks::fs_magic().or_else(|| probe(dir))
}

/// The network filesystem of this `statfs` type, if it is one.
fn network_kind(magic: u64) -> Option<&'static str> {
    Some(match magic {
        0x6969 => "NFS",
        0x517b | 0xff53_4d42 | 0xfe53_4d42 => "SMB/CIFS",
        0x6573_5546 => "FUSE",
        0x0102_1997 => "9p",
        0x00c3_6400 => "Ceph",
        0x5346_414f => "AFS",
        0x0bd0_0bd0 => "Lustre",
        0x4750_4653 => "GPFS",
        _ => return None,
    })
}

#[cfg(target_os = "linux")]
fn probe(dir: &rustix::fd::OwnedFd) -> Option<u64> {
    #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)]
    rustix::fs::fstatfs(dir).ok().map(|s| s.f_type as u64)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn probe(_dir: &rustix::fd::OwnedFd) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    fn probe(dir: &str) -> Option<u64> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).ok()?;
        super::probe(&fd)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn local_directories_pass() {
        let magic = probe(&std::env::temp_dir().to_string_lossy());
        assert_eq!(magic.and_then(super::network_kind), None);
        assert_eq!(super::network_kind(0x6969), Some("NFS"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn tmpfs_keeps_change_times() {
        let magic = probe("/dev/shm");
        if magic == Some(0x0102_1994) {
            assert!(super::keeps_change_times(magic));
        }
    }
}
