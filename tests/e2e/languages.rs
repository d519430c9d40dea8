//! Adaptors written in every supported guest language (`adaptors-wasm/languages/`),
//! run through the limb against a real Modbus server: the counter template and the
//! registers adaptor of each language configure, poll and report; a device hot-swaps
//! from one language's build to the next and back with its state and without a missed
//! poll. The components come from `scripts/build-languages.sh` (run by the test command).

use std::time::Duration;

use limb::status::Phase;
use limb::supervisor::Command;
use serde_json::json;

use crate::common::*;
use crate::hotswap::Watcher;
use crate::peers::ModbusServer;

/// Every language with a template and a registers adaptor, in swap order.
const LANGUAGES: [&str; 6] = ["rust", "c", "go", "python", "javascript", "zig"];

/// Holding registers 0 and 1 of the pymodbus layout (`modbus_server.py`).
const REGISTERS: [u64; 2] = [0xCFC7, 54321];

fn counter(name: &str, step: serde_json::Value) -> std::sync::Arc<crds::DeviceLink> {
    link(
        name,
        "counter",
        "CounterDevice",
        json!({"step": step, "syncIntervalMs": 50}),
    )
}

fn registers(name: &str, spec: serde_json::Value) -> std::sync::Arc<crds::DeviceLink> {
    link(name, "registers", "RegisterDevice", spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_template_counts_and_refuses_a_wrong_spec_by_field() {
    let h = harness();
    for lang in LANGUAGES {
        let adaptor = h.load(&format!("adaptor_counter_{lang}")).await;
        assert_eq!(
            adaptor.info.name, "adaptors.edge.cattle.io/counter",
            "{lang}"
        );
        assert_eq!(adaptor.info.version, format!("0.1.0+{lang}"));
        let name = format!("counter-{lang}");
        let device = h.spawn(counter(&name, json!(3)), adaptor.clone());
        let r = h
            .wait(&key(&name), Duration::from_secs(30), |r| {
                r.status["count"].as_u64().is_some_and(|c| c >= 9)
            })
            .await;
        assert_eq!(r.status["language"], lang, "{lang}: {:?}", r.status);
        assert_eq!(
            r.status["count"].as_u64().unwrap() % 3,
            0,
            "{lang}: {:?}",
            r.status
        );
        device.stop().await;

        let bad = format!("counter-bad-{lang}");
        let device = h.spawn(counter(&bad, json!("three")), adaptor);
        let r = h
            .wait(&key(&bad), Duration::from_secs(30), |r| {
                r.last_error.is_some()
            })
            .await;
        let err = r.last_error.clone().unwrap_or_default();
        assert!(
            err.contains("step"),
            "{lang}: the error names no field: {err}"
        );
        assert!(r.polls == 0, "{lang}: polled with a wrong spec");
        device.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_reads_holding_registers_from_pymodbus() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModbusServer::tcp(dir.path());
    let h = harness();
    let mut devices = Vec::new();
    for lang in LANGUAGES {
        let adaptor = h.load(&format!("adaptor_registers_{lang}")).await;
        assert_eq!(adaptor.info.name, "adaptors.edge.cattle.io/registers");
        let model = adaptor
            .model("devices.edge.cattle.io/v1alpha1", "RegisterDevice")
            .unwrap_or_else(|| panic!("{lang}: does not serve RegisterDevice"));
        assert_eq!(model.resource_fields.len(), 1, "{lang}");
        assert_eq!(model.resource_fields[0].path, "endpoint", "{lang}");
        let spec = json!({"endpoint": server.endpoint(), "unitId": 1, "address": 0, "count": 2, "syncIntervalMs": 100});
        devices.push(h.spawn(registers(&format!("regs-{lang}"), spec), adaptor.clone()));
        // A count the protocol cannot carry is refused with the field's name.
        let spec = json!({"endpoint": server.endpoint(), "count": 40});
        devices.push(h.spawn(registers(&format!("bad-{lang}"), spec), adaptor.clone()));
        // A unit the server does not have: Modbus exception, reported, the limb carries on.
        let spec = json!({"endpoint": server.endpoint(), "unitId": 9, "syncIntervalMs": 100});
        devices.push(h.spawn(registers(&format!("unit-{lang}"), spec), adaptor));
    }
    for lang in LANGUAGES {
        let r = h
            .wait(
                &key(&format!("regs-{lang}")),
                Duration::from_secs(60),
                |r| r.status["polls"].as_u64().is_some_and(|p| p >= 3),
            )
            .await;
        assert_eq!(r.status["language"], lang);
        let values: Vec<u64> = r.status["registers"]
            .as_array()
            .unwrap_or_else(|| panic!("{lang}: no registers in {:?}", r.status))
            .iter()
            .filter_map(|v| v.as_u64())
            .collect();
        assert_eq!(values, REGISTERS, "{lang}");
        assert_eq!(r.phase, Phase::Healthy, "{lang}");

        let r = h
            .wait(&key(&format!("bad-{lang}")), Duration::from_secs(30), |r| {
                r.last_error.is_some()
            })
            .await;
        let err = r.last_error.unwrap_or_default();
        assert!(err.contains("count"), "{lang}: {err}");

        let r = h
            .wait(
                &key(&format!("unit-{lang}")),
                Duration::from_secs(30),
                |r| r.failed_polls >= 1,
            )
            .await;
        let err = r.last_error.unwrap_or_default();
        assert!(err.contains("exception"), "{lang}: {err}");
    }
    for d in devices {
        d.stop().await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_moves_through_every_language_and_back_without_missing_a_poll() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModbusServer::tcp(dir.path());
    let h = harness();
    let mut builds = Vec::new();
    for lang in LANGUAGES {
        builds.push((lang, h.load(&format!("adaptor_registers_{lang}")).await));
    }
    let interval = Duration::from_millis(100);
    let spec = json!({"endpoint": server.endpoint(), "count": 2, "syncIntervalMs": 100});
    let device = h.spawn(registers("traveller", spec), builds[0].1.clone());
    h.wait(&key("traveller"), Duration::from_secs(30), |r| {
        r.status["polls"].as_u64().is_some_and(|p| p >= 2)
    })
    .await;
    let watcher = Watcher::start(&h.ctx.board);
    // rust -> c -> go -> python -> javascript -> zig -> rust
    for (lang, build) in builds.iter().skip(1).chain(builds.iter().take(1)) {
        device.send(Command::Swap(build.clone()));
        let r = h
            .wait(&key("traveller"), Duration::from_secs(30), |r| {
                r.status["language"] == *lang
            })
            .await;
        assert_eq!(
            r.adaptor_version.as_deref(),
            Some(&*format!("0.1.0+{lang}"))
        );
        let polls = r.polls;
        h.wait(&key("traveller"), Duration::from_secs(30), |r| {
            r.polls >= polls + 3
        })
        .await;
    }
    let seen = watcher.finish().await;
    let r = h.ctx.board.get(&key("traveller")).unwrap();
    device.stop().await;
    drop(server);
    let (max_gap, backwards, polls) = seen["default/traveller"];
    assert!(
        !backwards,
        "the poll counter went backwards: state was lost in a swap"
    );
    assert!(polls >= 18, "only {polls} polls");
    assert!(
        max_gap < interval * 3,
        "{max_gap:?} between two polls at a {interval:?} interval: a poll was missed"
    );
    assert_eq!(r.swaps, LANGUAGES.len() as u64, "{r:?}");
    assert_eq!(r.failed_polls, 0, "{:?}", r.last_error);
}
