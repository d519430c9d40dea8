//! What the brain's dashboard knows: every DeviceLink, its instance's status and its
//! recent events, as three watches deliver them, with a change feed for live pages.
//!
//! Memory is bounded per device: one link, one status document, [`EVENTS`] events and
//! the shared [`History`]'s capped series.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use crds::conditions::{Condition, ConditionStatus, ConditionType};
use crds::v1alpha1::DeviceLink;
use kube::ResourceExt;
use octopus_dashboard::history::{self, DeviceHistory, History};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// Recent events kept per device.
pub const EVENTS: usize = 20;
/// Changes a live page may fall behind by before it is sent everything again.
const FEED: usize = 1024;

/// A device's phase, read from its link's conditions (the names the limb's pages use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    Pending,
    Starting,
    Healthy,
    Unhealthy,
    Quarantined,
}

impl Phase {
    /// The phase the condition pipeline shows: its last stage reached.
    pub fn of(conditions: &[Condition], quarantined: bool) -> Self {
        let last = conditions.iter().max_by_key(|c| c.type_);
        match last {
            None => Self::Pending,
            Some(c) if c.type_ == ConditionType::DeviceConnected => match c.status {
                ConditionStatus::True => Self::Healthy,
                ConditionStatus::False if quarantined => Self::Quarantined,
                ConditionStatus::False => Self::Unhealthy,
                ConditionStatus::Unknown => Self::Starting,
            },
            Some(c) if c.status == ConditionStatus::True => Self::Starting,
            Some(_) => Self::Pending,
        }
    }
}

/// One event of a device, as the device page lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventView {
    pub uid: String,
    pub time: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// What a DeviceLink says of its device.
#[derive(Clone, Debug)]
struct LinkView {
    namespace: String,
    name: String,
    model: String,
    adaptor: String,
    digest: Option<String>,
    node: String,
    conditions: Vec<Condition>,
}

impl LinkView {
    fn of(link: &DeviceLink) -> Self {
        let status = link.status.as_ref();
        Self {
            namespace: link.namespace().unwrap_or_default(),
            name: link.name_any(),
            model: link.spec.model.kind.clone(),
            adaptor: link.spec.adaptor.name.clone(),
            digest: link.spec.adaptor.digest.clone(),
            node: status
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| link.spec.adaptor.node.clone()),
            conditions: status.map(|s| s.conditions.clone()).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default)]
struct Device {
    incarnation: u64,
    link: Option<LinkView>,
    status: Value,
    events: VecDeque<EventView>,
}

impl Device {
    fn quarantined(&self) -> bool {
        // The limb says so in an event; the condition alone reads as Unhealthy.
        self.events
            .back()
            .is_some_and(|e| e.reason == "Quarantined")
    }

    fn summary(&self, key: &str) -> Option<Summary> {
        let link = self.link.as_ref()?;
        let connected = link
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::DeviceConnected);
        let failed = link
            .conditions
            .iter()
            .find(|c| c.status == ConditionStatus::False);
        Some(Summary {
            key: key.to_owned(),
            namespace: link.namespace.clone(),
            name: link.name.clone(),
            model: link.model.clone(),
            adaptor: link.adaptor.clone(),
            adaptor_version: None,
            node: Some(link.node.clone()),
            phase: Phase::of(&link.conditions, self.quarantined()),
            last_poll: connected.and_then(|c| {
                c.last_update_time
                    .clone()
                    .or_else(|| c.last_transition_time.clone())
            }),
            last_error: failed.map(|c| c.message.clone()),
        })
    }
}

/// A device as the device list shows it (the limb's fields; polls are the limb's own).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub model: String,
    pub adaptor: String,
    pub adaptor_version: Option<String>,
    pub node: Option<String>,
    pub phase: Phase,
    pub last_poll: Option<String>,
    pub last_error: Option<String>,
}

/// One device in full, as the device page shows it.
#[derive(Debug, Serialize)]
pub struct Detail {
    pub summary: Summary,
    pub report: Report,
    pub history: DeviceHistory,
}

/// The fields of the limb's device report the brain can know.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub namespace: String,
    pub name: String,
    pub phase: Phase,
    pub model: String,
    pub adaptor: String,
    pub adaptor_digest: Option<String>,
    pub last_poll: Option<String>,
    pub last_error: Option<String>,
    pub status: Value,
    pub conditions: Vec<Condition>,
    pub events: Vec<EventView>,
}

/// An adaptor as the adaptors page shows it: what the links name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdaptorView {
    pub source: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub digest: Option<String>,
    pub models: Vec<String>,
    pub devices: Vec<String>,
    pub quarantined: Vec<String>,
    pub execution: Option<String>,
    pub error: Option<String>,
}

/// The whole cluster, as the device list and adaptors pages load it.
#[derive(Debug, Serialize)]
pub struct Overview {
    pub node: Option<String>,
    pub mode: &'static str,
    pub devices: Vec<Summary>,
    pub adaptors: Vec<AdaptorView>,
}

