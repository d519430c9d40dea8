//! `scripts/bench.sh`: compile, load, instantiate, per-poll and hot-swap costs of the
//! dummy adaptor, and the Modbus adaptor against a real slave (pymodbus) next to a
//! native client, printed as a table and written to BENCHMARKS.md.
//!
//! Absolute times on shared machines are noisy: every figure is a median with its
//! spread (p10..p90) over repeated runs in one process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

mod support;

use support::{
    Stat, adaptors_dir, ctx, dummy_link, modbus_instance, modbus_link, modbus_spec, stat, table,
    wait_all,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use limb::adaptors::{self, CompileCache};
use limb::capabilities::{Capabilities, Grants, Limits};
use limb::engine::{DeviceTag, Pooling, StoreState};
use limb::supervisor::{self, Command, Context, Instance};
use support::repo::repo_file;
use wasmtime::component::Component;

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = adaptors_dir();
    let v1 = std::fs::read(dir.join("adaptor_dummy.wasm")).unwrap();
    let v2 = std::fs::read(dir.join("adaptor_dummy_v2.wasm")).unwrap();
    let mut rows = Vec::new();

    for pooling in [Pooling::Off, Pooling::On] {
        let c = ctx(pooling, 2500);
        let label = if pooling == Pooling::On {
            "pooling"
        } else {
            "on-demand"
        };
        let engine = c.runtime.engine();

        // Compile from bytes (Cranelift), no cache.
        let compile: Vec<f64> = (0..10)
            .map(|_| {
                let t = Instant::now();
                Component::new(engine, &v1).unwrap();
                us(t.elapsed()) / 1000.0
            })
            .collect();
        rows.push(stat(&format!("compile dummy ({label})"), "ms", compile));

        // Load through the on-disk cache: verify + mmap + validate + describe.
        let tmp = tempfile::tempdir().unwrap();
        let cache = Arc::new(CompileCache::new(Some(tmp.path().to_owned())));
        adaptors::load(&c.runtime, &cache, v1.clone(), "warm".into())
            .await
            .unwrap();
        let mut load = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let a = adaptors::load(&c.runtime, &cache, v1.clone(), "bench".into())
                .await
                .unwrap();
            assert!(a.from_cache);
            load.push(us(t.elapsed()) / 1000.0);
        }
        rows.push(stat(
            &format!("load from compile cache ({label})"),
            "ms",
            load,
        ));

        let adaptor = adaptors::load(&c.runtime, &cache, v1.clone(), "bench".into())
            .await
            .unwrap();

        // Instantiate: a fresh store plus instance, as every device start and swap does.
        let mut inst = Vec::new();
        for i in 0..300 {
            let t = Instant::now();
            let caps = Capabilities::new(
                Arc::new(Grants::default()),
                c.policy.clone(),
                Limits::default(),
                c.backends.clone(),
            );
            let mut store = StoreState::new_store(
                &c.runtime,
                DeviceTag(format!("d{i}").into()),
                "dummy",
                caps,
                None,
            );
            store.data_mut().arm(Duration::from_secs(5));
            adaptor.pre.instantiate_async(&mut store).await.unwrap();
            inst.push(us(t.elapsed()));
        }
        rows.push(stat(&format!("instantiate ({label})"), "us", inst));

        // Per poll: one `poll` call on a configured DummySpecialDevice.
        let mut device = Instance::new(
            &c,
            adaptor.clone(),
            DeviceTag("poll".into()),
            Arc::new(Grants::default()),
        )
        .await
        .unwrap();
        let cfg = limb::bindings::DeviceConfig {
            model: limb::bindings::Model {
                api_version: "devices.edge.cattle.io/v1alpha1".into(),
                kind: "DummySpecialDevice".into(),
            },
            device: limb::bindings::DeviceIdentity {
                namespace: "bench".into(),
                name: "poll".into(),
                uid: "u".into(),
            },
            spec: r#"{"protocol":{"location":"x"},"gear":"fast","on":true}"#.into(),
            references: vec![],
        };
        device.configure(&cfg).await.unwrap();
        for _ in 0..200 {
            device.poll().await.unwrap();
        }
        let mut polls = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            for _ in 0..250 {
                device.poll().await.unwrap();
            }
            polls.push(us(t.elapsed()) / 250.0);
        }
        rows.push(stat(
            &format!("poll, guest call incl. status JSON ({label})"),
            "us",
            polls,
        ));

        // Swap one device: the critical path (instantiate new, snapshot, restore,
        // configure), measured on the supervisor's own Instance API.
        let v2a = adaptors::load(&c.runtime, &cache, v2.clone(), "v2".into())
            .await
            .unwrap();
        let mut swaps = Vec::new();
        let mut cur = device;
        for i in 0..100 {
            let next_adaptor = if i % 2 == 0 {
                v2a.clone()
            } else {
                adaptor.clone()
            };
            let t = Instant::now();
            let mut next = Instance::new(
                &c,
                next_adaptor,
                DeviceTag("poll".into()),
                Arc::new(Grants::default()),
            )
            .await
            .unwrap();
            let state = cur.snapshot().await.unwrap();
            next.restore(&state, "x").await.unwrap();
            next.configure(&cfg).await.unwrap();
            swaps.push(us(t.elapsed()));
            cur.shutdown().await;
            cur = next;
        }
        rows.push(stat(
            &format!("hot swap, one device ({label})"),
            "us",
            swaps,
        ));
    }

    // Swap 1,000 live devices through their supervisors (pooling allocator, 10 s
    // interval so polling does not compete): from sending the swap to every device
    // reporting the new version.
    let c = ctx(Pooling::Auto, 2500);
    let tmp = tempfile::tempdir().unwrap();
    let cache = Arc::new(CompileCache::new(Some(tmp.path().to_owned())));
    let a1 = adaptors::load(&c.runtime, &cache, v1.clone(), "v1".into())
        .await
        .unwrap();
    let a2 = adaptors::load(&c.runtime, &cache, v2.clone(), "v2".into())
        .await
        .unwrap();
    let n = 1000;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            supervisor::spawn(
                c.clone(),
                dummy_link(&format!("d{i}"), "10s"),
                a1.clone(),
                vec![],
            )
        })
        .collect();
    wait_all(&c, n, Duration::from_millis(5), |r| r.polls >= 1).await;
    let mut fleet = Vec::new();
    for round in 0..4 {
        let (to, want) = if round % 2 == 0 {
            (&a2, "0.1.0+v2")
        } else {
            (&a1, "0.1.0")
        };
        let t = Instant::now();
        for h in &handles {
            h.send(Command::Swap(to.clone()));
        }
        wait_all(&c, n, Duration::from_millis(5), |r| {
            r.adaptor_version.as_deref() == Some(want)
        })
        .await;
        fleet.push(us(t.elapsed()) / 1000.0);
    }
    rows.push(stat(
        "hot swap, 1,000 devices, whole fleet (pooling)",
        "ms",
        fleet,
    ));
    for h in handles {
        h.stop().await;
    }

    modbus_rows(&mut rows).await;
    mqtt_rows(&mut rows).await;

    let table = table(&rows);
    println!("{table}");
    if let Some(out) = std::env::var_os("BENCHMARKS_OUT") {
        let machine = support::measured_on();
        let text = format!(
            "# Benchmarks\n\nMeasured by `scripts/bench.sh` (release build, `cargo bench -p limb --bench limb`) on {machine}, \
             wasmtime 48.0.8, the dummy, Modbus and MQTT adaptors from `adaptors-wasm/`.\n\
             Medians with p10..p90 over the runs shown, all in one process; absolute times on shared machines are noisy, \
             so compare rows of the same run. Density, hot swap at scale and cold start: \
             `scripts/bench-density.sh` (writes `docs/benchmarks/density.md`); status delivery and connect rate on a \
             real API server: `scripts/bench-cluster.sh` (writes `docs/benchmarks/cluster.md`; the ten-minute \
             memory run is `docs/benchmarks/cluster-ten-minutes.md`); cost per guest \
             language: `scripts/bench-languages.sh` (writes `docs/benchmarks/languages.md`).\n\n{table}\n\
             - *compile*: `Component::new` from the 188 KiB component (Cranelift).\n\
             - *load from compile cache*: digest check of the precompiled artifact, mmap, import/export validation, \
             `describe` on a scratch instance; what the limb does for an adaptor it has seen before.\n\
             - *instantiate*: a new store (WASI with nothing granted, limits, deadline) plus the instance.\n\
             - *poll*: one `poll` call on a configured `DummySpecialDevice`, including the guest building its status JSON.\n\
             - *hot swap, one device*: instantiate the new version, `snapshot` the old one, `restore`, `configure` \
             (the switch itself is a pointer move).\n\
             - *hot swap, 1,000 devices*: from sending the swap to 1,000 supervised devices until every one reports the \
             new version, on 2 runtime threads.\n\
             - *Modbus TCP*: against pymodbus 3.16 on loopback (`host/tests/peers/modbus_server.py`), which shares the \
             2 cores and is the bottleneck. *poll* is one `poll` of the Modbus adaptor reading 2 holding registers \
             (one request, decode, status JSON) through the limb's socket capability; *native* is the same FC3 request \
             and reply written directly on a tokio socket, in the same run. *sustained* runs 20 supervised devices at a \
             50 ms interval for 10 s and counts the polls that succeeded per second (the target is 400/s).\n\
             - *MQTT from the broker*: one MQTT device (AttributedTopic, QoS 1) subscribed to a topic on which \
             `mosquitto_pub -l` publishes 20,000 numbered readings; from the first publish until the device's \
             status shows the last one, so every message went through the component (the status keeps the latest).\n"
        );
        std::fs::write(out, text).unwrap();
    }
}

