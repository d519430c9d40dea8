//! The `limb standalone` binary on a folder: the README's first command, driven the way
//! a user would, through files and the HTTP endpoint.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use octopus_tests::process::{Process, free_port};

use crate::common::*;

/// The standalone limb: its own command line (no API server, stdout kept), run as the
/// harness's [`Process`].
struct Limb(Process);

impl Limb {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let out = std::fs::File::create(dir.join("limb.out")).unwrap();
        let err = std::fs::File::create(dir.join("limb.err")).unwrap();
        let child = Command::new(octopus_tests::bins::limb())
            .args([
                "standalone",
                &dir.display().to_string(),
                "--output",
                "json",
                "--scan-interval",
                "200ms",
            ])
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--call-timeout",
                "1s",
            ])
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self(Process { child, port })
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        self.0.request(path)
    }

    fn device(&self, name: &str) -> Option<Value> {
        let (code, body) = self.get(&format!("/devices/default/{name}"))?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    fn wait_device(&mut self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(!self.0.exited(), "the limb exited while waiting for {what}");
            if let Some(d) = self.device(name)
                && pred(&d)
            {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: {what} not seen; last: {:#?}",
                self.device(name)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn fan_yaml(gear: &str) -> String {
    format!(
        r#"apiVersion: edge.cattle.io/v1alpha1
kind: DeviceLink
metadata:
  name: fan
spec:
  adaptor:
    node: edge-worker
    name: adaptors.edge.cattle.io/dummy
  model:
    apiVersion: devices.edge.cattle.io/v1alpha1
    kind: DummySpecialDevice
  template:
    spec:
      protocol: {{location: lab}}
      gear: {gear}
      "on": true
      parameters: {{syncInterval: 100ms}}
"#
    )
}

/// Replaces a file the way an editor or `cp` to a temp name and `mv` would.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn polls(d: &Value) -> u64 {
    d["polls"].as_u64().unwrap_or(0)
}

#[test]
fn standalone_mode_follows_the_folder_and_hot_swaps_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("dummy.wasm");
    std::fs::write(&wasm, component("adaptor_dummy")).unwrap();
    std::fs::write(dir.path().join("fan.yaml"), fan_yaml("slow")).unwrap();
    let mut limb = Limb::start(dir.path());

    let d = limb.wait_device("fan", "healthy polls", |d| {
        d["phase"] == "Healthy" && polls(d) >= 2
    });
    assert_eq!(d["status"]["gear"], "slow");
    assert_eq!(d["conditions"].as_array().unwrap().len(), 5, "{d:#}");
    assert_eq!(limb.get("/healthz").unwrap().0, 200);
    let metrics = limb.get("/metrics").unwrap().1;
    assert!(
        metrics.contains("octopus_limb_guest_calls_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"octopus_limb_device_polls_total{device="default/fan",outcome="ok"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"octopus_limb_device_memory_bytes{device="default/fan"}"#),
        "{metrics}"
    );

    // A spec change in the YAML applies in place.
    replace(&dir.path().join("fan.yaml"), fan_yaml("fast").as_bytes());
    limb.wait_device("fan", "the new gear", |d| d["status"]["gear"] == "fast");

    // A broken YAML file is reported and changes nothing.
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nspec: [",
    )
    .unwrap();
    let before = polls(&limb.device("fan").unwrap());
    limb.wait_device("fan", "polls after a broken file", |d| {
        polls(d) >= before + 3
    });

    // A new adaptor version replaces the file: every device moves, state carried over.
    let guest_polls = limb.device("fan").unwrap()["status"]["polls"]
        .as_u64()
        .unwrap();
    replace(&wasm, &component("adaptor_dummy_v2"));
    let d = limb.wait_device("fan", "the v2 adaptor", |d| d["status"]["variant"] == "v2");
    assert_eq!(d["adaptorVersion"], "0.1.0+v2");
    assert!(
        d["status"]["polls"].as_u64().unwrap() > guest_polls,
        "state carried across the swap"
    );
    assert_eq!(d["swaps"], 1);

    // A corrupt replacement is refused; the running version keeps serving.
    replace(&wasm, b"\0asm garbage");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let adaptors: Value = serde_json::from_str(&limb.get("/adaptors").unwrap().1).unwrap();
        if adaptors[0]["error"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "refusal not reported: {adaptors:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = polls(&limb.device("fan").unwrap());
    let d = limb.wait_device("fan", "polls on the last good version", |d| {
        polls(d) >= before + 3
    });
    assert_eq!(d["adaptorVersion"], "0.1.0+v2");

    // Removing the adaptor turns AdaptorExisted False.
    std::fs::remove_file(&wasm).unwrap();
    let d = limb.wait_device("fan", "AdaptorExisted False", |d| {
        d["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "ModelExisted" && c["status"] == "False")
                || c.iter()
                    .any(|c| c["type"] == "AdaptorExisted" && c["status"] == "False")
        })
    });
    assert_eq!(d["phase"], "Pending");

    // Removing the link removes the device.
    std::fs::remove_file(dir.path().join("fan.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while limb.device("fan").is_some() {
        assert!(Instant::now() < deadline, "device not removed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = limb.get("/metrics").unwrap().1;
    assert!(
        !metrics.contains(r#"device="default/fan""#),
        "a removed device's series go: {metrics}"
    );
    let out = std::fs::read_to_string(dir.path().join("limb.out")).unwrap();
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["name"], "fan", "stdout carries JSON lines when piped");
}

fn counter_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nmetadata:\n  name: {name}\nspec:\n  adaptor:\n    node: edge-worker\n    name: adaptors.edge.cattle.io/counter\n  model:\n    apiVersion: devices.edge.cattle.io/v1alpha1\n    kind: CounterDevice\n  template:\n    spec: {spec}\n"
    )
}

fn condition<'a>(d: &'a Value, t: &str) -> Option<&'a Value> {
    d["conditions"].as_array()?.iter().find(|c| c["type"] == t)
}

/// With no API server and no webhook, the limb makes the refusals of an adaptor's declared
/// schema itself: a link with a typo never starts, and a new version whose schema rejects
/// a running link's spec is held for that link (it keeps counting on the old one) until
/// the link is fixed.
#[test]
fn standalone_mode_checks_specs_against_the_declared_schema_and_holds_a_rejecting_swap() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("counter.wasm");
    std::fs::write(&wasm, component("adaptor_counter_javascript")).unwrap();
    let good = dir.path().join("counter.yaml");
    std::fs::write(
        &good,
        counter_yaml("counter", "{step: 2, syncIntervalMs: 100}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("typo.yaml"),
        counter_yaml("typo", "{stepp: 2, syncIntervalMs: 100}"),
    )
    .unwrap();
    let mut limb = Limb::start(dir.path());

    let d = limb.wait_device("typo", "refused by the schema", |d| {
        condition(d, "DeviceCreated").is_some_and(|c| c["status"] == "False")
    });
    let message = condition(&d, "DeviceCreated").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("spec.template.spec.stepp: unknown field")
            && message.contains("did you mean `step`?"),
        "{message}"
    );
    assert_eq!(d["phase"], "Pending");
    assert_eq!(polls(&d), 0);

    limb.wait_device("counter", "counting", |d| {
        d["status"]["count"].as_i64().unwrap_or(0) >= 4
    });
    replace(&wasm, &component("adaptor_counter_renamed_javascript"));
    let d = limb.wait_device("counter", "the swap held", |d| {
        condition(d, "AdaptorExisted").is_some_and(|c| c["reason"] == "SwapHeld")
    });
    let held = condition(&d, "AdaptorExisted").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        held.contains("0.2.0+javascript") && held.contains("spec.template.spec.step"),
        "{held}"
    );
    assert_eq!(d["adaptorVersion"], "0.1.0+javascript");
    let count = d["status"]["count"].as_i64().unwrap();
    limb.wait_device("counter", "counting on 0.1.0 while held", |d| {
        d["status"]["count"].as_i64().unwrap_or(0) >= count + 4
    });

    replace(
        &good,
        counter_yaml("counter", "{increment: 2, syncIntervalMs: 100}").as_bytes(),
    );
    let d = limb.wait_device("counter", "moved to 0.2.0", |d| {
        d["adaptorVersion"] == "0.2.0+javascript"
            && condition(d, "AdaptorExisted").is_some_and(|c| c["reason"] == "Found")
    });
    assert!(d["status"]["count"].as_i64().unwrap() > count, "{d:#}");
}
