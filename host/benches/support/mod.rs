//! What the bench harnesses share: statistics and their table, a supervisor context,
//! DeviceLinks, waiting on a fleet, a configured instance, a fast Modbus TCP server, the
//! built components, loading one, and this process's memory.

#![allow(dead_code, reason = "each bench uses a part")]

// The end-to-end harness's paths, by path: see `cluster.rs`.
#[path = "../../../tests/src/paths.rs"]
pub mod repo;

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use limb::adaptors::{self, Adaptor, CompileCache};
use limb::capabilities::{Backends, Grants, Limits, Policy};
use limb::engine::{DeviceTag, Pooling, Runtime, Settings};
use limb::supervisor::{Context, Instance, RestartPolicy};
use serde_json::{Value, json};

/// When and on what a bench ran, for its report: `<date>, 2 cores (<cpu model>)`.
pub fn measured_on() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    format!("{date}, {cores} cores ({cpu})")
}

pub struct Stat {
    pub name: String,
    pub unit: &'static str,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub n: usize,
}

pub fn stat(name: &str, unit: &'static str, mut xs: Vec<f64>) -> Stat {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    Stat {
        name: name.into(),
        unit,
        median: at(0.5),
        p10: at(0.1),
        p90: at(0.9),
        n: xs.len(),
    }
}

pub fn table(rows: &[Stat]) -> String {
    let mut t =
        String::from("| measurement | median | p10 .. p90 | runs |\n| --- | --- | --- | --- |\n");
    for r in rows {
        t.push_str(&format!(
            "| {} | {:.2} {} | {:.2} .. {:.2} | {} |\n",
            r.name, r.median, r.unit, r.p10, r.p90, r.n
        ));
    }
    t
}

pub fn ctx(pooling: Pooling, max_instances: u32) -> Arc<Context> {
    let runtime = Runtime::new(Settings {
        pooling,
        max_instances,
        ..Settings::default()
    })
    .unwrap();
    Arc::new(Context::new(
        runtime,
        Policy::loopback(),
        Limits::default(),
        Backends::real(true),
        RestartPolicy::default(),
    ))
}

pub fn dummy_link(name: &str, interval: &str) -> Arc<crds::DeviceLink> {
    let v = json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "adaptor": {"node": "n", "name": "adaptors.edge.cattle.io/dummy"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
            "template": {"spec": {"protocol": {"location": "x"}, "gear": "fast", "on": true, "parameters": {"syncInterval": interval}}}
        }
    });
    Arc::new(serde_json::from_value(v).unwrap())
}

pub fn modbus_spec(port: u16, interval: &str) -> Value {
    json!({
        "protocol": {"tcp": {"endpoint": format!("127.0.0.1:{port}"), "workerID": 1}},
        "parameters": {"syncInterval": interval, "timeout": "1s"},
        "properties": [
            {"name": "a", "type": "int16", "readOnly": true, "visitor": {"register": "HoldingRegister", "offset": 101}},
            {"name": "b", "type": "uint16", "readOnly": true, "visitor": {"register": "HoldingRegister", "offset": 102}}
        ]
    })
}

pub fn modbus_link(name: &str, spec: Value) -> Arc<crds::DeviceLink> {
    link(name, "modbus", "ModbusDevice", spec)
}

/// A link in namespace `bench` for `adaptors.edge.cattle.io/<adaptor>` and model `kind`.
pub fn link(name: &str, adaptor: &str, kind: &str, spec: Value) -> Arc<crds::DeviceLink> {
    let v = json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "adaptor": {"node": "n", "name": format!("adaptors.edge.cattle.io/{adaptor}")},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": kind},
            "template": {"spec": spec}
        }
    });
    Arc::new(serde_json::from_value(v).unwrap())
}

/// Where the scripts put the built components.
pub fn adaptors_dir() -> PathBuf {
    std::env::var_os("OCTOPUS_ADAPTORS_DIR")
        .map(PathBuf::from)
        .expect("set OCTOPUS_ADAPTORS_DIR (the scripts/bench*.sh scripts do)")
}

