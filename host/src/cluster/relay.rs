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
//! - Floored, if asked: a link annotated `edge.cattle.io/status-write-interval` (or every
//!   link, with `--status-write-interval`) has its instance status written at most once
//!   per interval, so a chatty device costs the API server a bounded rate. A reading
//!   inside the interval is held (latest wins, `output_coalesced{output="relay_floor"}`)
//!   and written when the interval ends, so the last one always arrives. Conditions are
//!   never held: a condition change goes out at once, with the held reading. The board,
//!   dashboard and metrics see every reading; the floor is only on the API's side.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
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
use tokio::time::Instant;

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

/// The annotation that sets a link's floor on its instance-status writes.
pub const STATUS_WRITE_INTERVAL: &str = "edge.cattle.io/status-write-interval";

/// The longest floor: an instance's status never trails its device by more.
pub const MAX_STATUS_WRITE_INTERVAL: Duration = Duration::from_secs(3600);

/// Why a floor's text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    #[error(
        "{value:?} is not a duration (such as \"1s\", \"500ms\", \"2m\"; \"0\" turns the floor off): {why}"
    )]
    Malformed { value: String, why: String },
    #[error("{value:?} is longer than the longest status write interval, 1h")]
    TooLong { value: String },
}

/// A floor from its text: a duration as `--resync` takes it (`"1s"`, `"500ms"`, `"2m"`),
/// or whole seconds (`"5"`, as Octopus's `syncInterval` also took them); `None` for zero,
/// which turns the floor off.
pub fn parse_interval(text: &str) -> Result<Option<Duration>, IntervalError> {
    let t = text.trim();
    let malformed = |why: String| IntervalError::Malformed {
        value: text.to_owned(),
        why,
    };
    let interval = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| malformed(e.to_string()))?
    } else {
        humantime::parse_duration(t).map_err(|e| malformed(e.to_string()))?
    };
    if interval > MAX_STATUS_WRITE_INTERVAL {
        return Err(IntervalError::TooLong {
            value: text.to_owned(),
        });
    }
    Ok((!interval.is_zero()).then_some(interval))
}

/// A link's floor: its annotation's, else the node's default. A malformed annotation
/// does not stop the link: the default applies, and the error says why.
pub fn link_interval(
    annotation: Option<&str>,
    default: Option<Duration>,
) -> (Option<Duration>, Option<IntervalError>) {
    match annotation.map(parse_interval) {
        None => (default, None),
        Some(Ok(interval)) => (interval, None),
        Some(Err(e)) => (default, Some(e)),
    }
}

/// When a device's instance status may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    Now,
    /// Held until then: the interval since its last write is not over.
    Hold(Instant),
}

/// A device's turn under its floor, from when its instance status was last written and
/// whether its conditions go out with this write (then nothing is held).
pub fn turn(
    last: Option<Instant>,
    interval: Option<Duration>,
    conditions: bool,
    now: Instant,
) -> Turn {
    match (conditions, last, interval) {
        (false, Some(last), Some(interval)) => match last.checked_add(interval) {
            Some(due) if now < due => Turn::Hold(due),
            _ => Turn::Now,
        },
        _ => Turn::Now,
    }
}

