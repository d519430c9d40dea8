//! Status relay: what the supervisors report reaches the API, with its own field manager.
//!
//! - Coalesced per device: the board's change feed says which devices changed, and a
//!   device's write reads its report from the board when it starts (latest wins), so
//!   nothing queues without bound: the relay holds a key per device with something to
//!   write and a report per write in flight, whatever the devices' rates and however
//!   slow the API server is. A change folded into one not written yet is counted
//!   (`output_coalesced{output="relay"}`).
//! - Written only when it changed: the instance's status is not patched again with what
//!   was last written, the link's conditions only when they differ from the link's.
//! - Concurrent, in fair turns: up to [`IN_FLIGHT`] writes at once (one API round trip
//!   each, a merge patch without a preceding read), never two for the same device;
//!   devices with something to write wait in one queue and a device goes to its back
//!   after each write. When the devices change faster than the API server accepts, every
//!   device is written once per turn of the queue, with its latest report. A device whose
//!   conditions changed (connecting, failing) goes to the front instead: that is what
//!   `kubectl get devicelinks` shows, and what connecting a thousand links waits for.
//! - A failed write (API server away, a conflict, an instance being re-created) keeps
//!   the device's latest report and is retried after `flush`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::conditions::{ConditionType, Conditions, now};
use crds::v1alpha1::DeviceLink;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::MANAGER;
use super::manager::{lookup, model_resource};
use crate::bounds::escape;
use crate::metrics::Metrics;
use crate::status::{DeviceReport, Event, EventType, Phase, StatusBoard};

/// Status writes in flight at once; one device never has two. The relay is bound by
/// in-flight writes times the API server's latency: on a loaded 2-core machine with
/// 1,000 devices, 8 in flight delivered about 230 writes/s, 32 about 330-510/s and 64
/// about 620/s (docs/benchmarks/cluster.md).
pub const IN_FLIGHT: usize = 64;

/// Status writes in flight while links are connecting (a device's conditions changed in
/// the last `SETTLE`): the link manager's finalizer and instance requests (32 at once)
/// then get a fair share of the API server.
pub const IN_FLIGHT_CONNECTING: usize = 32;
const SETTLE: Duration = Duration::from_secs(2);

/// Of those, writes of devices whose conditions did not change (a new reading only):
/// while links connect, readings of the devices already connected would otherwise take
/// most of the API server from the links still connecting. Never zero, so a device whose
/// conditions keep flapping cannot stop everyone else's readings.
pub const ROUTINE_WHILE_CONNECTING: usize = 4;

/// How long a starting device's conditions wait for it to connect. Starting takes a
/// few milliseconds and reports three stages (`AdaptorExisted`, `DeviceCreated`,
/// `DeviceConnected`); written as they came, that was about 1.5 link writes per new
/// link. A device that takes longer to connect still shows its early stages after this.
pub const START_HOLD: Duration = Duration::from_secs(1);

pub async fn run(
    client: Client,
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    links: Store<DeviceLink>,
    flush: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let coalesced = metrics.output_coalesced("relay");
    let mut feed = board.feed(coalesced.clone());
    let mut relay = Relay::new(client, links, board, coalesced);
    let mut tick = tokio::time::interval(flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        relay.dispatch();
        tokio::select! {
            key = feed.next() => relay.offer(&key),
            Some(done) = relay.tasks.join_next(), if !relay.tasks.is_empty() => relay.finish(done),
            _ = tick.tick() => relay.retry(),
            _ = shutdown.changed() => return,
        }
    }
}

/// The outcome of one device's write: its key, and what was written to the instance
/// (or why not).
type Done = (String, Result<Option<Value>, Failed>);

enum Failed {
    /// The API was unreachable or busy: the device's latest report is written later.
    Retry,
    /// The API refused the status itself (it breaks the model's schema): retrying the
    /// same document cannot help, so it is not retried; the instance keeps its last
    /// good status and an event says why.
    Rejected { status: Value, message: String },
}

