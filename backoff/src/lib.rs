//! Octopus's one backoff: a delay that doubles from `base` with each failure in a row,
//! capped at `max`, and scaled by jitter into half to all of that step so that many
//! retries failing together spread out.
//!
//! The schedule is pure: the caller passes the jitter (a uniform sample in [0, 1)), so
//! it is table-tested without clocks or randomness. It owns no timers and knows nothing
//! of what is retried. The `kube` feature adds `WatchBackoff`, the schedule as a
//! kube-runtime `Backoff` for watches, which draws its own jitter.

use std::time::Duration;

/// Doublings past which the step stops growing; 2^20 times any sensible base is far past
/// any sensible cap, and the bound keeps the shift from overflowing.
const MAX_DOUBLINGS: u32 = 20;

/// A capped exponential schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure (before jitter).
    pub base: Duration,
    /// Longest delay (before jitter).
    pub max: Duration,
}

impl Backoff {
    /// Watches of the API server: 250 ms doubling to 5 s, so changes are seen within
    /// seconds of an API server coming back (kube-runtime's default waits up to 30 s,
    /// and counts the `410 Gone` after every restart as an error). A relist every few
    /// seconds is cheap; a stale view of links is what users see.
    pub const WATCH: Self = Self::new(Duration::from_millis(250), Duration::from_secs(5));

    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The delay after the `failures`-th failure in a row (the first is 1; 0 counts as
    /// 1). `jitter` is a uniform sample in [0, 1), clamped; it scales the step into
    /// [50%, 100%] (NaN counts as 0).
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(MAX_DOUBLINGS);
        let step = self.base.saturating_mul(1u32 << doublings).min(self.max);
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        // Not `mul_f64`: it panics when a step near `Duration::MAX` rounds up past it.
        Duration::try_from_secs_f64(step.as_secs_f64() * (0.5 + 0.5 * jitter))
            .map_or(step, |d| d.min(step))
    }
}

/// A count of failures in a row and the schedule it walks: what a retry loop keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retries {
    pub schedule: Backoff,
    failures: u32,
}

impl Retries {
    pub const fn new(schedule: Backoff) -> Self {
        Self {
            schedule,
            failures: 0,
        }
    }

    /// Counts a failure and returns how long to wait before the next try.
    pub fn fail(&mut self, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.schedule.delay(self.failures, jitter)
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure waits the first step again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// [`Backoff::WATCH`] as a kube-runtime backoff, for `watcher(..).backoff(..)` and
/// `Controller::trigger_backoff`.
#[cfg(feature = "kube")]
#[derive(Clone, Debug)]
pub struct WatchBackoff(Retries);

#[cfg(feature = "kube")]
impl Default for WatchBackoff {
    fn default() -> Self {
        Self(Retries::new(Backoff::WATCH))
    }
}

#[cfg(feature = "kube")]
impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.0.fail(fastrand::f64()))
    }
}

#[cfg(feature = "kube")]
impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delay_table() {
        let b = Backoff::new(100 * MS, 500 * MS);
        let cases = [
            // (failures, jitter, want)
            (1, 1.0, 100 * MS),
            (1, 0.0, 50 * MS),
            (1, 0.5, 75 * MS),
            // 0 failures is read as the first.
            (0, 1.0, 100 * MS),
            (2, 1.0, 200 * MS),
            (3, 1.0, 400 * MS),
            // Capped.
            (4, 1.0, 500 * MS),
            (4, 0.0, 250 * MS),
            (40, 1.0, 500 * MS),
            // Jitter outside [0, 1] is clamped.
            (1, -3.0, 50 * MS),
            (1, 7.0, 100 * MS),
            (1, f64::NAN, 50 * MS),
            // No overflow however many failures.
            (u32::MAX, 1.0, 500 * MS),
        ];
        for (failures, jitter, want) in cases {
            assert_eq!(
                b.delay(failures, jitter),
                want,
                "failures={failures} jitter={jitter}"
            );
        }
    }

    #[test]
    fn a_cap_of_years_does_not_overflow() {
        let b = Backoff::new(Duration::from_secs(3600), Duration::MAX);
        assert_eq!(
            b.delay(u32::MAX, 1.0),
            Duration::from_secs(3600 * (1 << MAX_DOUBLINGS))
        );
    }

    #[test]
    fn a_step_of_duration_max_does_not_panic() {
        let b = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(b.delay(1, 1.0), Duration::MAX);
        assert!(b.delay(1, 0.0) <= Duration::MAX / 2 + MS);
    }

    #[test]
    fn the_watch_schedule() {
        let cases = [
            (1, 250 * MS),
            (2, 500 * MS),
            (3, 1000 * MS),
            (4, 2000 * MS),
            (5, 4000 * MS),
            (6, 5000 * MS),
            (100, 5000 * MS),
        ];
        for (failures, want) in cases {
            assert_eq!(Backoff::WATCH.delay(failures, 1.0), want, "{failures}");
        }
    }

    #[test]
    fn retries_count_up_and_reset() {
        let mut r = Retries::new(Backoff::new(10 * MS, 35 * MS));
        let waits: Vec<Duration> = (0..4).map(|_| r.fail(1.0)).collect();
        assert_eq!(waits, [10 * MS, 20 * MS, 35 * MS, 35 * MS]);
        assert_eq!(r.failures(), 4);
        r.reset();
        assert_eq!(r.failures(), 0);
        assert_eq!(r.fail(0.0), 5 * MS);
    }

    #[cfg(feature = "kube")]
    #[test]
    fn the_watch_backoff_grows_to_its_cap_and_resets() {
        use kube::runtime::utils::Backoff as _;
        let mut b = WatchBackoff::default();
        let waits: Vec<Duration> = (&mut b).take(10).collect();
        assert!(waits[0] <= Backoff::WATCH.base, "{waits:?}");
        assert!(waits.iter().all(|w| *w <= Backoff::WATCH.max), "{waits:?}");
        assert!(waits[9] >= Backoff::WATCH.max / 2, "{waits:?}");
        b.reset();
        assert!(b.next().is_some_and(|w| w <= Backoff::WATCH.base));
    }
}
