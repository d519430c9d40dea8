//! Device events to Kubernetes: what a supervisor or an adaptor records on the board
//! (a swap, a refused grant, a trap, `events.record-event`) becomes an `events.k8s.io`
//! Event on the device's DeviceLink, so `kubectl describe dl` shows it.
//!
//! Bounded: the board's change feed says which devices changed (once per device until
//! read), every device's events are read from the board's short history by number, so
//! none is missed however many reports were coalesced, a repeat of the last one
//! published for a device is folded into its series by the recorder, and the whole limb
//! publishes at most [`RATE`] events per second (bursts of [`BURST`]); beyond that
//! events are dropped and counted (`output_dropped{output="events"}`), never queued.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crds::v1alpha1::DeviceLink;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use tokio::sync::watch;
use tokio::time::Instant;

use super::MANAGER;
use super::manager::lookup;
use crate::metrics::Metrics;
use crate::status::{DeviceReport, Event, EventType, StatusBoard};

/// Events per second the limb publishes, sustained.
pub const RATE: f64 = 10.0;
/// Events the limb may publish at once after a quiet spell.
pub const BURST: f64 = 50.0;

/// What to publish next: the events of `report` numbered after `last` (the newest one
/// already published), and how many after it already fell out of the short history.
pub fn unpublished(report: &DeviceReport, last: u64) -> (Vec<Event>, u64) {
    let fresh: Vec<Event> = report
        .events
        .iter()
        .filter(|e| e.seq > last)
        .cloned()
        .collect();
    // A gap before the oldest event kept was pushed out unsent; a gap further on is a
    // repeat that replaced its predecessor, which the repeat stands for.
    let lost = match (fresh.first(), report.events.front()) {
        (Some(first), Some(front)) if first.seq == front.seq => first.seq - last - 1,
        _ => 0,
    };
    (fresh, lost)
}

/// The newest event published per device, by the device's life and event number.
#[derive(Debug, Default)]
pub struct Published(HashMap<String, (u64, u64)>);

impl Published {
    /// The events of `report` to publish now, and how many were lost unsent; from here
    /// on they count as published.
    pub fn take(&mut self, key: &str, report: &DeviceReport) -> (Vec<Event>, u64) {
        let last = match self.0.get(key) {
            Some(&(life, seq)) if life == report.incarnation => seq,
            // New, or re-created under the same name: its events start again at 1.
            _ => 0,
        };
        let (fresh, lost) = unpublished(report, last);
        if let Some(newest) = fresh.last() {
            self.0
                .insert(key.to_owned(), (report.incarnation, newest.seq));
        }
        (fresh, lost)
    }

    fn forget(&mut self, key: &str) {
        self.0.remove(key);
    }
}

