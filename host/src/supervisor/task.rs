//! The supervisor task of one device: runs the loop (start when due, poll when due,
//! take commands), asks [`Lifecycle`] what each outcome means, carries that out
//! through the driver, and reports it on the status board. It decides nothing itself
//! beyond the order of the calls.

use std::sync::Arc;
use std::time::Duration;

use crds::{ConditionType, DeviceLink};
use serde_json::Value;
use tokio::time::Instant;

use super::driver::{CallError, Connect, Driver, Version};
use super::inbox;
use super::lifecycle::{
    AfterFailure, AfterOffer, AfterPoll, AfterSwapFailure, AfterUpdate, Blocked, Clock, Lifecycle,
    SwapStep,
};
use super::{Command, Context, schedule};
use crate::bindings::{DeviceConfig, DeviceIdentity, Model, ReferenceValue};
use crate::capabilities::Grants;
use crate::engine::Stop;
use crate::extension::Identity;
use crate::status::{DeviceReport, Event, EventType, Phase, now};

/// The time and a jitter sample, for the lifecycle's next step.
fn clock() -> Clock {
    Clock {
        now: Instant::now(),
        jitter: fastrand::f64(),
    }
}

type VersionOf<C> = Arc<<C as Connect>::Version>;

pub(super) struct Supervisor<C: Connect> {
    ctx: Arc<Context>,
    key: String,
    /// Set when the device is removed: running calls end, nothing more is reported.
    stop: Arc<Stop>,
    connect: C,
    link: Arc<DeviceLink>,
    adaptor: VersionOf<C>,
    references: Vec<ReferenceValue>,
    current: Option<C::Driver>,
    /// The previous version after a swap, kept until the new one's first poll succeeds.
    probation: Option<C::Driver>,
    grants: Arc<Grants>,
    interval: Option<Duration>,
    next_poll: Instant,
    life: Lifecycle,
    /// A version offered while the device runs, waiting for a swap permit.
    offered: Option<VersionOf<C>>,
}

impl<C: Connect> Supervisor<C> {
    pub(super) fn new(
        ctx: Arc<Context>,
        key: String,
        stop: Arc<Stop>,
        connect: C,
        link: Arc<DeviceLink>,
        adaptor: VersionOf<C>,
        references: Vec<ReferenceValue>,
    ) -> Self {
        Self {
            ctx,
            key,
            stop,
            connect,
            link,
            adaptor,
            references,
            current: None,
            probation: None,
            grants: Arc::new(Grants::default()),
            interval: None,
            next_poll: Instant::now(),
            life: Lifecycle::default(),
            offered: None,
        }
    }

    /// Boxed so the task holds a pointer, not a second copy of the supervisor.
    pub(super) async fn run(mut self: Box<Self>, mut rx: inbox::Receiver<Command<C::Version>>) {
        self.report(|_| {});
        self.configure_extensions();
        loop {
            if self.life.start_due(self.current.is_some(), Instant::now()) {
                Box::pin(self.start(None)).await;
            }
            let wake = self.life.wake(
                self.current.is_some(),
                self.interval.map(|_| self.next_poll),
            );
            let permits = self.ctx.swap_permits.clone();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Update(link, refs)) => Box::pin(self.update(link, refs)).await,
                    // The newest offer replaces one still waiting for its turn.
                    Some(Command::Swap(adaptor)) => self.offered = Some(adaptor),
                },
                permit = permits.acquire_owned(), if self.offered.is_some() => {
                    if let (Ok(_permit), Some(adaptor)) = (permit, self.offered.take()) {
                        Box::pin(self.swap(adaptor)).await;
                    }
                }
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

