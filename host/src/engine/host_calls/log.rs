//! `octopus:adaptor/log`: guest log lines become `tracing` events with the device's
//! fields, rate-limited and truncated so a flood cannot drown the limb.

use std::time::{Duration, Instant};

use crate::bindings::octopus::adaptor::log as wit;
use crate::bounds::{escape, truncate};
use crate::engine::StoreState;

/// Longest message kept, in bytes; longer ones are cut and say how much was cut.
pub const MAX_MESSAGE: usize = crate::bounds::MAX_LOG_MESSAGE;

/// A token bucket for one device's log lines.
#[derive(Debug)]
pub struct Budget {
    per_second: u32,
    used: u32,
    window: Instant,
    dropped: u64,
}

impl Budget {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            used: 0,
            window: Instant::now(),
            dropped: 0,
        }
    }

    /// Whether a line may be written now; when a new window starts, returns how many
    /// lines were dropped in the last one so the caller can say so.
    pub fn take(&mut self, now: Instant) -> (bool, u64) {
        let mut dropped = 0;
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
            dropped = std::mem::take(&mut self.dropped);
        }
        if self.used < self.per_second {
            self.used += 1;
            (true, dropped)
        } else {
            self.dropped += 1;
            (false, dropped)
        }
    }

    pub fn total_dropped(&self) -> u64 {
        self.dropped
    }
}

impl StoreState {
    /// Writes one guest line at `level` if the budget allows.
    pub fn guest_log(&mut self, level: wit::Level, message: &str) {
        let (allowed, dropped) = self.log_budget.take(Instant::now());
        let device = &self.device;
        if dropped > 0 {
            tracing::warn!(%device, dropped, "adaptor log lines dropped by the rate limit");
        }
        if !allowed {
            return;
        }
        // Escaped so that no guest text can start a line of its own in the limb's log;
        // the `adaptor` target marks the line as the guest's.
        let message = escape(&truncate(message, MAX_MESSAGE)).into_owned();
        match level {
            wit::Level::Trace => tracing::trace!(target: "adaptor", %device, "{message}"),
            wit::Level::Debug => tracing::debug!(target: "adaptor", %device, "{message}"),
            wit::Level::Info => tracing::info!(target: "adaptor", %device, "{message}"),
            wit::Level::Warn => tracing::warn!(target: "adaptor", %device, "{message}"),
            wit::Level::Error => tracing::error!(target: "adaptor", %device, "{message}"),
        }
    }
}

impl wit::Host for StoreState {
    async fn log(&mut self, level: wit::Level, message: String) -> wasmtime::Result<()> {
        self.guest_log(level, &message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_n_per_second_and_reports_drops() {
        let mut b = Budget::new(3);
        let t0 = Instant::now();
        let allowed: Vec<_> = (0..5).map(|_| b.take(t0).0).collect();
        assert_eq!(allowed, [true, true, true, false, false]);
        assert_eq!(b.total_dropped(), 2);
        let (ok, dropped) = b.take(t0 + Duration::from_secs(1));
        assert!(ok);
        assert_eq!(dropped, 2);
    }
}
