//! Shared helpers: components, contexts with short timeouts, links, and waiting on the
//! status board.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crds::DeviceLink;
use limb::adaptors::{self, Adaptor, CompileCache};
use limb::capabilities::{Backends, Limits, Policy};
use limb::engine::{Pooling, Runtime, Settings};
use limb::status::{DeviceReport, StatusBoard};
use limb::supervisor::{Context, RestartPolicy};

pub use octopus_tests::paths::component;

pub struct Harness {
    pub ctx: Arc<Context>,
    pub cache: Arc<CompileCache>,
}

pub fn harness_with(
    policy: Policy,
    backends: Backends,
    tune: impl FnOnce(&mut Settings),
) -> Harness {
    let mut settings = Settings {
        call_timeout: Duration::from_millis(500),
        memory_limit: 32 << 20,
        pooling: Pooling::Auto,
        max_instances: 256,
        ..Settings::default()
    };
    tune(&mut settings);
    let runtime = Runtime::new(settings).expect("engine");
    let limits = Limits {
        max_handles: 4,
        max_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let restart = RestartPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
        quarantine_after: 3,
    };
    let ctx = Context::new(runtime, policy, limits, backends, restart);
    Harness {
        ctx: Arc::new(ctx),
        cache: Arc::new(CompileCache::new(Some(shared_cache_dir()))),
    }
}

pub fn harness() -> Harness {
    harness_with(Policy::loopback(), Backends::real(true), |_| {})
}

fn shared_cache_dir() -> PathBuf {
    std::env::var_os("LIMB_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("octopus-test-cache"))
}

impl Harness {
    pub async fn load(&self, name: &str) -> Arc<Adaptor> {
        adaptors::load(
            &self.ctx.runtime,
            &self.cache,
            component(name),
            name.to_owned(),
        )
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
    }

    /// Starts supervising `link` the way the standalone controller (or, in a cluster,
    /// the brain) would: node and model already validated.
    pub fn spawn(&self, link: Arc<DeviceLink>, adaptor: Arc<Adaptor>) -> limb::supervisor::Handle {
        self.spawn_with(link, adaptor, vec![])
    }

    /// [`Harness::spawn`] with the values the link's references resolved to.
    pub fn spawn_with(
        &self,
        link: Arc<DeviceLink>,
        adaptor: Arc<Adaptor>,
        references: Vec<limb::bindings::ReferenceValue>,
    ) -> limb::supervisor::Handle {
        let now = limb::status::now();
        self.ctx.board.update(
            &link.key(),
            || {
                DeviceReport::new(
                    link.namespace_or_default(),
                    link.name(),
                    &link.spec.model.kind,
                    &link.spec.adaptor.name,
                )
            },
            |r| {
                r.conditions.succeed(crds::ConditionType::NodeExisted, &now);
                r.conditions
                    .succeed(crds::ConditionType::ModelExisted, &now);
            },
        );
        limb::supervisor::spawn(self.ctx.clone(), link, adaptor, references)
    }

    /// Waits until the device's report satisfies `pred`, or fails with the last report.
    pub async fn wait(
        &self,
        key: &str,
        within: Duration,
        pred: impl Fn(&DeviceReport) -> bool,
    ) -> DeviceReport {
        wait_on(&self.ctx.board, key, within, pred).await
    }

    /// The report of `key` once it has polled `n` more times than in `since` (within 10 s).
    pub async fn polls_past(&self, key: &str, since: &DeviceReport, n: u64) -> DeviceReport {
        let target = since.polls + n;
        self.wait(key, Duration::from_secs(10), |r| r.polls >= target)
            .await
    }
}

pub async fn wait_on(
    board: &StatusBoard,
    key: &str,
    within: Duration,
    pred: impl Fn(&DeviceReport) -> bool,
) -> DeviceReport {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let report = board.get(key);
        if let Some(r) = &report
            && pred(r)
        {
            return r.clone();
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{key}: condition not met within {within:?}; last report: {report:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A DeviceLink in the `default` namespace from a model kind, adaptor and spec.
pub fn link(name: &str, adaptor: &str, kind: &str, spec: serde_json::Value) -> Arc<DeviceLink> {
    let yaml = serde_json::json!({
        "apiVersion": "edge.cattle.io/v1alpha1",
        "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {
            "adaptor": {"node": "edge-worker", "name": format!("adaptors.edge.cattle.io/{adaptor}")},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": kind},
            "template": {"spec": spec},
        }
    });
    Arc::new(serde_json::from_value(yaml).expect("link"))
}

pub fn hostile(name: &str, mode: &str) -> Arc<DeviceLink> {
    link(
        name,
        "hostile",
        "HostileDevice",
        serde_json::json!({"mode": mode, "parameters": {"syncIntervalMs": 50}}),
    )
}

pub fn fan(name: &str, gear: &str, interval: &str) -> Arc<DeviceLink> {
    link(
        name,
        "dummy",
        "DummySpecialDevice",
        serde_json::json!({"protocol": {"location": "lab"}, "gear": gear, "on": true, "parameters": {"syncInterval": interval}}),
    )
}

pub fn key(name: &str) -> String {
    format!("default/{name}")
}

/// The entry `name` of a status document's `properties` list (the Modbus, OPC UA and
/// BLE adaptors' shape).
pub fn property<'a>(r: &'a DeviceReport, name: &str) -> Option<&'a serde_json::Value> {
    r.status["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

/// That property's `value`, as text.
pub fn value(r: &DeviceReport, name: &str) -> Option<String> {
    property(r, name)?.get("value")?.as_str().map(str::to_owned)
}

/// That property's `error`.
pub fn error(r: &DeviceReport, name: &str) -> Option<String> {
    property(r, name)?.get("error")?.as_str().map(str::to_owned)
}
