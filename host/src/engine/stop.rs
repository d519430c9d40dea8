//! Telling a device's running guest call to end: set when its link is removed, read by
//! the epoch callback (guest code) and awaited next to the call (host calls).
//!
//! The call in progress gets [`GRACE`] to finish first, and host calls that wait (a
//! poll waiting for GPIO edges) return at once: a call that ends by itself leaves the
//! instance whole, so its `shutdown` runs and leaves outputs at their shutdown levels.
//! An interrupted instance cannot run `shutdown` at all.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a removed device's call in progress may go on before it is interrupted.
pub const GRACE: Duration = Duration::from_millis(250);

/// A one-way switch: once set, it stays set.
#[derive(Debug, Default)]
pub struct Stop {
    set: AtomicBool,
    at: OnceLock<Instant>,
    notify: Notify,
}

impl Stop {
    pub fn set(&self) {
        let _ = self.at.set(Instant::now());
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether the switch was set at least `GRACE` ago.
    pub fn past_grace(&self) -> bool {
        self.is_set() && self.at.get().is_some_and(|at| at.elapsed() >= GRACE)
    }

    /// Returns `GRACE` after the switch is set.
    pub async fn wait_past_grace(&self) {
        self.wait().await;
        let at = self.at.get().copied().unwrap_or_else(Instant::now);
        tokio::time::sleep_until((at + GRACE).into()).await;
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Returns once the switch is set.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a `set` in between is not missed.
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_set_and_later_waits_return_at_once() {
        let stop = Arc::new(Stop::default());
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        stop.set();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_millis(100), stop.wait())
            .await
            .unwrap();
    }
}
