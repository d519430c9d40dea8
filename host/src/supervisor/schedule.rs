//! When a device's next poll is due. Pure, so the rules are table-tested.

use std::time::Duration;

use tokio::time::Instant;

/// After a poll that was due at `due`: one interval later, or at once if the poll ran
/// so late that this has passed (late polls are not made up in a burst).
pub fn after_poll(due: Instant, interval: Duration, now: Instant) -> Instant {
    (due + interval).max(now)
}

/// After the interval changed from `old` to `new` while the next poll was due at
/// `next` (the last poll's due time plus `old`): the last poll's due time plus `new`, at
/// once if that has passed. Waiting out the old interval first would leave a link
/// changed from `1h` to `10s` on the old spacing for up to an hour.
pub fn after_change(next: Instant, old: Duration, new: Duration, now: Instant) -> Instant {
    next.checked_sub(old)
        .map_or(now, |last| last + new)
        .max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn after_poll_table() {
        let t0 = Instant::now();
        let cases = [
            // (due, interval, now, want)
            (t0, S, t0, t0 + S),
            (t0, S, t0 + S / 2, t0 + S),
            // Ran late past the next due time: the next poll is now, not a catch-up burst.
            (t0, S, t0 + 3 * S, t0 + 3 * S),
        ];
        for (i, (due, interval, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(after_poll(due, interval, now), want, "case {i}");
        }
    }

    #[test]
    fn after_change_table() {
        let t0 = Instant::now();
        let hour = 3600 * S;
        let cases = [
            // (next, old, new, now, want): the last poll was due at t0 in every case.
            // Shorter, 1 s -> 250 ms, 100 ms after the last poll: 150 ms from now.
            (t0 + S, S, S / 4, t0 + S / 10, t0 + S / 4),
            // Shorter, and the new spacing has already passed: at once.
            (t0 + S, S, S / 4, t0 + S / 2, t0 + S / 2),
            // 1 h -> 10 s, a minute after the last poll: at once, not in 59 minutes.
            (t0 + hour, hour, 10 * S, t0 + 60 * S, t0 + 60 * S),
            // Longer: the spacing from the last poll is the new one.
            (t0 + S, S, 5 * S, t0 + S / 2, t0 + 5 * S),
        ];
        for (i, (next, old, new, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(after_change(next, old, new, now), want, "case {i}");
        }
    }
}
