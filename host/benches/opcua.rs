//! `scripts/bench-opcua.sh`: OPC UA devices at scale against one asyncua server.
//!
//! `DEVICES` devices (default 100) with `ITEMS` monitored items each (default 10) run
//! supervised in this process, one instance each, against `tests/peers/opcua_peer.py
//! serve-bench`, which sets every node to the wall-clock time in milliseconds once a
//! second. For each publishing interval (`syncInterval`) in `INTERVALS` (default 1000 and
//! 100 ms) a fresh fleet connects, settles, and is measured over a window:
//! - the limb's CPU (this process; the server is another) per device;
//! - its memory per device (RSS and PSS over the baseline with the adaptor loaded);
//! - for every value change that reaches a device's status, the time from the server's
//!   change (the value itself) to the status (the board's change feed, read as it fires);
//! - how many of the server's changes reached a status.
//!
//! Prints the tables and writes them to `docs/benchmarks/opcua.md` (`OPCUA_OUT`). The
//! window and the fleet are bounded; all traffic stays on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

mod support;

use support::{Stat, adaptors_dir, ctx, load, pss_bytes, rss_bytes, stat, table};

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;
use limb::engine::Settings;
use limb::supervisor;
use serde_json::{Value, json};

/// The measured window of each fleet.
const WINDOW: Duration = Duration::from_secs(30);
/// Settling after every device is healthy with every value, before the window opens.
const SETTLE: Duration = Duration::from_secs(5);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The asyncua server; killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(port: u16, devices: usize, items: usize) -> Server {
    let python = std::env::var_os("OCTOPUS_PEERS_PYTHON")
        .expect("set OCTOPUS_PEERS_PYTHON (scripts/bench-opcua.sh does)");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/opcua_peer.py");
    let mut child = Command::new(python)
        .arg("-u")
        .arg(script)
        .args(["serve-bench", &port.to_string()])
        .args([devices.to_string(), items.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    let server = Server(child);
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(line) if line == "ready" => server,
        other => panic!("the asyncua server did not get ready: {other:?}"),
    }
}

fn link(
    name: &str,
    port: u16,
    device: usize,
    items: usize,
    interval_ms: u64,
) -> Arc<crds::DeviceLink> {
    let properties: Vec<Value> = (0..items)
        .map(|i| {
            json!({"name": format!("v{i}"), "type": "int64", "readOnly": true,
                   "visitor": {"nodeID": format!("ns=2;s=B{device}.{i}")}})
        })
        .collect();
    support::link(
        name,
        "opcua",
        "OPCUADevice",
        json!({
            "protocol": {"endpoint": format!("opc.tcp://127.0.0.1:{port}/octopus/")},
            "parameters": {"syncInterval": format!("{interval_ms}ms"), "timeout": "3s"},
            "properties": properties,
        }),
    )
}

/// The values in a status, by property name.
fn values(status: &Value) -> Vec<(String, i64)> {
    status["properties"]
        .as_array()
        .map(|props| {
            props
                .iter()
                .filter_map(|p| {
                    let v = p["value"].as_str()?.parse().ok()?;
                    Some((p["name"].as_str()?.to_owned(), v))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Fleet {
    interval_ms: u64,
    connect_s: f64,
    cpu_pct: f64,
    rss_per_device: f64,
    pss_per_device: f64,
    latencies_ms: Vec<f64>,
    changes: usize,
    expected: usize,
    healthy: usize,
}

async fn fleet(port: u16, devices: usize, items: usize, interval_ms: u64) -> Fleet {
    let c = ctx(
        Settings::default().pooling,
        u32::try_from(devices + devices / 4 + 16).unwrap(),
    );
    let cache = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(adaptors_dir().join("adaptor_opcua.wasm")).unwrap();
    let adaptor = load(&c, cache.path(), bytes, "opcua").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (base_rss, base_pss) = (rss_bytes(), pss_bytes());
    let t = Instant::now();
    let handles: Vec<_> = (0..devices)
        .map(|d| {
            let name = format!("o{d}");
            supervisor::spawn(
                c.clone(),
                link(&name, port, d, items, interval_ms),
                adaptor.clone(),
                vec![],
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let reports = c.board.devices();
        let ready = reports
            .iter()
            .filter(|r| values(&r.status).len() == items)
            .count();
        if reports.len() == devices && ready == devices {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} of {devices} devices had every value within 180 s; first error: {:?}",
            reports.iter().find_map(|r| r.last_error.clone())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;

    // Where each value stands when the window opens; a higher one in a status is a
    // change that reached it.
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for r in c.board.devices() {
        for (name, v) in values(&r.status) {
            last.insert((r.key(), name), v);
        }
    }
    let mut feed = c.board.subscribe();
    let mut latencies_ms = Vec::new();
    let (t0, cpu0) = (Instant::now(), ProcessTime::now());
    let end = tokio::time::Instant::now() + WINDOW;
    while let Ok(report) = tokio::time::timeout_at(end, feed.recv()).await {
        let at = now_ms();
        for (name, v) in values(&report.status) {
            let seen = last.entry((report.key(), name)).or_insert(v);
            if v > *seen {
                *seen = v;
                latencies_ms.push((at - v) as f64);
            }
        }
    }
    let (cpu, wall) = (cpu0.elapsed(), t0.elapsed());
    let (rss, pss) = (rss_bytes(), pss_bytes());
    let healthy = c
        .board
        .devices()
        .iter()
        .filter(|r| r.phase == limb::status::Phase::Healthy)
        .count();
    for h in handles {
        h.stop().await;
    }
    let per_device = |now: u64, base: u64| now.saturating_sub(base) as f64 / devices as f64;
    Fleet {
        interval_ms,
        connect_s,
        cpu_pct: cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
        rss_per_device: per_device(rss, base_rss),
        pss_per_device: per_device(pss, base_pss),
        changes: latencies_ms.len(),
        // The server changes every node once a second.
        expected: devices * items * WINDOW.as_secs() as usize,
        latencies_ms,
        healthy,
    }
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let devices = env_or("DEVICES", 100);
    let items = env_or("ITEMS", 10);
    let intervals: Vec<u64> = std::env::var("INTERVALS")
        .unwrap_or_else(|_| "1000,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = start_server(port, devices, items);
    let mut text = format!(
        "# OPC UA at scale\n\n`scripts/bench-opcua.sh` ({}), {}. {devices} `OPCUADevice`s with {items} \
         monitored items each (Int64), one instance each, supervised in one process (the limb's \
         engine and supervisor, release build, no API server), against one asyncua 2.1.0 server \
         (`tests/peers/opcua_peer.py serve-bench`, Python, another process) that sets all {} nodes \
         to the wall-clock time in ms once a second. Per publishing interval (`syncInterval`): a \
         fresh fleet connects, settles {} s, and is measured over {} s.\n\n",
        "host/benches/opcua.rs",
        support::measured_on(),
        devices * items,
        SETTLE.as_secs(),
        WINDOW.as_secs()
    );
    text.push_str(
        "| syncInterval | connect (all values in) | healthy | changes in status / made | change → status p50 | p90 | p99 | max | limb CPU, % of one core | per device | RSS per device | PSS per device |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut rows: Vec<Stat> = Vec::new();
    for (n, interval) in intervals.into_iter().enumerate() {
        let f = fleet(port, devices, items, interval).await;
        // Memory is the first fleet's: a later one starts on pages the earlier one freed.
        let memory = |bytes: f64| {
            if n == 0 {
                format!("{:.0} KiB", bytes / 1024.0)
            } else {
                "—".to_owned()
            }
        };
        text.push_str(&format!(
            "| {} ms | {:.1} s | {}/{devices} | {} / {} ({:.1}%) | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.1}% | {:.3}% | {} | {} |\n",
            f.interval_ms,
            f.connect_s,
            f.healthy,
            f.changes,
            f.expected,
            f.changes as f64 / f.expected as f64 * 100.0,
            quantile(&f.latencies_ms, 0.5),
            quantile(&f.latencies_ms, 0.9),
            quantile(&f.latencies_ms, 0.99),
            quantile(&f.latencies_ms, 1.0),
            f.cpu_pct,
            f.cpu_pct / devices as f64,
            memory(f.rss_per_device),
            memory(f.pss_per_device),
        ));
        if !f.latencies_ms.is_empty() {
            rows.push(stat(
                &format!("change → status, syncInterval {interval} ms"),
                "ms",
                f.latencies_ms,
            ));
        }
    }
    text.push_str("\nThe latency distributions:\n\n");
    text.push_str(&table(&rows));
    text.push_str(
        "\nThe time from change to status includes the server's sampling and publishing at \
         `syncInterval` (a change waits up to one sampling interval to be sampled and up to one \
         publishing interval to be sent), so it is bounded by about two intervals plus the \
         path through the limb; the limb adds no poll interval of its own, because polls run \
         back to back and return when a publish response arrives. A change counts when a \
         status shows a newer value of that node than before; values the server set between \
         two samples are not sampled, so fewer changes than made reach the status when the \
         interval is longer than the server's one second. Memory is over the process with the \
         adaptor loaded and no device, for the first fleet only (a later fleet starts on pages \
         the earlier one freed).\n",
    );
    println!("{text}");
    let out = std::env::var_os("OPCUA_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks/opcua.md")
        });
    std::fs::write(&out, text).unwrap();
    println!("wrote {}", out.display());
}