struct Relay {
    client: Client,
    links: Store<DeviceLink>,
    board: Arc<StatusBoard>,
    /// Devices changed since their last write began: their report is read from the
    /// board when their write starts.
    pending: HashSet<String>,
    /// Changes folded into a pending one.
    coalesced: Counter,
    /// Devices with a pending report, in turn; each at most once.
    queue: VecDeque<String>,
    queued: HashSet<String>,
    /// Devices with a write in flight.
    writing: HashSet<String>,
    /// Of those, the ones whose conditions had not changed (a reading only).
    routine: HashSet<String>,
    /// Devices whose conditions are being written without their reading, which then
    /// waits as a routine write.
    deferred: HashSet<String>,
    /// Devices whose last write failed, queued again on the next tick.
    waiting: HashSet<String>,
    /// The conditions of each device's last report, and the devices whose conditions
    /// changed since their last write (queued at the front).
    conditions: HashMap<String, Conditions>,
    urgent: HashSet<String>,
    /// Devices starting, since when: their writes wait up to [`START_HOLD`], queued
    /// again by their next report or the flush tick.
    starting: HashMap<String, tokio::time::Instant>,
    /// When a device's conditions last changed.
    changed: Option<tokio::time::Instant>,
    /// The instance status last written, per device.
    written: HashMap<String, Value>,
    /// The status the API last refused, per device: not offered again.
    rejected: HashMap<String, Value>,
    resources: Arc<Mutex<HashMap<GroupVersionKind, ApiResource>>>,
    tasks: JoinSet<Done>,
}

impl Relay {
    fn new(
        client: Client,
        links: Store<DeviceLink>,
        board: Arc<StatusBoard>,
        coalesced: Counter,
    ) -> Self {
        Self {
            client,
            links,
            board,
            pending: HashSet::new(),
            coalesced,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            writing: HashSet::new(),
            routine: HashSet::new(),
            deferred: HashSet::new(),
            waiting: HashSet::new(),
            conditions: HashMap::new(),
            urgent: HashSet::new(),
            starting: HashMap::new(),
            changed: None,
            written: HashMap::new(),
            rejected: HashMap::new(),
            resources: Arc::default(),
            tasks: JoinSet::new(),
        }
    }

    /// A device changed: it has something to write (folded into what it had); it joins
    /// the queue unless it is in it, being written, or waiting to retry.
    fn offer(&mut self, key: &str) {
        let board = self.board.clone();
        let seen = board.read(key, |r| {
            let changed = self.conditions.get(key) != Some(&r.conditions);
            if changed {
                self.conditions.insert(key.to_owned(), r.conditions.clone());
            }
            (r.phase, changed)
        });
        let Some((phase, changed)) = seen else {
            self.forget(key);
            return;
        };
        let key = key.to_owned();
        if phase == Phase::Starting {
            self.starting
                .entry(key.clone())
                .or_insert_with(tokio::time::Instant::now);
        } else {
            self.starting.remove(&key);
        }
        if changed {
            self.changed = Some(tokio::time::Instant::now());
            if self.urgent.insert(key.clone()) && self.queued.remove(&key) {
                self.queue.retain(|k| *k != key);
            }
        }
        if !self.pending.insert(key.clone()) {
            self.coalesced.inc();
        }
        self.enqueue(key);
    }

    /// A device gone from the board: nothing is left to write for it.
    fn forget(&mut self, key: &str) {
        self.pending.remove(key);
        self.starting.remove(key);
        self.conditions.remove(key);
        self.written.remove(key);
        self.rejected.remove(key);
    }

    fn enqueue(&mut self, key: String) {
        if !self.writing.contains(&key)
            && !self.waiting.contains(&key)
            && self.queued.insert(key.clone())
        {
            if self.urgent.contains(&key) {
                self.queue.push_front(key);
            } else {
                self.queue.push_back(key);
            }
        }
    }