/// A token bucket: `RATE` per second, at most `BURST` saved up.
#[derive(Debug)]
pub struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    pub fn new(now: Instant) -> Self {
        Self {
            tokens: BURST,
            at: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * RATE;
        self.tokens = (self.tokens + refill).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub async fn run(
    client: Client,
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    links: Store<DeviceLink>,
    mut shutdown: watch::Receiver<bool>,
) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
    );
    let mut feed = board.feed(metrics.output_coalesced("events"));
    let dropped_total = metrics.output_dropped("events");
    let mut published = Published::default();
    let mut budget = Budget::new(Instant::now());
    let mut dropped: u64 = 0;
    let mut told = Instant::now();
    loop {
        let key = tokio::select! {
            key = feed.next() => key,
            _ = shutdown.changed() => return,
        };
        let Some((fresh, lost)) = board.read(&key, |r| published.take(&key, r)) else {
            published.forget(&key);
            continue;
        };
        dropped += lost;
        dropped_total.inc_by(lost);
        if fresh.is_empty() {
            continue;
        }
        let Some(link) = lookup(&links, &key) else {
            continue;
        };
        let reference = link.object_ref(&());
        for ev in fresh {
            if !budget.take(Instant::now()) {
                dropped += 1;
                dropped_total.inc();
                continue;
            }
            let kube_event = KubeEvent {
                type_: match ev.type_ {
                    EventType::Normal => KubeEventType::Normal,
                    EventType::Warning => KubeEventType::Warning,
                },
                reason: ev.reason.clone(),
                note: Some(ev.message.clone()),
                action: "Drive".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&kube_event, &reference).await {
                tracing::debug!(device = %key, error = %e, "cannot record event");
            }
        }
        if dropped > 0 && told.elapsed() > Duration::from_secs(60) {
            tracing::warn!(
                dropped,
                "device events dropped: more than {RATE}/s were recorded, or more than a device keeps between two reads"
            );
            dropped = 0;
            told = Instant::now();
        }
        // Forget devices that are gone, so the map stays as large as the fleet.
        if published.0.len() > board.len() * 2 + 64 {
            published.0.retain(|k, _| board.contains(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(reasons: &[&str]) -> DeviceReport {
        let mut r = DeviceReport::new("ns", "d", "Kind", "a");
        for reason in reasons {
            r.record(Event::new(EventType::Normal, reason, "m"));
        }
        r
    }

    #[test]
    fn only_events_after_the_last_published_one_are_new() {
        let r = report(&["A", "B", "C"]);
        let reasons = |(es, lost): (Vec<Event>, u64)| {
            (
                es.iter().map(|e| e.reason.clone()).collect::<Vec<_>>(),
                lost,
            )
        };
        assert_eq!(
            reasons(unpublished(&r, 0)),
            (vec!["A".into(), "B".into(), "C".into()], 0)
        );
        assert_eq!(reasons(unpublished(&r, 2)), (vec!["C".into()], 0));
        assert!(unpublished(&r, 3).0.is_empty());
    }

    enum Step {
        /// The device records events with these reasons, one report change each.
        Record(&'static [&'static str]),
        /// It records `n` events numbered in their message.
        Many(usize),
        /// The device goes and comes back under the same name.
        Recreate,
        /// The reader catches up: what it publishes, and how many it counts lost.
        Read(&'static [&'static str], u64),
    }

    /// The reader's logic in [`run`], against a board and its feed, without Kubernetes.
    #[test]
    fn events_are_not_lost_however_the_reports_are_coalesced() {
        use Step::*;
        let key = "ns/d";
        let new = || DeviceReport::new("ns", "d", "Kind", "a");
        let cases: &[(&str, &[Step])] = &[
            (
                "read after each",
                &[
                    Record(&["A"]),
                    Read(&["A"], 0),
                    Record(&["B"]),
                    Read(&["B"], 0),
                ],
            ),
            (
                "many reports, one read",
                &[
                    Record(&["A", "B", "C", "D"]),
                    Read(&["A", "B", "C", "D"], 0),
                ],
            ),
            (
                "nothing new",
                &[Record(&["A"]), Read(&["A"], 0), Read(&[], 0)],
            ),
            (
                "a repeat goes out again",
                &[
                    Record(&["A"]),
                    Read(&["A"], 0),
                    Record(&["A"]),
                    Read(&["A"], 0),
                    Record(&["B", "B", "C"]),
                    Read(&["B", "C"], 0),
                ],
            ),
            (
                "more than the history between two reads",
                &[
                    Record(&["A"]),
                    Read(&["A"], 0),
                    Many(30),
                    Read(&["N"; 20], 10),
                ],
            ),
            (
                "a re-created device starts again",
                &[
                    Record(&["A", "B", "C"]),
                    Read(&["A", "B", "C"], 0),
                    Recreate,
                    Record(&["D"]),
                    Read(&["D"], 0),
                ],
            ),
        ];
        for (case, steps) in cases {
            let board = StatusBoard::default();
            board.update(key, new, |_| {});
            let mut feed = board.subscribe();
            let mut published = Published::default();
            let mut counter = 0;
            for (i, step) in steps.iter().enumerate() {
                match step {
                    Record(reasons) => {
                        for reason in *reasons {
                            board.update(key, new, |r| {
                                r.record(Event::new(EventType::Normal, reason, "m"))
                            });
                        }
                    }
                    Many(n) => {
                        for _ in 0..*n {
                            counter += 1;
                            let message = counter.to_string();
                            board.update(key, new, |r| {
                                r.record(Event::new(EventType::Normal, "N", &message))
                            });
                        }
                    }
                    Recreate => {
                        board.remove(key);
                        board.update(key, new, |_| {});
                    }
                    Read(want, want_lost) => {
                        let mut sent = Vec::new();
                        let mut lost = 0;
                        while let Some(k) = feed.try_next() {
                            let (fresh, l) = board.read(&k, |r| published.take(&k, r)).unwrap();
                            sent.extend(fresh);
                            lost += l;
                        }
                        let reasons: Vec<&str> = sent.iter().map(|e| &*e.reason).collect();
                        assert_eq!(
                            (&reasons[..], lost),
                            (*want, *want_lost),
                            "{case}, step {i}"
                        );
                        if let [.., last] = &sent[..]
                            && last.reason == "N"
                        {
                            assert_eq!(last.message, counter.to_string(), "{case}: the newest");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_budget_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = Budget::new(start);
        let burst = (0..200).filter(|_| b.take(start)).count();
        assert_eq!(burst, BURST as usize);
        assert!(!b.take(start));
        let later = start + Duration::from_secs(2);
        let refilled = (0..200).filter(|_| b.take(later)).count();
        assert_eq!(refilled, (2.0 * RATE) as usize);
    }
}
