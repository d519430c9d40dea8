//! The BLE adaptor (`adaptor_ble`) in the limb against Google Bumble: virtual controllers
//! on one virtual link (`tests/peers/ble_controllers.py`), two GATT peripherals
//! scripted with Bumble (`tests/peers/ble_peripheral.py`) on two of them, and the limb's
//! own HCI/ATT client on the third over H4/TCP. Every access mode and Octopus's data
//! converter are checked against the bytes the peripheral holds; writes are checked on
//! the peripheral's side (its record file). Also: a refused write and a missing
//! characteristic show on their property only, a name endpoint the policy does not allow
//! is refused, and a peripheral that goes away makes the device Unhealthy until it is back.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use limb::adaptors::CompileCache;
use limb::capabilities::{Backends, Limits, Policy};
use limb::engine::{Pooling, Runtime, Settings};
use limb::status::{DeviceReport, Phase};
use limb::supervisor::{Context, RestartPolicy};
use serde_json::{Value, json};

use crate::common::*;
use octopus_tests::paths::repo_file;
use octopus_tests::peers::{free_port, spawn_python, venv_python};

pub(crate) const A: &str = "C0:98:E5:49:00:01";
pub(crate) const B: &str = "C0:98:E5:49:00:02";
pub(crate) const TEMP: &str = "6e400001-0c7a-4b8a-9a4f-3c2e0b6f7a00";
pub(crate) const COUNTER: &str = "6e400002-0c7a-4b8a-9a4f-3c2e0b6f7a00";
pub(crate) const SWITCH: &str = "6E400003-0C7A-4B8A-9A4F-3C2E0B6F7A00";
pub(crate) const LOCKED: &str = "6e4000040c7a4b8a9a4f3c2e0b6f7a00";
pub(crate) const MISSING: &str = "6e4000ff-0c7a-4b8a-9a4f-3c2e0b6f7a00";

pub(crate) fn python() -> PathBuf {
    venv_python(
        "import importlib.metadata as m; assert m.version('bumble') == '0.0.236'",
        "bumble 0.0.236",
    )
}

/// A child process killed by its PID when dropped.
pub(crate) struct Peer {
    child: Child,
    log: PathBuf,
}

impl Peer {
    pub(crate) fn start(dir: &Path, what: &str, script: &Path, args: &[String]) -> Self {
        let log = dir.join(format!("{what}.log"));
        let (child, ready) = spawn_python(&python(), script, args, &log);
        let peer = Peer { child, log };
        match ready.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("READY") => peer,
            other => panic!(
                "{what} did not get ready ({other:?}); its log:\n{}",
                std::fs::read_to_string(&peer.log).unwrap_or_default()
            ),
        }
    }

    /// Sends `signal` to the peer's PID.
    pub(crate) fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {}", self.child.id());
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three virtual controllers on one link (two peripherals, the limb) and the peripherals.
pub(crate) struct Air {
    pub(crate) _controllers: Peer,
    pub(crate) a: Peer,
    pub(crate) _b: Peer,
    /// The limb's controller as the node policy names it (`tcp:...` or `serial:...`).
    pub(crate) controller: String,
    pub(crate) record_a: PathBuf,
    pub(crate) record_b: PathBuf,
}

