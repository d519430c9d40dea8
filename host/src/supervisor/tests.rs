//! The real supervisor loop driven by a scripted fake driver, on paused time: no wasm
//! runs, each adaptor call answers what the test scripted, and the log of calls (with
//! the virtual time of each) shows what the supervisor did.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::bindings::{AdaptorInfo, DeviceConfig, DeviceSettings, Model, ModelInfo};
use crate::capabilities::Grants;
use crate::engine::{Outbox, Settings};
use crate::status::{DeviceReport, Phase};

const KEY: &str = "test/fan";

/// A version that is nothing but its self-description.
struct Fake {
    info: AdaptorInfo,
    digest: String,
    /// The status schema it declares, if any.
    status_schema: Option<serde_json::Value>,
}

impl fmt::Display for Fake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.info.name, self.info.version, self.digest
        )
    }
}

impl Version for Fake {
    fn info(&self) -> &AdaptorInfo {
        &self.info
    }
    fn digest(&self) -> &str {
        &self.digest
    }
    fn short_digest(&self) -> &str {
        &self.digest
    }
    fn status_problems(&self, _: &str, _: &str, status: &serde_json::Value) -> Vec<String> {
        self.status_schema.as_ref().map_or_else(Vec::new, |schema| {
            crds::structural::validate_values(schema, status, "status")
                .iter()
                .map(ToString::to_string)
                .collect()
        })
    }
}

fn version(v: &str) -> Arc<Fake> {
    Arc::new(Fake {
        info: AdaptorInfo {
            name: "adaptors.edge.cattle.io/dummy".into(),
            version: v.into(),
            models: vec![ModelInfo {
                model: Model {
                    api_version: "devices.edge.cattle.io/v1alpha1".into(),
                    kind: "DummySpecialDevice".into(),
                },
                resource_fields: vec![],
            }],
        },
        digest: format!("digest-{v}"),
        status_schema: None,
    })
}

fn link(gear: &str) -> Arc<DeviceLink> {
    let v = json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": "fan", "namespace": "test"},
        "spec": {
            "adaptor": {"node": "n", "name": "adaptors.edge.cattle.io/dummy"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
            "template": {"spec": {"gear": gear}}
        }
    });
    Arc::new(serde_json::from_value(v).unwrap())
}

/// What a scripted call does.
#[derive(Clone, Debug)]
enum Reply {
    Ok,
    Err(CallError),
    /// Runs until the device is removed, then ends the way a stopped call does.
    Hang,
}

fn trap() -> Reply {
    Reply::Err(CallError::Trap("wasm trap: unreachable".into()))
}

fn exhausted() -> Reply {
    Reply::Err(CallError::CpuExhausted("spent its CPU budget".into()))
}

