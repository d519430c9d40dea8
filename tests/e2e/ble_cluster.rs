//! A BluetoothDevice through the whole stack, against Bumble (the air of `ble.rs`):
//! the `limb standalone` binary on a folder with a node policy granting the controller,
//! and the limb in cluster mode on a real API server with the brain, where the link
//! reaches `DeviceConnected=True` and the instance carries live values.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crds::v1alpha1::DeviceLink;
use kube::api::{Api, PostParams};
use serde_json::Value;

use octopus_tests::bins;
use octopus_tests::paths::repo_file;
use octopus_tests::process::{Process, free_port};

use crate::ble::{A, Air};
use crate::cluster::{control_plane, device_instances, ship, wait, wait_healthy};
use crate::common::component;

/// The node policy: the limb owns the third virtual controller, addresses only.
fn write_policy(dir: &Path, air: &Air) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        format!(
            "ble:\n  controller: {}\n  allowNames: false\n",
            air.controller
        ),
    )
    .unwrap();
    path
}

/// `examples/ble/thermometer.yaml`, pointed at peripheral A by address, with its
/// properties on the characteristics A holds.
fn thermometer(node: &str) -> String {
    let text = std::fs::read_to_string(repo_file("examples/ble/thermometer.yaml")).unwrap();
    let mut link: Value = serde_yaml::from_str(&text).unwrap();
    let spec = &mut link["spec"];
    spec["adaptor"]["node"] = node.into();
    let device = &mut spec["template"]["spec"];
    device["protocol"]["endpoint"] = A.into();
    device["parameters"]["syncInterval"] = "1s".into();
    device["parameters"]["timeout"] = "5s".into();
    for p in device["properties"].as_array_mut().unwrap() {
        let uuid = match p["name"].as_str().unwrap() {
            // A notifying counter; the humidity converter on TEMP's [1, 44]; the switch.
            "data" => crate::ble::COUNTER,
            "humidity" => crate::ble::TEMP,
            "power-enabled" => crate::ble::SWITCH,
            other => panic!("the example grew a property {other}"),
        };
        p["visitor"]["characteristicUUID"] = uuid.into();
    }
    serde_yaml::to_string(&link).unwrap()
}

fn property<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

/// The example's values as A holds them: [1, 44] through the converter, the switch
/// written OFF (0), and a counter.
fn live(status: &Value) -> bool {
    property(status, "humidity").is_some_and(|p| p["value"] == "8.500000")
        && property(status, "power-enabled").is_some_and(|p| p["value"].is_string())
        && property(status, "data").is_some_and(|p| p["value"].is_string())
}

/// The standalone limb on `dir`, BLE calls given seconds.
fn standalone(dir: &Path, policy: &Path, log: &Path) -> Process {
    let port = free_port();
    let child = Command::new(bins::limb())
        .args([
            "--policy",
            &policy.display().to_string(),
            "--call-timeout",
            "20s",
            "standalone",
            &dir.display().to_string(),
            "--output",
            "none",
            "--scan-interval",
            "200ms",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    Process { child, port }
}

#[test]
fn a_bluetooth_device_link_runs_in_standalone_mode() {
    let air_dir = tempfile::tempdir().unwrap();
    let air = Air::start(air_dir.path());
    let policy = write_policy(air_dir.path(), &air);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ble.wasm"), component("adaptor_ble")).unwrap();
    std::fs::write(
        dir.path().join("thermometer.yaml"),
        thermometer("edge-worker"),
    )
    .unwrap();
    let log = air_dir.path().join("limb.log");
    let mut limb = standalone(dir.path(), &policy, &log);

    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        assert!(!limb.exited(), "the limb exited: {}", read(&log));
        let d = limb.get_json("/devices/default/xiaomi-temp-rs2200");
        if let Some(d) = d.as_ref().filter(|d| {
            d["phase"] == "Healthy"
                && d["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "DeviceConnected" && c["status"] == "True")
                })
                && live(&d["status"])
        }) {
            break d.clone();
        }
        assert!(
            Instant::now() < deadline,
            "not connected with live values: {d:#?}\n{}",
            read(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        crds::octopus::check("BluetoothDevice", &d["status"]),
        Vec::<String>::new()
    );
    // The example writes OFF, and the peripheral got it.
    assert_eq!(Air::writes(&air.record_a), ["SWITCH 00"]);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bluetooth_device_link_reaches_device_connected_on_a_real_api_server() {
    let (server, client, _brain) = control_plane().await;
    let air = Air::start(server.dir.path());
    let policy = write_policy(server.dir.path(), &air);
    ship(&client, "ble", &component("adaptor_ble")).await;
    let cache = server.dir.path().join("limb-cache");
    let _limb = Process::start(
        bins::limb(),
        &[
            "--cache-dir",
            &cache.display().to_string(),
            "--call-timeout",
            "20s",
            "--policy",
            &policy.display().to_string(),
            "cluster",
            "--node",
            "edge-1",
            "--namespace",
            "octopus-system",
            "--status-flush",
            "100ms",
            "--resync",
            "2s",
        ],
        &server.user_kubeconfig("limb"),
        &[],
        &server.dir.path().join("limb-ble.log"),
    );

    let link: DeviceLink = serde_yaml::from_str(&thermometer("edge-1")).unwrap();
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    links.create(&PostParams::default(), &link).await.unwrap();
    wait_healthy(&links, "xiaomi-temp-rs2200").await;

    let instances = device_instances(&client, "BluetoothDevice", "bluetoothdevices");
    let status = wait(
        "live values in the BluetoothDevice instance",
        Duration::from_secs(30),
        async || {
            let i = instances.get("xiaomi-temp-rs2200").await.ok()?;
            let status = i.data["status"].clone();
            live(&status).then_some(status)
        },
    )
    .await;
    assert_eq!(
        crds::octopus::check("BluetoothDevice", &status),
        Vec::<String>::new(),
        "{status}"
    );
    // The notified counter moves in the instance without a read of it.
    let first = property(&status, "data").unwrap()["value"].clone();
    wait(
        "a later notification in the instance",
        Duration::from_secs(30),
        async || {
            let i = instances.get("xiaomi-temp-rs2200").await.ok()?;
            let p = property(&i.data["status"], "data")?.clone();
            (p["value"] != first).then_some(())
        },
    )
    .await;
    assert_eq!(Air::writes(&air.record_a), ["SWITCH 00"]);
}