/// Waits until a controller's port accepts connections.
pub(crate) fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "Bumble's controller on port {port} did not open"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Air {
    pub(crate) fn start(dir: &Path) -> Self {
        Self::start_with(dir, None)
    }

    /// With the limb's controller on the serial line `tty` (Bumble holds its other end)
    /// instead of a TCP port.
    pub(crate) fn start_with(dir: &Path, tty: Option<(&Path, &Path)>) -> Self {
        let ports = [free_port(), free_port(), free_port()];
        let mut args = ports.map(|p| p.to_string()).to_vec();
        let controller = match tty {
            Some((bumble, limb)) => {
                args[2] = format!("serial:{}", bumble.display());
                format!("serial:{}", limb.display())
            }
            None => format!("tcp:127.0.0.1:{}", ports[2]),
        };
        let controllers = Peer::start(
            dir,
            "controllers",
            &repo_file("tests/peers/ble_controllers.py"),
            &args,
        );
        let served = if tty.is_some() { 2 } else { 3 };
        for p in &ports[..served] {
            wait_for_port(*p);
        }
        let script = repo_file("tests/peers/ble_peripheral.py");
        let record_a = dir.join("a.writes");
        let record_b = dir.join("b.writes");
        let peripheral = |what: &str, port: u16, address: &str, name: &str, record: &Path| {
            Peer::start(
                dir,
                what,
                &script,
                &[
                    format!("tcp-client:127.0.0.1:{port}"),
                    address.to_owned(),
                    name.to_owned(),
                    record.display().to_string(),
                ],
            )
        };
        let a = peripheral("peripheral-a", ports[0], A, "Octo-Sensor-A", &record_a);
        let b = peripheral("peripheral-b", ports[1], B, "Octo-Sensor-B", &record_b);
        Air {
            _controllers: controllers,
            a,
            _b: b,
            controller,
            record_a,
            record_b,
        }
    }

    pub(crate) fn writes(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A limb whose policy names the third controller; BLE operations over a Python link
/// get seconds, not the 500 ms of the other suites.
pub(crate) fn harness_ble(air: &Air, allow_names: bool) -> Harness {
    let policy = Policy::from_yaml(&format!(
        "ble:\n  controller: {}\n  allowNames: {allow_names}\n",
        air.controller
    ))
    .unwrap();
    let settings = Settings {
        call_timeout: Duration::from_secs(20),
        memory_limit: 32 << 20,
        pooling: Pooling::Auto,
        max_instances: 64,
        ..Settings::default()
    };
    let limits = Limits {
        max_handles: 4,
        max_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let restart = RestartPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(500),
        quarantine_after: 5,
    };
    let ctx = Context::new(
        Runtime::new(settings).unwrap(),
        policy,
        limits,
        Backends::real(true),
        restart,
    );
    Harness {
        ctx: Arc::new(ctx),
        cache: Arc::new(CompileCache::new(Some(
            std::env::var_os("LIMB_CACHE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("octopus-test-cache")),
        ))),
    }
}

/// Octopus's converter with a shift left by one and a halving: the value is the bytes'
/// decimal digits read as hexadecimal (so [87] shows as 0x87 = 135).
pub(crate) fn digits_as_hex() -> Value {
    json!({"startIndex": 0, "endIndex": 0, "shiftLeft": 1,
           "orderOfOperations": [{"type": "Divide", "value": "2"}]})
}

pub(crate) fn sensor_spec(endpoint: &str, switch: &str) -> Value {
    json!({
        "parameters": {"syncInterval": "1h", "timeout": "5s"},
        "protocol": {"endpoint": endpoint},
        "properties": [
            {"name": "battery", "accessMode": "ReadOnly",
             "visitor": {"characteristicUUID": "2A19", "dataConverter": digits_as_hex()}},
            {"name": "temperature", "accessMode": "ReadOnly",
             "visitor": {"characteristicUUID": TEMP, "dataConverter": {
                 "startIndex": 1, "endIndex": 0, "shiftRight": 2,
                 "orderOfOperations": [{"type": "Multiply", "value": "0.03125"}]}}},
            {"name": "counter", "accessMode": "NotifyOnly",
             "visitor": {"characteristicUUID": COUNTER, "dataConverter": digits_as_hex()}},
            {"name": "switch", "accessMode": "ReadWrite",
             "visitor": {"characteristicUUID": SWITCH, "defaultValue": switch,
                         "dataWrite": {"ON": "AQ==", "OFF": [0]},
                         "dataConverter": digits_as_hex()}},
            {"name": "locked", "accessMode": "ReadWrite",
             "visitor": {"characteristicUUID": LOCKED, "defaultValue": "ON",
                         "dataWrite": {"ON": [1]}}},
            {"name": "missing", "accessMode": "ReadOnly",
             "visitor": {"characteristicUUID": MISSING}},
        ],
    })
}

pub(crate) fn device(name: &str, spec: Value) -> Arc<crds::DeviceLink> {
    link(name, "ble", "BluetoothDevice", spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluetooth_devices_read_notify_and_write_through_one_controller() {
    let dir = tempfile::tempdir().unwrap();
    let air = Air::start(dir.path());
    let h = harness_ble(&air, true);
    let adaptor = h.load("adaptor_ble").await;

    // A by address, B by name: two peripherals served to one limb over one controller.
    let dev_a = h.spawn(device("sensor-a", sensor_spec(A, "ON")), adaptor.clone());
    let _dev_b = h.spawn(
        device("sensor-b", sensor_spec("octo-sensor-b", "OFF")),
        adaptor.clone(),
    );
    let connected = |r: &DeviceReport| {
        r.phase == Phase::Healthy
            && r.conditions
                .get(crds::ConditionType::DeviceConnected)
                .is_some_and(|c| c.status == crds::ConditionStatus::True)
            && value(r, "battery").is_some()
            && value(r, "switch").is_some()
            && value(r, "counter").is_some()
    };
    let ra = h
        .wait(&key("sensor-a"), Duration::from_secs(60), connected)
        .await;
    let rb = h
        .wait(&key("sensor-b"), Duration::from_secs(60), connected)
        .await;
    for r in [&ra, &rb] {
        // [87] is "87", read as hex 0x87 = 135, << 1, / 2.
        assert_eq!(value(r, "battery").as_deref(), Some("135.000000"), "{r:#?}");
        // [1, 44] reversed is "441" = 0x441 = 1089, >> 2 = 272, * 0.03125.
        assert_eq!(value(r, "temperature").as_deref(), Some("8.500000"));
        assert!(error(r, "missing").is_some_and(|e| e.contains("no characteristic")));
        assert!(value(r, "missing").is_none());
        let locked = error(r, "locked").unwrap_or_default();
        assert!(locked.contains("application error"), "{locked}");
        assert_eq!(property(r, "battery").unwrap()["accessMode"], "ReadOnly");
        assert_eq!(
            crds::octopus::check("BluetoothDevice", &r.status),
            Vec::<String>::new()
        );
    }
    // The writes landed on each peripheral, read back through the converter.
    assert_eq!(Air::writes(&air.record_a), ["SWITCH 01"]);
    assert_eq!(Air::writes(&air.record_b), ["SWITCH 00"]);
    assert_eq!(value(&ra, "switch").as_deref(), Some("1.000000"));
    assert_eq!(value(&rb, "switch").as_deref(), Some("0.000000"));

    // Notifications reach status without a read: syncInterval is an hour.
    let first = value(&ra, "counter").unwrap();
    let later = h
        .wait(&key("sensor-a"), Duration::from_secs(10), |r| {
            value(r, "counter").is_some_and(|v| v != first)
        })
        .await;
    let second = value(&later, "counter").unwrap();
    h.wait(&key("sensor-a"), Duration::from_secs(10), |r| {
        value(r, "counter").is_some_and(|v| v != second && v != first)
    })
    .await;

    // A write happens when the spec's value changes, and only then.
    dev_a.send(limb::supervisor::Command::Update(
        device("sensor-a", sensor_spec(A, "OFF")),
        vec![],
    ));
    h.wait(&key("sensor-a"), Duration::from_secs(20), |r| {
        value(r, "switch").as_deref() == Some("0.000000")
    })
    .await;
    let before = h.ctx.board.get(&key("sensor-a")).unwrap();
    h.polls_past(&key("sensor-a"), &before, 5).await;
    assert_eq!(Air::writes(&air.record_a), ["SWITCH 01", "SWITCH 00"]);

    // The peripheral goes away: Unhealthy, then back by itself.
    air.a.signal("USR1");
    h.wait(&key("sensor-a"), Duration::from_secs(30), |r| {
        r.phase == Phase::Unhealthy
    })
    .await;
    // B shares the controller and stays healthy meanwhile.
    let rb = h.ctx.board.get(&key("sensor-b")).unwrap();
    assert_eq!(rb.phase, Phase::Healthy, "{rb:#?}");
    air.a.signal("USR2");
    let back = h
        .wait(&key("sensor-a"), Duration::from_secs(60), |r| {
            r.phase == Phase::Healthy && value(r, "counter").is_some()
        })
        .await;
    let at = value(&back, "counter").unwrap();
    h.wait(&key("sensor-a"), Duration::from_secs(10), |r| {
        r.phase == Phase::Healthy && value(r, "counter").is_some_and(|v| v != at)
    })
    .await;
}

/// The grant is the link's endpoint: a local name (which any device can advertise) is
/// refused unless the node policy allows names, before any radio traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_endpoint_needs_the_policy_to_allow_names() {
    let dir = tempfile::tempdir().unwrap();
    let air = Air::start(dir.path());
    let h = harness_ble(&air, false);
    let adaptor = h.load("adaptor_ble").await;
    let _dev = h.spawn(
        device("by-name", sensor_spec("Octo-Sensor-A", "ON")),
        adaptor.clone(),
    );
    let r = h
        .wait(&key("by-name"), Duration::from_secs(20), |r| {
            r.last_error
                .as_deref()
                .is_some_and(|e| e.contains("local name"))
        })
        .await;
    assert_ne!(r.phase, Phase::Healthy);
    assert!(Air::writes(&air.record_a).is_empty());
    // The same peripheral by address is served.
    let _ok = h.spawn(device("by-address", sensor_spec(A, "ON")), adaptor);
    h.wait(&key("by-address"), Duration::from_secs(60), |r| {
        r.phase == Phase::Healthy && value(r, "battery").is_some()
    })
    .await;
}
