//! Device events to Kubernetes: what a supervisor or an adaptor records on the board
//! (a swap, a refused grant, a trap, `events.record-event`) becomes an `events.k8s.io`
//! Event on the device's DeviceLink, so `kubectl describe dl` shows it.
//!
//! Bounded: every device's events are read from the board's short history, a repeat of
//! the last one published for a device is folded into its series by the recorder, and
//! the whole limb publishes at most [`RATE`] events per second (bursts of [`BURST`]);
//! beyond that events are dropped and counted, never queued.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crds::v1alpha1::DeviceLink;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::MANAGER;
use super::manager::lookup;
use crate::status::{DeviceReport, Event, EventType, StatusBoard};

/// Events per second the limb publishes, sustained.
pub const RATE: f64 = 10.0;
/// Events the limb may publish at once after a quiet spell.
pub const BURST: f64 = 50.0;

/// What to publish next: the events of `report` after `last` (the newest one already
/// published for the device). When `last` fell out of the board's short history, all
/// of them are new.
pub fn unpublished(report: &DeviceReport, last: Option<&Event>) -> Vec<Event> {
    let start = last
        .and_then(|last| report.events.iter().rposition(|e| e == last))
        .map_or(0, |i| i + 1);
    report.events.iter().skip(start).cloned().collect()
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
    let mut rx = board.subscribe();
    let mut published: HashMap<String, Event> = HashMap::new();
    let mut budget = Budget::new(Instant::now());
    let mut dropped: u64 = 0;
    let mut told = Instant::now();
    loop {
        let report = tokio::select! {
            msg = rx.recv() => match msg {
                Ok(r) => r,
                // Fell behind: whatever is still in the history goes out with the
                // device's next report.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        };
        let key = report.key();
        let fresh = unpublished(&report, published.get(&key));
        let Some(newest) = fresh.last().cloned() else {
            continue;
        };
        published.insert(key.clone(), newest);
        let Some(link) = lookup(&links, &key) else {
            continue;
        };
        let reference = link.object_ref(&());
        for ev in fresh {
            if !budget.take(Instant::now()) {
                dropped += 1;
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
                "device events dropped: more than {RATE}/s were recorded"
            );
            dropped = 0;
            told = Instant::now();
        }
        // Forget devices that are gone, so the map stays as large as the fleet.
        if published.len() > board.len() * 2 + 64 {
            published.retain(|k, _| board.contains(k));
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
        let reasons = |es: Vec<Event>| es.iter().map(|e| e.reason.clone()).collect::<Vec<_>>();
        assert_eq!(reasons(unpublished(&r, None)), ["A", "B", "C"]);
        let b = r.events[1].clone();
        assert_eq!(reasons(unpublished(&r, Some(&b))), ["C"]);
        let c = r.events[2].clone();
        assert!(unpublished(&r, Some(&c)).is_empty());
        // The last published event fell out of the history: everything is new.
        let gone = Event::new(EventType::Warning, "Old", "x");
        assert_eq!(reasons(unpublished(&r, Some(&gone))), ["A", "B", "C"]);
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