    /// Starts writes from the front of the queue while fewer than [`IN_FLIGHT`] run
    /// ([`IN_FLIGHT_CONNECTING`] while links connect).
    fn dispatch(&mut self) {
        let connecting = self.changed.is_some_and(|t| t.elapsed() < SETTLE);
        let (limit, routine_limit) = if connecting {
            (IN_FLIGHT_CONNECTING, ROUTINE_WHILE_CONNECTING)
        } else {
            (IN_FLIGHT, IN_FLIGHT)
        };
        while self.tasks.len() < limit {
            let Some(key) = self.queue.pop_front() else {
                return;
            };
            let routine = !self.urgent.contains(&key);
            if routine && self.routine.len() >= routine_limit {
                // Urgent devices are at the front, so everything behind is routine too.
                self.queue.push_front(key);
                return;
            }
            self.queued.remove(&key);
            if self
                .starting
                .get(&key)
                .is_some_and(|since| since.elapsed() < START_HOLD)
            {
                // Its next report (connected, or not) supersedes this one; the flush
                // tick brings it back if none comes.
                continue;
            }
            if !self.pending.remove(&key) {
                self.urgent.remove(&key);
                continue;
            }
            // The device's latest report, read now: whatever changed since it was queued
            // goes out in this write.
            let board = self.board.clone();
            let Some(plan) = board.read(&key, |report| self.plan(&key, report)) else {
                self.urgent.remove(&key);
                self.forget(&key);
                continue;
            };
            let Some(mut plan) = plan else {
                self.urgent.remove(&key);
                continue;
            };
            if connecting && !routine && plan.link.is_some() && plan.instance.take().is_some() {
                // While links connect, a changed condition goes out alone; the reading
                // waits its routine turn, behind the other links' conditions.
                self.pending.insert(key.clone());
                self.deferred.insert(key.clone());
            }
            self.writing.insert(key.clone());
            if routine {
                self.routine.insert(key.clone());
            }
            let client = self.client.clone();
            let resources = self.resources.clone();
            self.tasks.spawn(async move {
                match write(&client, &resources, &plan).await {
                    Ok(()) => (key, Ok(plan.instance.map(|(_, status)| status))),
                    Err(Refusal::Status(message)) => {
                        let status = plan.instance.map(|(_, status)| status).unwrap_or_default();
                        (key, Err(Failed::Rejected { status, message }))
                    }
                    Err(Refusal::Api(e)) => {
                        tracing::debug!(device = %key, error = %e, "status not written yet; retrying");
                        (key, Err(Failed::Retry))
                    }
                }
            });
        }
    }

    /// What to write for a device, from its report and the link in the store; `None`
    /// when nothing differs from what the API already holds.
    fn plan(&mut self, key: &str, report: &DeviceReport) -> Option<Plan> {
        let Some(link) = lookup(&self.links, key) else {
            self.written.remove(key);
            self.conditions.remove(key);
            self.starting.remove(key);
            return None;
        };
        if link.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let ns = link.namespace_or_default();
        let link_patch = link_patch(&link, report, &now());
        // Instance: the adaptor's last good status.
        let instance = (report.status.is_object()
            && self.written.get(key) != Some(&report.status)
            && self.rejected.get(key) != Some(&report.status))
        .then(|| (model_resource(&link), report.status.clone()));
        (link_patch.is_some() || instance.is_some()).then(|| Plan {
            namespace: ns.to_owned(),
            name: link.name_any(),
            link: link_patch,
            instance,
            report: stages(report),
        })
    }

    fn finish(&mut self, done: Result<Done, tokio::task::JoinError>) {
        let Ok((key, outcome)) = done else {
            // Only on a panic in a write, which the writes do not do.
            return;
        };
        self.writing.remove(&key);
        self.routine.remove(&key);
        let deferred = self.deferred.remove(&key);
        match outcome {
            Ok(status) => {
                if let Some(status) = status {
                    self.written.insert(key.clone(), status);
                }
                if deferred {
                    // The conditions are out; the reading is routine now.
                    self.urgent.remove(&key);
                }
                if self.pending.contains(&key) {
                    self.enqueue(key);
                } else {
                    self.urgent.remove(&key);
                }
            }
            Err(Failed::Retry) => {
                // Its latest report, whatever it is by then, is written on the next tick.
                self.pending.insert(key.clone());
                self.waiting.insert(key);
            }
            Err(Failed::Rejected { status, message }) => {
                tracing::warn!(device = %key, message = %escape(&message), "the API refused the device's status");
                self.rejected.insert(key.clone(), status);
                self.board.modify(&key, |r| {
                    r.record(Event::new(
                        EventType::Warning,
                        "StatusRejected",
                        &format!(
                            "the adaptor's status breaks the model's schema; the instance keeps its last good status: {message}"
                        ),
                    ))
                });
                if self.pending.contains(&key) {
                    self.enqueue(key);
                }
            }
        }
    }

