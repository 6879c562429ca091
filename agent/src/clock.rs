//! The clock port. All wall-clock reads in the agent go through a [`Clock`], so tests can skew
//! or freeze time; monotonic waits use tokio's (pausable) clock.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use quorum::UnixMillis;

/// Source of wall-clock time for ballots and observations.
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> UnixMillis;
}

/// The system clock, optionally offset (the chaos suite and demo skew agents' clocks).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock {
    pub offset_ms: i64,
}

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        // A clock before 1970 is a broken host; treat it as the epoch rather than panic.
        #[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        UnixMillis(ms.saturating_add_signed(self.offset_ms))
    }
}

/// Shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
