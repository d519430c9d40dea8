//! What the limb knows about each device, in one place: the supervisor writes it, the
//! terminal view, `/devices` and (in a cluster) the status relay read it.
//!
//! Readers that follow changes (JSON lines, the relay, Kubernetes events) get a
//! [`Changes`] feed: it tells them *which* devices changed, at most once each until
//! they look, and they read the current report when they get to it. A slow reader
//! therefore holds one key per device, never a queue of reports (latest wins), and a
//! change folded into one not yet read is counted.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crds::Conditions;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use crate::bounds::escape;

/// Events kept per device.
const EVENTS_KEPT: usize = 20;

/// RFC 3339 with milliseconds, as Kubernetes shows times.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Waiting for something outside the device: its adaptor, a valid spec, a grant.
    Pending,
    /// Instantiating and configuring.
    Starting,
    /// The last poll succeeded.
    Healthy,
    /// The adaptor answered with an error; it keeps being polled.
    Unhealthy,
    /// The instance trapped and is restarted after a delay.
    Backoff,
    /// Too many traps in a row; nothing runs until the spec or adaptor changes.
    Quarantined,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// One event, as `kubectl describe` would show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub time: String,
    #[serde(rename = "type")]
    pub type_: EventType,
    pub reason: String,
    pub message: String,
    /// Its number among the device's events (from 1; 0 until recorded), so a reader
    /// that skipped reports still knows which events it has not sent.
    #[serde(skip)]
    pub seq: u64,
}

impl Event {
    pub fn new(type_: EventType, reason: &str, message: &str) -> Self {
        Self {
            time: now(),
            type_,
            reason: reason.to_owned(),
            message: message.to_owned(),
            seq: 0,
        }
    }
}

/// The observed state of one device.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceReport {
    pub namespace: String,
    pub name: String,
    pub model: String,
    pub adaptor: String,
    pub adaptor_version: Option<String>,
    pub adaptor_digest: Option<String>,
    pub phase: Phase,
    pub conditions: Conditions,
    /// The last good status document from the adaptor.
    pub status: Value,
    pub last_error: Option<String>,
    pub poll_interval_ms: Option<u64>,
    pub polls: u64,
    pub failed_polls: u64,
    pub traps: u64,
    pub restarts: u64,
    pub swaps: u64,
    pub last_poll: Option<String>,
    pub grants: Vec<String>,
    pub events: VecDeque<Event>,
    /// Events recorded so far: the `seq` of the newest.
    #[serde(skip)]
    pub events_recorded: u64,
    /// Which life of the device this report is, set by the board when it creates it:
    /// a device re-created under the same name numbers its events from 1 again.
    #[serde(skip)]
    pub incarnation: u64,
    /// The link opts its readings into `/metrics` (its annotation).
    #[serde(skip)]
    pub device_metrics: bool,
}

impl DeviceReport {
    pub fn new(namespace: &str, name: &str, model: &str, adaptor: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            model: model.to_owned(),
            adaptor: adaptor.to_owned(),
            adaptor_version: None,
            adaptor_digest: None,
            phase: Phase::Pending,
            conditions: Conditions::default(),
            status: Value::Null,
            last_error: None,
            poll_interval_ms: None,
            polls: 0,
            failed_polls: 0,
            traps: 0,
            restarts: 0,
            swaps: 0,
            last_poll: None,
            grants: Vec::new(),
            events: VecDeque::new(),
            events_recorded: 0,
            incarnation: 0,
            device_metrics: false,
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Adds an event, keeping the newest few. A repeat of the last event replaces it
    /// (with a new number: it happened again).
    pub fn record(&mut self, mut event: Event) {
        if let Some(last) = self.events.back()
            && last.reason == event.reason
            && last.message == event.message
        {
            self.events.pop_back();
        }
        if self.events.len() >= EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events_recorded += 1;
        event.seq = self.events_recorded;
        // Reasons and messages come from the adaptor: escaped so they cannot forge log lines.
        let (device, reason, message) = (self.key(), &event.reason, &event.message);
        let (device, reason, message) = (escape(&device), escape(reason), escape(message));
        match event.type_ {
            EventType::Warning => {
                tracing::warn!(device = %device, reason = %reason, "{message}")
            }
            EventType::Normal => {
                tracing::info!(device = %device, reason = %reason, "{message}")
            }
        }
        self.events.push_back(event);
    }
}

/// A loaded (or refused) adaptor, for `/adaptors` and the terminal view.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdaptorReport {
    pub source: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub digest: Option<String>,
    pub models: Vec<String>,
    pub error: Option<String>,
    pub loaded_at: String,
}

