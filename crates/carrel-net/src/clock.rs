//! Wall-clock time in unix seconds, behind a trait so tests can move it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in seconds since the unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Returns the current unix time in seconds.
    fn unix_time(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_time(&self) -> u64 {
        // A clock set before 1970 reads as 0, which every peer then rejects as too old.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    }
}

/// A clock that reads whatever time it was last set to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Creates a clock reading `unix_time`.
    pub fn new(unix_time: u64) -> Self {
        Self(AtomicU64::new(unix_time))
    }

    /// Sets the time the clock reads.
    pub fn set(&self, unix_time: u64) {
        self.0.store(unix_time, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn unix_time(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
