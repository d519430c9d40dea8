//! `scripts/bench-cluster.sh`: the limb on a real kube-apiserver (1.20.2 + etcd on
//! loopback, the harness of the brain's cluster tests), with the brain as a process.
//!
//! - The API server's own status write capacity, just before the limb starts, with the
//!   same watch as the delivery: a plain kube-rs client merge-patching the status of
//!   objects as fast as it can, on plain objects (no labels, annotations or owner
//!   reference) and on objects shaped like the limb's instances (its labels,
//!   annotations, a controller owner reference, applied by its field manager, a status
//!   of the same form), so what that shape costs the API server is a figure of the run.
//! - Connect rate: N DeviceLinks (dummy adaptor, `DummyProtocolDevice` whose property
//!   changes on every poll, 1 s sync interval) applied at once, until every link shows
//!   `DeviceConnected=True`; the write requests per link it took (the API server's own
//!   counters), and the bound of issue 29: 1.15 x writes per link x N / capacity.
//! - Status delivery: for a fixed window, every status that reaches the API is seen on a
//!   watch of the instances; writes/s against the capacity, their latency from the
//!   guest's poll (`updatedAt`) to the watch event, how old each device's status gets,
//!   writes per device (fairness), and the RSS and CPU of the limb, the brain, the API
//!   server and etcd.
//! - Re-validation: after the limb stops, the model's CRD is changed twice: an
//!   annotation (the brain reconciles every link of the model and writes nothing), then
//!   `v1alpha1` not served and served again (the brain rewrites ModelExisted on every
//!   link, both ways); each timed until the brain has done it for every link.
//! - A changed `syncInterval` on a live link (100 devices or fewer): the spacing of its
//!   readings before and after, and how long after the patch the new spacing starts.
//!
//! Knobs (env): `BENCH_CLUSTER_SIZES` (default `100,1000`), `BENCH_CLUSTER_RUNS` (the
//! whole scenario this many times, each on a fresh API server; default 1),
//! `BENCH_CLUSTER_SECS` (the delivery window, default 60), `BENCH_CAPACITY_SECS`
//! (default 15), `BENCH_CAPACITY_OBJECTS` (objects of each shape the capacity is
//! measured on; default the size, at most 1,000), `BENCH_CLUSTER_LIMB_ARGS` (extra
//! arguments of `limb cluster`, split at whitespace), `BENCH_CLUSTER_REVALIDATE`
//! (`0` skips the re-validation), `LIMB_BIN`, `BRAIN_BIN` (default: next to this
//! bench's target dir), `BENCHMARKS_CLUSTER_OUT`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "bench harness"
)]

mod support;

// The end-to-end harness's API server and processes (`tests/src/`), by path rather than
// as a dev-dependency: a dev-dependency of the limb is built for every test target too,
// and would bring kube's client into the release build of the containment suite. They
// find repository files through `crate::paths`, the harness module `support` includes.
#[path = "../../tests/src/apiserver.rs"]
#[allow(dead_code, reason = "shared with the end-to-end suites")]
mod apiserver;
#[path = "../../tests/src/process.rs"]
#[allow(dead_code, reason = "shared with the end-to-end suites")]
mod process;

use apiserver::ApiServer;
use paths::repo_file;
use process::{Process, start_brain};
use std::collections::HashMap;
use std::path::PathBuf;
use support::repo as paths;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crds::conditions::{ConditionStatus, ConditionType};
use crds::v1alpha1::{DeviceLink, NODE_LABEL, node_label_value};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

/// `limb` or `brain`: `$LIMB_BIN`/`$BRAIN_BIN`, else the release binary of this target dir.
fn binary(var: &str, name: &str) -> PathBuf {
    let bin = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        // target/release/deps/cluster-<hash> -> target/release/<name>
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join(name)
    });
    assert!(
        bin.exists(),
        "{} not found: cargo build --release -p limb -p brain (scripts/bench-cluster.sh does)",
        bin.display()
    );
    bin
}

fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Extra arguments of `limb cluster` (`BENCH_CLUSTER_LIMB_ARGS`, split at whitespace).
fn limb_args() -> Vec<String> {
    std::env::var("BENCH_CLUSTER_LIMB_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn start_limb(server: &ApiServer, node: &str) -> Process {
    let cache = server.dir.path().join("limb-cache").display().to_string();
    let extra = limb_args();
    let mut args = vec![
        "--cache-dir",
        &cache,
        "cluster",
        "--node",
        node,
        "--namespace",
        "octopus-system",
    ];
    args.extend(extra.iter().map(String::as_str));
    Process::start(
        &binary("LIMB_BIN", "limb"),
        &args,
        &server.user_kubeconfig("limb"),
        &[("RUST_LOG", "warn")],
        &server.dir.path().join(format!("limb-{node}.log")),
    )
}

/// Sum of the limb's `device_polls` counters.
fn limb_polls(limb: &Process) -> Option<f64> {
    let text = limb.get("/metrics")?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("octopus_limb_device_polls_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// RSS in bytes and CPU seconds (user + system) of a process.
fn proc_usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu = ticks(14).unwrap_or(0.0) + ticks(15).unwrap_or(0.0);
    (rss, cpu / 100.0)
}

/// The API server's and etcd's process ids: children of this process, by name.
fn control_plane_pids() -> (Option<u32>, Option<u32>) {
    let me = std::process::id();
    let (mut api, mut etcd) = (None, None);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(me) {
            continue;
        }
        match comm {
            "kube-apiserver" => api = Some(pid),
            "etcd" => etcd = Some(pid),
            _ => {}
        }
    }
    (api, etcd)
}

/// RSS (MiB) and CPU seconds of the processes a run watches, at one moment.
#[derive(Clone, Copy, Default)]
struct Usage {
    /// limb, brain, kube-apiserver, etcd, this bench.
    rss_mib: [f64; 5],
    cpu_s: [f64; 5],
}

const PROCS: [&str; 5] = ["limb", "brain", "kube-apiserver", "etcd", "bench"];

fn usage(pids: [Option<u32>; 5]) -> Usage {
    let mut u = Usage::default();
    for (i, pid) in pids.iter().enumerate() {
        if let Some(pid) = pid {
            let (rss, cpu) = proc_usage(*pid);
            u.rss_mib[i] = rss as f64 / f64::from(1 << 20);
            u.cpu_s[i] = cpu;
        } else {
            u.rss_mib[i] = f64::NAN;
            u.cpu_s[i] = f64::NAN;
        }
    }
    u
}

/// CPU of each process between two readings, in % of one core.
fn cpu_pct(a: &Usage, b: &Usage, secs: f64) -> [f64; 5] {
    let mut out = [0.0; 5];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (b.cpu_s[i] - a.cpu_s[i]) / secs * 100.0;
    }
    out
}

