//! This process's ID, without a system call on every lock cycle.
//!
//! Every acquisition and release compares the current PID with the one recorded, so that a
//! forked child never uses or releases its parent's lock (LOCKING.md #7). `getpid` is a system
//! call, two per cycle: a sixth of a repeated acquisition. glibc stopped caching it because a
//! plain cache goes stale in a child made by a raw `clone`. Ours lives in a page the kernel
//! zeroes in every child, whatever made it (`MADV_WIPEONFORK`, Linux 4.14): a child finds 0 and
//! asks the kernel. Where that is unavailable, every call asks.

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;

    /// The cached PID, in a page wiped on fork; `None` if the kernel refused the advice.
    fn cache() -> Option<&'static AtomicU32> {
        static CACHE: OnceLock<Option<&'static AtomicU32>> = OnceLock::new();
        *CACHE.get_or_init(|| {
            use rustix::mm::{madvise, mmap_anonymous, munmap, Advice, MapFlags, ProtFlags};
            const LEN: usize = 4096; // the kernel rounds both calls up to whole pages
            let prot = ProtFlags::READ | ProtFlags::WRITE;
            // SAFETY: a new private anonymous mapping at an address of the kernel's choosing
            // aliases nothing.
            let page =
                unsafe { mmap_anonymous(std::ptr::null_mut(), LEN, prot, MapFlags::PRIVATE) }
                    .ok()?;
            // SAFETY: `page` is the mapping just made, which nothing else uses yet.
            if unsafe { madvise(page, LEN, Advice::LinuxWipeOnFork) }.is_err() {
                // SAFETY: as above; it is not used after this.
                let _ = unsafe { munmap(page, LEN) };
                return None;
            }
            // SAFETY: the mapping is page-aligned, readable and writable, zero-filled (a valid
            // `AtomicU32`), never unmapped (so `'static`), and only ever accessed atomically
            // through this reference. In a child it is zero-filled again, which is still valid.
            Some(unsafe { &*page.cast::<AtomicU32>() })
        })
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
    #[test]
    fn is_the_process_id() {
        assert_eq!(super::current(), std::process::id());
        assert_eq!(super::current(), std::process::id()); // from the cache this time
    }
}
