//! `scripts/bench-density.sh`: the limb at scale, in process (no API server).
//!
//! 1. Per-poll overhead of the Modbus adaptor against a native tokio-modbus client, both
//!    against a fast Rust Modbus TCP server on loopback, alternating rounds.
//! 2. Density: 100, 1,000 and 10,000 supervised devices at 1 Hz (dummy), and 100 and
//!    1,000 Modbus devices, each scenario in a fresh child process so its memory is its own.
//! 3. The dashboard's history at density: 10,000 devices without and with the recorder
//!    that fills the plots' history, and with that history filled to its bound
//!    (`DENSITY_ONLY=history`; `DENSITY_HISTORY_N` for another count).
//!    `DENSITY_PLAN=dummy:1000,modbus:1000:pool` runs only those scenarios of section 2.
//! 5. Hot swap of 1,000 live devices (`DENSITY_SWAP_N` for another count), with the
//!    compile cached and uncached.
//! 6. Cold start of 1,000 devices, with an empty and a warm compile cache.
//!
//! Prints the tables and writes them to `docs/benchmarks/density.md` (`DENSITY_OUT`).
//! Every load loop is bounded in count and time; all traffic stays on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

mod support;

use support::{
    Stat, adaptors_dir, ctx, dummy_link, load, modbus_instance, modbus_link, modbus_spec,
    pss_bytes, rss_bytes, start_server, stat, table, wait_all,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cpu_time::{ProcessTime, ThreadTime};
use limb::engine::{Pooling, Settings};
use limb::metrics::Lateness;
use limb::supervisor::{self, Command, Context};

/// Steady window over which density scenarios measure CPU and drift.
const WINDOW: Duration = Duration::from_secs(20);
/// Settling time after every device polled once, before the window opens.
const SETTLE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------
// 1. Per-poll overhead against native code.

/// Runs on its own thread with a current-thread runtime, so that thread's CPU time is
/// exactly the client side of each exchange (the server runs on another thread).
fn overhead(port: u16, modbus: Vec<u8>, cache: PathBuf) -> Vec<Stat> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(overhead_rounds(port, modbus, cache))
    })
    .join()
    .unwrap()
}