fn quantile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[((xs.len() - 1) as f64 * q).round() as usize]
}

fn ms_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3
}

fn instance_resource() -> ApiResource {
    ApiResource {
        plural: "dummyprotocoldevices".into(),
        ..ApiResource::from_gvk(&GroupVersionKind::gvk(
            "devices.edge.cattle.io",
            "v1alpha1",
            "DummyProtocolDevice",
        ))
    }
}

fn link(ns: &str, name: &str, node: &str) -> DeviceLink {
    serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "adaptor": {"node": node, "name": "adaptors.edge.cattle.io/dummy"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummyProtocolDevice"},
            "template": {"spec": {
                "protocol": {"ip": "127.0.0.1"},
                "parameters": {"syncInterval": "1s"},
                "properties": {"temperature": {"type": "float"}}
            }}
        }
    }))
    .unwrap()
}

async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&ns),
        )
        .await
        .unwrap();
}

/// API server, CRDs, RBAC, nodes, the brain, the dummy adaptor's ConfigMap.
async fn control_plane(nodes: &[String]) -> (ApiServer, Client, Process) {
    let server = ApiServer::start().await;
    let client = server.client().await;
    apiserver::install_crds(&client, crds::generated::all().into_iter().map(|(_, c)| c)).await;
    namespace(&client, "octopus-system").await;
    let deploy = &repo_file("deploy");
    server
        .apply_rbac(&deploy.join("limb.yaml"), "octopus-limb")
        .await;
    server
        .apply_rbac(&deploy.join("brain.yaml"), "octopus-brain")
        .await;
    for n in nodes {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": n}})).unwrap();
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &node)
            .await
            .unwrap();
    }
    let brain = start_brain(&server, &binary("BRAIN_BIN", "brain"), "warn");
    // The dummy adaptor, shipped as `octopus push` would.
    let dir = std::env::var_os("OCTOPUS_ADAPTORS_DIR")
        .map(PathBuf::from)
        .expect("set OCTOPUS_ADAPTORS_DIR (scripts/bench-cluster.sh does)");
    let bytes = std::fs::read(dir.join("adaptor_dummy.wasm")).unwrap();
    let yaml = limb::adaptors::package::render(
        "adaptor-dummy",
        "octopus-system",
        "adaptors.edge.cattle.io/dummy",
        &[],
        &bytes,
    );
    apiserver::apply_config_maps(&client, "octopus-system", &yaml, "bench").await;
    (server, client, brain)
}

/// A `DummyProtocolDevice` status as the limb's relay writes it for the bench's links
/// (the dummy adaptor's form: `polls`, and the property with its value and `updatedAt`).
fn device_status(polls: u64) -> serde_json::Value {
    json!({"polls": polls, "properties": {"temperature": {
        "floatValue": format!("{}m", fastrand::u32(0..100_000)),
        "type": "float",
        "updatedAt": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    }}})
}

