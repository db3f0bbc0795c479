//! The few system calls `run` needs that std does not offer: blocking and awaiting signals,
//! sending one, and waiting for a child without reaping it.

use std::io;
use std::mem::MaybeUninit;

/// The signals `lockmacro run` passes on to CMD.
pub(crate) const FORWARDED: [libc::c_int; 4] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// A set of signals blocked in every thread, to be taken with [`Signals::next`].
#[derive(Clone, Copy)]
pub(crate) struct Signals(libc::sigset_t);

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signals")
    }
}

/// One signal received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) signal: libc::c_int,
    /// Sent by the kernel (a terminal's ^C, ^\ or hangup, which goes to the whole foreground
    /// process group, CMD included) rather than by a process.
    pub(crate) by_kernel: bool,
}

impl Signals {
    /// Blocks [`FORWARDED`] in the calling thread, and so in every thread it starts later. Call
    /// it before any other thread exists, or one of them may take a signal's default action.
    /// Children inherit the mask: see [`unblock_in_child`].
    pub(crate) fn block_forwarded() -> io::Result<Signals> {
        // SAFETY: plain libc calls on a local, initialized set.
        unsafe {
            let mut set = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            let mut set = set.assume_init();
            for signal in FORWARDED {
                libc::sigaddset(&mut set, signal);
            }
            match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
                0 => Ok(Signals(set)),
                e => Err(io::Error::from_raw_os_error(e)),
            }
        }
    }

    /// Waits for the next signal of the set.
    pub(crate) fn next(&self) -> Received {
        loop {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
                // SAFETY: the set is initialized; `info` is written by the call.
                let signal = unsafe { libc::sigwaitinfo(&self.0, info.as_mut_ptr()) };
                if signal > 0 {
                    // SAFETY: written by a successful sigwaitinfo.
                    let code = unsafe { info.assume_init() }.si_code;
                    // SI_USER, SI_QUEUE, SI_TKILL... are <= 0: sent by a process.
                    return Received {
                        signal,
                        by_kernel: code > 0,
                    };
                }
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            {
                let mut signal = 0;
                // SAFETY: the set is initialized; `signal` is written by the call.
                if unsafe { libc::sigwait(&self.0, &mut signal) } == 0 {
                    return Received {
                        signal,
                        by_kernel: false,
                    };
                }
            }
        }
    }
}

/// Makes `command` start with no signal blocked: it would inherit our mask (std leaves it as
/// is: `signals_are_forwarded_to_the_command` fails without this).
pub(crate) fn unblock_in_child(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls are allowed: sigemptyset and
    // pthread_sigmask (sigprocmask) are.
    unsafe {
        command.pre_exec(|| {
            let mut set = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            match libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) {
                0 => Ok(()),
                e => Err(io::Error::from_raw_os_error(e)),
            }
        });
    }
}

/// Sends `signal` to the process `pid`.
pub(crate) fn kill(pid: u32, signal: libc::c_int) {
    // SAFETY: a plain system call. The caller guarantees `pid` is a child not yet reaped, so
    // the PID cannot have been reused.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Waits until the child `pid` has ended, without reaping it: until it is reaped, its PID
/// cannot be reused, so it can still be signalled safely up to that moment.
pub(crate) fn wait_ended(pid: u32) -> io::Result<()> {
    loop {
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: `info` is written by the call.
        let done = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if done == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Clock ticks per second, for the start times in `/proc/PID/stat`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn clock_ticks() -> Option<u64> {
    // SAFETY: a plain library call.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0)
}