impl AdaptorReport {
    /// A component that could not be loaded from `source`.
    pub fn refused(
        source: &str,
        name: Option<String>,
        digest: Option<String>,
        error: &str,
    ) -> Self {
        Self {
            source: source.to_owned(),
            name,
            version: None,
            digest,
            models: Vec::new(),
            error: Some(error.to_owned()),
            loaded_at: now(),
        }
    }
}

/// Shared by every writer and reader of device state.
#[derive(Default)]
pub struct StatusBoard {
    shared: Arc<Shared>,
    adaptors: RwLock<BTreeMap<String, AdaptorReport>>,
}

/// What the board and its feeds share.
#[derive(Default)]
struct Shared {
    devices: RwLock<Devices>,
    feeds: RwLock<Vec<Arc<Feed>>>,
}

#[derive(Default)]
struct Devices {
    reports: BTreeMap<String, Slot>,
    /// The last incarnation handed out.
    incarnations: u64,
}

/// One device: its report, and its key as the feeds hold it (shared, not copied).
struct Slot {
    key: Arc<str>,
    report: DeviceReport,
}

impl StatusBoard {
    /// Creates or changes the report for `key` and announces the change. Nothing is
    /// copied: followers are told the key and read the report themselves.
    pub fn update(
        &self,
        key: &str,
        init: impl FnOnce() -> DeviceReport,
        change: impl FnOnce(&mut DeviceReport),
    ) {
        let mut devices = self.shared.write();
        if !devices.reports.contains_key(key) {
            devices.incarnations += 1;
            let mut report = init();
            report.incarnation = devices.incarnations;
            let slot = Slot {
                key: Arc::from(key),
                report,
            };
            devices.reports.insert(key.to_owned(), slot);
        }
        if let Some(slot) = devices.reports.get_mut(key) {
            change(&mut slot.report);
            self.shared.announce(&slot.key);
        }
    }

    /// Changes an existing report; does nothing if the device is gone.
    pub fn modify(&self, key: &str, change: impl FnOnce(&mut DeviceReport)) {
        let mut devices = self.shared.write();
        if let Some(slot) = devices.reports.get_mut(key) {
            change(&mut slot.report);
            self.shared.announce(&slot.key);
        }
    }