/// The Modbus slave the tests use (pymodbus), on a free loopback port; killed on drop.
struct Slave(std::process::Child, u16);

impl Drop for Slave {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_slave() -> Slave {
    use std::io::BufRead;
    let python = std::env::var_os("OCTOPUS_PEERS_PYTHON")
        .expect("set OCTOPUS_PEERS_PYTHON (scripts/bench.sh installs pymodbus)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = repo_file("host/tests/peers/modbus_server.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .args(["tcp", "127.0.0.1", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    assert!(line.starts_with("READY"), "modbus slave: {line:?}");
    Slave(child, port)
}

/// One FC3 read of 2 registers from unit 1, written directly on a socket: the native
/// baseline for the same exchange the adaptor does.
async fn native_read(s: &mut tokio::net::TcpStream, tid: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = tid.to_be_bytes();
    let req = [t[0], t[1], 0, 0, 0, 6, 1, 3, 0, 101, 0, 2];
    s.write_all(&req).await.unwrap();
    let mut head = [0u8; 7];
    s.read_exact(&mut head).await.unwrap();
    let len = usize::from(u16::from_be_bytes([head[4], head[5]])) - 1;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!((head[0], head[1], body[0]), (t[0], t[1], 3));
}

async fn modbus_rows(rows: &mut Vec<Stat>) {
    let slave = start_slave();
    let c = ctx(Pooling::Auto, 256);
    let bytes = std::fs::read(adaptors_dir().join("adaptor_modbus.wasm")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = Arc::new(CompileCache::new(Some(tmp.path().to_owned())));
    let adaptor = adaptors::load(&c.runtime, &cache, bytes, "modbus".into())
        .await
        .unwrap();

    // Per poll, side by side with the native exchange, alternating rounds.
    let spec = modbus_spec(slave.1, "1s");
    let mut device = modbus_instance(&c, &adaptor, &spec).await;
    let mut native = tokio::net::TcpStream::connect(("127.0.0.1", slave.1))
        .await
        .unwrap();
    native.set_nodelay(true).unwrap();
    for i in 0..50 {
        device.poll().await.unwrap();
        native_read(&mut native, i).await;
    }
    let (mut wasm, mut direct) = (Vec::new(), Vec::new());
    for round in 0..20u16 {
        let t = Instant::now();
        for _ in 0..50 {
            device.poll().await.unwrap();
        }
        wasm.push(us(t.elapsed()) / 50.0);
        let t = Instant::now();
        for i in 0..50 {
            native_read(&mut native, round * 50 + i).await;
        }
        direct.push(us(t.elapsed()) / 50.0);
    }
    device.shutdown().await;
    let ratio: Vec<f64> = wasm.iter().zip(&direct).map(|(w, n)| w / n).collect();
    rows.push(stat(
        "Modbus TCP poll, 2 registers, wasm adaptor",
        "us",
        wasm,
    ));
    rows.push(stat(
        "Modbus TCP read, 2 registers, native client",
        "us",
        direct,
    ));
    rows.push(stat("Modbus TCP wasm / native, per round", "x", ratio));

    // Sustained: 20 supervised devices at 50 ms for 10 s.
    let n = 20;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            supervisor::spawn(
                c.clone(),
                modbus_link(&format!("m{i}"), modbus_spec(slave.1, "50ms")),
                adaptor.clone(),
                vec![],
            )
        })
        .collect();
    wait_all(&c, n, Duration::from_millis(5), |r| r.polls >= 1).await;
    let mut rates = Vec::new();
    for _ in 0..5 {
        let before: u64 = c
            .board
            .devices()
            .iter()
            .map(|r| r.polls - r.failed_polls)
            .sum();
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after: u64 = c
            .board
            .devices()
            .iter()
            .map(|r| r.polls - r.failed_polls)
            .sum();
        rates.push((after - before) as f64 / t.elapsed().as_secs_f64());
    }
    rows.push(stat(
        "Modbus TCP sustained, 20 devices at 50 ms (polls/s)",
        "/s",
        rates,
    ));
    for h in handles {
        h.stop().await;
    }
}

/// mosquitto on a free loopback port, without its default queue limits (which would
/// drop messages and make the figure meaningless); killed on drop.
struct Broker {
    child: std::process::Child,
    port: u16,
    /// Holds the config file for as long as the broker runs.
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "persistence false\nmax_queued_messages 0\nmax_inflight_messages 0\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        ),
    )
    .unwrap();
    let child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto (scripts/bench.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker {
        child,
        port,
        _dir: dir,
    }
}

async fn mqtt_rows(rows: &mut Vec<Stat>) {
    use std::io::Write;
    let broker = start_broker();
    let c = ctx(Pooling::Auto, 16);
    let bytes = std::fs::read(adaptors_dir().join("adaptor_mqtt.wasm")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = Arc::new(CompileCache::new(Some(tmp.path().to_owned())));
    let adaptor = adaptors::load(&c.runtime, &cache, bytes, "mqtt".into())
        .await
        .unwrap();
    let spec = serde_json::json!({
        "protocol": {
            "pattern": "AttributedTopic",
            "client": {"server": format!("tcp://127.0.0.1:{}", broker.port)},
            "message": {"topic": "bench/:path", "qos": 1},
        },
        "properties": [{"name": "n", "path": "n", "type": "int"}],
    });
    let link = serde_json::json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": "sub", "namespace": "bench"},
        "spec": {
            "adaptor": {"node": "n", "name": "adaptors.edge.cattle.io/mqtt"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "MQTTDevice"},
            "template": {"spec": spec}
        }
    });
    let h = supervisor::spawn(
        c.clone(),
        Arc::new(serde_json::from_value(link).unwrap()),
        adaptor,
        vec![],
    );
    wait_all(&c, 1, Duration::from_millis(5), |r| {
        r.phase == limb::status::Phase::Healthy
    })
    .await;
    let value = |c: &Context| {
        c.board
            .devices()
            .first()
            .and_then(|r| r.status["properties"].as_array()?.first()?["value"].as_i64())
    };
    let n = 20_000i64;
    let mut rates = Vec::new();
    for round in 0..3i64 {
        let base = round * n;
        let mut publisher = std::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args(["-t", "bench/n", "-q", "1", "-l"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("mosquitto_pub");
        let lines: String = (1..=n).map(|i| format!("{}\n", base + i)).collect();
        let t = Instant::now();
        let mut stdin = publisher.stdin.take().unwrap();
        stdin.write_all(lines.as_bytes()).unwrap();
        drop(stdin);
        let deadline = t + Duration::from_secs(120);
        while value(&c) != Some(base + n) {
            assert!(Instant::now() < deadline, "the last reading never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rates.push(n as f64 / t.elapsed().as_secs_f64());
        let _ = publisher.wait();
    }
    rows.push(stat(
        "MQTT from the broker, one device, QoS 1 (messages/s)",
        "/s",
        rates,
    ));
    h.stop().await;
}