    fn report(&self, change: impl FnOnce(&mut DeviceReport)) {
        if self.stop.is_set() {
            // The device is gone; its owner may already have removed its report.
            return;
        }
        let link = &self.link;
        let metrics = link.wants_device_metrics();
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
            |r| {
                // The link's annotation may change with an update; follow it.
                r.device_metrics = metrics;
                change(r);
            },
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
        let wanted = &self.link.spec.model;
        let info = self.adaptor.info();
        let model = info
            .models
            .iter()
            .find(|m| m.model.api_version == wanted.api_version && m.model.kind == wanted.kind)
            .ok_or_else(|| {
                format!(
                    "adaptor {} does not serve {}/{}",
                    info.name, wanted.api_version, wanted.kind
                )
            })?;
        let (grants, mut problems) = Grants::resolve(
            &self.link.spec.grants,
            &self.link.spec.template.spec,
            &model.resource_fields,
        );
        let (grants, more) = grants.with_model_fields(
            &self.link.spec.template.spec,
            &wanted.api_version,
            &wanted.kind,
        );
        problems.extend(more);
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
                let blocked = self.life.grants_refused(why.clone());
                self.report_blocked(&blocked);
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
        let mut inst = match self.connect.connect(adaptor.clone(), grants).await {
            Ok(i) => i,
            Err(e) => {
                self.report(|r| {
                    r.conditions.fail(
                        ConditionType::DeviceCreated,
                        &format!("unable to create device from template: {e}"),
                        &now(),
                    );
                });
                self.failed(&e);
                return;
            }
        };
        self.report(|r| {
            r.adaptor_version = Some(adaptor.info().version.clone());
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
                        adaptor.info().name,
                        adaptor.info().version
                    ),
                );
            }
            Err(e) => {
                if !e.is_trap() {
                    inst.shutdown().await;
                }
                self.failed(&e);
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

    fn report_blocked(&self, why: &Blocked) {
        let (phase, msg) = match why {
            Blocked::Spec(m) => (Phase::Pending, m.clone()),
            Blocked::Quarantined(m) => (Phase::Quarantined, m.clone()),
        };
        self.report(|r| {
            r.phase = phase;
            r.last_error = Some(msg);
        });
    }

    /// Handles a failed start or a dead instance.
    fn failed(&mut self, err: &CallError) {
        let after = self.life.failed(&self.ctx.restart, err, clock());
        self.report_failure(&err.to_string(), after);
    }

    /// Reports what a failure with message `msg` led to.
    fn report_failure(&self, msg: &str, after: AfterFailure) {
        match after {
            AfterFailure::Blocked(why) => {
                self.report(|r| {
                    r.conditions.fail(
                        ConditionType::DeviceConnected,
                        &format!("unable to connect to device: {msg}"),
                        &now(),
                    );
                });
                self.report_blocked(&Blocked::Spec(why));
                self.event(EventType::Warning, "FailedConnected", msg);
            }
            AfterFailure::Retry { delay, trapped } => {
                self.report(|r| {
                    r.phase = Phase::Backoff;
                    r.last_error = Some(msg.to_owned());
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
                    "FailedConnected",
                    &format!("{msg}; retrying in {delay:.1?}"),
                );
            }
            AfterFailure::Quarantined { why, trapped } => {
                self.report(|r| {
                    if trapped {
                        r.traps += 1;
                    }
                    r.conditions
                        .fail(ConditionType::DeviceConnected, &why, &now());
                });
                self.report_blocked(&Blocked::Quarantined(why.clone()));
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
        let after = self.life.polled(
            &self.ctx.restart,
            result,
            self.probation.is_some(),
            self.adaptor.digest(),
            clock(),
        );
        match after {
            AfterPoll::Healthy { value: doc, commit } => {
                self.current = Some(inst);
                if commit && let Some(old) = self.probation.take() {
                    self.ctx.metrics.swap("committed");
                    Box::pin(old.shutdown()).await;
                }
                self.publish(&doc, true);
            }
            AfterPoll::Unhealthy(e) => {
                self.current = Some(inst);
                let msg = e.to_string();
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
            AfterPoll::Revert(trap) => {
                drop(inst);
                if let Some(old) = self.probation.take() {
                    Box::pin(self.revert(old, &trap)).await;
                }
            }
            AfterPoll::Failed(trap, after) => {
                drop(inst);
                self.report_failure(&trap.to_string(), after);
            }
        }
    }

    /// The new version trapped on its first poll: the previous one takes the device back
    /// at once and serves this poll, so no reading is lost.
    async fn revert(&mut self, old: C::Driver, err: &CallError) {
        let failed = std::mem::replace(&mut self.adaptor, old.version().clone());
        self.current = Some(old);
        self.ctx.metrics.swap("reverted");
        let msg = format!("{failed} failed its first poll and was rolled back: {err}");
        let (version, digest) = (
            self.adaptor.info().version.clone(),
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
                Ok(v @ Value::Object(_)) => {
                    let model = &self.link.spec.model;
                    let problems =
                        self.adaptor
                            .status_problems(&model.api_version, &model.kind, &v);
                    if problems.is_empty() {
                        Ok(v)
                    } else {
                        let why = format!(
                            "adaptor returned a status that does not match the schema it declares: {}",
                            crate::fleet::summary(&problems)
                        );
                        self.event(EventType::Warning, "StatusRefused", &why);
                        Err(why)
                    }
                }
                Ok(other) => Err(format!(
                    "adaptor returned a status that is not a JSON object: {}",
                    json_kind(&other)
                )),
                Err(e) => Err(format!(
                    "adaptor returned a status that is not valid JSON: {e}"
                )),
            }
        };
        // Only a link with an MQTT extension has a publisher; the others skip the
        // extensions' shared lock on every poll.
        let publishes = crate::extension::mqtt_options(&self.link.spec.template.spec).is_some();
        if publishes && parsed.is_ok() && !self.stop.is_set() {
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
    fn drain(&self, inst: &mut C::Driver) {
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
        let identity_changed = old.spec.adaptor.name != self.link.spec.adaptor.name
            || old.spec.model != self.link.spec.model;
        let grants_changed = !identity_changed
            && match self.resolve_grants() {
                Ok(g) => *g != *self.grants,
                Err(_) => true,
            };
        let plan = self
            .life
            .link_changed(identity_changed, grants_changed, self.current.is_some());
        match plan {
            AfterUpdate::RestartFresh => self.restart_fresh().await,
            AfterUpdate::RestartWithState => self.restart_with_state().await,
            AfterUpdate::Nothing => {}
            AfterUpdate::Reconfigure => self.reconfigure().await,
        }
    }

    /// Hands the running instance the changed spec.
    async fn reconfigure(&mut self) {
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
                let after = self.life.reconfigure_failed(&self.ctx.restart, &e, clock());
                if after.is_none() {
                    self.current = Some(inst);
                }
                let msg = format!("unable to update the device from template: {e}");
                self.report(|r| {
                    r.phase = Phase::Unhealthy;
                    r.last_error = Some(msg.clone());
                    r.conditions
                        .fail(ConditionType::DeviceConnected, &msg, &now());
                });
                if let Some(after) = after {
                    self.report_failure(&e.to_string(), after);
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
                .map(|s| (s, self.adaptor.info().version.clone())),
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
    async fn swap(&mut self, new: VersionOf<C>) {
        let offer = self
            .life
            .offered(new.digest(), self.adaptor.digest(), self.current.is_some());
        let to = new.to_string();
        match offer {
            AfterOffer::Ignore => return,
            AfterOffer::StartOnNew => {
                self.adaptor = new;
                self.event(
                    EventType::Normal,
                    "AdaptorChanged",
                    &format!("will start on {to}"),
                );
                return;
            }
            AfterOffer::TakeOver => {}
        }
        let started = std::time::Instant::now();
        let from = self.adaptor.to_string();
        if let Some(old) = self.probation.take() {
            // A swap during probation: the current version has not proven itself yet,
            // but it is the one holding the latest state.
            old.shutdown().await;
        }
        let mut next = match self.connect.connect(new.clone(), self.grants.clone()).await {
            Ok(i) => i,
            Err(e) => {
                self.swap_failed(SwapStep::Connect, &e, &new, &from, &to);
                return;
            }
        };
        let state = match self.current.as_mut().map(|c| c.snapshot()) {
            Some(fut) => fut.await,
            None => return,
        };
        let state = match state {
            Ok(s) => Some(s),
            Err(e) => {
                if !self.swap_failed(SwapStep::Snapshot, &e, &new, &from, &to) {
                    return;
                }
                None
            }
        };
        if let Some(bytes) = &state
            && let Err(e) = next.restore(bytes, &self.adaptor.info().version).await
        {
            self.drain(&mut next);
            self.swap_failed(SwapStep::Restore, &e, &new, &from, &to);
            return;
        }
        let configured = next.configure(&self.device_config()).await;
        self.drain(&mut next);
        let settings = match configured {
            Ok(s) => s,
            Err(e) => {
                self.swap_failed(SwapStep::Configure, &e, &new, &from, &to);
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
            r.adaptor_version = Some(new.info().version.clone());
            r.adaptor_digest = Some(new.short_digest().to_owned());
        });
        self.event(
            EventType::Normal,
            "Swapped",
            &format!("{from} -> {to} in {took:.1?}"),
        );
    }

    /// Carries out what a failed swap step leads to; `true` when the swap goes on.
    fn swap_failed(
        &mut self,
        step: SwapStep,
        err: &CallError,
        new: &VersionOf<C>,
        from: &str,
        to: &str,
    ) -> bool {
        let after = self.life.swap_failed(
            &self.ctx.restart,
            step,
            err,
            self.current.is_some(),
            new.digest(),
            clock(),
        );
        match after {
            AfterSwapFailure::Refuse(why) => {
                self.ctx.metrics.swap("refused");
                self.event(
                    EventType::Warning,
                    "SwapFailed",
                    &format!("{to} did not take over from {from}: {why}; {from} keeps serving"),
                );
                false
            }
            AfterSwapFailure::ContinueWithoutState => {
                // The old instance died while taking its snapshot; it cannot serve.
                self.current = None;
                self.event(
                    EventType::Warning,
                    "SnapshotFailed",
                    &format!("{from} trapped in snapshot ({err}); {to} starts without its state"),
                );
                true
            }
            AfterSwapFailure::Failed(after) => {
                self.adaptor = new.clone();
                self.report_failure(&err.to_string(), after);
                false
            }
        }
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