/// Status writes per second the API server takes from `writers` plain clients patching
/// `objects` objects `<prefix>0000`.. in `ns` round-robin, as the field manager `manager`.
async fn capacity(
    client: &Client,
    (ns, prefix, manager): (&str, &str, &str),
    objects: usize,
    writers: usize,
    secs: u64,
) -> f64 {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &instance_resource());
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (api, next, done) = (api.clone(), next.clone(), done.clone());
            let (prefix, manager) = (prefix.to_owned(), manager.to_owned());
            tokio::spawn(async move {
                let pp = PatchParams {
                    field_manager: Some(manager),
                    ..Default::default()
                };
                while Instant::now() < stop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let name = format!("{prefix}{:04}", i as usize % objects);
                    let status = json!({ "status": device_status(i) });
                    if api
                        .patch_status(&name, &pp, &Patch::Merge(&status))
                        .await
                        .is_ok()
                    {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The objects the capacity is measured on, `n` of each shape, in the namespace
/// `capacity`: plain ones (`c-NNNN`: created, no labels, annotations or owner
/// reference) and ones shaped like the limb's instances (`s-NNNN`: applied by the
/// limb's field manager with its node label, node and adaptor annotations and a
/// controller owner reference to a DeviceLink, as `ensure_instance` does). Each gets a
/// first status, so that a write replaces a status as the relay's do.
async fn create_capacity_objects(client: &Client, n: usize) {
    namespace(client, "capacity").await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "capacity", &instance_resource());
    // The owner of the instance-shaped objects: a link for a node that does not exist,
    // so that no limb takes it up (the brain marks it NodeExisted=False).
    let owner = Api::<DeviceLink>::namespaced(client.clone(), "capacity")
        .create(
            &PostParams::default(),
            &link("capacity", "capacity-owner", "no-such-node"),
        )
        .await
        .unwrap();
    let owner_ref = {
        let mut o = owner.controller_owner_ref(&()).unwrap();
        o.block_owner_deletion = Some(true);
        o
    };
    let spec = json!({"protocol": {"ip": "127.0.0.1"}, "parameters": {"syncInterval": "1s"},
                      "properties": {"temperature": {"type": "float"}}});
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, spec, owner_ref) = (api.clone(), spec.clone(), owner_ref.clone());
            async move {
                let plain: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummyProtocolDevice",
                    "metadata": {"name": format!("c-{i:04}"), "namespace": "capacity"},
                    "spec": spec,
                }))
                .unwrap();
                api.create(&PostParams::default(), &plain).await.unwrap();
                let name = format!("s-{i:04}");
                let shaped = json!({
                    "apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummyProtocolDevice",
                    "metadata": {
                        "name": name, "namespace": "capacity",
                        "labels": {NODE_LABEL: node_label_value("edge-1")},
                        "annotations": {
                            "edge.cattle.io/node-name": "edge-1",
                            "edge.cattle.io/adaptor-name": "adaptors.edge.cattle.io/dummy",
                        },
                        "ownerReferences": [owner_ref],
                    },
                    "spec": spec,
                });
                api.patch(
                    &name,
                    &PatchParams::apply("octopus-limb")
                        .force()
                        .validation(kube::api::ValidationDirective::Strict),
                    &Patch::Apply(&shaped),
                )
                .await
                .unwrap();
                for (name, manager) in [(format!("c-{i:04}"), "bench"), (name, "octopus-limb")] {
                    let pp = PatchParams {
                        field_manager: Some(manager.into()),
                        ..Default::default()
                    };
                    api.patch_status(
                        &name,
                        &pp,
                        &Patch::Merge(&json!({"status": device_status(0)})),
                    )
                    .await
                    .unwrap();
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// Bytes of an object's status, as JSON.
fn status_bytes(obj: &DynamicObject) -> usize {
    obj.data
        .get("status")
        .map_or(0, |s| serde_json::to_string(s).map_or(0, |t| t.len()))
}

/// What the watch of the instances saw.
#[derive(Default)]
struct Seen {
    /// Per device: the last `updatedAt` (ms since the epoch), and readings delivered
    /// while recording.
    devices: HashMap<String, Device>,
    /// Watch event time minus the reading's `updatedAt`, while recording (ms).
    latency_ms: Vec<f64>,
}

#[derive(Default)]
struct Device {
    updated_at: f64,
    writes: u64,
    /// `updatedAt` of every reading delivered while recording.
    readings: Vec<f64>,
}

fn watch_instances(
    client: &Client,
    ns: &str,
    seen: Arc<Mutex<Seen>>,
    recording: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &instance_resource());
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(ev) = stream.next().await {
            let Ok(obj) = ev else { continue };
            let at = ms_since_epoch(SystemTime::now());
            let Some(updated) = obj.data["status"]["properties"]["temperature"]["updatedAt"]
                .as_str()
                .and_then(|s| humantime::parse_rfc3339(s).ok())
            else {
                continue;
            };
            let updated = ms_since_epoch(updated);
            let mut seen = seen.lock().unwrap();
            let rec = recording.load(Ordering::Relaxed);
            let Seen {
                devices,
                latency_ms,
            } = &mut *seen;
            let d = devices.entry(obj.name_any()).or_default();
            if updated > d.updated_at {
                d.updated_at = updated;
                if rec {
                    d.writes += 1;
                    d.readings.push(updated);
                    latency_ms.push(at - updated);
                }
            }
        }
    })
}

/// The API server's `apiserver_request_total` write counters for the Octopus resources,
/// keyed `resource[/subresource] VERB code`.
async fn write_requests(client: &Client) -> HashMap<String, f64> {
    let req = axum::http::Request::get("/metrics")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(req).await.unwrap_or_default();
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map_or("", |v| v.trim_end_matches('"'))
        };
        let (resource, verb) = (label("resource"), label("verb"));
        if !["devicelinks", "dummyprotocoldevices", "events"].contains(&resource)
            || ["GET", "LIST", "WATCH"].contains(&verb)
        {
            continue;
        }
        let sub = label("subresource");
        let key = if sub.is_empty() {
            format!("{resource} {verb} {}", label("code"))
        } else {
            format!("{resource}/{sub} {verb} {}", label("code"))
        };
        *out.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// Write requests between two counter readings, per link, most first.
fn requests_per_link(
    before: &HashMap<String, f64>,
    after: &HashMap<String, f64>,
    n: usize,
) -> String {
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.iter()
        .map(|(k, d)| format!("{k}: {:.2}", d / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}
/// All write requests per link (or per second) between two counter readings.
fn writes_total(before: &HashMap<String, f64>, after: &HashMap<String, f64>, div: f64) -> f64 {
    after
        .iter()
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
        .filter(|d| *d > 0.0)
        .sum::<f64>()
        / div
}

/// The brain's reconciles so far, every outcome.
fn brain_reconciles(brain: &Process) -> Option<f64> {
    let text = brain.get("/metrics")?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("octopus_brain_reconciles_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `x` rounded down to `d` decimals: a figure that must reach a target is never shown
/// above what was measured.
fn down(x: f64, d: i32) -> String {
    let f = 10f64.powi(d);
    format!("{:.*}", d as usize, (x * f).floor() / f)
}

/// `x` rounded up to `d` decimals: a figure that must stay under a bound is never shown
/// below what was measured.
fn up(x: f64, d: i32) -> String {
    let f = 10f64.powi(d);
    format!("{:.*}", d as usize, (x * f).ceil() / f)
}

struct Delivery {
    run: usize,
    devices: usize,
    /// Load average when this size started.
    load: String,
    capacity_objects: usize,
    capacity_single: f64,
    /// Plain objects, 32 writers.
    capacity: f64,
    /// Objects shaped like the limb's instances, 32 writers.
    cap_shaped: f64,
    /// Bytes of the status the capacity writes, and of a limb instance's status.
    status_bytes: [usize; 2],
    connect: Duration,
    connected: usize,
    /// When all N links were created, then when each condition was True on all N.
    applied: Duration,
    stages: Vec<(ConditionType, Option<Duration>)>,
    /// Write requests per link while connecting, by resource, verb and code.
    requests: String,
    /// All of them, per link.
    writes_per_link: f64,
    /// Write requests per second in the delivery window, by resource, verb and code.
    window_requests: String,
    /// The same, on the limb's instances after the limb stopped.
    cap_instances: f64,
    window: f64,
    polls_per_s: f64,
    writes_per_s: f64,
    latency: [f64; 3],
    age: [f64; 3],
    writes_min: u64,
    writes_max: u64,
    never: usize,
    rss_mib: [f64; 3],
    /// Before the links (the capacity objects in place), all connected, end of window.
    usage: [Usage; 3],
    cpu_connect: [f64; 5],
    cpu_window: [f64; 5],
    interval: Option<IntervalChange>,
    revalidation: Option<Revalidation>,
}

impl Delivery {
    /// Issue 29's bound on the connect time: 1.15 x writes per link x N / capacity.
    fn bound(&self, capacity: f64) -> f64 {
        1.15 * self.writes_per_link * self.devices as f64 / capacity
    }
}

struct IntervalChange {
    before_ms: f64,
    after_ms: f64,
    effect_ms: f64,
}

struct Revalidation {
    /// Links of the model in the cluster (every one is re-validated).
    links: usize,
    /// An annotation on the CRD: until the brain reconciled that many links.
    annotated: Result<Duration, String>,
    /// `v1alpha1` no longer served: until all N links of this size show
    /// ModelExisted=False; then served again: until all show True.
    unserved: Result<Duration, String>,
    served: Result<Duration, String>,
    /// CPU over both flips.
    cpu: [f64; 5],
}

fn median_gap(xs: &[f64]) -> f64 {
    let mut gaps: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
    quantile(&mut gaps, 0.5)
}

fn condition_count(
    store: &reflector::Store<DeviceLink>,
    stage: ConditionType,
    status: ConditionStatus,
) -> usize {
    store
        .state()
        .iter()
        .filter(|l| {
            l.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == stage && c.status == status)
            })
        })
        .count()
}

/// Polls `done` every 50 ms until it holds or `limit` passes.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> Result<Duration, String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(format!("not within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(start.elapsed())
}

