//! How quickly watches come back after an error.
//!
//! kube-runtime's default backoff grows to 30 s (with jitter, nearly a minute) and counts
//! the `410 Gone` that follows every API server restart as an error, so after a short
//! outage the brain would ignore new links for up to a minute. This one starts at 250 ms
//! and stays under 5 s: a relist per replica every few seconds is cheap, and a stale
//! view of links is what users see in `kubectl`.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(5);

/// Exponential from 250 ms to 5 s, with jitter so replicas do not relist in step.
#[derive(Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(MAX);
        Some(now.mul_f64(0.5 + 0.5 * fastrand::f64()))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = WatchBackoff::default();
        let waits: Vec<Duration> = (&mut b).take(10).collect();
        assert!(waits[0] <= FIRST);
        assert!(waits.iter().all(|w| *w <= MAX));
        assert!(waits[9] >= MAX / 2, "{waits:?}");
        b.reset();
        assert!(b.next().is_some_and(|w| w <= FIRST));
    }
}