/// Every device the watches delivered.
pub struct Store {
    devices: Mutex<Devices>,
    history: Mutex<History>,
    changes: broadcast::Sender<String>,
}

#[derive(Default)]
struct Devices {
    map: BTreeMap<String, Device>,
    incarnations: u64,
}

impl Devices {
    fn entry(&mut self, key: &str) -> &mut Device {
        if !self.map.contains_key(key) {
            self.incarnations += 1;
            let device = Device {
                incarnation: self.incarnations,
                ..Device::default()
            };
            self.map.insert(key.to_owned(), device);
        }
        // Inserted just above when missing.
        self.map.entry(key.to_owned()).or_default()
    }
}

impl Store {
    /// An empty store whose history keeps at most `max_series` series.
    pub fn new(max_series: usize) -> Self {
        Self {
            devices: Mutex::new(Devices::default()),
            history: Mutex::new(History::new(max_series)),
            changes: broadcast::channel(FEED).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Devices> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self, key: &str) {
        // No receiver is no page open: nothing to tell.
        let _ = self.changes.send(key.to_owned());
    }

    /// The change feed: the key of every device that changed.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// A link was created or changed.
    pub fn link(&self, link: &DeviceLink) {
        let key = key_of(link.namespace().as_deref(), &link.name_any());
        self.lock().entry(&key).link = Some(LinkView::of(link));
        self.changed(&key);
    }

    /// A link is gone: so is its device.
    pub fn unlink(&self, namespace: Option<&str>, name: &str) {
        let key = key_of(namespace, name);
        self.lock().map.remove(&key);
        self.history().forget(&key);
        self.changed(&key);
    }

    /// After a (re)list of links: forgets the devices of links not in it.
    pub fn keep_links(&self, present: &BTreeSet<String>) {
        let gone: Vec<String> = {
            let mut devices = self.lock();
            let gone: Vec<String> = devices
                .map
                .iter()
                .filter(|(k, d)| d.link.is_some() && !present.contains(*k))
                .map(|(k, _)| k.clone())
                .collect();
            for key in &gone {
                devices.map.remove(key);
            }
            gone
        };
        for key in gone {
            self.history().forget(&key);
            self.changed(&key);
        }
    }

    /// An instance's status was written (`Null` when the instance is gone).
    pub fn instance(&self, namespace: Option<&str>, name: &str, status: Value) {
        let key = key_of(namespace, name);
        let values = history::numeric_properties(&status);
        let incarnation = {
            let mut devices = self.lock();
            // An instance without its link is an orphan on its way out: not kept.
            let Some(device) = devices.map.get_mut(&key) else {
                return;
            };
            device.status = status;
            device.incarnation
        };
        if !values.is_empty() {
            self.history()
                .record(&key, incarnation, values, SystemTime::now());
        }
        self.changed(&key);
    }

    /// An event about a link was created or updated.
    pub fn event(&self, namespace: Option<&str>, name: &str, event: EventView) {
        let key = key_of(namespace, name);
        {
            let mut devices = self.lock();
            let Some(device) = devices.map.get_mut(&key) else {
                return;
            };
            device.events.retain(|e| e.uid != event.uid);
            if device.events.len() >= EVENTS {
                device.events.pop_front();
            }
            device.events.push_back(event);
        }
        self.changed(&key);
    }

    /// Every device with a link, in key order.
    pub fn summaries(&self) -> Vec<Summary> {
        self.lock()
            .map
            .iter()
            .filter_map(|(k, d)| d.summary(k))
            .collect()
    }

    /// One device's summary, if it has a link.
    pub fn summary(&self, key: &str) -> Option<Summary> {
        self.lock().map.get(key).and_then(|d| d.summary(key))
    }

    /// The page of one device.
    pub fn detail(&self, key: &str) -> Option<Detail> {
        let (summary, report) = {
            let devices = self.lock();
            let device = devices.map.get(key)?;
            let summary = device.summary(key)?;
            let link = device.link.as_ref()?;
            let report = Report {
                namespace: link.namespace.clone(),
                name: link.name.clone(),
                phase: summary.phase,
                model: link.model.clone(),
                adaptor: link.adaptor.clone(),
                adaptor_digest: link.digest.clone(),
                last_poll: summary.last_poll.clone(),
                last_error: summary.last_error.clone(),
                status: device.status.clone(),
                conditions: link.conditions.clone(),
                events: device.events.iter().cloned().collect(),
            };
            (summary, report)
        };
        let history = self.history().device(key);
        Some(Detail {
            summary,
            report,
            history,
        })
    }

    /// The adaptors the links name, with their devices.
    pub fn adaptors(&self, devices: &[Summary]) -> Vec<AdaptorView> {
        let digests: HashMap<String, Option<String>> = self
            .lock()
            .map
            .values()
            .filter_map(|d| d.link.as_ref())
            .map(|l| (l.adaptor.clone(), l.digest.clone()))
            .collect();
        let mut by: BTreeMap<&str, Vec<&Summary>> = BTreeMap::new();
        for d in devices {
            by.entry(&d.adaptor).or_default().push(d);
        }
        by.into_iter()
            .map(|(adaptor, ds)| AdaptorView {
                source: adaptor.to_owned(),
                name: adaptor.rsplit('/').next().map(str::to_owned),
                version: None,
                digest: digests.get(adaptor).cloned().flatten(),
                models: ds
                    .iter()
                    .map(|d| d.model.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                devices: ds.iter().map(|d| d.key.clone()).collect(),
                quarantined: ds
                    .iter()
                    .filter(|d| d.phase == Phase::Quarantined)
                    .map(|d| d.key.clone())
                    .collect(),
                execution: None,
                error: None,
            })
            .collect()
    }

    /// The overview the list pages load.
    pub fn overview(&self) -> Overview {
        let devices = self.summaries();
        let adaptors = self.adaptors(&devices);
        Overview {
            node: None,
            mode: "cluster-wide",
            devices,
            adaptors,
        }
    }

    /// Series and points the history holds (for tests and the density benchmark).
    pub fn history_size(&self) -> (usize, usize) {
        let h = self.history();
        (h.series(), h.points())
    }
}

/// `namespace/name`, the key every page uses.
pub fn key_of(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn link(name: &str, node: &str, conditions: Value) -> DeviceLink {
        serde_json::from_value(json!({
            "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "adaptor": {"node": node, "name": "adaptors.edge.cattle.io/dummy"},
                "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
                "template": {"spec": {}}
            },
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn cond(t: &str, s: &str) -> Value {
        json!({"type": t, "status": s, "reason": "r", "message": format!("{t} {s}")})
    }

    #[test]
    fn the_phase_is_the_last_stage_reached() {
        let phase = |conds: Value| {
            let l = link("x", "n", conds);
            Phase::of(&l.status.unwrap().conditions, false)
        };
        assert_eq!(phase(json!([])), Phase::Pending);
        assert_eq!(phase(json!([cond("NodeExisted", "False")])), Phase::Pending);
        assert_eq!(
            phase(json!([
                cond("NodeExisted", "True"),
                cond("ModelExisted", "True")
            ])),
            Phase::Starting
        );
        let all = |last: &str| {
            json!([
                cond("NodeExisted", "True"),
                cond("ModelExisted", "True"),
                cond("AdaptorExisted", "True"),
                cond("DeviceCreated", "True"),
                cond("DeviceConnected", last)
            ])
        };
        assert_eq!(phase(all("True")), Phase::Healthy);
        assert_eq!(phase(all("False")), Phase::Unhealthy);
        assert_eq!(phase(all("Unknown")), Phase::Starting);
    }

    #[test]
    fn links_instances_and_events_make_a_device_and_its_history() {
        let store = Store::new(16);
        let mut feed = store.subscribe();
        store.instance(Some("default"), "fan", json!({"speed": 1}));
        assert!(
            store.summaries().is_empty(),
            "an instance alone is no device"
        );
        store.link(&link("fan", "edge-1", json!([cond("NodeExisted", "True")])));
        store.instance(
            Some("default"),
            "fan",
            json!({"speed": 2, "label": "<script>"}),
        );
        store.event(
            Some("default"),
            "fan",
            EventView {
                uid: "u".into(),
                time: "t".into(),
                type_: "Normal".into(),
                reason: "Started".into(),
                message: "m".into(),
            },
        );
        let d = store.detail("default/fan").unwrap();
        assert_eq!(d.summary.node.as_deref(), Some("edge-1"));
        assert_eq!(d.report.status["label"], "<script>");
        assert_eq!(d.report.events.len(), 1);
        assert_eq!(d.history.series["speed"].len(), 1);
        assert_eq!(feed.try_recv().unwrap(), "default/fan");
        let o = store.overview();
        assert_eq!(o.adaptors.len(), 1);
        assert_eq!(o.adaptors[0].devices, ["default/fan"]);
        store.unlink(Some("default"), "fan");
        assert!(store.detail("default/fan").is_none());
        assert_eq!(store.history_size(), (0, 0), "its history is forgotten");
    }

    #[test]
    fn events_are_bounded_per_device_and_replaced_by_uid() {
        let store = Store::new(16);
        store.link(&link("fan", "edge-1", json!([])));
        for i in 0..EVENTS + 5 {
            let e = EventView {
                uid: format!("u{}", i % (EVENTS + 2)),
                time: String::new(),
                type_: "Normal".into(),
                reason: "R".into(),
                message: i.to_string(),
            };
            store.event(Some("default"), "fan", e);
        }
        let d = store.detail("default/fan").unwrap();
        assert_eq!(d.report.events.len(), EVENTS);
        let relisted: BTreeSet<String> = BTreeSet::new();
        store.keep_links(&relisted);
        assert!(store.summaries().is_empty(), "a relist without it drops it");
    }
}
