//! Whole single-instance programs. Each is `#[exclusive]` on a function named `main`, which the
//! attribute treats exactly like a program's `main` (it only looks at the name): a lock it cannot
//! get makes the process print one line on stderr (`lm-child: ...`) and exit with status 1, and a
//! wait announces itself after about a second. The real `main` only calls it. Locks live in
//! `LOCKMACRO_DIR`, except `env-main`'s.
//!
//! - `single`: lock `single`; print `locked pid=<pid>`, hold until stdin EOF.
//! - `env-main`: the same on lock `lockmacro-rel-env-independence` with `cleanup`, for the test
//!   that uses the real default directory (`cleanup` leaves it as it was).
//! - `notice-wait`, `notice-timeout`, `notice-quiet`: wait for lock `single` (`wait`;
//!   `timeout = "1h"`; `wait, notice = false`), print `locked pid=<pid>` once they hold it and
//!   exit.
//! - `tokio-outer`, `tokio-inner`: an async `main` with `#[exclusive]` written outside
//!   `#[tokio::main]` (the lock is taken inside the runtime, by the async body; lock
//!   `lm-tokio-outer`) or inside it (tokio turns `main` into a synchronous function first, so the
//!   lock is taken before the runtime starts; lock `lm-tokio-inner`); print `locked pid=<pid>`
//!   and hold until stdin EOF, read off the executor as a real async program would.

use std::process::ExitCode;

use crate::protocol::{me, say};
use crate::{wait_for_eof, Outcome};

/// Runs one of the programs below as the whole process.
pub fn run(main: fn()) -> Outcome {
    main();
    Ok(ExitCode::SUCCESS)
}

fn locked() {
    say(&format!("locked pid={}", me()));
}

pub mod single {
    #[lockmacro_runtime::exclusive(name = "single")]
    pub fn main() {
        super::locked();
        super::wait_for_eof();
    }
}

pub mod env_main {
    #[lockmacro_runtime::exclusive(name = "lockmacro-rel-env-independence", cleanup)]
    pub fn main() {
        super::locked();
        super::wait_for_eof();
    }
}

pub mod notice_wait {
    #[lockmacro_runtime::exclusive(name = "single", wait)]
    pub fn main() {
        super::locked();
    }
}

pub mod notice_timeout {
    #[lockmacro_runtime::exclusive(name = "single", timeout = "1h")]
    pub fn main() {
        super::locked();
    }
}

pub mod notice_quiet {
    #[lockmacro_runtime::exclusive(name = "single", wait, notice = false)]
    pub fn main() {
        super::locked();
    }
}

/// Reads stdin to its end off the executor.
async fn eof_off_the_executor() {
    tokio::task::spawn_blocking(super::wait_for_eof)
        .await
        .expect("stdin reader");
}

pub mod tokio_outer {
    #[lockmacro_runtime::exclusive(name = "lm-tokio-outer")]
    #[tokio::main]
    pub async fn main() {
        super::locked();
        super::eof_off_the_executor().await;
    }
}

pub mod tokio_inner {
    #[tokio::main]
    #[lockmacro_runtime::exclusive(name = "lm-tokio-inner")]
    pub async fn main() {
        super::locked();
        super::eof_off_the_executor().await;
    }
}