    /// Queues again the devices whose write failed, and the starting ones held back.
    fn retry(&mut self) {
        let held: Vec<String> = self.starting.keys().cloned().collect();
        for key in std::mem::take(&mut self.waiting).into_iter().chain(held) {
            if self.pending.contains(&key) {
                self.enqueue(key);
            }
        }
        // Forget devices that went while nothing was left to write for them.
        let live = self.board.len() * 2 + 64;
        if self.written.len() + self.conditions.len() + self.rejected.len() > live * 3 {
            let board = &self.board;
            self.written.retain(|k, _| board.contains(k));
            self.conditions.retain(|k, _| board.contains(k));
            self.rejected.retain(|k, _| board.contains(k));
        }
    }
}

/// One device's writes: the link's conditions, the instance's status.
struct Plan {
    namespace: String,
    name: String,
    link: Option<Value>,
    instance: Option<(GroupVersionKind, Value)>,
    /// What the link patch was made from, to make it again on a newer link.
    report: DeviceReport,
}

/// What a link patch is made from: the report without its status and events, so a
/// write in flight holds one copy of the status (the one it writes).
fn stages(r: &DeviceReport) -> DeviceReport {
    let mut s = DeviceReport::new(&r.namespace, &r.name, &r.model, &r.adaptor);
    s.phase = r.phase;
    s.conditions = r.conditions.clone();
    s.adaptor_version = r.adaptor_version.clone();
    s.adaptor_digest = r.adaptor_digest.clone();
    s
}

/// The link's status patch for a report, guarded by the link's resourceVersion: the
/// limb's conditions on top of the brain's. `None` when the link already says it all.
fn link_patch(link: &DeviceLink, report: &DeviceReport, now: &str) -> Option<Value> {
    let status = link.status.clone().unwrap_or_default();
    let conditions = merge_conditions(&status.conditions, report, &link.spec.adaptor.name, now);
    let adaptor_name = conditions
        .get(ConditionType::AdaptorExisted)
        .filter(|c| c.status == crds::ConditionStatus::True)
        .map(|_| link.spec.adaptor.name.clone());
    (conditions.0 != status.conditions || adaptor_name != status.adaptor_name).then(|| {
        json!({
            "metadata": {"resourceVersion": link.resource_version()},
            "status": {"conditions": conditions.0, "adaptorName": adaptor_name},
        })
    })
}

/// Why a write did not happen.
#[derive(Debug)]
enum Refusal {
    /// Unreachable, busy, a conflict: worth retrying.
    Api(kube::Error),
    /// The API validated the instance's status and refused it.
    Status(String),
}

impl From<kube::Error> for Refusal {
    fn from(e: kube::Error) -> Self {
        Self::Api(e)
    }
}

