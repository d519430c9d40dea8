//! What the limb knows about each device, in one place: the supervisor writes it, the
//! terminal view, `/devices` and (in a cluster) the status relay read it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crds::Conditions;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

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
}

impl Event {
    pub fn new(type_: EventType, reason: &str, message: &str) -> Self {
        Self {
            time: now(),
            type_,
            reason: reason.to_owned(),
            message: message.to_owned(),
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
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Adds an event, keeping the newest few. A repeat of the last event replaces it.
    pub fn record(&mut self, event: Event) {
        if let Some(last) = self.events.back()
            && last.reason == event.reason
            && last.message == event.message
        {
            self.events.pop_back();
        }
        if self.events.len() >= EVENTS_KEPT {
            self.events.pop_front();
        }
        match event.type_ {
            EventType::Warning => {
                tracing::warn!(device = %self.key(), reason = %event.reason, "{}", event.message)
            }
            EventType::Normal => {
                tracing::info!(device = %self.key(), reason = %event.reason, "{}", event.message)
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
pub struct StatusBoard {
    devices: RwLock<BTreeMap<String, DeviceReport>>,
    adaptors: RwLock<BTreeMap<String, AdaptorReport>>,
    changes: broadcast::Sender<Arc<DeviceReport>>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        Self {
            devices: RwLock::default(),
            adaptors: RwLock::default(),
            changes: broadcast::channel(1024).0,
        }
    }
}

impl StatusBoard {
    /// Creates or changes the report for `key` and announces the result.
    pub fn update(
        &self,
        key: &str,
        init: impl FnOnce() -> DeviceReport,
        change: impl FnOnce(&mut DeviceReport),
    ) {
        let snapshot = {
            let mut devices = self.devices.write().unwrap_or_else(|e| e.into_inner());
            let report = devices.entry(key.to_owned()).or_insert_with(init);
            change(report);
            Arc::new(report.clone())
        };
        let _ = self.changes.send(snapshot);
    }

    /// Changes an existing report; does nothing if the device is gone.
    pub fn modify(&self, key: &str, change: impl FnOnce(&mut DeviceReport)) {
        let snapshot = {
            let mut devices = self.devices.write().unwrap_or_else(|e| e.into_inner());
            let Some(report) = devices.get_mut(key) else {
                return;
            };
            change(report);
            Arc::new(report.clone())
        };
        let _ = self.changes.send(snapshot);
    }

    pub fn remove(&self, key: &str) {
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    pub fn get(&self, key: &str) -> Option<DeviceReport> {
        self.devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// How many devices the board holds, without copying their reports.
    pub fn len(&self) -> usize {
        self.devices.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key: &str) -> bool {
        self.devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key)
    }

    pub fn devices(&self) -> Vec<DeviceReport> {
        self.devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<DeviceReport>> {
        self.changes.subscribe()
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
