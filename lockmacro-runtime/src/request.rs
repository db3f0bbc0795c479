//! What every acquisition asks, whatever the backend: the lock's name, exclusive or shared,
//! whether a long wait is announced, and what happens if the lock is lost while held. Each
//! backend's spec embeds one [`Request`].

use std::time::Duration;

use crate::lost::OnLost;

/// Exclusive (one holder) or shared (any number of shared holders, and no exclusive one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Share {
    Exclusive,
    Shared,
}

impl Share {
    pub(crate) fn is_shared(self) -> bool {
        self == Share::Shared
    }

    /// The word events use.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn word(self) -> &'static str {
        match self {
            Share::Exclusive => "exclusive",
            Share::Shared => "shared",
        }
    }
}

/// Whether a wait that lasts is announced on stderr (see `notice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announce {
    Quiet,
    LongWaits,
}

/// What an exclusive acquisition records once held: a fencing token (`Lock::fencing`), and
/// its start, refusing one within `period` of the last (`Lock::once_per`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Record {
    pub(crate) token: bool,
    pub(crate) period: Option<Duration>,
}

impl Record {
    pub(crate) fn wanted(self) -> bool {
        self.token || self.period.is_some()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) name: String,
    pub(crate) share: Share,
    pub(crate) announce: Announce,
    pub(crate) on_lost: OnLost,
    pub(crate) record: Record,
    /// How many may hold the lock at once (`Lock::slots`); 1 is a plain lock.
    pub(crate) slots: u32,
}

impl Request {
    pub(crate) fn new(name: String) -> Request {
        Request {
            name,
            share: Share::Exclusive,
            announce: Announce::Quiet,
            on_lost: OnLost::Exit,
            record: Record::default(),
            slots: 1,
        }
    }
}
