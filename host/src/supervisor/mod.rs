//! One supervisor task per device: instantiate, configure, poll on the interval the
//! adaptor asked for, publish status, restart after traps with backoff, quarantine
//! after repeated traps, apply spec changes, and hot-swap to new adaptor versions.
//!
//! Devices share nothing but the engine, so one device's trouble (a busy loop, a trap,
//! a slow host call) delays no other device's poll.

mod backoff;
mod inbox;
mod instance;
mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crds::{ConditionType, DeviceLink};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

pub use backoff::{Decision, RestartPolicy};
pub use instance::{CallError, Instance, describe_trap};

use crate::adaptors::Adaptor;
use crate::bindings::{AdaptorError, DeviceConfig, DeviceIdentity, Model, ReferenceValue};
use crate::capabilities::{Backends, Grants, Limits, Policy};
use crate::engine::{DeviceTag, Runtime, Stop};
use crate::extension::{Extensions, Identity};
use crate::metrics::Metrics;
use crate::status::{DeviceReport, Event, EventType, Phase, StatusBoard, now};

/// Successful polls after which an instance's earlier traps are forgiven.
const STABLE_AFTER_POLLS: u32 = 10;

/// How long a device must go without spending its whole CPU budget before earlier
/// exhaustions are forgiven. Good polls do not forgive them: a throttled device still
/// completes polls, slowly, while it takes its whole budget.
const EXHAUSTION_FORGIVEN_AFTER: Duration = Duration::from_secs(300);

/// Everything supervisors share.
pub struct Context {
    pub runtime: Arc<Runtime>,
    pub board: Arc<StatusBoard>,
    pub metrics: Arc<Metrics>,
    pub policy: Arc<Policy>,
    pub limits: Limits,
    pub backends: Backends,
    pub restart: RestartPolicy,
    /// Largest status document accepted from an adaptor.
    pub max_status_bytes: usize,
    /// Host-side extensions (the MQTT status publisher) of every device.
    pub extensions: Arc<Extensions>,
}

/// What a supervisor can be told.
pub enum Command {
    /// The DeviceLink or the values its references resolve to changed.
    Update(Arc<DeviceLink>, Vec<ReferenceValue>),
    /// A new version of the device's adaptor is loaded.
    Swap(Arc<Adaptor>),
}

/// The owner's side of a running supervisor.
pub struct Handle {
    tx: inbox::Sender<Command>,
    task: JoinHandle<()>,
    stop: Arc<Stop>,
    key: String,
    ctx: Arc<Context>,
    pub adaptor_name: String,
}

impl Handle {
    pub fn send(&self, cmd: Command) {
        self.tx.send(cmd);
    }

    /// Stops the device and waits until it has: a running call is interrupted at once,
    /// then the adaptor's `shutdown` runs under its own deadline.
    pub async fn stop(self) {
        let task = self.retire_inner();
        let _ = task.await;
    }

    /// Stops the device without waiting for it: what a fleet does when a link goes, so
    /// that no change waits behind one device's `shutdown`. The device's outputs
    /// (extensions, metrics) are gone when this returns.
    pub fn retire(self) {
        drop(self.retire_inner());
    }

    fn retire_inner(self) -> JoinHandle<()> {
        self.stop.set();
        drop(self.tx);
        self.ctx.extensions.remove(&self.key);
        self.ctx.metrics.forget_device(&self.key);
        self.task
    }
}

/// Stops every device at once and waits for all: a slow `shutdown` delays no other.
pub async fn stop_all(handles: impl IntoIterator<Item = Handle>) {
    let stopping: Vec<_> = handles
        .into_iter()
        .map(|h| tokio::spawn(h.stop()))
        .collect();
    for s in stopping {
        let _ = s.await;
    }
}

/// Starts supervising `link` with `adaptor`.
pub fn spawn(
    ctx: Arc<Context>,
    link: Arc<DeviceLink>,
    adaptor: Arc<Adaptor>,
    references: Vec<ReferenceValue>,
) -> Handle {
    let (tx, rx) = inbox::inbox();
    let key = link.key();
    let adaptor_name = adaptor.info.name.clone();
    let stop = Arc::new(Stop::default());
    let span = tracing::info_span!("limb.device", device = %key);
    let sup = Supervisor {
        tag: DeviceTag(key.as_str().into()),
        key: key.clone(),
        ctx: ctx.clone(),
        stop: stop.clone(),
        link,
        adaptor,
        references,
        current: None,
        probation: None,
        grants: Arc::new(Grants::default()),
        interval: None,
        next_poll: Instant::now(),
        failures: 0,
        traps_in_row: 0,
        good_polls: 0,
        exhaustions: 0,
        last_exhaustion: None,
        retry_at: None,
        blocked: None,
        refused_digests: HashSet::new(),
    };
    let task = tokio::spawn(Box::new(sup).run(rx).instrument(span));
    Handle {
        tx,
        task,
        stop,
        key,
        ctx,
        adaptor_name,
    }
}

