//! What a `fork()` without `exec` does to this process's locks.
//!
//! flock locks belong to the *open file*, and a forked child shares every open file of its
//! parent. Close-on-exec does nothing when the child does not exec (worker pools, daemons,
//! `nix::unistd::fork`). Left alone, a child that never touches a lock would keep its copy of the
//! parent's lock file open, and with it the lock: a parent that exits (or is killed) while
//! holding would leave the lock held until the child exits, and `holder()` would name the dead
//! parent. So the rule is simple: **a lock is held by the process that acquired it, never by its
//! forked children.**
//!
//! - Every descriptor of a lock file the runtime opens is registered here ([`LockFile`]). A
//!   `pthread_atfork` child handler replaces each of them, in the child only, with a descriptor of
//!   `/dev/null` (`open` and `dup3`, both async-signal-safe): the child's copy of the open file
//!   is gone, the parent's is untouched. The registry is a list of atomics, so the handler takes
//!   no lock.
//! - A descriptor opened by one thread while another forks may not be registered yet when the
//!   child is made. The prepare handler therefore moves a generation counter before every fork,
//!   and [`LockFile::open_with`] discards and reopens a descriptor if the generation moved while
//!   it was being opened and registered.
//! - All other in-process state (slots, the timer and proxy threads, the call chain) is kept per
//!   process ID: a child finds its parent's state belongs to another PID and starts afresh
//!   without ever locking the parent's mutexes, which another parent thread may have held at the
//!   instant of the fork.
//!
//! A child made by a raw `clone` system call (not through the C library's `fork`) runs no
//! handler: it is covered by the per-PID state but may keep its copies of the descriptors.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

#[cfg(unix)]
mod imp {
    use std::os::fd::RawFd;
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};

    /// Moved by the prepare handler before every fork.
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    /// The first chunk of the registry; chunks are added, never removed.
    static FIRST: AtomicPtr<Chunk> = AtomicPtr::new(std::ptr::null_mut());

    const CHUNK: usize = 64;

    /// Registered descriptors (-1 for a free entry) and the next chunk.
    struct Chunk {
        fds: [AtomicI32; CHUNK],
        next: AtomicPtr<Chunk>,
    }

    extern "C" {
        fn pthread_atfork(
            prepare: Option<unsafe extern "C" fn()>,
            parent: Option<unsafe extern "C" fn()>,
            child: Option<unsafe extern "C" fn()>,
        ) -> std::ffi::c_int;
    }

    unsafe extern "C" fn prepare() {
        GENERATION.fetch_add(1, Ordering::SeqCst);
    }

    /// In the child, right after the fork: only async-signal-safe work (atomics and `dup3`).
    unsafe extern "C" fn child() {
        use rustix::fs::{Mode, OFlags};
        let mut chunk = FIRST.load(Ordering::SeqCst);
        if chunk.is_null() {
            return;
        }
        // What the child's lock descriptors become. (If /dev/null cannot be opened, they are
        // left as they are.)
        let Ok(null) =
            rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        else {
            return;
        };
        let placeholder = std::os::fd::AsRawFd::as_raw_fd(&null);
        while !chunk.is_null() {
            // SAFETY: chunks are leaked, never freed, and only read through atomics.
            let c = unsafe { &*chunk };
            for entry in &c.fds {
                let fd = entry.load(Ordering::SeqCst);
                if fd >= 0 {
                    replace(placeholder, fd);
                }
            }
            chunk = c.next.load(Ordering::SeqCst);
        }
        drop(null);
    }

    /// Makes `fd` a copy of `placeholder` (close-on-exec), dropping the child's reference to the
    /// lock file's open file description.
    fn replace(placeholder: RawFd, fd: RawFd) {
        use std::os::fd::FromRawFd;
        // SAFETY: both descriptors are open in this (single-threaded) child: `fd` was registered
        // and not yet closed when the parent forked. `fd` stays open (now /dev/null), so the
        // `File` that owns it in the child later closes a valid descriptor, once; `ManuallyDrop`
        // keeps this borrowed copy from closing it here.
        let (old, mut new) = unsafe {
            (
                rustix::fd::BorrowedFd::borrow_raw(placeholder),
                std::mem::ManuallyDrop::new(rustix::fd::OwnedFd::from_raw_fd(fd)),
            )
        };
        let _ = rustix::io::dup3(old, &mut new, rustix::io::DupFlags::CLOEXEC);
    }

    fn install() {
        // No `Once`: a child forked while another thread ran it would wait forever. Threads that
        // race here may each install the handlers, which is harmless: both are idempotent.
        static INSTALLED: AtomicBool = AtomicBool::new(false);
        if !INSTALLED.load(Ordering::SeqCst) {
            // SAFETY: the handlers are `extern "C"` functions that live for the whole program.
            unsafe { pthread_atfork(Some(prepare), None, Some(child)) };
            INSTALLED.store(true, Ordering::SeqCst);
        }
    }

    pub(super) fn generation() -> u64 {
        install();
        GENERATION.load(Ordering::SeqCst)
    }

    /// A registry entry holding `fd` until [`release`] empties it.
    pub(super) fn register(fd: RawFd) -> &'static AtomicI32 {
        let mut link = &FIRST;
        loop {
            let mut chunk = link.load(Ordering::SeqCst);
            if chunk.is_null() {
                let fresh = Box::into_raw(Box::new(Chunk {
                    fds: std::array::from_fn(|_| AtomicI32::new(-1)),
                    next: AtomicPtr::new(std::ptr::null_mut()),
                }));
                chunk = match link.compare_exchange(
                    std::ptr::null_mut(),
                    fresh,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => fresh,
                    Err(theirs) => {
                        // SAFETY: ours lost the race and was never published.
                        drop(unsafe { Box::from_raw(fresh) });
                        theirs
                    }
                };
            }
            // SAFETY: published chunks are never freed.
            let c: &'static Chunk = unsafe { &*chunk };
            for entry in &c.fds {
                if entry
                    .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    return entry;
                }
            }
            link = &c.next;
        }
    }

    pub(super) fn release(entry: &AtomicI32) {
        entry.store(-1, Ordering::SeqCst);
    }
}