const MODEL_CRD: &str = "dummyprotocoldevices.devices.edge.cattle.io";

/// The brain re-validating every link of the model after its CRD changes (the limb has
/// stopped: the flips would stop its devices).
async fn revalidate(
    client: &Client,
    brain: &Process,
    store: &reflector::Store<DeviceLink>,
    n: usize,
    pids: [Option<u32>; 5],
) -> Revalidation {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let all: Api<DeviceLink> = Api::all(client.clone());
    let links = all
        .list(&Default::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|l| l.spec.model.kind == "DummyProtocolDevice")
                .count()
        })
        .unwrap_or(0);
    let limit = Duration::from_secs(60 + n as u64 / 20);
    // 1. A change the brain re-checks and that changes no verdict: every link of the
    //    model is reconciled, nothing is written.
    let before = brain_reconciles(brain).unwrap_or(f64::NAN);
    let patch = json!({"metadata": {"annotations": {"bench.edge.cattle.io/revalidate": format!("{:?}", SystemTime::now())}}});
    let start = Instant::now();
    let annotated = match crds
        .patch(MODEL_CRD, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Err(e) => Err(format!("patch refused: {e}")),
        Ok(_) => {
            let mut last = Instant::now();
            loop {
                let now = brain_reconciles(brain).unwrap_or(f64::NAN);
                if now - before >= links as f64 {
                    break Ok(start.elapsed());
                }
                if start.elapsed() > limit {
                    break Err(format!(
                        "{} of {links} reconciled within {limit:?}",
                        now - before
                    ));
                }
                if last.elapsed() > Duration::from_secs(5) {
                    eprintln!("  {} of {links} reconciled", now - before);
                    last = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    eprintln!("re-validation after an annotation: {annotated:?}");
    // 2. A change of verdict, both ways: the brain rewrites ModelExisted on every link.
    let u0 = usage(pids);
    let t0 = Instant::now();
    // The whole CRD back with one version's `served` changed (a merge patch would
    // replace the list of versions), guarded by its resourceVersion.
    let flip = async |on: bool| -> Result<(), String> {
        let mut crd = crds.get(MODEL_CRD).await.map_err(|e| e.to_string())?;
        let v = crd
            .spec
            .versions
            .iter_mut()
            .find(|v| v.name == "v1alpha1")
            .ok_or("no v1alpha1")?;
        v.served = on;
        crds.replace(MODEL_CRD, &PostParams::default(), &crd)
            .await
            .map(|_| ())
            .map_err(|e| format!("refused: {e}"))
    };
    let unserved = match flip(false).await {
        Err(e) => Err(e),
        Ok(_) => {
            until(limit, || {
                condition_count(store, ConditionType::ModelExisted, ConditionStatus::False) >= n
            })
            .await
        }
    };
    eprintln!("ModelExisted=False on all {n} after v1alpha1 stopped being served: {unserved:?}");
    let served = match flip(true).await {
        Err(e) => Err(e),
        Ok(_) => {
            until(limit, || {
                condition_count(store, ConditionType::ModelExisted, ConditionStatus::True) >= n
            })
            .await
        }
    };
    eprintln!("ModelExisted=True on all {n} once served again: {served:?}");
    let cpu = cpu_pct(&u0, &usage(pids), t0.elapsed().as_secs_f64());
    Revalidation {
        links,
        annotated,
        unserved,
        served,
        cpu,
    }
}

#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
#[allow(clippy::too_many_arguments, reason = "one scenario's settings")]
async fn run_size(
    server: &ApiServer,
    client: &Client,
    brain: &Process,
    (run, n, node): (usize, usize, &str),
    secs: u64,
    capacity_secs: u64,
    capacity_objects: usize,
) -> Delivery {
    let load = loadavg();
    eprintln!("--- run {run}: {n} devices on {node}, load average {load}");
    let ns = format!("bench-{n}");
    namespace(client, &ns).await;
    // The API server alone, just before the limb starts.
    let limb_client = {
        let kc = kube::config::Kubeconfig::read_from(server.user_kubeconfig("limb")).unwrap();
        Client::try_from(
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .unwrap(),
        )
        .unwrap()
    };
    // Observed as the delivery is: a watch on the objects written.
    let observer = watch_instances(
        client,
        "capacity",
        Arc::default(),
        Arc::new(AtomicBool::new(false)),
    );
    let plain = ("capacity", "c-", "bench");
    let capacity_single = capacity(&limb_client, plain, capacity_objects, 1, 5).await;
    let cap = capacity(&limb_client, plain, capacity_objects, 32, capacity_secs).await;
    let shaped = ("capacity", "s-", "octopus-limb");
    let cap_shaped = capacity(&limb_client, shaped, capacity_objects, 32, capacity_secs).await;
    observer.abort();
    eprintln!(
        "capacity: {cap:.0} status writes/s with 32 writers ({capacity_single:.0}/s with one) on plain objects, \
         {cap_shaped:.0}/s on instance-shaped ones"
    );
    let written_status =
        Api::<DynamicObject>::namespaced_with(client.clone(), "capacity", &instance_resource())
            .get("s-0000")
            .await
            .map_or(0, |o| status_bytes(&o));

    let (api_pid, etcd_pid) = control_plane_pids();
    let limb = start_limb(server, node);
    let pids = [
        Some(limb.child.id()),
        Some(brain.child.id()),
        api_pid,
        etcd_pid,
        Some(std::process::id()),
    ];
    let seen = Arc::new(Mutex::new(Seen::default()));
    let recording = Arc::new(AtomicBool::new(false));
    let watch = watch_instances(client, &ns, seen.clone(), recording.clone());
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), &ns);
    let (store, writer) = reflector::store();
    let reflect = tokio::spawn(
        watcher(links.clone(), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            // Not `try_for_each`: that ends at the watch's first error (a dropped watch
            // under load), and the store would stop following the links.
            .for_each(|_| async {}),
    );
    // Wait for the limb to be up before applying (its start is not what is measured).
    let up_since = Instant::now();
    while limb.get("/healthz").is_none() && up_since.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let usage_before = usage(pids);

    // Connect rate: apply N links, wait for every DeviceConnected=True, noting when each
    // stage (the brain's ModelExisted, the limb's DeviceCreated, ...) reached all N.
    let stage_count = |store: &reflector::Store<DeviceLink>, stage: ConditionType| {
        condition_count(store, stage, ConditionStatus::True)
    };
    let connected =
        |store: &reflector::Store<DeviceLink>| stage_count(store, ConditionType::DeviceConnected);
    let counted = write_requests(client).await;
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let links = links.clone();
            let l = link(&ns, &format!("d-{i:04}"), node);
            async move { links.create(&PostParams::default(), &l).await.unwrap() }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let applied = start.elapsed();
    eprintln!("applied {n} links in {applied:.2?}");
    let limit = Duration::from_secs(30 + n as u64 / 4);
    let mut last_report = Instant::now();
    let mut stages: Vec<(ConditionType, Option<Duration>)> =
        ConditionType::ALL.iter().map(|c| (*c, None)).collect();
    while connected(&store) < n && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (stage, at) in &mut stages {
            if at.is_none() && stage_count(&store, *stage) >= n {
                *at = Some(start.elapsed());
            }
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {} connected after {:.0?}",
                connected(&store),
                start.elapsed()
            );
            last_report = Instant::now();
        }
    }
    let connect = start.elapsed();
    let connected_n = connected(&store);
    let usage_connected = usage(pids);
    eprintln!("{connected_n}/{n} connected in {connect:.2?}");
    let after_connect = write_requests(client).await;
    let requests = requests_per_link(&counted, &after_connect, n);
    let writes_per_link = writes_total(&counted, &after_connect, n as f64);
    eprintln!("write requests per link while connecting ({writes_per_link:.2}): {requests}");
    let instance_status =
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &instance_resource())
            .get("d-0000")
            .await
            .map_or(0, |o| status_bytes(&o));

    // Settle, then the delivery window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = limb.child.id();
    let polls0 = limb_polls(&limb).unwrap_or(f64::NAN);
    let window_counted = write_requests(client).await;
    let usage0 = usage(pids);
    let t0 = Instant::now();
    let t0_ms = ms_since_epoch(SystemTime::now());
    recording.store(true, Ordering::Relaxed);
    let mut ages = Vec::new();
    let mut rss = Vec::new();
    let names: Vec<String> = (0..n).map(|i| format!("d-{i:04}")).collect();
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = ms_since_epoch(SystemTime::now());
        {
            let seen = seen.lock().unwrap();
            for name in &names {
                let updated = seen.devices.get(name).map_or(0.0, |d| d.updated_at);
                // A device with nothing in the API is as old as the window.
                ages.push(now - updated.max(t0_ms));
            }
        }
        rss.push(proc_usage(pid).0 as f64 / f64::from(1 << 20));
    }
    recording.store(false, Ordering::Relaxed);
    let window = t0.elapsed().as_secs_f64();
    let polls1 = limb_polls(&limb).unwrap_or(f64::NAN);
    let usage1 = usage(pids);
    let window_requests = requests_per_link(&window_counted, &write_requests(client).await, 1)
        .split(", ")
        .map(|kv| {
            kv.rsplit_once(": ").map_or(kv.to_owned(), |(k, v)| {
                format!(
                    "{k}: {:.1}/s",
                    v.parse::<f64>().unwrap_or(f64::NAN) / window
                )
            })
        })
        .collect::<Vec<_>>()
        .join(", ");
    let (writes, mut latency, min, max, never) = {
        let seen = seen.lock().unwrap();
        let per: Vec<u64> = names
            .iter()
            .map(|n| seen.devices.get(n).map_or(0, |d| d.writes))
            .collect();
        (
            per.iter().sum::<u64>(),
            seen.latency_ms.clone(),
            per.iter().copied().min().unwrap_or(0),
            per.iter().copied().max().unwrap_or(0),
            per.iter().filter(|w| **w == 0).count(),
        )
    };

    // syncInterval on a live link: 1 s -> 250 ms, watched on the first device.
    let interval = if n <= 100 {
        let probe = "d-0000";
        let before = {
            let seen = seen.lock().unwrap();
            median_gap(&seen.devices[probe].readings)
        };
        seen.lock()
            .unwrap()
            .devices
            .get_mut(probe)
            .unwrap()
            .readings
            .clear();
        recording.store(true, Ordering::Relaxed);
        let patched = ms_since_epoch(SystemTime::now());
        links
            .patch(
                probe,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"template": {"spec": {"parameters": {"syncInterval": "250ms"}}}}})),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        recording.store(false, Ordering::Relaxed);
        let readings = seen.lock().unwrap().devices[probe].readings.clone();
        let after: Vec<f64> = readings
            .iter()
            .copied()
            .filter(|t| *t > patched + 2000.0)
            .collect();
        // The first reading that follows its predecessor by the new interval (< 500 ms).
        let effect = readings
            .windows(2)
            .find(|w| w[1] - w[0] < 500.0)
            .map_or(f64::NAN, |w| w[0] - patched);
        Some(IntervalChange {
            before_ms: before,
            after_ms: median_gap(&after),
            effect_ms: effect,
        })
    } else {
        None
    };

    drop(limb);
    // The same measure on the limb's own instances, once the limb has stopped: a check
    // of the instance-shaped objects above.
    let cap_instances = capacity(
        &limb_client,
        (&ns, "d-", "octopus-limb"),
        n,
        32,
        capacity_secs,
    )
    .await;
    eprintln!("capacity on the instances: {cap_instances:.0} status writes/s with 32 writers");
    watch.abort();
    let revalidation = if std::env::var("BENCH_CLUSTER_REVALIDATE").as_deref() == Ok("0") {
        None
    } else {
        Some(revalidate(client, brain, &store, n, pids).await)
    };
    reflect.abort();
    let mut rss_sorted = rss.clone();
    Delivery {
        run,
        devices: n,
        load,
        capacity_objects,
        capacity_single,
        capacity: cap,
        cap_shaped,
        status_bytes: [written_status, instance_status],
        connect,
        connected: connected_n,
        applied,
        stages,
        requests,
        writes_per_link,
        window_requests,
        cap_instances,
        window,
        polls_per_s: (polls1 - polls0) / window,
        writes_per_s: writes as f64 / window,
        latency: [
            quantile(&mut latency, 0.5),
            quantile(&mut latency, 0.99),
            latency.last().copied().unwrap_or(f64::NAN),
        ],
        age: [
            quantile(&mut ages, 0.5),
            quantile(&mut ages, 0.99),
            ages.last().copied().unwrap_or(f64::NAN),
        ],
        writes_min: min,
        writes_max: max,
        never,
        rss_mib: [
            rss.first().copied().unwrap_or(f64::NAN),
            rss.last().copied().unwrap_or(f64::NAN),
            quantile(&mut rss_sorted, 1.0),
        ],
        usage: [usage_before, usage_connected, usage1],
        cpu_connect: cpu_pct(&usage_before, &usage_connected, connect.as_secs_f64()),
        cpu_window: cpu_pct(&usage0, &usage1, window),
        interval,
        revalidation,
    }
}