/// Replies per (version, call), in order; a call with none left answers `Ok`, or the
/// `always` reply if one is set. Every call is logged with its virtual time.
#[derive(Default)]
struct Script {
    queued: HashMap<(String, &'static str), VecDeque<Reply>>,
    always: HashMap<(String, &'static str), Reply>,
    log: Vec<(Instant, String)>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Script>>);

impl Shared {
    fn queue(&self, v: &str, call: &'static str, replies: impl IntoIterator<Item = Reply>) {
        let mut s = self.0.lock().unwrap();
        s.queued
            .entry((v.into(), call))
            .or_default()
            .extend(replies);
    }

    fn always(&self, v: &str, call: &'static str, reply: Reply) {
        self.0
            .lock()
            .unwrap()
            .always
            .insert((v.into(), call), reply);
    }

    fn next(&self, v: &str, call: &'static str) -> Reply {
        let mut s = self.0.lock().unwrap();
        s.log.push((Instant::now(), format!("{v} {call}")));
        let key = (v.to_owned(), call);
        if let Some(r) = s.queued.get_mut(&key).and_then(VecDeque::pop_front) {
            return r;
        }
        s.always.get(&key).cloned().unwrap_or(Reply::Ok)
    }

    fn calls(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .log
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    fn count(&self, call: &str) -> usize {
        self.calls().iter().filter(|c| *c == call).count()
    }

    fn times(&self, call: &str) -> Vec<Instant> {
        let s = self.0.lock().unwrap();
        s.log
            .iter()
            .filter(|(_, c)| c == call)
            .map(|(t, _)| *t)
            .collect()
    }
}

struct FakeConnect {
    script: Shared,
    stop: Arc<Stop>,
}

struct FakeDriver {
    version: Arc<Fake>,
    script: Shared,
    stop: Arc<Stop>,
}

impl FakeDriver {
    async fn call<T>(&self, call: &'static str, ok: T) -> Result<T, CallError> {
        match self.script.next(&self.version.info.version, call) {
            Reply::Ok => Ok(ok),
            Reply::Err(e) => Err(e),
            Reply::Hang => {
                self.stop.wait().await;
                Err(CallError::Trap(STOPPED.into()))
            }
        }
    }
}

impl Connect for FakeConnect {
    type Version = Fake;
    type Driver = FakeDriver;

    async fn connect(
        &self,
        version: Arc<Fake>,
        _grants: Arc<Grants>,
    ) -> Result<FakeDriver, CallError> {
        let d = FakeDriver {
            version,
            script: self.script.clone(),
            stop: self.stop.clone(),
        };
        d.call("connect", ()).await?;
        Ok(d)
    }
}

const SETTINGS: DeviceSettings = DeviceSettings {
    poll_interval_ms: Some(1000),
};

impl Driver for FakeDriver {
    type Version = Fake;

    fn version(&self) -> &Arc<Fake> {
        &self.version
    }
    async fn configure(&mut self, _: &DeviceConfig) -> Result<DeviceSettings, CallError> {
        self.call("configure", SETTINGS).await
    }
    async fn reconfigure(&mut self, _: &DeviceConfig) -> Result<DeviceSettings, CallError> {
        self.call("reconfigure", SETTINGS).await
    }
    async fn poll(&mut self) -> Result<String, CallError> {
        let v = self.version.info.version.clone();
        self.call("poll", format!("{{\"version\":\"{v}\"}}")).await
    }
    async fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        self.call("snapshot", b"state".to_vec()).await
    }
    async fn restore(&mut self, _: &[u8], _: &str) -> Result<(), CallError> {
        self.call("restore", ()).await
    }
    async fn shutdown(self) {
        let _ = self.call("shutdown", ()).await;
    }
    fn take_outbox(&mut self) -> Outbox {
        Outbox::default()
    }
}

fn context(quarantine_after: u32) -> Arc<Context> {
    let runtime = Runtime::new(Settings::default()).unwrap();
    Arc::new(Context::new(
        runtime,
        Policy::loopback(),
        Limits::default(),
        Backends::real(true),
        RestartPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            quarantine_after,
        },
    ))
}

fn start(ctx: &Arc<Context>, script: &Shared, v: &str) -> Handle<Fake> {
    let script = script.clone();
    spawn_with(ctx.clone(), link("fast"), version(v), vec![], move |stop| {
        FakeConnect { script, stop }
    })
}

/// Waits (in virtual time, up to ten minutes of it) until the device's report satisfies
/// `ok`; fails saying `what` did not happen, with the report and the calls so far.
async fn until(ctx: &Context, script: &Shared, what: &str, ok: impl Fn(&DeviceReport) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if ctx.board.read(KEY, &ok) == Some(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 minutes; report {:?}; calls {:?}",
            ctx.board.get(KEY),
            script.calls()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn events(ctx: &Context) -> Vec<String> {
    ctx.board
        .read(KEY, |r| r.events.iter().map(|e| e.reason.clone()).collect())
        .unwrap_or_default()
}

/// A status that breaks the schema the version declares is never published: the device
/// says which field, in its condition and a `StatusRefused` event, and keeps polling.
#[tokio::test(start_paused = true)]
async fn a_status_the_declared_schema_rejects_is_refused_naming_the_field() {
    let ctx = context(5);
    let script = Shared::default();
    let mut strict = Arc::try_unwrap(version("1")).ok().unwrap();
    strict.status_schema = Some(serde_json::json!({
        "type": "object", "properties": {"version": {"type": "integer"}}
    }));
    let dev = spawn_with(ctx.clone(), link("fast"), Arc::new(strict), vec![], {
        let script = script.clone();
        move |stop| FakeConnect { script, stop }
    });
    until(&ctx, &script, "two refused polls", |r| {
        r.failed_polls >= 2 && r.phase == Phase::Unhealthy
    })
    .await;
    let report = ctx.board.get(KEY).unwrap();
    let error = report.last_error.unwrap_or_default();
    assert!(
        error.contains("does not match the schema it declares: status.version: expected integer"),
        "{error}"
    );
    assert_eq!(
        report.status,
        serde_json::Value::Null,
        "nothing was published"
    );
    assert!(events(&ctx).contains(&"StatusRefused".to_owned()));
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_trap_backs_off_then_the_device_is_started_again() {
    let ctx = context(5);
    let script = Shared::default();
    script.queue("1", "poll", [trap()]);
    let dev = start(&ctx, &script, "1");
    until(&ctx, &script, "a trap in backoff", |r| {
        r.traps == 1 && r.phase == Phase::Backoff
    })
    .await;
    until(&ctx, &script, "a healthy poll after the restart", |r| {
        r.phase == Phase::Healthy && r.polls >= 1
    })
    .await;
    let connects = script.times("1 connect");
    let trapped = script.times("1 poll")[0];
    assert_eq!(connects.len(), 2, "{:?}", script.calls());
    // The first retry waits half to all of the 1 s base.
    let waited = connects[1] - trapped;
    assert!(
        (Duration::from_millis(500)..=Duration::from_millis(1002)).contains(&waited),
        "{waited:?}"
    );
    let report = ctx.board.get(KEY).unwrap();
    assert_eq!((report.traps, report.restarts), (1, 1));
    assert!(events(&ctx).contains(&"FailedConnected".to_owned()));
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn repeated_traps_quarantine_the_device_until_its_link_changes() {
    let ctx = context(3);
    let script = Shared::default();
    script.always("1", "connect", trap());
    let dev = start(&ctx, &script, "1");
    until(&ctx, &script, "quarantine", |r| {
        r.phase == Phase::Quarantined
    })
    .await;
    assert_eq!(script.count("1 connect"), 3, "{:?}", script.calls());
    let report = ctx.board.get(KEY).unwrap();
    assert_eq!(report.traps, 3);
    assert!(
        report
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("quarantined after 3 traps in a row")),
        "{report:?}"
    );
    // An hour later it has not been tried again.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(script.count("1 connect"), 3, "{:?}", script.calls());
    // A changed link is tried at once.
    script.always("1", "connect", Reply::Ok);
    dev.send(Command::Update(link("slow"), vec![]));
    until(&ctx, &script, "a healthy poll after the change", |r| {
        r.phase == Phase::Healthy
    })
    .await;
    assert_eq!(script.count("1 connect"), 4, "{:?}", script.calls());
    dev.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_swap_is_on_probation_and_rolled_back_when_the_new_version_traps() {
    let ctx = context(3);
    let script = Shared::default();
    let dev = start(&ctx, &script, "1");
    until(&ctx, &script, "v1 healthy", |r| {
        r.phase == Phase::Healthy && r.adaptor_version.as_deref() == Some("1")
    })
    .await;
    script.queue("2", "poll", [trap()]);
    dev.send(Command::Swap(version("2")));
    until(&ctx, &script, "the rollback", |r| {
        events_of(r).contains(&"SwapFailed".to_owned())
    })
    .await;
    until(&ctx, &script, "v1 serving again", |r| {
        r.adaptor_version.as_deref() == Some("1") && r.status == json!({"version": "1"})
    })
    .await;
    let calls = script.calls();
    let from = calls.iter().position(|c| c == "2 connect").unwrap();
    // The old version's state moves over; it stays (not shut down) on probation, and
    // polls at once when the new one traps on its first poll.
    assert_eq!(
        calls[from..from + 6],
        [
            "2 connect",
            "1 snapshot",
            "2 restore",
            "2 configure",
            "2 poll",
            "1 poll"
        ],
        "{calls:?}"
    );
    assert_eq!(ctx.metrics.swaps("reverted"), 1);
    assert_eq!(ctx.board.get(KEY).unwrap().swaps, 0);
    // The refused version is not tried again.
    dev.send(Command::Swap(version("2")));
    // A good one is, and its first good poll ends the old one's probation.
    dev.send(Command::Swap(version("3")));
    until(&ctx, &script, "v3 committed", |r| {
        r.adaptor_version.as_deref() == Some("3") && r.swaps == 1
    })
    .await;
    until(&ctx, &script, "v1 shut down", |_| {
        script.count("1 shutdown") == 1
    })
    .await;
    assert_eq!(script.count("2 connect"), 1, "{:?}", script.calls());
    assert_eq!(ctx.metrics.swaps("committed"), 1);
    dev.stop().await;
    assert_eq!(script.count("3 shutdown"), 1, "{:?}", script.calls());
}

fn events_of(r: &DeviceReport) -> Vec<String> {
    r.events.iter().map(|e| e.reason.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn stopping_during_a_call_ends_it_at_once_and_reports_nothing_more() {
    let ctx = context(3);
    let script = Shared::default();
    script.queue("1", "poll", [Reply::Ok, Reply::Hang]);
    let dev = start(&ctx, &script, "1");
    until(&ctx, &script, "the second poll running", |_| {
        script.count("1 poll") == 2
    })
    .await;
    let before = ctx.board.get(KEY).unwrap();
    tokio::time::timeout(Duration::from_secs(5), dev.stop())
        .await
        .expect("the stop waited for the hanging call");
    let after = ctx.board.get(KEY).unwrap();
    // The interrupted call is not a trap of the adaptor, and nothing was restarted.
    assert_eq!(
        (after.traps, after.restarts, after.phase, after.polls),
        (0, 0, before.phase, 1)
    );
    assert_eq!(script.count("1 connect"), 1, "{:?}", script.calls());
}

/// Ten good polls after each failure, three times: traps are forgiven by good polls,
/// CPU exhaustion only by time, so only the exhausting device ends in quarantine.
#[tokio::test(start_paused = true)]
async fn cpu_exhaustion_is_counted_apart_from_traps() {
    // (failure, quarantined, instances started)
    for (failure, quarantined, connects) in [(trap(), false, 4), (exhausted(), true, 3)] {
        let ctx = context(3);
        let script = Shared::default();
        let mut polls = Vec::new();
        for _ in 0..3 {
            polls.push(failure.clone());
            polls.extend(std::iter::repeat_n(Reply::Ok, 10));
        }
        script.queue("1", "poll", polls);
        let dev = start(&ctx, &script, "1");
        until(&ctx, &script, "three failures", |r| r.traps == 3).await;
        if quarantined {
            until(&ctx, &script, "quarantine", |r| {
                r.phase == Phase::Quarantined
            })
            .await;
        } else {
            until(&ctx, &script, "ten good polls after the third trap", |r| {
                r.polls == 30 && r.phase == Phase::Healthy
            })
            .await;
        }
        assert_eq!(
            script.count("1 connect"),
            connects,
            "{failure:?}: {:?}",
            script.calls()
        );
        dev.stop().await;
    }
}