/// Why a device is not being started.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Blocked {
    /// The spec or grants are wrong; waits for the link to change.
    Spec(String),
    /// Too many traps; waits for the link or adaptor to change.
    Quarantined(String),
}

struct Supervisor {
    ctx: Arc<Context>,
    key: String,
    tag: DeviceTag,
    /// Set when the device is removed: running calls end, nothing more is reported.
    stop: Arc<Stop>,
    link: Arc<DeviceLink>,
    adaptor: Arc<Adaptor>,
    references: Vec<ReferenceValue>,
    current: Option<Instance>,
    /// The previous version after a swap, kept until the new one's first poll succeeds.
    probation: Option<Instance>,
    grants: Arc<Grants>,
    interval: Option<Duration>,
    next_poll: Instant,
    /// Failed starts and dead instances in a row (for the backoff delay).
    failures: u32,
    /// Traps without a stable instance in between (for quarantine); an unreachable
    /// device is never quarantined.
    traps_in_row: u32,
    /// Successful polls of the current instance.
    good_polls: u32,
    /// Instances stopped for spending their CPU budget, and when the last one was.
    exhaustions: u32,
    last_exhaustion: Option<Instant>,
    retry_at: Option<Instant>,
    blocked: Option<Blocked>,
    /// Adaptor versions that failed to take over this device; not retried.
    refused_digests: HashSet<String>,
}