pub async fn run(
    client: Client,
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    links: Store<DeviceLink>,
    flush: Duration,
    floor: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let coalesced = metrics.output_coalesced("relay");
    let mut feed = board.feed(coalesced.clone());
    let mut relay = Relay::new(client, links, board, coalesced);
    relay.floor = floor;
    relay.floored = metrics.output_coalesced("relay_floor");
    let mut tick = tokio::time::interval(flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        relay.dispatch();
        let next = relay.next_due();
        tokio::select! {
            key = feed.next() => relay.offer(&key),
            Some(done) = relay.tasks.join_next(), if !relay.tasks.is_empty() => relay.finish(done),
            _ = tick.tick() => relay.retry(),
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => relay.release(),
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
    /// The node's default floor on instance-status writes.
    floor: Option<Duration>,
    /// When each device's instance status was last sent.
    sent: HashMap<String, Instant>,
    /// Devices whose reading waits for their floor to end, until when; and those ends,
    /// soonest first (an end no longer in `held` is stale and skipped).
    held: HashMap<String, Instant>,
    ends: BinaryHeap<Reverse<(Instant, String)>>,
    /// Readings held back by the floor.
    floored: Counter,
    /// Devices whose reading was deferred behind their conditions' write: it is written
    /// next, whatever the floor, as if it had gone with them.
    owed: HashSet<String>,
    /// The malformed floor annotation each device was warned about, and warnings to give.
    warned: HashMap<String, String>,
    warnings: Vec<(String, IntervalError)>,
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
            floor: None,
            sent: HashMap::new(),
            held: HashMap::new(),
            ends: BinaryHeap::new(),
            floored: Counter::default(),
            owed: HashSet::new(),
            warned: HashMap::new(),
            warnings: Vec::new(),
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
        if self.held.contains_key(&key) && !self.urgent.contains(&key) {
            // A reading inside its floor: the floor's end writes the latest one.
            self.pending.insert(key);
            self.floored.inc();
            return;
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
        self.sent.remove(key);
        self.held.remove(key);
        self.owed.remove(key);
        self.warned.remove(key);
    }

    /// Holds a device's reading until its floor ends at `end`.
    fn hold(&mut self, key: String, end: Instant) {
        if self.held.insert(key.clone(), end) != Some(end) {
            self.ends.push(Reverse((end, key)));
        }
    }

    /// When the next held reading is due.
    fn next_due(&self) -> Option<Instant> {
        self.ends.peek().map(|Reverse((end, _))| *end)
    }

    /// Queues the devices whose floor ended.
    fn release(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((end, _))) = self.ends.peek() {
            if *end > now {
                return;
            }
            let Some(Reverse((end, key))) = self.ends.pop() else {
                return;
            };
            if self.held.get(&key) == Some(&end) {
                self.held.remove(&key);
                if self.pending.contains(&key) {
                    self.enqueue(key);
                }
            }
        }
    }

    /// Says, once per value, that a link's floor annotation is malformed: as a Warning
    /// event on the link, which the board also logs.
    fn warn(&mut self) {
        for (key, e) in std::mem::take(&mut self.warnings) {
            let fallback = match self.floor {
                Some(floor) => format!("the node's default, {}", humantime::format_duration(floor)),
                None => "the node's default: none".to_owned(),
            };
            let message = format!(
                "annotation {STATUS_WRITE_INTERVAL}: {e}; the link's status write interval is {fallback}"
            );
            self.board.modify(&key, |r| {
                r.record(Event::new(
                    EventType::Warning,
                    "InvalidStatusWriteInterval",
                    &message,
                ))
            });
        }
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
            self.warn();
            let Some(mut plan) = plan else {
                self.urgent.remove(&key);
                continue;
            };
            let now = Instant::now();
            if plan.instance.is_some() {
                let conditions = plan.link.is_some() || self.owed.contains(&key);
                if let Turn::Hold(end) =
                    turn(self.sent.get(&key).copied(), plan.interval, conditions, now)
                {
                    // Nothing else to write (its conditions would have gone now): the
                    // reading waits for the floor's end, latest wins.
                    self.pending.insert(key.clone());
                    self.urgent.remove(&key);
                    self.floored.inc();
                    self.hold(key, end);
                    continue;
                }
            }
            if connecting && !routine && plan.link.is_some() && plan.instance.take().is_some() {
                // While links connect, a changed condition goes out alone; the reading
                // waits its routine turn, behind the other links' conditions.
                self.pending.insert(key.clone());
                self.deferred.insert(key.clone());
                self.owed.insert(key.clone());
            } else if plan.instance.is_some() {
                // Remembered only under a floor: without one, nothing to keep per write.
                if plan.interval.is_some() {
                    self.sent.insert(key.clone(), now);
                } else {
                    self.sent.remove(&key);
                }
                self.held.remove(&key);
                self.owed.remove(&key);
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
        let annotation = link.annotations().get(STATUS_WRITE_INTERVAL);
        let (interval, malformed) = link_interval(annotation.map(String::as_str), self.floor);
        match (malformed, annotation) {
            (Some(e), Some(value)) => {
                if self.warned.get(key) != Some(value) {
                    self.warned.insert(key.to_owned(), value.clone());
                    self.warnings.push((key.to_owned(), e));
                }
            }
            _ => {
                self.warned.remove(key);
            }
        }
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
            interval,
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

    /// Queues again the devices whose write failed, the starting ones held back, and
    /// those whose floor was shortened or turned off since their reading was held.
    fn retry(&mut self) {
        let held: Vec<String> = self.starting.keys().cloned().collect();
        for key in std::mem::take(&mut self.waiting).into_iter().chain(held) {
            if self.pending.contains(&key) {
                self.enqueue(key);
            }
        }
        let now = Instant::now();
        let shortened: Vec<String> = self
            .held
            .keys()
            .filter(|key| {
                let annotated = lookup(&self.links, key);
                let annotation = annotated
                    .as_ref()
                    .and_then(|l| l.annotations().get(STATUS_WRITE_INTERVAL));
                let (interval, _) = link_interval(annotation.map(String::as_str), self.floor);
                turn(self.sent.get(*key).copied(), interval, false, now) == Turn::Now
            })
            .cloned()
            .collect();
        for key in shortened {
            self.held.remove(&key);
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
        if self.sent.len() + self.warned.len() > live * 2 {
            let board = &self.board;
            self.sent.retain(|k, _| board.contains(k));
            self.warned.retain(|k, _| board.contains(k));
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
    /// The link's floor on instance-status writes.
    interval: Option<Duration>,
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
    fn a_floor_is_a_bounded_duration_and_zero_is_off() {
        let secs = Duration::from_secs;
        let table: &[(&str, Option<Duration>)] = &[
            ("1s", Some(secs(1))),
            ("500ms", Some(Duration::from_millis(500))),
            ("2m", Some(secs(120))),
            ("1h", Some(secs(3600))),
            (" 5 ", Some(secs(5))),
            ("0", None),
            ("0s", None),
            ("0ms", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_interval(text), Ok(*want), "{text:?}");
        }
        for bad in [
            "",
            "soon",
            "1 parsec",
            "-1s",
            "1.5.s",
            "99999999999999999999",
        ] {
            assert!(
                matches!(parse_interval(bad), Err(IntervalError::Malformed { .. })),
                "{bad:?}"
            );
        }
        for long in ["61m", "2h", "3601"] {
            let e = parse_interval(long).unwrap_err();
            assert_eq!(e, IntervalError::TooLong { value: long.into() });
            assert!(e.to_string().contains("1h"), "{e}");
        }
        let e = parse_interval("soon").unwrap_err().to_string();
        assert!(e.starts_with("\"soon\" is not a duration"), "{e}");
    }

    #[test]
    fn a_links_annotation_overrides_the_nodes_default_unless_malformed() {
        let node = Some(Duration::from_secs(2));
        let one = Some(Duration::from_secs(1));
        // (annotation, node default) -> (floor, malformed)
        type Row = (
            Option<&'static str>,
            Option<Duration>,
            Option<Duration>,
            bool,
        );
        let table: &[Row] = &[
            (None, None, None, false),
            (None, node, node, false),
            (Some("1s"), None, one, false),
            (Some("1s"), node, one, false),
            (Some("0"), node, None, false),
            (Some("0s"), None, None, false),
            (Some("soon"), None, None, true),
            (Some("soon"), node, node, true),
            (Some("2h"), node, node, true),
        ];
        for &(annotation, default, want, malformed) in table {
            let (floor, e) = link_interval(annotation, default);
            assert_eq!(
                (floor, e.is_some()),
                (want, malformed),
                "{annotation:?} over {default:?}"
            );
        }
    }

    #[test]
    fn a_reading_waits_for_its_floor_but_conditions_never_do() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let floor = Some(ms(1000));
        // (last write, floor, conditions change, now) -> turn
        type Row = (Option<Instant>, Option<Duration>, bool, Instant, Turn);
        let table: &[Row] = &[
            // Off: always now.
            (Some(t0), None, false, t0 + ms(1), Turn::Now),
            // Never written: now.
            (None, floor, false, t0, Turn::Now),
            // Inside the interval: held until it ends.
            (Some(t0), floor, false, t0, Turn::Hold(t0 + ms(1000))),
            (
                Some(t0),
                floor,
                false,
                t0 + ms(999),
                Turn::Hold(t0 + ms(1000)),
            ),
            // At or past its end: now.
            (Some(t0), floor, false, t0 + ms(1000), Turn::Now),
            (Some(t0), floor, false, t0 + ms(5000), Turn::Now),
            // A condition change goes now, and the reading with it.
            (Some(t0), floor, true, t0 + ms(1), Turn::Now),
            (None, floor, true, t0, Turn::Now),
        ];
        for (i, &(last, interval, conditions, now, want)) in table.iter().enumerate() {
            assert_eq!(turn(last, interval, conditions, now), want, "row {i}");
        }
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
