//! Restart policy after traps: the shared capped exponential backoff with jitter
//! ([`octopus_backoff`]), then quarantine. Pure, so the schedule is table-tested without
//! clocks.

use std::time::Duration;

use octopus_backoff::Backoff;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delay after the first trap.
    pub base: Duration,
    /// Longest delay between restarts.
    pub max: Duration,
    /// Consecutive failed starts or traps after which the device is quarantined.
    pub quarantine_after: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            quarantine_after: 5,
        }
    }
}

/// What to do after the `failures`-th consecutive failure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    RetryAfter(Duration),
    Quarantine,
}

impl RestartPolicy {
    /// `jitter` is a uniform sample in [0, 1); the delay is scaled into [50%, 100%] of
    /// the exponential step so that many devices trapping together spread out.
    pub fn decide(&self, failures: u32, jitter: f64) -> Decision {
        if failures >= self.quarantine_after {
            return Decision::Quarantine;
        }
        Decision::RetryAfter(self.delay(failures, jitter))
    }

    /// The delay before retry number `failures`, without quarantine: for devices that
    /// are unreachable rather than misbehaving, which must be retried for as long as
    /// it takes.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        self.backoff().delay(failures, jitter)
    }

    /// The schedule between restarts.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.base, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_table() {
        let p = RestartPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(500),
            quarantine_after: 5,
        };
        let cases = [
            (1, 1.0, Decision::RetryAfter(Duration::from_millis(100))),
            (1, 0.0, Decision::RetryAfter(Duration::from_millis(50))),
            (2, 1.0, Decision::RetryAfter(Duration::from_millis(200))),
            (3, 1.0, Decision::RetryAfter(Duration::from_millis(400))),
            (4, 1.0, Decision::RetryAfter(Duration::from_millis(500))),
            (4, 0.0, Decision::RetryAfter(Duration::from_millis(250))),
            (5, 0.5, Decision::Quarantine),
            (50, 0.5, Decision::Quarantine),
        ];
        for (failures, jitter, want) in cases {
            assert_eq!(
                p.decide(failures, jitter),
                want,
                "failures={failures} jitter={jitter}"
            );
        }
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let p = RestartPolicy {
            quarantine_after: u32::MAX,
            ..RestartPolicy::default()
        };
        assert_eq!(p.decide(u32::MAX - 1, 1.0), Decision::RetryAfter(p.max));
    }
}
