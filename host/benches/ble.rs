//! `scripts/bench-ble.sh`: BLE peripherals on one controller the limb owns.
//!
//! `tests/peers/ble_bench.py` runs Bumble's virtual link in another process: the limb's
//! controller (H4 over loopback TCP) and one controller plus GATT peripheral per
//! peripheral, each notifying "SEQ MS" every `PERIOD_MS` (default 200). For each fleet
//! size in `PERIPHERALS` (default 16,8,4,1), in this process:
//! - **through the adaptor**: one `BluetoothDevice` per peripheral (supervised instances of
//!   `adaptor_ble`), a NotifyOnly property on the ticks and a ReadOnly one read every
//!   second; over a window of `WINDOW_S` seconds (default 20): the time from a notification
//!   (its MS) to the status that shows it, notifications shown in a status against those
//!   sent (the ticks' SEQ), the limb's CPU, and memory per device (first fleet only);
//! - **reads through the capability**: the devices stopped, one task per peripheral
//!   connects through the same controller (one connection at a time) and, once all are
//!   connected, reads a characteristic `READS` times (default 200) back to back: read
//!   latency and the read rate of the controller.
//!
//! Prints the tables and writes them to `docs/benchmarks/ble.md` (`BLE_OUT`). Every loop
//! is bounded in count and time; all traffic stays on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

mod support;

use support::{Stat, adaptors_dir, load, pss_bytes, rss_bytes, stat, table};

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;
use limb::capabilities::ble::{Controller, Peripheral, Target, att};
use limb::capabilities::{Backends, Limits, Policy};
use limb::engine::{Runtime, Settings};
use limb::supervisor::{self, Context, RestartPolicy};
use serde_json::{Value, json};

const VALUE: &str = "6e400101-0c7a-4b8a-9a4f-3c2e0b6f7a00";
const TICK: &str = "6e400102-0c7a-4b8a-9a4f-3c2e0b6f7a00";
/// Settling after every device shows a tick, before the window opens.
const SETTLE: Duration = Duration::from_secs(3);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Bumble process; killed when dropped.
struct Air(Child);

impl Drop for Air {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_air(period_ms: usize, limb_port: u16, peripherals: usize) -> Air {
    let python = std::env::var_os("OCTOPUS_PEERS_PYTHON")
        .expect("set OCTOPUS_PEERS_PYTHON (scripts/bench-ble.sh does)");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/ble_bench.py");
    let mut child = Command::new(python)
        .arg("-u")
        .arg(script)
        .args([period_ms.to_string(), limb_port.to_string()])
        .args((0..peripherals).map(|_| free_port().to_string()))
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
    let air = Air(child);
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(line) if line.starts_with("READY") => air,
        other => panic!("Bumble did not get ready: {other:?}"),
    }
}

fn address(index: usize) -> String {
    format!("C0:98:E5:49:10:{index:02X}")
}

fn context(limb_port: u16, devices: usize) -> Arc<Context> {
    let policy = Policy::from_yaml(&format!(
        "ble:\n  controller: tcp:127.0.0.1:{limb_port}\n  maxConnections: {}\n",
        devices.max(1)
    ))
    .unwrap();
    let runtime = Runtime::new(Settings {
        call_timeout: Duration::from_secs(20),
        max_instances: u32::try_from(devices + 16).unwrap(),
        ..Settings::default()
    })
    .unwrap();
    Arc::new(Context::new(
        runtime,
        policy,
        Limits::default(),
        Backends::real(true),
        RestartPolicy::default(),
    ))
}

/// Device `index` of fleet `fleet` (names differ per fleet: stopped devices' last
/// reports stay on the board).
fn link(fleet: usize, index: usize) -> Arc<crds::DeviceLink> {
    support::link(
        &format!("f{fleet}-p{index}"),
        "ble",
        "BluetoothDevice",
        json!({
            "protocol": {"endpoint": address(index)},
            "parameters": {"syncInterval": "1s", "timeout": "5s"},
            "properties": [
                {"name": "tick", "accessMode": "NotifyOnly", "visitor": {"characteristicUUID": TICK}},
                {"name": "value", "accessMode": "ReadOnly", "visitor": {"characteristicUUID": VALUE}},
            ],
        }),
    )
}