async fn overhead_rounds(port: u16, modbus: Vec<u8>, cache: PathBuf) -> Vec<Stat> {
    use tokio_modbus::client::Reader;
    let c = ctx(Pooling::Auto, 16);
    let adaptor = load(&c, &cache, modbus, "modbus").await;
    let spec = modbus_spec(port, "1s");
    let mut device = modbus_instance(&c, &adaptor, &spec).await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let mut native = tokio_modbus::client::tcp::attach_slave(stream, tokio_modbus::Slave(1));

    let doc = device.poll().await.unwrap();
    assert!(doc.contains("101"), "adaptor status: {doc}");
    let regs = native
        .read_holding_registers(101, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(regs, vec![101, 102]);
    for _ in 0..200 {
        device.poll().await.unwrap();
        native
            .read_holding_registers(101, 2)
            .await
            .unwrap()
            .unwrap();
    }

    const PER_ROUND: u32 = 1000;
    let (mut w_wall, mut w_cpu, mut n_wall, mut n_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..20 {
        // Alternate which side goes first, so neither always follows the other.
        for side in [round % 2, 1 - round % 2] {
            let (t, cpu) = (Instant::now(), ThreadTime::now());
            for _ in 0..PER_ROUND {
                if side == 0 {
                    device.poll().await.unwrap();
                } else {
                    native
                        .read_holding_registers(101, 2)
                        .await
                        .unwrap()
                        .unwrap();
                }
            }
            let wall = t.elapsed().as_secs_f64() * 1e6 / f64::from(PER_ROUND);
            let cpu = cpu.elapsed().as_secs_f64() * 1e6 / f64::from(PER_ROUND);
            if side == 0 {
                w_wall.push(wall);
                w_cpu.push(cpu);
            } else {
                n_wall.push(wall);
                n_cpu.push(cpu);
            }
        }
    }
    device.shutdown().await;
    let ratio = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>();
    let rate = |xs: &[f64]| xs.iter().map(|us| 1e6 / us).collect::<Vec<_>>();
    vec![
        stat(
            "wall per poll, wasm adaptor through the limb",
            "us",
            w_wall.clone(),
        ),
        stat(
            "wall per poll, native tokio-modbus client",
            "us",
            n_wall.clone(),
        ),
        stat(
            "wall ratio wasm / native, per round",
            "x",
            ratio(&w_wall, &n_wall),
        ),
        stat(
            "CPU per poll, wasm adaptor (client thread)",
            "us",
            w_cpu.clone(),
        ),
        stat(
            "CPU per poll, native client (client thread)",
            "us",
            n_cpu.clone(),
        ),
        stat(
            "CPU ratio wasm / native, per round",
            "x",
            ratio(&w_cpu, &n_cpu),
        ),
        stat("polls/s, wasm adaptor, one connection", "/s", rate(&w_wall)),
        stat(
            "polls/s, native client, one connection",
            "/s",
            rate(&n_wall),
        ),
    ]
}

// ---------------------------------------------------------------------------------
// 2. Density, each scenario in a child process (this binary with DENSITY_SCENARIO set).

/// What one scenario measured, passed from the child as one JSON line.
#[derive(serde::Serialize, serde::Deserialize)]
struct Density {
    kind: String,
    n: usize,
    pooling: bool,
    base_mib: f64,
    rss_mib: f64,
    per_device_kib: f64,
    pss_per_device_kib: f64,
    start_s: f64,
    cpu_cores: f64,
    polls_per_s: f64,
    failed_polls: u64,
    drift_p50_ms: f64,
    drift_p99_ms: f64,
    drift_max_ms: f64,
    /// The dashboard's history recorder ran (section 3).
    #[serde(default)]
    history: bool,
    /// Series and points the history held at measurement.
    #[serde(default)]
    history_series: usize,
    #[serde(default)]
    history_points: usize,
    /// RSS and PSS after filling every series to its bound (an hour of points).
    #[serde(default)]
    filled_rss_mib: f64,
    #[serde(default)]
    filled_pss_per_device_kib: f64,
}

fn run_child(
    (kind, n, pooling): (&str, usize, Pooling),
    port: u16,
    cache: &Path,
) -> Result<Density, String> {
    run_child_with((kind, n, pooling), port, cache, false)
}

fn run_child_with(
    (kind, n, pooling): (&str, usize, Pooling),
    port: u16,
    cache: &Path,
    history: bool,
) -> Result<Density, String> {
    let pool = if pooling == Pooling::On { "pool" } else { "" };
    let hist = if history { "history" } else { "" };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(
            "DENSITY_SCENARIO",
            format!("{kind}:{n}:{port}:{pool}:{hist}"),
        )
        .env("DENSITY_CACHE", cache)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = text.lines().find_map(|l| l.strip_prefix("RESULT ")) {
        return Ok(serde_json::from_str(line).unwrap());
    }
    Err(text
        .lines()
        .find_map(|l| l.strip_prefix("FAILED "))
        .map_or_else(
            || format!("the scenario exited with {}", out.status),
            str::to_owned,
        ))
}

async fn scenario(spec: &str) {
    let mut parts = spec.split(':');
    let kind = parts.next().unwrap().to_owned();
    let n: usize = parts.next().unwrap().parse().unwrap();
    let port: u16 = parts.next().unwrap().parse().unwrap();
    // The limb's default allocator, or the pool when asked for.
    let pooling = if parts.next() == Some("pool") {
        Pooling::On
    } else {
        Settings::default().pooling
    };
    let history = parts.next() == Some("history");
    let cache = PathBuf::from(std::env::var_os("DENSITY_CACHE").unwrap());
    let result = if kind == "native" {
        native_fleet(n, port).await
    } else {
        limb_fleet(&kind, n, port, &cache, pooling, history).await
    };
    println!("RESULT {}", serde_json::to_string(&result).unwrap());
}

async fn limb_fleet(
    kind: &str,
    n: usize,
    port: u16,
    cache: &Path,
    pooling: Pooling,
    history: bool,
) -> Density {
    let c = ctx(pooling, u32::try_from(n + n / 4 + 16).unwrap());
    // The dashboard's recorder, as the limb runs it (default series cap), before the
    // base is taken: its memory beyond the base is the devices' history.
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let dashboard = history.then(|| {
        let (dashboard, recorder) = limb::dashboard::Dashboard::new(
            c.board.clone(),
            limb::dashboard::Settings::default(),
            stopped,
        );
        tokio::spawn(recorder);
        dashboard
    });
    let file = if kind == "modbus" {
        "adaptor_modbus.wasm"
    } else {
        "adaptor_dummy.wasm"
    };
    let bytes = std::fs::read(adaptors_dir().join(file)).unwrap();
    let adaptor = load(&c, cache, bytes, kind).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = rss_bytes();
    let base_pss = pss_bytes();
    let heap0 = heap_profile::snapshot();
    if let Some(min) = std::env::var("DENSITY_HEAP_TRACE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        heap_profile::TRACE.store(min, Ordering::Relaxed);
    }
    let t = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let link = if kind == "modbus" {
                modbus_link(&format!("m{i}"), modbus_spec(port, "1s"))
            } else {
                dummy_link(&format!("d{i}"), "1s")
            };
            supervisor::spawn(c.clone(), link, adaptor.clone(), vec![])
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let devices = c.board.devices();
        if devices.len() == n && devices.iter().all(|r| r.polls >= 1) {
            break;
        }
        if Instant::now() > deadline {
            let polled = devices.iter().filter(|r| r.polls >= 1).count();
            let why = devices
                .iter()
                .find_map(|r| r.last_error.clone())
                .unwrap_or_default();
            println!("FAILED {polled} of {n} devices polled within 120 s; first error: {why}");
            std::process::exit(0);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start_s = t.elapsed().as_secs_f64();
    heap_profile::TRACE.store(0, Ordering::Relaxed);
    tokio::time::sleep(SETTLE).await;

    let count = |c: &Context| -> (u64, u64) {
        c.board
            .devices()
            .iter()
            .fold((0, 0), |(p, f), r| (p + r.polls, f + r.failed_polls))
    };
    let (p0, f0) = count(&c);
    c.metrics.poll_lateness().reset();
    let (t0, cpu0) = (Instant::now(), ProcessTime::now());
    tokio::time::sleep(WINDOW).await;
    let (cpu, wall) = (cpu0.elapsed(), t0.elapsed());
    let lateness = c.metrics.poll_lateness();
    let (p50, p99, max) = (
        lateness.quantile(0.5),
        lateness.quantile(0.99),
        lateness.max(),
    );
    let (p1, f1) = count(&c);
    let rss = rss_bytes();
    let pss = pss_bytes();
    if heap_profile::ON.load(Ordering::Relaxed) {
        heap_profile::report(&heap0, &heap_profile::snapshot(), n);
    }
    if let Some(path) = std::env::var_os("DENSITY_SMAPS") {
        // For profiling where the memory goes: the mappings as they are at measurement.
        let _ = std::fs::copy(
            "/proc/self/smaps",
            format!("{}.{kind}.{n}", path.to_string_lossy()),
        );
    }
    let mut filled = None;
    if let Some(dashboard) = &dashboard {
        let shared = dashboard.shared_history();
        let held = {
            let h = shared.lock().unwrap();
            (h.series(), h.points())
        };
        filled = Some((held, fill_history(&c, &shared), rss_bytes(), pss_bytes()));
    }
    for h in handles {
        h.stop().await;
    }
    let mut d = density_result(
        kind,
        n,
        c.runtime.pooling(),
        (base, base_pss),
        (rss, pss),
        start_s,
        cpu.as_secs_f64() / wall.as_secs_f64(),
        (p1 - p0) as f64 / wall.as_secs_f64(),
        f1 - f0,
        (p50, p99, max),
    );
    if let Some(((series, points), full_points, rss, pss)) = filled {
        d.history = true;
        d.history_series = series;
        d.history_points = points;
        d.filled_rss_mib = rss as f64 / f64::from(1 << 20);
        d.filled_pss_per_device_kib = pss.saturating_sub(base_pss) as f64 / 1024.0 / n as f64;
        eprintln!(
            "history: {series} series, {points} points at measurement; {full_points} when filled"
        );
    }
    d
}

/// Fills every device's history to its bound: an hour of points, one per step, before
/// now, as an hour of polling would (the recorder keeps adding the live ones). Returns
/// the points held after.
fn fill_history(c: &Context, shared: &std::sync::Mutex<limb::dashboard::History>) -> usize {
    use limb::dashboard::history::{POINTS, STEP, numeric_properties};
    let mut readings = Vec::new();
    c.board.for_each(|r| {
        readings.push((r.key(), r.incarnation, numeric_properties(&r.status)));
    });
    let now = std::time::SystemTime::now();
    let mut h = shared.lock().unwrap();
    for step in (1..=POINTS as u32).rev() {
        let at = now - STEP * step;
        for (key, incarnation, values) in &readings {
            h.record(key, *incarnation, values.clone(), at);
        }
    }
    h.points()
}

#[allow(clippy::too_many_arguments, reason = "one record")]
fn density_result(
    kind: &str,
    n: usize,
    pooling: bool,
    (base, base_pss): (u64, u64),
    (rss, pss): (u64, u64),
    start_s: f64,
    cpu_cores: f64,
    polls_per_s: f64,
    failed_polls: u64,
    (p50, p99, max): (Duration, Duration, Duration),
) -> Density {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Density {
        kind: kind.into(),
        n,
        pooling,
        base_mib: base as f64 / f64::from(1 << 20),
        rss_mib: rss as f64 / f64::from(1 << 20),
        per_device_kib: rss.saturating_sub(base) as f64 / 1024.0 / n as f64,
        pss_per_device_kib: pss.saturating_sub(base_pss) as f64 / 1024.0 / n as f64,
        start_s,
        cpu_cores,
        polls_per_s,
        failed_polls,
        drift_p50_ms: ms(p50),
        drift_p99_ms: ms(p99),
        drift_max_ms: ms(max),
        history: false,
        history_series: 0,
        history_points: 0,
        filled_rss_mib: 0.0,
        filled_pss_per_device_kib: 0.0,
    }
}

/// The native baseline for the Modbus fleet: one tokio-modbus client per device, each
/// reading the same two registers at 1 Hz on the same runtime shape.
async fn native_fleet(n: usize, port: u16) -> Density {
    use tokio_modbus::client::Reader;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = rss_bytes();
    let base_pss = pss_bytes();
    let lateness = Arc::new(Lateness::default());
    let polls = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let t = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (lateness, polls, failed, stop) =
                (lateness.clone(), polls.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                let mut client =
                    tokio_modbus::client::tcp::attach_slave(stream, tokio_modbus::Slave(1));
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        at = tick.tick() => {
                            lateness.record(tokio::time::Instant::now().saturating_duration_since(at));
                            match client.read_holding_registers(101, 2).await {
                                Ok(Ok(_)) => polls.fetch_add(1, Ordering::Relaxed),
                                _ => failed.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                        () = stop.notified() => return,
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while polls.load(Ordering::Relaxed) < n as u64 {
        assert!(Instant::now() < deadline, "native fleet did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let (p0, f0) = (
        polls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    lateness.reset();
    let (t0, cpu0) = (Instant::now(), ProcessTime::now());
    tokio::time::sleep(WINDOW).await;
    let (cpu, wall) = (cpu0.elapsed(), t0.elapsed());
    let q = (
        lateness.quantile(0.5),
        lateness.quantile(0.99),
        lateness.max(),
    );
    let (p1, f1) = (
        polls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    let rss = rss_bytes();
    let pss = pss_bytes();
    stop.notify_waiters();
    for t in tasks {
        t.abort();
    }
    density_result(
        "native",
        n,
        false,
        (base, base_pss),
        (rss, pss),
        start_s,
        cpu.as_secs_f64() / wall.as_secs_f64(),
        (p1 - p0) as f64 / wall.as_secs_f64(),
        f1 - f0,
        q,
    )
}

fn history_table(results: &[Density]) -> String {
    let mut t = String::from(
        "| devices | dashboard history | base RSS | RSS | per device beyond base, RSS | per device beyond base, PSS | series / points held | RSS, history filled (an hour per series) | per device beyond base, PSS, filled | CPU (cores) | polls/s | drift p99 |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for d in results {
        let (held, filled, filled_pss) = if d.history {
            (
                format!("{} / {}", d.history_series, d.history_points),
                format!("{:.1} MiB", d.filled_rss_mib),
                format!("{:.1} KiB", d.filled_pss_per_device_kib),
            )
        } else {
            ("—".into(), "—".into(), "—".into())
        };
        t.push_str(&format!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB | {:.1} KiB | {held} | {filled} | {filled_pss} | {:.3} | {:.0} | {:.1} ms |\n",
            d.n,
            if d.history { "on" } else { "off" },
            d.base_mib,
            d.rss_mib,
            d.per_device_kib,
            d.pss_per_device_kib,
            d.cpu_cores,
            d.polls_per_s,
            d.drift_p99_ms,
        ));
    }
    t
}

fn density_table(results: &[Density]) -> String {
    let mut t = String::from(
        "| devices | adaptor | allocator | base RSS | RSS | per device beyond base, RSS | per device beyond base, PSS | all polled once after | CPU (cores) | polls/s | failed | drift p50 | drift p99 | drift max |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for d in results {
        t.push_str(&format!(
            "| {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB | {:.1} KiB | {:.2} s | {:.3} | {:.0} | {} | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            d.n,
            d.kind,
            if d.kind == "native" {
                "-"
            } else if d.pooling {
                "pooling"
            } else {
                "on-demand"
            },
            d.base_mib,
            d.rss_mib,
            d.per_device_kib,
            d.pss_per_device_kib,
            d.start_s,
            d.cpu_cores,
            d.polls_per_s,
            d.failed_polls,
            d.drift_p50_ms,
            d.drift_p99_ms,
            d.drift_max_ms,
        ));
    }
    t
}

// ---------------------------------------------------------------------------------
// 5. Hot swap at scale and 6. cold start.

struct SwapRun {
    cached: bool,
    total_ms: f64,
    load_ms: f64,
    missed: u64,
    state_lost: u64,
    longest_pause_ms: f64,
}

/// Guest poll counter (the dummy's `status.polls`) and host poll count per device.
fn counters(c: &Context) -> Vec<(String, u64, u64)> {
    c.board
        .devices()
        .iter()
        .map(|r| (r.key(), r.status["polls"].as_u64().unwrap_or(0), r.polls))
        .collect()
}

async fn hot_swap(n: u32, v1: Vec<u8>, v2: Vec<u8>) -> Vec<SwapRun> {
    let c = ctx(Settings::default().pooling, 2 * n + 16);
    let warm = tempfile::tempdir().unwrap();
    let a1 = load(&c, warm.path(), v1.clone(), "v1").await;
    load(&c, warm.path(), v2.clone(), "v2").await;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            supervisor::spawn(
                c.clone(),
                dummy_link(&format!("d{i}"), "1s"),
                a1.clone(),
                vec![],
            )
        })
        .collect();
    wait_all(&c, n as usize, Duration::from_millis(20), |r| r.polls >= 2).await;
    let mut runs = Vec::new();
    // Uncached first (each into its own empty cache), then cached; alternating versions.
    let plan = [false, false, true, true, true, true];
    for (i, cached) in plan.into_iter().enumerate() {
        let (bytes, want) = if i % 2 == 0 {
            (&v2, "0.1.0+v2")
        } else {
            (&v1, "0.1.0")
        };
        let empty = tempfile::tempdir().unwrap();
        let dir = if cached { warm.path() } else { empty.path() };
        let before = counters(&c);
        let switched = c.metrics.swaps("switched");
        c.metrics.poll_lateness().reset();
        let t0 = Instant::now();
        let t = Instant::now();
        let adaptor = load(&c, dir, bytes.clone(), "swap").await;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(adaptor.from_cache, cached);
        for h in &handles {
            h.send(Command::Swap(adaptor.clone()));
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while c.metrics.swaps("switched") < switched + u64::from(n) {
            assert!(Instant::now() < deadline, "swap did not finish");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let total_ms = t.elapsed().as_secs_f64() * 1e3;
        // Let every device poll on the new version (ending probation) before counting.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let longest_pause_ms = c.metrics.poll_lateness().max().as_secs_f64() * 1e3;
        let after = counters(&c);
        let window = t0.elapsed().as_secs_f64();
        let due = window.floor() as u64;
        let (mut missed, mut state_lost) = (0, 0);
        for ((k0, g0, h0), (k1, g1, h1)) in before.iter().zip(&after) {
            assert_eq!(k0, k1);
            // The guest counter must carry across the swap (snapshot/restore) and grow
            // by one per host poll.
            if g1.checked_sub(*g0) != h1.checked_sub(*h0) {
                state_lost += 1;
            }
            missed += due.saturating_sub(g1.saturating_sub(*g0));
        }
        assert!(
            c.board
                .devices()
                .iter()
                .all(|r| r.adaptor_version.as_deref() == Some(want))
        );
        runs.push(SwapRun {
            cached,
            total_ms,
            load_ms,
            missed,
            state_lost,
            longest_pause_ms,
        });
    }
    for h in handles {
        h.stop().await;
    }
    runs
}

/// From an empty runtime to every one of `n` devices polled once; returns seconds.
async fn cold_start(n: usize, bytes: &[u8], cache: &Path) -> (f64, bool) {
    let t = Instant::now();
    let c = ctx(
        Settings::default().pooling,
        u32::try_from(n + n / 4 + 16).unwrap(),
    );
    let adaptor = load(&c, cache, bytes.to_vec(), "dummy").await;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            supervisor::spawn(
                c.clone(),
                dummy_link(&format!("d{i}"), "1s"),
                adaptor.clone(),
                vec![],
            )
        })
        .collect();
    wait_all(&c, n, Duration::from_millis(2), |r| r.polls >= 1).await;
    let took = t.elapsed().as_secs_f64();
    for h in handles {
        h.stop().await;
    }
    (took, adaptor.from_cache)
}

// ---------------------------------------------------------------------------------

/// `DENSITY_HEAP=1`: which heap allocations a device keeps, by size, and with
/// `DENSITY_HEAP_TRACE=<bytes>` where each allocation of at least that size was made
/// (one device is enough: `DENSITY_PLAN=dummy:100`). Off, it costs one load per allocation.
#[allow(unsafe_code, reason = "a global allocator wraps the system one")]
mod heap_profile {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

    pub struct Counting;
    pub static ON: AtomicBool = AtomicBool::new(false);
    /// Allocations at least this large print their call stack (0: none).
    pub static TRACE: AtomicUsize = AtomicUsize::new(0);
    const BUCKET: usize = 64;
    const BUCKETS: usize = 1025;
    static COUNT: [AtomicI64; BUCKETS] = [const { AtomicI64::new(0) }; BUCKETS];
    static BYTES: [AtomicI64; BUCKETS] = [const { AtomicI64::new(0) }; BUCKETS];
    thread_local! { static TRACING: Cell<bool> = const { Cell::new(false) }; }

    fn add(size: usize, sign: i64) {
        let b = (size / BUCKET).min(BUCKETS - 1);
        COUNT[b].fetch_add(sign, Ordering::Relaxed);
        BYTES[b].fetch_add(sign * size as i64, Ordering::Relaxed);
        let min = TRACE.load(Ordering::Relaxed);
        if sign > 0 && min > 0 && size >= min && !TRACING.with(|t| t.replace(true)) {
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            let frames: Vec<&str> = bt
                .lines()
                .map(str::trim)
                .filter(|l| {
                    l.split(':')
                        .next()
                        .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .filter(|l| {
                    !l.contains("heap_profile")
                        && !l.contains("alloc::")
                        && !l.contains("backtrace")
                })
                .take(8)
                .collect();
            eprintln!("HEAP TRACE {size} bytes: {}", frames.join(" <- "));
            TRACING.with(|t| t.set(false));
        }
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            if ON.load(Ordering::Relaxed) {
                add(l.size(), 1);
            }
            unsafe { System.alloc(l) }
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            if ON.load(Ordering::Relaxed) {
                add(l.size(), 1);
            }
            unsafe { System.alloc_zeroed(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            if ON.load(Ordering::Relaxed) {
                add(l.size(), -1);
            }
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            if ON.load(Ordering::Relaxed) {
                add(l.size(), -1);
                add(n, 1);
            }
            unsafe { System.realloc(p, l, n) }
        }
    }

    pub type Snapshot = Vec<(i64, i64)>;

    pub fn snapshot() -> Snapshot {
        (0..BUCKETS)
            .map(|i| {
                (
                    COUNT[i].load(Ordering::Relaxed),
                    BYTES[i].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Prints the allocations made between `a` and `b` and still live, per device.
    pub fn report(a: &Snapshot, b: &Snapshot, devices: usize) {
        let n = devices.max(1) as f64;
        let mut rows: Vec<(usize, i64, i64)> = (0..BUCKETS)
            .map(|i| (i, b[i].0 - a[i].0, b[i].1 - a[i].1))
            .collect();
        let bytes: i64 = rows.iter().map(|r| r.2).sum();
        let count: i64 = rows.iter().map(|r| r.1).sum();
        eprintln!(
            "HEAP live per device: {:.0} bytes in {:.1} allocations",
            bytes as f64 / n,
            count as f64 / n
        );
        rows.sort_by_key(|r| -r.2);
        for (i, c, by) in rows.iter().take(20).filter(|r| r.2 > 0) {
            eprintln!(
                "HEAP   {:>6}..{:<6} bytes: {:>6.2} per device, {:>6.0} bytes per device",
                i * BUCKET,
                (i + 1) * BUCKET - 1,
                *c as f64 / n,
                *by as f64 / n
            );
        }
    }
}

#[global_allocator]
static GLOBAL: heap_profile::Counting = heap_profile::Counting;

/// 10000 -> "10,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var_os("DENSITY_HEAP").is_some() {
        heap_profile::ON.store(true, Ordering::Relaxed);
    }
    if let Ok(spec) = std::env::var("DENSITY_SCENARIO") {
        scenario(&spec).await;
        return;
    }
    let only = std::env::var("DENSITY_ONLY").unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.split(',').any(|o| o == s);
    let dir = adaptors_dir();
    let v1 = std::fs::read(dir.join("adaptor_dummy.wasm")).unwrap();
    let v2 = std::fs::read(dir.join("adaptor_dummy_v2.wasm")).unwrap();
    let modbus = std::fs::read(dir.join("adaptor_modbus.wasm")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let port = start_server();
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut doc = String::new();

    if want("overhead") {
        let rows = overhead(port, modbus.clone(), cache.path().to_owned());
        let t = table(&rows);
        println!("## 1. Per-poll overhead against native code\n\n{t}");
        doc.push_str(&format!(
            "## 1. Per-poll overhead against native code\n\n{t}\n"
        ));
    }

    if want("density") {
        // Compile once into the shared cache so every child loads from it.
        let c = ctx(Pooling::Auto, 16);
        load(&c, cache.path(), v1.clone(), "dummy").await;
        load(&c, cache.path(), modbus.clone(), "modbus").await;
        drop(c);
        let default = Settings::default().pooling;
        let mut plan: Vec<(&str, usize, Pooling)> = vec![
            ("dummy", 100, default),
            ("dummy", 1000, default),
            // The pool's cost per device, beside the default's.
            ("dummy", 1000, Pooling::On),
            ("dummy", 10_000, default),
            ("modbus", 100, default),
            ("native", 100, default),
            ("modbus", 1000, default),
            ("native", 1000, default),
        ];
        // DENSITY_PLAN=dummy:1000,modbus:1000:pool picks scenarios of the plan above.
        if let Ok(only) = std::env::var("DENSITY_PLAN") {
            plan.retain(|&(kind, n, pooling)| {
                let pool = if pooling == Pooling::On { ":pool" } else { "" };
                only.split(',').any(|s| s == format!("{kind}:{n}{pool}"))
            });
        }
        let (mut results, mut failed) = (Vec::new(), String::new());
        for &(kind, n, pooling) in &plan {
            eprintln!("density: {kind} x {n}");
            match run_child((kind, n, pooling), port, cache.path()) {
                Ok(d) => results.push(d),
                Err(why) => failed.push_str(&format!("- {kind} x {n}: {why}\n")),
            }
        }
        let mut t = density_table(&results);
        if !failed.is_empty() {
            t.push_str(&format!("\nScenarios that did not complete:\n\n{failed}"));
        }
        println!("## 2. Density at 1 Hz\n\n{t}");
        doc.push_str(&format!("## 2. Density at 1 Hz\n\n{t}\n"));
    }

    if want("history") {
        let n: usize = std::env::var("DENSITY_HISTORY_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let c = ctx(Pooling::Auto, 16);
        load(&c, cache.path(), v1.clone(), "dummy").await;
        drop(c);
        let default = Settings::default().pooling;
        let (mut results, mut failed) = (Vec::new(), String::new());
        for history in [false, true] {
            eprintln!("history: dummy x {n}, recorder {history}");
            match run_child_with(("dummy", n, default), port, cache.path(), history) {
                Ok(d) => results.push(d),
                Err(why) => failed.push_str(&format!("- dummy x {n}, history {history}: {why}\n")),
            }
        }
        let mut t = history_table(&results);
        if !failed.is_empty() {
            t.push_str(&format!("\nScenarios that did not complete:\n\n{failed}"));
        }
        println!("## 3. The dashboard's history at density\n\n{t}");
        doc.push_str(&format!(
            "## 3. The dashboard's history at density\n\n{t}\n"
        ));
    }

    if want("swap") {
        // DENSITY_SWAP_N=10000 for issue 29's fleet (needs vm.max_map_count raised).
        let n: u32 = std::env::var("DENSITY_SWAP_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let runs = hot_swap(n, v1.clone(), v2.clone()).await;
        let count = thousands(u64::from(n));
        let mut t = String::from(
            "| run | compile | load | new bytes to last device switched | missed polls | state lost | longest pause |\n\
             | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for (i, r) in runs.iter().enumerate() {
            t.push_str(&format!(
                "| {} | {} | {:.1} ms | {:.1} ms | {} | {} | {:.1} ms |\n",
                i + 1,
                if r.cached { "cached" } else { "uncached" },
                r.load_ms,
                r.total_ms,
                r.missed,
                r.state_lost,
                r.longest_pause_ms
            ));
        }
        let warm: Vec<f64> = runs
            .iter()
            .filter(|r| r.cached)
            .map(|r| r.total_ms)
            .collect();
        let cold: Vec<f64> = runs
            .iter()
            .filter(|r| !r.cached)
            .map(|r| r.total_ms)
            .collect();
        let summary = table(&[
            stat(&format!("hot swap {count} devices, warm cache"), "ms", warm),
            stat(&format!("hot swap {count} devices, uncached"), "ms", cold),
        ]);
        println!("## 5. Hot swap of {count} devices at 1 Hz\n\n{t}\n{summary}");
        doc.push_str(&format!(
            "## 5. Hot swap of {count} devices at 1 Hz\n\n{t}\n{summary}\n"
        ));
    }

    if want("cold") {
        let (mut empty, mut warm) = (Vec::new(), Vec::new());
        let warm_dir = tempfile::tempdir().unwrap();
        for _ in 0..3 {
            let e = tempfile::tempdir().unwrap();
            let (s, hit) = cold_start(1000, &v1, e.path()).await;
            assert!(!hit);
            empty.push(s * 1e3);
            let (s, hit) = cold_start(1000, &v1, warm_dir.path()).await;
            warm.push(s * 1e3);
            let _ = hit;
        }
        // The first warm run filled the cache; count only runs that hit it.
        warm.remove(0);
        let (s, hit) = cold_start(1000, &v1, warm_dir.path()).await;
        assert!(hit);
        warm.push(s * 1e3);
        let t = table(&[
            stat(
                "cold start, 1,000 devices, empty compile cache",
                "ms",
                empty,
            ),
            stat("cold start, 1,000 devices, warm compile cache", "ms", warm),
        ]);
        println!("## 6. Cold start\n\n{t}");
        doc.push_str(&format!("## 6. Cold start\n\n{t}\n"));
    }

    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    if let Some(out) = std::env::var_os("DENSITY_OUT") {
        let machine = support::measured_on();
        let load_note = format!(
            "Load average before / after: {} / {}.",
            load_avg
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            load_after
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        let title = if only == "history" {
            "the dashboard's history at density"
        } else {
            "density, overhead against native, hot swap and cold start"
        };
        let text = format!(
            "# Benchmarks: {title}\n\n\
             Measured by `scripts/bench-density.sh` (release build, `cargo bench --locked -p limb --bench density`) \
             on {machine}, wasmtime 48.0.8, in process (no API server), on a 2-runtime-thread \
             tokio runtime like the limb's. {load_note}\n\n{doc}{NOTES}"
        );
        std::fs::write(out, text).unwrap();
    }
}

const NOTES: &str = "\
- *Per-poll overhead*: a minimal Modbus TCP server written in the bench (an MBAP responder on its own \
thread and tokio runtime), on loopback. *wasm* is one `poll` of the Modbus adaptor on a configured \
instance (2 holding registers: one request, decode, status JSON) through the limb's socket capability; \
*native* is `tokio_modbus::client::Reader::read_holding_registers` of the same 2 registers on its own \
connection. Both run on one thread with a current-thread runtime, alternating 20 rounds of 1,000 polls; \
CPU is that thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so the server's share is not counted. The \
supervisor's own work per poll (status JSON parse, board update) is not in this row; it is in the \
density CPU figures.\n\
- *Density*: each row is a fresh child process (this bench binary) so memory figures are its own: \
adaptor loaded from the compile cache, base RSS (`VmRSS`) and PSS (`smaps_rollup`) taken before \
spawning, then N supervised \
devices (`supervisor::spawn`, one instance each) at `syncInterval: 1s`; after every device polled once \
and 5 s of settling, CPU (process CPU time over wall) and poll drift are taken over a 20 s window. \
RSS counts a page once per mapping, so the component's copy-on-write memory image, mapped by every \
instance but held once, is counted N times; PSS divides shared pages among their mappings and is \
the memory the devices really take. \
*Drift* is how late each poll started against its schedule (`next_poll`), from the supervisor's \
`poll_lateness` histogram (0.1 ms buckets below 10 ms, 1 ms below 1 s). *native* rows are one \
tokio-modbus client task per device at 1 Hz (a `tokio::time::interval`), the baseline for the \
Modbus rows. Rows use the limb's default allocator (on demand); the *pooling* row is the same \
1,000 devices with the pooling allocator (sized for N + N/4 instances), whose tables take a page each. \
`DENSITY_SMAPS=<path>` makes each scenario dump its `/proc/self/smaps` at measurement, for profiling.\n\
- *Dashboard history* (section 3): the same 10,000-device dummy scenario twice, in fresh child \
processes: without the dashboard, and with its recorder (`limb::dashboard::Dashboard`, default \
settings: at most 4,096 series, 8 per device, 240 points each, one per 15 s) following the status \
board from before the base is taken. *Series / points held* is the history at measurement (about \
30 s of polling: two points per series at most); then every series is filled to its bound with an \
hour of back-dated points, as an hour of polling would leave it, and RSS/PSS are taken again. The \
cap holds memory flat: past 4,096 series further devices get no plot (their page says so) and cost \
the history nothing.\n\
- *Hot swap* (default allocator): 1,000 dummy devices (or `DENSITY_SWAP_N`) at 1 Hz moved between v1 and v2 (`adaptor_dummy_v2.wasm`); from \
`adaptors::load` of the new bytes (compiling into an empty cache, or from the warm cache) until the \
`hot_swaps{outcome=switched}` counter shows every device. *Missed polls* compares each device's guest \
poll counter (the dummy's `status.polls`, carried by snapshot/restore) over a window from the swap \
to 2.5 s after it with the whole seconds in that window; *state lost* counts devices whose guest \
counter did not advance with the host's poll count. *Longest pause* is the latest any poll started \
against its schedule in that window.\n\
- *Cold start*: from `Runtime::new` (empty runtime) through `adaptors::load` to all 1,000 devices \
having polled once, with an empty compile cache (Cranelift compile) and a warm one.\n\
- Figures were taken on a shared 2-core machine while other jobs were running (see the load average \
above); absolute times are noisy, ratios in the same run are the headline.\n";
