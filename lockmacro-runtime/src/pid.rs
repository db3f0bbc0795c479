//! This process's ID, without a system call on every lock cycle.
//!
//! Every acquisition and release compares the current PID with the one recorded, so that a
//! forked child never uses or releases its parent's lock. `getpid` is a system
//! call, two per cycle: a sixth of a repeated acquisition. glibc stopped caching it because a
//! plain cache goes stale in a child made by a raw `clone`. Ours lives in a page the kernel
//! zeroes in every child, whatever made it (`MADV_WIPEONFORK`, Linux 4.14): a child finds 0 and
//! asks the kernel. Where that is unavailable, or where `madvise` cannot be trusted to have
//! applied it (an emulator that accepts any advice), every call asks. Not covered: a child
//! made with `CLONE_VM` but without `CLONE_THREAD` shares the page with its parent; such a
//! child (`vfork`, `posix_spawn`) must only exec or exit, and cannot run lock code safely anyway.
//!
//! The page costs five system calls to make (the probe, then the page), more than a program
//! that takes one lock once ever saves: the first [`ASK_FIRST`] calls of a process ask the
//! kernel, and only a process that goes on makes the page. (The count is inherited by a forked
//! child, which is harmless: until the page exists every call asks, in parent and child alike.)

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

    use rustix::mm::{madvise, mmap_anonymous, munmap, Advice, MapFlags, ProtFlags};

    const LEN: usize = 4096; // the kernel rounds both calls up to whole pages

    /// The page, once made. No lock guards its making (two threads may both make one; the loser
    /// unmaps its own), so a fork at any moment leaves nothing in the child to wait for.
    static PAGE: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());
    /// Set if the kernel refused to make such a page: then every call asks the kernel.
    static REFUSED: AtomicBool = AtomicBool::new(false);
    /// Calls so far that asked the kernel because no page was made yet.
    static ASKED: AtomicU32 = AtomicU32::new(0);
    /// How many calls ask the kernel before the page is made (a single-instance `main` makes
    /// fewer).
    pub(super) const ASK_FIRST: u32 = 16;

    /// A new page wiped on fork, or `None`.
    fn make() -> Option<*mut AtomicU32> {
        let prot = ProtFlags::READ | ProtFlags::WRITE;
        if !honest(prot) {
            return None;
        }
        // SAFETY: a new private anonymous mapping at an address of the kernel's choosing
        // aliases nothing.
        let page =
            unsafe { mmap_anonymous(std::ptr::null_mut(), LEN, prot, MapFlags::PRIVATE) }.ok()?;
        // SAFETY: `page` is the mapping just made, which nothing else uses yet.
        if unsafe { madvise(page, LEN, Advice::LinuxWipeOnFork) }.is_err() {
            // SAFETY: as above; it is not used after this.
            let _ = unsafe { munmap(page, LEN) };
            return None;
        }
        Some(page.cast())
    }

    /// False where `madvise` claims success without doing anything, as some emulators (older
    /// qemu-user) do for every advice: the kernel refuses wipe-on-fork for a shared mapping
    /// (`EINVAL`), so a success there means the advice is not really applied.
    fn honest(prot: ProtFlags) -> bool {
        // SAFETY: as in `make`, a new mapping that aliases nothing, unmapped before returning.
        let Ok(probe) =
            (unsafe { mmap_anonymous(std::ptr::null_mut(), LEN, prot, MapFlags::SHARED) })
        else {
            return false;
        };
        // SAFETY: `probe` is the mapping just made.
        let refused = unsafe { madvise(probe, LEN, Advice::LinuxWipeOnFork) }
            == Err(rustix::io::Errno::INVAL);
        // SAFETY: `probe` is not used after this.
        let _ = unsafe { munmap(probe, LEN) };
        refused
    }

    /// The cached PID's cell, in a page wiped on fork; `None` if there can be none.
    pub(super) fn cache() -> Option<&'static AtomicU32> {
        let mut page = PAGE.load(Ordering::Acquire);
        if page.is_null() {
            if REFUSED.load(Ordering::Relaxed) || ASKED.fetch_add(1, Ordering::Relaxed) < ASK_FIRST
            {
                return None;
            }
            let Some(made) = make() else {
                REFUSED.store(true, Ordering::Relaxed);
                return None;
            };
            page = match PAGE.compare_exchange(
                std::ptr::null_mut(),
                made,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => made,
                Err(theirs) => {
                    // SAFETY: ours lost the race and was never published.
                    let _ = unsafe { munmap(made.cast(), LEN) };
                    theirs
                }
            };
        }
        // SAFETY: the page is page-aligned, readable and writable, zero-filled (a valid
        // `AtomicU32`), never unmapped once published (so `'static`), and only ever accessed
        // atomically through such references. In a child it is zero-filled again, still valid.
        Some(unsafe { &*page })
    }

    pub(crate) fn current() -> u32 {
        let Some(cache) = cache() else {
            return std::process::id();
        };
        match cache.load(Ordering::Relaxed) {
            0 => {
                let pid = std::process::id();
                cache.store(pid, Ordering::Relaxed);
                pid
            }
            pid => pid,
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    pub(crate) fn current() -> u32 {
        std::process::id()
    }
}

/// `std::process::id()`, cached where a fork can be relied on to clear the cache.
pub(crate) use imp::current;

#[cfg(test)]
mod tests {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_kernel_applies_wipe_on_fork_here() {
        // The probe of `honest` holds on a real Linux kernel: the cache is in use (once the
        // first calls have asked the kernel).
        for _ in 0..super::imp::ASK_FIRST {
            super::imp::cache();
        }
        assert!(
            super::imp::cache().is_some(),
            "no PID page: MADV_WIPEONFORK refused or untrustworthy (an emulator?); every lock \
             operation calls getpid instead"
        );
    }

    #[test]
    fn is_the_process_id() {
        assert_eq!(super::current(), std::process::id());
        assert_eq!(super::current(), std::process::id()); // from the cache this time
    }
}