    /// Forgets a device. Followers are not told: a feed only ever holds live devices.
    pub fn remove(&self, key: &str) {
        let mut devices = self.shared.write();
        if devices.reports.remove(key).is_some() {
            // Under the board's lock, so a re-created device's first change is kept.
            for feed in self.shared.feeds().iter() {
                feed.forget(key);
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<DeviceReport> {
        self.read(key, DeviceReport::clone)
    }

    /// Reads a device's report in place, without copying it. `f` runs under the
    /// board's read lock: keep it short, and never wait in it.
    pub fn read<T>(&self, key: &str, f: impl FnOnce(&DeviceReport) -> T) -> Option<T> {
        self.shared.read().reports.get(key).map(|s| f(&s.report))
    }

    /// Reads every report in place, in key order; as [`read`](Self::read), under the lock.
    pub fn for_each(&self, mut f: impl FnMut(&DeviceReport)) {
        for slot in self.shared.read().reports.values() {
            f(&slot.report);
        }
    }

    /// How many devices the board holds, without copying their reports.
    pub fn len(&self) -> usize {
        self.shared.read().reports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key: &str) -> bool {
        self.shared.read().reports.contains_key(key)
    }

    pub fn devices(&self) -> Vec<DeviceReport> {
        self.shared
            .read()
            .reports
            .values()
            .map(|s| s.report.clone())
            .collect()
    }

    /// Follows changes, counting what it coalesces nowhere; see [`feed`](Self::feed).
    pub fn subscribe(&self) -> Changes {
        self.feed(Counter::default())
    }

    /// Follows changes: every device changed from now on is announced once until it is
    /// read; a change to a device already announced and not yet read adds one to
    /// `coalesced`.
    pub fn feed(&self, coalesced: Counter) -> Changes {
        let feed = Arc::new(Feed {
            dirty: Mutex::default(),
            ready: Notify::new(),
            coalesced,
        });
        self.shared
            .feeds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(feed.clone());
        Changes {
            feed,
            shared: self.shared.clone(),
        }
    }

    pub fn set_adaptor(&self, report: AdaptorReport) {
        self.adaptors
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(report.source.clone(), report);
    }

    pub fn remove_adaptor(&self, source: &str) {
        self.adaptors
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(source);
    }

    pub fn adaptors(&self) -> Vec<AdaptorReport> {
        self.adaptors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Devices> {
        self.devices.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Devices> {
        self.devices.write().unwrap_or_else(|e| e.into_inner())
    }

    fn feeds(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Feed>>> {
        self.feeds.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `key` changed in every feed. Called under the board's write lock, so
    /// feeds see changes in the order they were made.
    fn announce(&self, key: &Arc<str>) {
        for feed in self.feeds().iter() {
            feed.mark(key);
        }
    }
}

/// One follower's devices changed and not yet read.
struct Feed {
    dirty: Mutex<Dirty>,
    ready: Notify,
    coalesced: Counter,
}

/// A set of keys in the order they first changed: each key at most once, so it never
/// holds more than the board's devices.
#[derive(Default)]
struct Dirty {
    order: VecDeque<Arc<str>>,
    keys: HashSet<Arc<str>>,
}

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Dirty> {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark(&self, key: &Arc<str>) {
        {
            let mut dirty = self.lock();
            if dirty.keys.contains(&**key) {
                drop(dirty);
                self.coalesced.inc();
                return;
            }
            dirty.keys.insert(key.clone());
            dirty.order.push_back(key.clone());
        }
        self.ready.notify_one();
    }

    fn forget(&self, key: &str) {
        let mut dirty = self.lock();
        if dirty.keys.remove(key) {
            dirty.order.retain(|k| &**k != key);
        }
    }
}

/// A follower's side of the board's change feed (from [`StatusBoard::feed`]): which
/// devices changed since it last looked, oldest change first. Dropping it stops the
/// announcements.
pub struct Changes {
    feed: Arc<Feed>,
    shared: Arc<Shared>,
}

impl Changes {
    /// The next device changed since it was last returned, if any.
    pub fn try_next(&mut self) -> Option<Arc<str>> {
        let mut dirty = self.feed.lock();
        let key = dirty.order.pop_front()?;
        dirty.keys.remove(&key);
        Some(key)
    }

    /// Waits for a device to change and returns its key; read the report from the
    /// board. Cancel-safe: a key is only taken when it is returned.
    pub async fn next(&mut self) -> Arc<str> {
        loop {
            if let Some(key) = self.try_next() {
                return key;
            }
            self.feed.ready.notified().await;
        }
    }

    /// The current report of the next device that changed (a copy: for tests and
    /// tools; the outputs read in place).
    pub async fn recv(&mut self) -> DeviceReport {
        loop {
            let key = self.next().await;
            let report = self
                .shared
                .read()
                .reports
                .get(&*key)
                .map(|s| s.report.clone());
            if let Some(report) = report {
                return report;
            }
        }
    }

    /// Devices changed and not read yet.
    pub fn pending(&self) -> usize {
        self.feed.lock().order.len()
    }

    /// Changes folded into one not read yet, so far.
    pub fn coalesced(&self) -> u64 {
        self.feed.coalesced.get()
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.shared
            .feeds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|f| !Arc::ptr_eq(f, &self.feed));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn init(key: &str) -> impl FnOnce() -> DeviceReport + '_ {
        move || {
            let (ns, name) = key.split_once('/').unwrap_or(("ns", key));
            DeviceReport::new(ns, name, "Kind", "a")
        }
    }

    /// A status document of about `bytes`.
    fn big_status(bytes: usize) -> Value {
        serde_json::json!({ "pad": "x".repeat(bytes) })
    }

    #[test]
    fn a_flood_the_follower_does_not_read_holds_one_key_per_device() {
        let status = big_status(1 << 20);
        // (devices, updates in all, round-robin)
        for (devices, updates) in [(1usize, 10_000u64), (3, 10_000), (50, 10_000)] {
            let board = StatusBoard::default();
            let keys: Vec<String> = (0..devices).map(|i| format!("ns/d{i}")).collect();
            for key in &keys {
                board.update(key, init(key), |r| r.status = status.clone());
            }
            let feed = board.feed(Counter::default());
            for n in 0..updates {
                let key = &keys[usize::try_from(n).unwrap() % devices];
                board.update(key, init(key), |r| r.polls += 1);
                assert!(feed.pending() <= devices);
            }
            let case = format!("{devices} devices, {updates} updates");
            assert_eq!(feed.pending(), devices, "{case}");
            assert_eq!(feed.coalesced(), updates - devices as u64, "{case}");
            let mut feed = feed;
            let mut seen = Vec::new();
            while let Some(key) = feed.try_next() {
                // The reader sees the latest report, whatever it skipped.
                let polls = board.read(&key, |r| r.polls).unwrap();
                let i: u64 = key.trim_start_matches("ns/d").parse().unwrap();
                let want = updates / devices as u64 + u64::from(i < updates % devices as u64);
                assert_eq!(polls, want, "{case}: {key}");
                seen.push(key.to_string());
            }
            assert_eq!(
                seen, keys,
                "{case}: each device once, in the order they changed"
            );
            assert_eq!(feed.pending(), 0);
        }
    }

    #[test]
    fn a_change_after_a_read_is_announced_again_and_not_counted() {
        let board = StatusBoard::default();
        let mut feed = board.feed(Counter::default());
        for round in 1..=3 {
            board.update("ns/a", init("ns/a"), |r| r.polls += 1);
            assert_eq!(feed.try_next().as_deref(), Some("ns/a"), "round {round}");
            assert_eq!(feed.try_next(), None);
        }
        assert_eq!(feed.coalesced(), 0);
        // `modify` announces too, but not for a device that is not there.
        board.modify("ns/a", |r| r.polls += 1);
        board.modify("ns/gone", |r| r.polls += 1);
        assert_eq!(feed.try_next().as_deref(), Some("ns/a"));
        assert_eq!(feed.try_next(), None);
    }

    #[test]
    fn followers_are_independent_and_nobody_following_costs_nothing() {
        let board = StatusBoard::default();
        // Nobody follows: nothing is held for anyone.
        board.update("ns/a", init("ns/a"), |r| r.polls += 1);
        let mut reader = board.subscribe();
        let idle = board.feed(Counter::default());
        for _ in 0..100 {
            board.update("ns/a", init("ns/a"), |r| r.polls += 1);
            assert_eq!(reader.try_next().as_deref(), Some("ns/a"));
        }
        assert_eq!((reader.coalesced(), reader.pending()), (0, 0));
        assert_eq!((idle.coalesced(), idle.pending()), (99, 1));
        assert_eq!(board.shared.feeds().len(), 2);
        drop(idle);
        drop(reader);
        assert_eq!(board.shared.feeds().len(), 0, "a dropped feed is forgotten");
    }

    #[test]
    fn coalesced_changes_are_counted_in_the_metrics() {
        let metrics = crate::metrics::Metrics::default();
        let board = StatusBoard::default();
        let mut feed = board.feed(metrics.output_coalesced("json"));
        for _ in 0..3 {
            board.update("ns/a", init("ns/a"), |r| r.polls += 1);
        }
        assert_eq!(feed.try_next().as_deref(), Some("ns/a"));
        let text = metrics.encode();
        let line = r#"octopus_limb_output_coalesced_total{output="json"} 2"#;
        assert!(text.contains(line), "missing {line} in\n{text}");
    }

    #[test]
    fn a_removed_device_leaves_the_feed_and_comes_back_as_a_new_life() {
        let board = StatusBoard::default();
        let mut feed = board.subscribe();
        board.update("ns/a", init("ns/a"), |r| r.polls += 1);
        board.update("ns/b", init("ns/b"), |r| r.polls += 1);
        let first = board.read("ns/a", |r| r.incarnation).unwrap();
        board.remove("ns/a");
        assert_eq!(feed.pending(), 1);
        board.update("ns/a", init("ns/a"), |r| r.polls += 1);
        assert_eq!(feed.try_next().as_deref(), Some("ns/b"));
        assert_eq!(feed.try_next().as_deref(), Some("ns/a"));
        let second = board.read("ns/a", |r| (r.incarnation, r.polls)).unwrap();
        assert!(second.0 > first, "{second:?} after {first}");
        assert_eq!(second.1, 1);
    }

    #[tokio::test]
    async fn next_waits_for_a_change_and_recv_reads_the_latest_report() {
        let board = Arc::new(StatusBoard::default());
        let mut feed = board.subscribe();
        let writer = {
            let board = board.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                for _ in 0..5 {
                    board.update("ns/a", init("ns/a"), |r| r.polls += 1);
                }
            })
        };
        let key = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .unwrap();
        assert_eq!(&*key, "ns/a");
        writer.await.unwrap();
        board.update("ns/a", init("ns/a"), |r| r.polls += 1);
        let report = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .unwrap();
        assert_eq!(report.polls, 6);
    }

    #[test]
    fn events_are_numbered_and_a_repeat_gets_a_new_number() {
        let mut r = DeviceReport::new("ns", "d", "Kind", "a");
        for reason in ["A", "B", "B", "C"] {
            r.record(Event::new(EventType::Normal, reason, "m"));
        }
        let seqs: Vec<(&str, u64)> = r.events.iter().map(|e| (&*e.reason, e.seq)).collect();
        assert_eq!(seqs, [("A", 1), ("B", 3), ("C", 4)]);
        for i in 0..(EVENTS_KEPT as u64 + 5) {
            r.record(Event::new(EventType::Normal, "N", &i.to_string()));
        }
        assert_eq!(r.events.len(), EVENTS_KEPT);
        assert_eq!(r.events.back().map(|e| e.seq), Some(r.events_recorded));
        // The numbers stay out of the JSON outputs.
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["events"][0].get("seq").is_none(), "{json}");
        assert!(json.get("incarnation").is_none());
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn guest_text_cannot_forge_log_lines() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer({
                let out = out.clone();
                move || out.clone()
            })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let mut r = DeviceReport::new("ns", "d", "Kind", "a");
            for (type_, reason, message) in [
                (
                    EventType::Warning,
                    "Bad\u{1b}[2J",
                    "ok\n2026-01-01T00:00:00Z  INFO limb: forged",
                ),
                (EventType::Normal, "Fine\r\n", "\u{202e}evil\u{1b}[31m"),
            ] {
                r.record(Event::new(type_, reason, message));
            }
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains(['\u{1b}', '\r', '\u{202e}']), "{text:?}");
        assert!(text.contains("ok\\n2026"), "{text}");
    }
}