impl Supervisor {
    /// Boxed so the task holds a pointer, not a second copy of the supervisor.
    async fn run(mut self: Box<Self>, mut rx: inbox::Receiver<Command>) {
        self.report(|_| {});
        self.configure_extensions();
        loop {
            if self.current.is_none()
                && self.blocked.is_none()
                && self.retry_at.is_none_or(|t| t <= Instant::now())
            {
                self.retry_at = None;
                Box::pin(self.start(None)).await;
            }
            let wake = self.next_wake();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Update(link, refs)) => Box::pin(self.update(link, refs)).await,
                    Some(Command::Swap(adaptor)) => Box::pin(self.swap(adaptor)).await,
                },
                () = sleep_until(wake) => {
                    if self.current.is_some() && Instant::now() >= self.next_poll {
                        Box::pin(self.poll()).await;
                    }
                }
            }
        }
        if let Some(old) = self.probation.take() {
            Box::pin(old.shutdown()).await;
        }
        if let Some(inst) = self.current.take() {
            Box::pin(inst.shutdown()).await;
        }
        tracing::info!("device stopped");
    }

    fn next_wake(&self) -> Option<Instant> {
        if self.current.is_some() {
            self.interval.map(|_| self.next_poll)
        } else if self.blocked.is_none() {
            self.retry_at
        } else {
            None
        }
    }

    fn report(&self, change: impl FnOnce(&mut DeviceReport)) {
        if self.stop.is_set() {
            // The device is gone; its owner may already have removed its report.
            return;
        }
        let link = &self.link;
        self.ctx.board.update(
            &self.key,
            || {
                DeviceReport::new(
                    link.namespace_or_default(),
                    link.name(),
                    &link.spec.model.kind,
                    &link.spec.adaptor.name,
                )
            },
            change,
        );
    }

    fn event(&self, type_: EventType, reason: &str, message: &str) {
        let ev = Event::new(type_, reason, message);
        self.report(|r| r.record(ev));
    }

    fn device_config(&self) -> DeviceConfig {
        let link = &self.link;
        DeviceConfig {
            model: Model {
                api_version: link.spec.model.api_version.clone(),
                kind: link.spec.model.kind.clone(),
            },
            device: DeviceIdentity {
                namespace: link.namespace_or_default().to_owned(),
                name: link.name().to_owned(),
                uid: link.uid().map_or_else(|| link.key(), str::to_owned),
            },
            spec: serde_json::to_string(&link.spec.template.spec).unwrap_or_else(|_| "{}".into()),
            references: self.references.clone(),
        }
    }

    /// Tells the extensions who the device is and what its spec asks of them.
    fn configure_extensions(&self) {
        let link = &self.link;
        let identity = Identity {
            namespace: link.namespace_or_default().to_owned(),
            name: link.name().to_owned(),
            uid: link.uid().map_or_else(|| link.key(), str::to_owned),
        };
        self.ctx.extensions.configure(
            &self.key,
            identity,
            &link.spec.template.spec,
            &self.references,
        );
    }

    /// Resolves grants and checks them against the node policy; a refusal blocks the
    /// device with a condition naming the grant.
    fn resolve_grants(&self) -> Result<Arc<Grants>, String> {
        let model = self
            .adaptor
            .model(
                &self.link.spec.model.api_version,
                &self.link.spec.model.kind,
            )
            .ok_or_else(|| {
                format!(
                    "adaptor {} does not serve {}/{}",
                    self.adaptor.info.name,
                    self.link.spec.model.api_version,
                    self.link.spec.model.kind
                )
            })?;
        let (grants, problems) = Grants::resolve(
            &self.link.spec.grants,
            &self.link.spec.template.spec,
            &model.resource_fields,
        );
        if let Some(p) = problems.first() {
            return Err(p.0.clone());
        }
        for g in grants.iter() {
            self.ctx.policy.check(g.kind, &g.target).map_err(|why| {
                format!(
                    "node policy refused {} grant {:?} ({}): {why}",
                    g.kind, g.name, g.target
                )
            })?;
        }
        Ok(Arc::new(grants))
    }

    /// Instantiates and configures the current adaptor, optionally restoring `state`.
    async fn start(&mut self, state: Option<(Vec<u8>, String)>) {
        let now_s = now();
        self.report(|r| {
            r.phase = Phase::Starting;
            r.conditions.succeed(ConditionType::AdaptorExisted, &now_s);
        });
        let grants = match self.resolve_grants() {
            Ok(g) => g,
            Err(why) => {
                self.block(Blocked::Spec(why.clone()));
                self.report(|r| {
                    r.conditions.fail(
                        ConditionType::DeviceCreated,
                        &format!("unable to make device from model: {why}"),
                        &now(),
                    );
                });
                self.event(EventType::Warning, "FailedGrant", &why);
                return;
            }
        };
        self.grants = grants.clone();
        let names: Vec<String> = grants
            .iter()
            .map(|g| format!("{} ({} {})", g.name, g.kind, g.target))
            .collect();
        let adaptor = self.adaptor.clone();
        let mut inst = match Instance::stoppable(
            &self.ctx,
            adaptor.clone(),
            self.tag.clone(),
            grants,
            self.stop.clone(),
        )
        .await
        {
            Ok(i) => i,
            Err(e) => {
                self.report(|r| {
                    r.conditions.fail(
                        ConditionType::DeviceCreated,
                        &format!("unable to create device from template: {e}"),
                        &now(),
                    );
                });
                self.failed(e).await;
                return;
            }
        };
        self.report(|r| {
            r.adaptor_version = Some(adaptor.info.version.clone());
            r.adaptor_digest = Some(adaptor.short_digest().to_owned());
            r.grants = names;
            r.conditions.succeed(ConditionType::DeviceCreated, &now());
        });
        if let Some((bytes, from)) = state
            && let Err(e) = inst.restore(&bytes, &from).await
        {
            self.event(
                EventType::Warning,
                "RestoreFailed",
                &format!("state from {from} not restored: {e}"),
            );
        }
        let configured = inst.configure(&self.device_config()).await;
        self.drain(&mut inst);
        match configured {
            Ok(settings) => {
                self.current = Some(inst);
                self.set_interval(settings.poll_interval_ms);
                self.next_poll = Instant::now();
                self.event(
                    EventType::Normal,
                    "Configured",
                    &format!(
                        "configured by {} {}",
                        adaptor.info.name, adaptor.info.version
                    ),
                );
            }
            Err(e) => {
                if !e.is_trap() {
                    inst.shutdown().await;
                }
                self.failed(e).await;
            }
        }
    }

    /// Sets the poll interval; a changed one counts from the last poll at once.
    fn set_interval(&mut self, ms: Option<u64>) {
        let interval = ms.map(|ms| Duration::from_millis(ms.max(10)));
        if let (Some(old), Some(new)) = (self.interval, interval)
            && old != new
        {
            self.next_poll = schedule::after_change(self.next_poll, old, new, Instant::now());
        }
        self.interval = interval;
        self.report(|r| r.poll_interval_ms = ms);
    }

    fn block(&mut self, why: Blocked) {
        let (phase, msg) = match &why {
            Blocked::Spec(m) => (Phase::Pending, m.clone()),
            Blocked::Quarantined(m) => (Phase::Quarantined, m.clone()),
        };
        self.report(|r| {
            r.phase = phase;
            r.last_error = Some(msg);
        });
        self.blocked = Some(why);
    }

    /// Handles a failed start or a dead instance.
    async fn failed(&mut self, err: CallError) {
        let msg = err.to_string();
        if let CallError::Adaptor(AdaptorError::InvalidSpec(_) | AdaptorError::NotPermitted(_)) =
            &err
        {
            // Retrying cannot help until the link changes.
            self.report(|r| {
                r.conditions.fail(
                    ConditionType::DeviceConnected,
                    &format!("unable to connect to device: {msg}"),
                    &now(),
                );
            });
            self.block(Blocked::Spec(msg.clone()));
            self.event(EventType::Warning, "FailedConnect", &msg);
            return;
        }
        self.failures += 1;
        let trapped = err.is_trap();
        if trapped {
            self.traps_in_row += 1;
        }
        self.good_polls = 0;
        if matches!(err, CallError::CpuExhausted(_)) {
            let now = Instant::now();
            if self
                .last_exhaustion
                .is_some_and(|t| now.duration_since(t) > EXHAUSTION_FORGIVEN_AFTER)
            {
                self.exhaustions = 0;
            }
            self.exhaustions += 1;
            self.last_exhaustion = Some(now);
        }
        let decision = if trapped {
            let strikes = self.traps_in_row.max(self.exhaustions);
            self.ctx.restart.decide(strikes, fastrand::f64())
        } else {
            Decision::RetryAfter(self.ctx.restart.delay(self.failures, fastrand::f64()))
        };
        match decision {
            Decision::RetryAfter(delay) => {
                self.retry_at = Some(Instant::now() + delay);
                self.report(|r| {
                    r.phase = Phase::Backoff;
                    r.last_error = Some(msg.clone());
                    if trapped {
                        r.traps += 1;
                    }
                    r.restarts += 1;
                    r.conditions.fail(
                        ConditionType::DeviceConnected,
                        &format!("unable to connect to device: {msg}"),
                        &now(),
                    );
                });
                self.event(
                    EventType::Warning,
                    "FailedConnect",
                    &format!("{msg}; retrying in {delay:.1?}"),
                );
            }
            Decision::Quarantine => {
                let why = format!(
                    "quarantined after {} traps in a row (last: {msg}); change the DeviceLink or the adaptor to retry",
                    self.traps_in_row.max(self.exhaustions)
                );
                self.report(|r| {
                    if trapped {
                        r.traps += 1;
                    }
                    r.conditions
                        .fail(ConditionType::DeviceConnected, &why, &now());
                });
                self.block(Blocked::Quarantined(why.clone()));
                self.event(EventType::Warning, "Quarantined", &why);
            }
        }
    }

    async fn poll(&mut self) {
        let Some(mut inst) = self.current.take() else {
            return;
        };
        self.ctx
            .metrics
            .poll_lateness()
            .record(Instant::now().saturating_duration_since(self.next_poll));
        let result = inst.poll().await;
        self.drain(&mut inst);
        if let Some(interval) = self.interval {
            self.next_poll = schedule::after_poll(self.next_poll, interval, Instant::now());
        }
        match result {
            Ok(doc) => {
                self.current = Some(inst);
                self.failures = 0;
                self.good_polls += 1;
                // An instance must prove itself before its trap record is forgiven, so a
                // device that traps every few polls still ends in quarantine.
                if self.good_polls >= STABLE_AFTER_POLLS {
                    self.traps_in_row = 0;
                }
                if let Some(old) = self.probation.take() {
                    self.ctx.metrics.swap("committed");
                    Box::pin(old.shutdown()).await;
                }
                self.publish(&doc, true);
            }
            Err(CallError::Adaptor(e)) => {
                self.current = Some(inst);
                let msg = crate::bindings::Explain(&e).to_string();
                self.report(|r| {
                    r.phase = Phase::Unhealthy;
                    r.failed_polls += 1;
                    r.last_error = Some(msg.clone());
                    r.conditions.fail(
                        ConditionType::DeviceConnected,
                        &format!("received error from adaptor: {msg}"),
                        &now(),
                    );
                });
            }
            Err(trap) => {
                drop(inst);
                if let Some(old) = self.probation.take() {
                    Box::pin(self.revert(old, &trap)).await;
                    return;
                }
                Box::pin(self.failed(trap)).await;
            }
        }
    }

    /// The new version trapped on its first poll: the previous one takes the device back
    /// at once and serves this poll, so no reading is lost.
    async fn revert(&mut self, old: Instance, err: &CallError) {
        let failed = self.adaptor.clone();
        self.refused_digests.insert(failed.digest.clone());
        self.adaptor = old.adaptor.clone();
        self.current = Some(old);
        self.ctx.metrics.swap("reverted");
        let msg = format!("{failed} failed its first poll and was rolled back: {err}");
        let (version, digest) = (
            self.adaptor.info.version.clone(),
            self.adaptor.short_digest().to_owned(),
        );
        self.report(|r| {
            r.adaptor_version = Some(version);
            r.adaptor_digest = Some(digest);
            r.swaps = r.swaps.saturating_sub(1);
        });
        self.event(EventType::Warning, "SwapFailed", &msg);
        self.next_poll = Instant::now();
        Box::pin(self.poll()).await;
    }

    /// Publishes a status document if it is a JSON object within the size limit;
    /// otherwise the last good status stays and the device says why.
    fn publish(&self, doc: &str, from_poll: bool) {
        let parsed = if doc.len() > self.ctx.max_status_bytes {
            Err(format!(
                "adaptor returned a status of {} bytes, more than the limit of {}",
                doc.len(),
                self.ctx.max_status_bytes
            ))
        } else {
            match serde_json::from_str::<Value>(doc) {
                Ok(v @ Value::Object(_)) => Ok(v),
                Ok(other) => Err(format!(
                    "adaptor returned a status that is not a JSON object: {}",
                    json_kind(&other)
                )),
                Err(e) => Err(format!(
                    "adaptor returned a status that is not valid JSON: {e}"
                )),
            }
        };
        if parsed.is_ok() && !self.stop.is_set() {
            self.ctx.extensions.publish(&self.key, doc);
        }
        let stamp = now();
        self.report(|r| {
            if from_poll {
                r.polls += 1;
                r.last_poll = Some(stamp.clone());
            }
            match parsed {
                Ok(v) => {
                    r.status = v;
                    r.phase = Phase::Healthy;
                    r.last_error = None;
                    r.conditions.succeed(ConditionType::DeviceConnected, &stamp);
                }
                Err(msg) => {
                    r.phase = Phase::Unhealthy;
                    r.failed_polls += u64::from(from_poll);
                    r.last_error = Some(msg.clone());
                    r.conditions.fail(
                        ConditionType::DeviceConnected,
                        &format!("received error from adaptor: {msg}"),
                        &stamp,
                    );
                }
            }
        });
    }

    /// Moves what the guest pushed during the last call into the board.
    fn drain(&self, inst: &mut Instance) {
        let outbox = inst.take_outbox();
        for ev in outbox.events {
            self.report(|r| r.record(ev));
        }
        if outbox.dropped_events > 0 {
            self.event(
                EventType::Warning,
                "EventsDropped",
                &format!("{} adaptor events dropped", outbox.dropped_events),
            );
        }
        if let Some(doc) = outbox.status {
            self.publish(&doc, false);
        }
    }

    async fn update(&mut self, link: Arc<DeviceLink>, references: Vec<ReferenceValue>) {
        let old = std::mem::replace(&mut self.link, link);
        self.references = references;
        self.configure_extensions();
        self.blocked = None;
        self.failures = 0;
        self.traps_in_row = 0;
        self.exhaustions = 0;
        self.retry_at = None;
        self.refused_digests.clear();
        if old.spec.adaptor.name != self.link.spec.adaptor.name
            || old.spec.model != self.link.spec.model
        {
            self.restart_fresh().await;
            return;
        }
        let grants_changed = match self.resolve_grants() {
            Ok(g) => *g != *self.grants,
            Err(_) => true,
        };
        if grants_changed {
            // Handles are bound to the old grants: carry the state to a new instance.
            self.restart_with_state().await;
            return;
        }
        let Some(mut inst) = self.current.take() else {
            return;
        };
        let result = inst.reconfigure(&self.device_config()).await;
        self.drain(&mut inst);
        match result {
            Ok(settings) => {
                self.current = Some(inst);
                self.set_interval(settings.poll_interval_ms);
                self.event(
                    EventType::Normal,
                    "Reconfigured",
                    "applied the changed spec",
                );
            }
            Err(e) => {
                if !e.is_trap() {
                    self.current = Some(inst);
                }
                let msg = format!("unable to update the device from template: {e}");
                self.report(|r| {
                    r.phase = Phase::Unhealthy;
                    r.last_error = Some(msg.clone());
                    r.conditions
                        .fail(ConditionType::DeviceConnected, &msg, &now());
                });
                if self.current.is_none() {
                    self.failed(e).await;
                }
            }
        }
    }

    async fn restart_fresh(&mut self) {
        if let Some(inst) = self.current.take() {
            inst.shutdown().await;
        }
        self.start(None).await;
    }

    async fn restart_with_state(&mut self) {
        let state = match self.current.as_mut() {
            Some(inst) => inst
                .snapshot()
                .await
                .ok()
                .map(|s| (s, self.adaptor.info.version.clone())),
            None => None,
        };
        if let Some(inst) = self.current.take() {
            inst.shutdown().await;
        }
        self.start(state).await;
    }

    /// Moves the device to `new`: instantiate, restore the old instance's snapshot,
    /// configure, and switch; the old instance stays on probation until the new one's
    /// first poll succeeds. Any failure before the switch leaves the old one serving.
    async fn swap(&mut self, new: Arc<Adaptor>) {
        if new.digest == self.adaptor.digest || self.refused_digests.contains(&new.digest) {
            return;
        }
        let started = std::time::Instant::now();
        let from = self.adaptor.to_string();
        let to = new.to_string();
        if self.current.is_none() {
            // Nothing is running (backoff, quarantine or not started): start on `new`.
            self.adaptor = new;
            self.blocked = None;
            self.failures = 0;
            self.traps_in_row = 0;
            self.exhaustions = 0;
            self.retry_at = None;
            self.event(
                EventType::Normal,
                "AdaptorChanged",
                &format!("will start on {to}"),
            );
            return;
        }
        if let Some(old) = self.probation.take() {
            // A swap during probation: the current version has not proven itself yet,
            // but it is the one holding the latest state.
            old.shutdown().await;
        }
        let refuse = |s: &mut Self, why: String| {
            s.refused_digests.insert(new.digest.clone());
            s.ctx.metrics.swap("refused");
            s.event(
                EventType::Warning,
                "SwapFailed",
                &format!("{to} did not take over from {from}: {why}; {from} keeps serving"),
            );
        };
        let grants = self.grants.clone();
        let mut next = match Instance::stoppable(
            &self.ctx,
            new.clone(),
            self.tag.clone(),
            grants,
            self.stop.clone(),
        )
        .await
        {
            Ok(i) => i,
            Err(e) => return refuse(self, e.to_string()),
        };
        let state = match self.current.as_mut().map(|c| c.snapshot()) {
            Some(fut) => fut.await,
            None => return,
        };
        let state = match state {
            Ok(s) => Some(s),
            Err(e) if e.is_trap() => {
                // The old instance died while taking its snapshot; it cannot serve,
                // so the new version takes over without state.
                self.current = None;
                self.event(
                    EventType::Warning,
                    "SnapshotFailed",
                    &format!("{from} trapped in snapshot ({e}); {to} starts without its state"),
                );
                None
            }
            Err(e) => return refuse(self, format!("snapshot failed: {e}")),
        };
        if let Some(bytes) = &state
            && let Err(e) = next.restore(bytes, &self.adaptor.info.version).await
        {
            self.drain(&mut next);
            if self.current.is_none() {
                self.adaptor = new;
                self.failed(e).await;
                return;
            }
            return refuse(self, format!("restore failed: {e}"));
        }
        let configured = next.configure(&self.device_config()).await;
        self.drain(&mut next);
        let settings = match configured {
            Ok(s) => s,
            Err(e) if self.current.is_some() => {
                return refuse(self, format!("configure failed: {e}"));
            }
            Err(e) => {
                self.adaptor = new;
                self.failed(e).await;
                return;
            }
        };
        self.probation = self.current.take();
        self.current = Some(next);
        self.adaptor = new.clone();
        self.set_interval(settings.poll_interval_ms);
        self.ctx.metrics.swap("switched");
        self.ctx.metrics.device_swap(&self.key);
        let took = started.elapsed();
        self.report(|r| {
            r.swaps += 1;
            r.adaptor_version = Some(new.info.version.clone());
            r.adaptor_digest = Some(new.short_digest().to_owned());
        });
        self.event(
            EventType::Normal,
            "Swapped",
            &format!("{from} -> {to} in {took:.1?}"),
        );
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