async fn write(
    client: &Client,
    resources: &Mutex<HashMap<GroupVersionKind, ApiResource>>,
    plan: &Plan,
) -> Result<(), Refusal> {
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    if let Some(patch) = &plan.link {
        let api: Api<DeviceLink> = Api::namespaced(client.clone(), &plan.namespace);
        match api
            .patch_status(&plan.name, &pp, &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            // The relay's copy of the link trails the brain's and the manager's writes
            // while links connect. Waiting for the watch costs a flush per conflict;
            // one read gets the current link, and the patch is made again on it.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let fresh = api.get_status(&plan.name).await?;
                if fresh.metadata.deletion_timestamp.is_none()
                    && let Some(patch) = link_patch(&fresh, &plan.report, &now())
                {
                    api.patch_status(&plan.name, &pp, &Patch::Merge(&patch))
                        .await?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some((gvk, status)) = &plan.instance {
        let known = resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(gvk)
            .cloned();
        let ar = match known {
            Some(ar) => ar,
            None => {
                let (ar, _) = kube::discovery::pinned_kind(client, gvk).await?;
                resources
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(gvk.clone(), ar.clone());
                ar
            }
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &plan.namespace, &ar);
        match api
            .patch_status(&plan.name, &pp, &Patch::Merge(&json!({"status": status})))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 422 => return Err(Refusal::Status(e.message)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The link's conditions after the device's report: the brain's stages as they are, the
/// limb's on top. `AdaptorExisted` names the build that drives the device
/// (`<name> <version> (sha256:<digest prefix>)`), so `kubectl describe` and `octopus list`
/// show what each node runs. The name is edited in place: the report carries no message
/// there, and a new message at the same status must neither count as a change on every
/// report nor drop (and re-date) the later stages.
fn merge_conditions(
    stored: &[crds::Condition],
    report: &DeviceReport,
    adaptor: &str,
    now: &str,
) -> Conditions {
    let mut conditions = Conditions(stored.to_vec());
    for c in report
        .conditions
        .0
        .iter()
        .filter(|c| c.type_ >= ConditionType::AdaptorExisted)
    {
        let kept = (c.type_ == ConditionType::AdaptorExisted)
            .then(|| conditions.get(c.type_))
            .flatten()
            .filter(|p| p.status == c.status && p.reason == c.reason)
            .map(|p| p.message.clone());
        let message = kept.as_deref().unwrap_or(&c.message);
        conditions.set(c.type_, c.status, &c.reason, message, now);
    }
    if let (Some(version), Some(digest)) = (&report.adaptor_version, &report.adaptor_digest) {
        // A notice on the stage (a held swap) follows the version that runs.
        let notice = report
            .conditions
            .get(ConditionType::AdaptorExisted)
            .filter(|c| c.reason != ConditionType::AdaptorExisted.true_reason())
            .map(|c| c.message.as_str())
            .filter(|m| !m.is_empty());
        let message = match notice {
            Some(n) => format!("{adaptor} {version} (sha256:{digest}); {n}"),
            None => format!("{adaptor} {version} (sha256:{digest})"),
        };
        if let Some(c) = conditions.0.iter_mut().find(|c| {
            c.type_ == ConditionType::AdaptorExisted && c.status == crds::ConditionStatus::True
        }) && c.message != message
        {
            c.message = message;
            c.last_update_time = Some(now.to_owned());
        }
    }
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::ConditionStatus;

    fn report(version: &str) -> DeviceReport {
        let mut r = DeviceReport::new("ns", "d", "Kind", "adaptors.edge.cattle.io/x");
        for t in ConditionType::ALL {
            r.conditions.succeed(t, "t0");
        }
        r.adaptor_version = Some(version.into());
        r.adaptor_digest = Some("0123456789ab".into());
        r
    }

    #[test]
    fn an_unchanged_report_changes_nothing_and_a_new_build_only_its_message() {
        let name = "adaptors.edge.cattle.io/x";
        let mut brain = Conditions::default();
        brain.succeed(ConditionType::NodeExisted, "t0");
        brain.succeed(ConditionType::ModelExisted, "t0");
        let first = merge_conditions(&brain.0, &report("1.0"), name, "t1");
        let loaded = first.get(ConditionType::AdaptorExisted).unwrap();
        assert_eq!(loaded.message, format!("{name} 1.0 (sha256:0123456789ab)"));
        assert_eq!(first.0.len(), 5);
        // The same report again, later: nothing to write.
        let again = merge_conditions(&first.0, &report("1.0"), name, "t2");
        assert_eq!(again.0, first.0);
        // A hot swap: only the message (and its update time) moves; the later stages
        // keep their transition times.
        let swapped = merge_conditions(&first.0, &report("2.0"), name, "t3");
        let loaded = swapped.get(ConditionType::AdaptorExisted).unwrap();
        assert_eq!(loaded.message, format!("{name} 2.0 (sha256:0123456789ab)"));
        assert_eq!(swapped.0.len(), 5);
        for (a, b) in first.0.iter().zip(&swapped.0) {
            assert_eq!(
                a.last_transition_time, b.last_transition_time,
                "{:?}",
                a.type_
            );
            assert_eq!(a.status, ConditionStatus::True);
        }
    }
}