/// Loads a component through a compile cache in `cache`.
pub async fn load(c: &Context, cache: &Path, bytes: Vec<u8>, source: &str) -> Arc<Adaptor> {
    let cache = Arc::new(CompileCache::new(Some(cache.to_owned())));
    adaptors::load(&c.runtime, &cache, bytes, source.into())
        .await
        .unwrap()
}

/// A `kB` field of a `/proc/self` file, in bytes.
fn proc_self_kib(file: &str, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/self/{file}")).unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Resident memory of this process, from `/proc/self/status`.
pub fn rss_bytes() -> u64 {
    proc_self_kib("status", "VmRSS:")
}

/// Proportional set size of this process, from `/proc/self/smaps_rollup`: pages shared
/// by several mappings (every instance maps the same copy-on-write memory image of its
/// component) count once in total, where RSS counts them once per mapping.
pub fn pss_bytes() -> u64 {
    proc_self_kib("smaps_rollup", "Pss:")
}

/// Waits, checking every `every`, until the board holds `n` devices that all match.
pub async fn wait_all(
    c: &Context,
    n: usize,
    every: Duration,
    pred: impl Fn(&limb::status::DeviceReport) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let devices = c.board.devices();
        if devices.len() == n && devices.iter().all(&pred) {
            return;
        }
        assert!(Instant::now() < deadline, "fleet did not converge");
        tokio::time::sleep(every).await;
    }
}

/// A Modbus device on `spec`, granted what its spec names, configured and ready to poll.
pub async fn modbus_instance(c: &Arc<Context>, adaptor: &Arc<Adaptor>, spec: &Value) -> Instance {
    instance(c, adaptor, "ModbusDevice", spec).await
}

/// A device of model `kind` on `spec`, granted what its spec names, configured and ready
/// to poll.
pub async fn instance(
    c: &Arc<Context>,
    adaptor: &Arc<Adaptor>,
    kind: &str,
    spec: &Value,
) -> Instance {
    let model = adaptor
        .model("devices.edge.cattle.io/v1alpha1", kind)
        .unwrap();
    let (grants, problems) = Grants::resolve(&[], spec, &model.resource_fields);
    assert!(problems.is_empty());
    let mut device = Instance::new(
        c,
        adaptor.clone(),
        DeviceTag("poll".into()),
        Arc::new(grants),
    )
    .await
    .unwrap();
    let cfg = limb::bindings::DeviceConfig {
        model: limb::bindings::Model {
            api_version: "devices.edge.cattle.io/v1alpha1".into(),
            kind: kind.into(),
        },
        device: limb::bindings::DeviceIdentity {
            namespace: "bench".into(),
            name: "poll".into(),
            uid: "u".into(),
        },
        spec: spec.to_string(),
        references: vec![],
    };
    device.configure(&cfg).await.unwrap();
    device
}

// ---------------------------------------------------------------------------------
// The fast Modbus TCP server: a minimal MBAP responder, FC3/FC4 answered with each
// register's address as its value, on its own thread and runtime so its CPU is not
// counted against the client under test.

pub fn start_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::Builder::new()
        .name("modbus-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((s, _)) = listener.accept().await {
                    s.set_nodelay(true).unwrap();
                    tokio::spawn(serve(s));
                }
            });
        })
        .unwrap();
    port
}

async fn serve(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = [0u8; 7];
    let mut body = [0u8; 260];
    let mut out = Vec::with_capacity(260);
    loop {
        if s.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
        if !(2..=254).contains(&len) || s.read_exact(&mut body[..len - 1]).await.is_err() {
            return;
        }
        let fc = body[0];
        out.clear();
        out.extend_from_slice(&head[..4]);
        if (fc == 3 || fc == 4) && len == 6 {
            let addr = u16::from_be_bytes([body[1], body[2]]);
            let count = u16::from_be_bytes([body[3], body[4]]).min(125);
            out.extend_from_slice(&(3 + 2 * count).to_be_bytes());
            out.extend_from_slice(&[head[6], fc, (2 * count) as u8]);
            for i in 0..count {
                out.extend_from_slice(&addr.wrapping_add(i).to_be_bytes());
            }
        } else {
            out.extend_from_slice(&3u16.to_be_bytes());
            out.extend_from_slice(&[head[6], fc | 0x80, 1]);
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}