fn per_process(xs: &[f64; 5], decimals: usize) -> String {
    PROCS
        .iter()
        .zip(xs)
        .map(|(p, x)| format!("{p} {x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn timed(r: &Result<Duration, String>) -> String {
    match r {
        Ok(d) => format!("{} s", up(d.as_secs_f64(), 2)),
        Err(e) => format!("**not done**: {e}"),
    }
}

#[allow(clippy::too_many_lines, reason = "one row per figure")]
fn table(results: &[Delivery]) -> String {
    let runs = results.iter().map(|r| r.run).max().unwrap_or(1);
    let mut t = String::from("| measurement |");
    for r in results {
        if runs > 1 {
            t.push_str(&format!(" run {}, {} devices |", r.run, r.devices));
        } else {
            t.push_str(&format!(" {} devices |", r.devices));
        }
    }
    t.push_str("\n| --- |");
    for _ in results {
        t.push_str(" --- |");
    }
    t.push('\n');
    let mut row = |name: &str, f: &dyn Fn(&Delivery) -> String| {
        t.push_str(&format!("| {name} |"));
        for r in results {
            t.push_str(&format!(" {} |", f(r)));
        }
        t.push('\n');
    };
    row("load average when the size started (1, 5, 15 min)", &|r| {
        r.load.clone()
    });
    row("capacity objects of each shape", &|r| {
        r.capacity_objects.to_string()
    });
    row(
        "API server capacity, plain objects, one writer (status writes/s)",
        &|r| format!("{:.0}", r.capacity_single),
    );
    row(
        "API server capacity, plain objects, 32 writers (status writes/s)",
        &|r| format!("{:.0}", r.capacity),
    );
    row(
        "API server capacity, objects shaped like the limb's instances, 32 writers (status writes/s)",
        &|r| format!("{:.0}", r.cap_shaped),
    );
    row(
        "cost of the instance shape (labels, annotations, owner reference, the limb's field manager)",
        &|r| {
            format!(
                "{:+.1}% capacity",
                (r.cap_shaped / r.capacity - 1.0) * 100.0
            )
        },
    );
    row(
        "status size: as the capacity writes it / a limb instance's (bytes of JSON)",
        &|r| format!("{} / {}", r.status_bytes[0], r.status_bytes[1]),
    );
    row("connect: all links DeviceConnected=True", &|r| {
        format!(
            "{} s ({}/{})",
            up(r.connect.as_secs_f64(), 2),
            r.connected,
            r.devices
        )
    });
    row(
        "connect stages: all N links created, then each condition True on all N",
        &|r| {
            let mut s = format!("created {:.1} s", r.applied.as_secs_f64());
            for (stage, at) in &r.stages {
                s.push_str(&format!(
                    ", {stage:?} {}",
                    at.map_or_else(
                        || "not reached".to_owned(),
                        |d| format!("{:.1} s", d.as_secs_f64())
                    )
                ));
            }
            s
        },
    );
    row(
        "connect: write requests per link, by resource, verb and code",
        &|r| r.requests.clone(),
    );
    row("connect: write requests per link, all of them", &|r| {
        format!("{:.2}", r.writes_per_link)
    });
    row(
        "connect bound: 1.15 x writes per link x N / plain capacity (instance-shaped capacity)",
        &|r| {
            format!(
                "{} s ({} s)",
                down(r.bound(r.capacity), 2),
                down(r.bound(r.cap_shaped), 2)
            )
        },
    );
    row("connect / bound", &|r| {
        up(r.connect.as_secs_f64() / r.bound(r.capacity), 2)
    });
    row("demand: guest polls/s", &|r| {
        format!("{:.0}", r.polls_per_s)
    });
    row("delivered: status writes/s seen on a watch", &|r| {
        format!("{:.0}", r.writes_per_s)
    });
    row("delivered / capacity on instance-shaped objects", &|r| {
        format!("{}%", down(r.writes_per_s / r.cap_shaped * 100.0, 1))
    });
    row("delivered / capacity on plain objects", &|r| {
        format!("{}%", down(r.writes_per_s / r.capacity * 100.0, 1))
    });
    row(
        "check: capacity on the limb's own instances, 32 writers, limb stopped (status writes/s)",
        &|r| format!("{:.0}", r.cap_instances),
    );
    row("delivered / demand", &|r| {
        format!("{}%", down(r.writes_per_s / r.polls_per_s * 100.0, 1))
    });
    row("latency poll -> watch event, p50 / p99 / max (ms)", &|r| {
        format!(
            "{:.0} / {:.0} / {:.0}",
            r.latency[0], r.latency[1], r.latency[2]
        )
    });
    row("age of a device's status, p50 / p99 / max (ms)", &|r| {
        format!("{:.0} / {:.0} / {:.0}", r.age[0], r.age[1], r.age[2])
    });
    row("writes per device in the window, min / max", &|r| {
        format!("{} / {}", r.writes_min, r.writes_max)
    });
    row("devices never written in the window", &|r| {
        r.never.to_string()
    });
    row(
        "write requests in the window, per second, by resource, verb and code",
        &|r| r.window_requests.clone(),
    );
    row(
        "limb RSS in the window, first / last / max second (MiB)",
        &|r| {
            format!(
                "{:.1} / {:.1} / {:.1}",
                r.rss_mib[0], r.rss_mib[1], r.rss_mib[2]
            )
        },
    );
    row("RSS before the links (MiB; the limb started, idle)", &|r| {
        per_process(&r.usage[0].rss_mib, 1)
    });
    row("RSS with all links connected (MiB)", &|r| {
        per_process(&r.usage[1].rss_mib, 1)
    });
    row("RSS at the end of the window (MiB)", &|r| {
        per_process(&r.usage[2].rss_mib, 1)
    });
    row("CPU while connecting (% of one core)", &|r| {
        per_process(&r.cpu_connect, 0)
    });
    row("CPU in the window (% of one core)", &|r| {
        per_process(&r.cpu_window, 0)
    });
    row("re-validation: links of the model in the cluster", &|r| {
        r.revalidation
            .as_ref()
            .map_or("-".into(), |v| v.links.to_string())
    });
    row(
        "re-validation after an annotation on the CRD: until the brain reconciled every link",
        &|r| {
            r.revalidation
                .as_ref()
                .map_or("-".into(), |v| timed(&v.annotated))
        },
    );
    row(
        "re-validation after `v1alpha1` stops being served: until ModelExisted=False on all N",
        &|r| {
            r.revalidation
                .as_ref()
                .map_or("-".into(), |v| timed(&v.unserved))
        },
    );
    row(
        "re-validation after `v1alpha1` is served again: until ModelExisted=True on all N",
        &|r| {
            r.revalidation
                .as_ref()
                .map_or("-".into(), |v| timed(&v.served))
        },
    );
    row(
        "CPU during both flips (% of one core; the limb stopped)",
        &|r| {
            r.revalidation
                .as_ref()
                .map_or("-".into(), |v| per_process(&v.cpu, 0))
        },
    );
    row("window (s)", &|r| format!("{:.0}", r.window));
    t
}

async fn run() {
    let sizes: Vec<usize> = std::env::var("BENCH_CLUSTER_SIZES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs = env_or("BENCH_CLUSTER_RUNS", 1usize);
    let secs = env_or("BENCH_CLUSTER_SECS", 60u64);
    let capacity_secs = env_or("BENCH_CAPACITY_SECS", 15u64);
    let biggest = sizes.iter().copied().max().unwrap_or(0);
    let capacity_objects = env_or("BENCH_CAPACITY_OBJECTS", biggest.min(1000)).max(1);
    let nodes: Vec<String> = (1..=sizes.len()).map(|i| format!("edge-{i}")).collect();
    let machine = support::measured_on();
    let mut results = Vec::new();
    for run in 1..=runs {
        // A fresh API server per run: no run inherits another's objects.
        let (server, client, brain) = control_plane(&nodes).await;
        create_capacity_objects(&client, capacity_objects).await;
        for (n, node) in sizes.iter().zip(&nodes) {
            results.push(
                run_size(
                    &server,
                    &client,
                    &brain,
                    (run, *n, node),
                    secs,
                    capacity_secs,
                    capacity_objects,
                )
                .await,
            );
        }
        drop(brain);
        drop(server);
    }
    let mut out = table(&results);
    for r in &results {
        if let Some(i) = &r.interval {
            out.push_str(&format!(
                "\n`syncInterval` 1s -> 250ms on a live link (run {}, {} devices): readings {:.0} ms apart before, {:.0} ms after; \
                 the new spacing starts {:.0} ms after the patch.\n",
                r.run, r.devices, i.before_ms, i.after_ms, i.effect_ms
            ));
        }
    }
    out.push_str(&verdicts(&results));
    println!("{out}");
    if let Some(path) = std::env::var_os("BENCHMARKS_CLUSTER_OUT") {
        let limb_args = limb_args().join(" ");
        let text = format!(
            "# Cluster benchmarks: status delivery and connect rate\n\n\
             Measured by `scripts/bench-cluster.sh` (release build, `cargo bench --locked -p limb --bench cluster`) \
             from {machine}, load average at the end {} (the load average when each size started is in the table), \
             kube-apiserver 1.20.2 with etcd on loopback, the brain and the limb as processes, \
             the dummy adaptor. {runs} run(s), each on a fresh API server; delivery window {secs} s per size; \
             capacity measured for {capacity_secs} s on {capacity_objects} objects of each shape; limb arguments: {}.\n\n{out}\n{NOTES}",
            loadavg(),
            if limb_args.is_empty() {
                "the defaults".to_owned()
            } else {
                format!("`{limb_args}`")
            },
        );
        std::fs::write(path, text).unwrap();
    }
}

/// Issue 29's targets (decisions 3 and 4), met or not, from this run's figures, never
/// rounded in their favour.
fn verdicts(results: &[Delivery]) -> String {
    let mark = |ok: bool| if ok { "met" } else { "not met" };
    let mut v = String::from(
        "\nTargets (issue 29, decisions 3 and 4; issue 9 for fairness and memory), from these runs:\n\n",
    );
    for r in results {
        let n = r.devices;
        let who = format!("run {}, {n} devices", r.run);
        if r.polls_per_s > r.cap_shaped {
            let f = r.writes_per_s / r.cap_shaped;
            v.push_str(&format!(
                "- {who}, demand {:.0}/s above the capacity on instance-shaped objects {:.0}/s: delivery at least 90% of it: **{}** ({}%; {}% of the plain-object capacity {:.0}/s).\n",
                r.polls_per_s, r.cap_shaped, mark(f >= 0.9), down(f * 100.0, 1),
                down(r.writes_per_s / r.capacity * 100.0, 1), r.capacity
            ));
        } else {
            let f = r.writes_per_s / r.polls_per_s;
            v.push_str(&format!(
                "- {who}, demand {:.0}/s below the capacity on instance-shaped objects {:.0}/s: full delivery (97% of the polls): **{}** ({}% of the polls).\n",
                r.polls_per_s, r.cap_shaped, mark(f >= 0.97), down(f * 100.0, 1)
            ));
        }
        let bound = r.bound(r.capacity);
        v.push_str(&format!(
            "- {who}, connect within 1.15 x {:.2} writes per link x {n} / {:.0} writes/s = {} s: **{}** ({} s, {}/{n} connected).\n",
            r.writes_per_link,
            r.capacity,
            down(bound, 2),
            mark(r.connected == n && r.connect.as_secs_f64() <= bound),
            up(r.connect.as_secs_f64(), 2),
            r.connected,
        ));
        let fair = r.never == 0 && r.writes_min as f64 >= 0.8 * r.writes_max as f64;
        v.push_str(&format!(
            "- {who}, every device updated in fair turns: **{}** ({} to {} writes per device, {} never).\n",
            mark(fair), r.writes_min, r.writes_max, r.never
        ));
        let growth = r.rss_mib[1] - r.rss_mib[0];
        v.push_str(&format!(
            "- {who}, limb memory flat (within 5%) over the {:.0} s window{}: **{}** ({:+.1} MiB, max {:.1} MiB).\n",
            r.window,
            if r.window < 600.0 { " (the target is ten minutes)" } else { "" },
            mark(growth <= 0.05 * r.rss_mib[0]),
            growth,
            r.rss_mib[2]
        ));
        if let Some(i) = &r.interval {
            v.push_str(&format!(
                "- {who}, a changed `syncInterval` takes effect at once: **{}** (new spacing {:.0} ms after the patch).\n",
                mark(i.effect_ms < 1000.0 && (i.after_ms - 250.0).abs() < 50.0),
                i.effect_ms
            ));
        }
    }
    v
}

const NOTES: &str = "\
- *API server capacity*: a plain kube-rs client (the limb's user and RBAC) merge-patching the status of \
  `DummyProtocolDevice` objects round-robin, as fast as it can, just before the limb of that size starts (the limb \
  is not running then; the links of a previous size sit idle), with a watch on the objects as the delivery runs \
  have. *Plain objects* have no labels, annotations or owner reference and one field manager besides the creator. \
  *Instance-shaped objects* are applied by the limb's field manager (`octopus-limb`, server-side apply, strict \
  validation) with the limb's node label, node and adaptor annotations and a controller owner reference to a \
  DeviceLink (one link owns them all, so that no limb takes it up), and their status is written by the same field \
  manager, as the relay's are. Both get the same status (the dummy adaptor's form, with a fresh value and \
  `updatedAt`); its size and a real instance's are in the table. *Check*: the same client on the limb's own \
  instances after the limb stopped.
- *connect*: from the first of N DeviceLinks applied (16 creates in flight) until every one shows \
  `DeviceConnected=True`, seen on a watch; the brain validates them and labels them (adding the limb's finalizer \
  in the same write), the limb creates the instance and connects the device. *Connect stages* says when all N \
  links were created and when each condition was True on all N (NodeExisted and ModelExisted are the brain's, the \
  rest the limb's). *Write requests* are the API server's own counters (`apiserver_request_total`, every verb but \
  GET, LIST and WATCH, on DeviceLinks, the instances and Events) from the first create until all were connected, \
  divided by N: the bench's creates, the brain's and the limb's writes, the relay's readings of the devices \
  already connected, and conflicts (code 409). *Bound*: issue 29's 1.15 x writes per link x N / the plain-object \
  capacity of the same run (the higher capacity, so the stricter bound; the bound from the instance-shaped \
  capacity is in brackets).
- *demand*: the guests' polls per second (the limb's `octopus_limb_device_polls_total`); every poll of a \
  `DummyProtocolDevice` gives its property a new value and `updatedAt`, so every poll is a status change.
- *delivered*: distinct readings (`updatedAt`) that reached the instances' status, counted on a watch of the \
  instances, over the window; the target is against the capacity on instance-shaped objects (issue 29, decision 3).
- *latency*: watch event time minus the reading's `updatedAt` (the guest's clock at the poll).
- *age*: sampled every second for every device: now minus the `updatedAt` of what the API holds; a device with \
  nothing written counts from the start of the window.
- *RSS and CPU*: `/proc/<pid>/status` and `/proc/<pid>/stat` of the limb, the brain, kube-apiserver (whose watch \
  cache holds every object), etcd and this bench (the watches and the capacity writers).
- *re-validation*: after the limb stopped. An annotation on the `DummyProtocolDevice` CRD makes the brain reconcile \
  every link of the model (it writes nothing: no verdict changes); timed until its reconcile counter grew by the \
  number of links. Then `v1alpha1` stops being served and is served again: the brain rewrites ModelExisted (and \
  records an event) on every link, each way; timed until all N links of the size show it on a watch.
";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