/// A status's tick: (SEQ, MS).
fn tick(status: &Value) -> Option<(u64, i64)> {
    let p = status["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "tick")?;
    let (seq, ms) = p["value"].as_str()?.split_once(' ')?;
    Some((seq.parse().ok()?, ms.parse().ok()?))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Fleet {
    n: usize,
    connect_s: f64,
    healthy: usize,
    latencies_ms: Vec<f64>,
    shown: u64,
    sent: u64,
    cpu_pct: f64,
    rss_per_device: f64,
    pss_per_device: f64,
    reads_ms: Vec<f64>,
    read_rate: f64,
    read_errors: usize,
}

async fn fleet(
    c: &Arc<Context>,
    limb_port: u16,
    (k, n): (usize, usize),
    window: Duration,
    reads: usize,
) -> Fleet {
    let ours = format!("bench/f{k}-");
    let mine = |r: &limb::status::DeviceReport| r.key().starts_with(&ours);
    let cache = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(adaptors_dir().join("adaptor_ble.wasm")).unwrap();
    let adaptor = load(c, cache.path(), bytes, "ble").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (base_rss, base_pss) = (rss_bytes(), pss_bytes());
    let t = Instant::now();
    let handles: Vec<_> = (1..=n)
        .map(|i| supervisor::spawn(c.clone(), link(k, i), adaptor.clone(), vec![]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reports: Vec<_> = c.board.devices().into_iter().filter(mine).collect();
        let ready = reports.iter().filter(|r| tick(&r.status).is_some()).count();
        if reports.len() == n && ready == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} of {n} devices showed a tick within 120 s; first error: {:?}",
            reports.iter().find_map(|r| r.last_error.clone())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;

    // Each device's SEQ when the window opens; every higher SEQ in a status is a
    // notification that reached it.
    let mut first: HashMap<String, u64> = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for r in c.board.devices().into_iter().filter(mine) {
        if let Some((seq, _)) = tick(&r.status) {
            first.insert(r.key(), seq);
            last.insert(r.key(), seq);
        }
    }
    let mut feed = c.board.subscribe();
    let mut latencies_ms = Vec::new();
    let (t0, cpu0) = (Instant::now(), ProcessTime::now());
    let end = tokio::time::Instant::now() + window;
    while let Ok(report) = tokio::time::timeout_at(end, feed.recv()).await {
        let at = now_ms();
        if !mine(&report) {
            continue;
        }
        if let Some((seq, ms)) = tick(&report.status) {
            let seen = last.entry(report.key()).or_insert(seq);
            if seq > *seen {
                *seen = seq;
                latencies_ms.push((at - ms) as f64);
            }
        }
    }
    let (cpu, wall) = (cpu0.elapsed(), t0.elapsed());
    let (rss, pss) = (rss_bytes(), pss_bytes());
    // What the peripherals sent in the window: each device's SEQ now (read from the last
    // status, which lags by at most one tick) against the window's start.
    let sent: u64 = last
        .iter()
        .map(|(k, seq)| seq - first.get(k).copied().unwrap_or(*seq))
        .sum();
    let healthy = c
        .board
        .devices()
        .iter()
        .filter(|r| mine(r) && r.phase == limb::status::Phase::Healthy)
        .count();
    supervisor::stop_all(handles).await;
    let per_device = |now: u64, base: u64| now.saturating_sub(base) as f64 / n as f64;

    // Reads through the capability, on the same controller, one task per peripheral,
    // once the stopped devices' disconnections are through.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let controller = Controller::parse(&format!("tcp:127.0.0.1:{limb_port}")).unwrap();
    let uuid = att::parse_uuid(VALUE).unwrap();
    // Every task connects first, then all read at once: the rate is over the reads only.
    let start = Arc::new(tokio::sync::Barrier::new(n));
    // Connections are made one at a time (what is measured is the reads).
    let connecting = Arc::new(tokio::sync::Mutex::new(()));
    let tasks: Vec<_> = (1..=n)
        .map(|i| {
            let radios = Arc::clone(&c.backends.ble);
            let controller = controller.clone();
            let start = Arc::clone(&start);
            let connecting = Arc::clone(&connecting);
            tokio::spawn(async move {
                let turn = connecting.lock().await;
                let soon = || tokio::time::Instant::now() + Duration::from_secs(10);
                let target = Target::parse(&address(i));
                // Bounded: at most three finds of 10 s each.
                let mut found = Err(None);
                for _ in 0..3 {
                    match Peripheral::find(
                        Arc::clone(&radios),
                        controller.clone(),
                        n.max(1),
                        &target,
                        soon(),
                    )
                    .await
                    {
                        Ok(p) => {
                            found = Ok(p);
                            break;
                        }
                        Err(e) => found = Err(Some(e)),
                    }
                }
                let mut p = found.unwrap_or_else(|e| panic!("{}: {e:?}", address(i)));
                p.connect(soon()).await.unwrap();
                drop(turn);
                start.wait().await;
                let began = Instant::now();
                let mut took = Vec::with_capacity(reads);
                let mut errors = 0;
                for _ in 0..reads {
                    let t = Instant::now();
                    match p.read(uuid, soon()).await {
                        Ok(_) => took.push(t.elapsed().as_secs_f64() * 1000.0),
                        Err(_) => errors += 1,
                    }
                }
                let ended = Instant::now();
                p.disconnect().await;
                (took, errors, began, ended)
            })
        })
        .collect();
    let mut reads_ms = Vec::new();
    let mut read_errors = 0;
    let mut span: Option<(Instant, Instant)> = None;
    for task in tasks {
        let (took, errors, began, ended) = task.await.unwrap();
        reads_ms.extend(took);
        read_errors += errors;
        span = Some(span.map_or((began, ended), |(b, e)| (b.min(began), e.max(ended))));
    }
    let read_rate = span.map_or(0.0, |(b, e)| {
        reads_ms.len() as f64 / e.duration_since(b).as_secs_f64()
    });
    Fleet {
        n,
        connect_s,
        healthy,
        shown: latencies_ms.len() as u64,
        sent,
        latencies_ms,
        cpu_pct: cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
        rss_per_device: per_device(rss, base_rss),
        pss_per_device: per_device(pss, base_pss),
        reads_ms,
        read_rate,
        read_errors,
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
    // The BLE stack's warnings (a controller transport ending, say) on stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let sizes: Vec<usize> = std::env::var("PERIPHERALS")
        .unwrap_or_else(|_| "16,8,4,1".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let period_ms = env_or("PERIOD_MS", 200);
    let window = Duration::from_secs(env_or("WINDOW_S", 20) as u64);
    let reads = env_or("READS", 200);
    let most = sizes.iter().copied().max().unwrap_or(1);
    let limb_port = free_port();
    let _air = start_air(period_ms, limb_port, most);
    let c = context(limb_port, most);

    let mut text = format!(
        "# BLE on one controller\n\n`scripts/bench-ble.sh` ({}), {}. Bumble 0.0.236's virtual \
         link in another process (`tests/peers/ble_bench.py`, Python): the limb's controller \
         (H4 over loopback TCP) and {most} peripherals, each on its own virtual controller, \
         each notifying \"SEQ MS\" every {period_ms} ms. Per fleet size, in this process (the \
         limb's engine, supervisor and BLE stack, release build, no API server): one \
         `BluetoothDevice` per peripheral through `adaptor_ble` (a NotifyOnly property on the \
         ticks, a ReadOnly one read every second), measured over {} s after {} s of settling; \
         then, with the devices stopped, {reads} back-to-back reads per peripheral through \
         the `ble` capability, all peripherals at once (connected one after another first).\n\n",
        "host/benches/ble.rs",
        support::measured_on(),
        window.as_secs(),
        SETTLE.as_secs(),
    );
    text.push_str(
        "| peripherals | connect (all ticking) | healthy | notifications in status / sent | notification → status p50 | p99 | max | limb CPU, % of one core | per device | RSS per device | PSS per device | read p50 | read p99 | reads/s (controller) | read errors |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut rows: Vec<Stat> = Vec::new();
    for (k, n) in sizes.into_iter().enumerate() {
        let f = fleet(&c, limb_port, (k, n), window, reads).await;
        let memory = |bytes: f64| {
            if k == 0 {
                format!("{:.0} KiB", bytes / 1024.0)
            } else {
                "—".to_owned()
            }
        };
        text.push_str(&format!(
            "| {} | {:.1} s | {}/{} | {} / {} ({:.1}%) | {:.0} ms | {:.0} ms | {:.0} ms | {:.1}% | {:.2}% | {} | {} | {:.1} ms | {:.1} ms | {:.0} | {} |\n",
            f.n,
            f.connect_s,
            f.healthy,
            f.n,
            f.shown,
            f.sent,
            f.shown as f64 / f.sent.max(1) as f64 * 100.0,
            quantile(&f.latencies_ms, 0.5),
            quantile(&f.latencies_ms, 0.99),
            quantile(&f.latencies_ms, 1.0),
            f.cpu_pct,
            f.cpu_pct / f.n as f64,
            memory(f.rss_per_device),
            memory(f.pss_per_device),
            quantile(&f.reads_ms, 0.5),
            quantile(&f.reads_ms, 0.99),
            f.read_rate,
            f.read_errors,
        ));
        if !f.latencies_ms.is_empty() {
            rows.push(stat(
                &format!("notification → status, {n} peripherals"),
                "ms",
                f.latencies_ms,
            ));
        }
        if !f.reads_ms.is_empty() {
            rows.push(stat(&format!("read, {n} peripherals"), "ms", f.reads_ms));
        }
    }
    text.push_str("\nThe distributions:\n\n");
    text.push_str(&table(&rows));
    text.push_str(
        "\nA notification counts when a status shows a higher SEQ of that peripheral than \
         before; one the adaptor took in the same poll as a later one is shown only through \
         the later one, so \"in status\" can be below \"sent\" without a loss on the air. \
         Sent is each peripheral's SEQ at the window's end (its last status) minus at its \
         start. The latency includes Bumble's virtual link and its Python hosts (three \
         loopback TCP hops and two Python processes' event loops per packet), which a real \
         controller does not have and a real radio replaces with connection intervals (here \
         30-50 ms are requested; a virtual link ignores them). Reads are one ATT request at a \
         time per connection, as ATT requires; the rate is over all peripherals at once on \
         the one controller. Memory is over the process with the adaptor loaded and no \
         device, for the first fleet only (a later fleet starts on pages the earlier one \
         freed).\n",
    );
    println!("{text}");
    let out = std::env::var_os("BLE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks/ble.md")
        });
    std::fs::write(&out, text).unwrap();
    println!("wrote {}", out.display());
}