/// An open lock file, registered so that a forked child does not keep it (see the module
/// docs). Dereferences to the [`File`].
#[derive(Debug)]
pub(crate) struct LockFile {
    file: File,
    /// The process that opened it: only it may unlock it.
    pid: u32,
    #[cfg(unix)]
    entry: &'static std::sync::atomic::AtomicI32,
}

impl LockFile {
    /// Opens with `open` and registers the descriptor; opens again if a fork happened in
    /// between, so that no child can hold an unregistered copy.
    pub(crate) fn open_with<E>(mut open: impl FnMut() -> Result<File, E>) -> Result<LockFile, E> {
        loop {
            #[cfg(unix)]
            let before = imp::generation();
            let file = open()?;
            let file = LockFile::register(file);
            #[cfg(unix)]
            if imp::generation() != before {
                continue; // dropped: closed, and a child that got a copy holds no lock on it
            }
            return Ok(file);
        }
    }

    fn register(file: File) -> LockFile {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let entry = imp::register(file.as_raw_fd());
            LockFile {
                file,
                pid: crate::pid::current(),
                entry,
            }
        }
        #[cfg(not(unix))]
        LockFile {
            file,
            pid: crate::pid::current(),
        }
    }
}

impl Deref for LockFile {
    type Target = File;

    fn deref(&self) -> &File {
        &self.file
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Closing would release a lock still held on it, but a fork between unregistering and
        // closing would leave the child an unregistered copy that keeps it: so unlock first (in
        // the process that opened it only: elsewhere the open file may be the parent's). Then
        // unregister before closing, so the child handler never touches a reused descriptor.
        if crate::pid::current() == self.pid {
            super::os::unlock(&self.file);
        }
        #[cfg(unix)]
        imp::release(self.entry);
    }
}

/// Opens an existing lock file for inspection only; `Ok(None)` if there is none. (Registered
/// like every lock file: where `holder()` probes with a lock, a forked child must not keep it.)
pub(crate) fn open_existing(path: &Path) -> io::Result<Option<LockFile>> {
    let opened = LockFile::open_with(|| {
        #[cfg(unix)]
        {
            use rustix::fs::OFlags;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32)
                .open(path)
        }
        #[cfg(not(unix))]
        std::fs::OpenOptions::new().read(true).open(path)
    });
    match opened {
        Ok(file) if file.metadata()?.is_file() => Ok(Some(file)),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the lock file is not a regular file",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
