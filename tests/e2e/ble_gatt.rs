//! GATT beyond the basics, against Bumble (the same air as `ble.rs`): values longer than
//! the default ATT MTU (read and notified whole after the MTU exchange), and a
//! characteristic that disappears while the limb is connected (the peripheral changes
//! its GATT table and says so with Service Changed) or while it is away (it comes back
//! with another table): that property shows an error, the others keep their values
//! because the limb discovers the moved handles again, and it recovers when the
//! characteristic comes back.

use std::time::Duration;

use limb::status::{DeviceReport, Phase};
use serde_json::{Value, json};

use crate::ble::{A, Air, device, harness_ble, sensor_spec};
use crate::common::*;

const LONG: &str = "6e400005-0c7a-4b8a-9a4f-3c2e0b6f7a00";
const NOTE: &str = "6e400006-0c7a-4b8a-9a4f-3c2e0b6f7a00";

/// The sensor's properties and two long ones without a converter (shown as text),
/// read every half second.
pub(crate) fn long_spec() -> Value {
    let mut spec = sensor_spec(A, "ON");
    spec["parameters"]["syncInterval"] = json!("500ms");
    let properties = spec["properties"].as_array_mut().unwrap();
    properties.push(json!({"name": "long", "accessMode": "ReadOnly",
                           "visitor": {"characteristicUUID": LONG}}));
    properties.push(json!({"name": "note", "accessMode": "NotifyOnly",
                           "visitor": {"characteristicUUID": NOTE}}));
    spec
}

/// What `ble_peripheral.py` holds in LONG.
pub(crate) fn long_text() -> String {
    "octopus-".repeat(25)
}

/// A note as the peripheral notifies it: "note NNN " padded with dots to 100 bytes.
fn is_note(v: &str) -> bool {
    v.len() == 100 && v.starts_with("note ") && v.ends_with("...")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_longer_than_the_default_mtu_are_read_and_notified_whole() {
    let dir = tempfile::tempdir().unwrap();
    let air = Air::start(dir.path());
    let h = harness_ble(&air, false);
    let adaptor = h.load("adaptor_ble").await;
    let _dev = h.spawn(device("long", long_spec()), adaptor);
    let r = h
        .wait(&key("long"), Duration::from_secs(60), |r| {
            r.phase == Phase::Healthy && value(r, "long").is_some() && value(r, "note").is_some()
        })
        .await;
    // 200 bytes read and 100 notified: at the default MTU of 23 they would stop at 22
    // and 20.
    assert_eq!(value(&r, "long"), Some(long_text()), "{r:#?}");
    let first = value(&r, "note").unwrap();
    assert!(is_note(&first), "{first:?}");
    let later = h
        .wait(&key("long"), Duration::from_secs(10), |r| {
            value(r, "note").is_some_and(|v| v != first)
        })
        .await;
    assert!(is_note(&value(&later, "note").unwrap()));
    assert_eq!(error(&later, "long"), None);
}

/// The properties whose characteristics never move out of reach hold the peripheral's
/// values (read through handles discovered again after every change).
fn others_hold(r: &DeviceReport) -> bool {
    r.phase == Phase::Healthy
        && value(r, "battery").as_deref() == Some("135.000000")
        && error(r, "battery").is_none()
        && value(r, "switch").as_deref() == Some("1.000000")
        && error(r, "switch").is_none()
        && value(r, "long") == Some(long_text())
        && error(r, "long").is_none()
}

fn temperature_missing(r: &DeviceReport) -> bool {
    error(r, "temperature").is_some_and(|e| e.contains("no characteristic"))
}

fn temperature_back(r: &DeviceReport) -> bool {
    value(r, "temperature").as_deref() == Some("8.500000") && error(r, "temperature").is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_characteristic_that_disappears_errs_alone_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let air = Air::start(dir.path());
    let h = harness_ble(&air, false);
    let adaptor = h.load("adaptor_ble").await;
    let _dev = h.spawn(device("changing", long_spec()), adaptor);
    let k = key("changing");
    h.wait(&k, Duration::from_secs(60), |r| {
        others_hold(r) && temperature_back(r) && value(r, "counter").is_some()
    })
    .await;

    // While connected: TEMP goes, the handles after it move, Service Changed says so.
    air.a.signal("HUP");
    let r = h
        .wait(&k, Duration::from_secs(20), |r| {
            temperature_missing(r) && others_hold(r)
        })
        .await;
    // Its last value stays beside the error, as for any failed read.
    assert_eq!(value(&r, "temperature").as_deref(), Some("8.500000"));
    // Notifications still arrive from the moved counter.
    let counter = value(&r, "counter").unwrap();
    h.wait(&k, Duration::from_secs(10), |r| {
        temperature_missing(r) && value(r, "counter").is_some_and(|v| v != counter)
    })
    .await;
    // It comes back, in place.
    air.a.signal("HUP");
    h.wait(&k, Duration::from_secs(20), |r| {
        temperature_back(r) && others_hold(r)
    })
    .await;

    // While away: the peripheral leaves, changes its table, and comes back with it.
    air.a.signal("USR1");
    h.wait(&k, Duration::from_secs(30), |r| r.phase == Phase::Unhealthy)
        .await;
    air.a.signal("HUP");
    air.a.signal("USR2");
    let r = h
        .wait(&k, Duration::from_secs(60), |r| {
            temperature_missing(r) && others_hold(r)
        })
        .await;
    let counter = value(&r, "counter").unwrap();
    h.wait(&k, Duration::from_secs(10), |r| {
        value(r, "counter").is_some_and(|v| v != counter)
    })
    .await;
    air.a.signal("HUP");
    h.wait(&k, Duration::from_secs(20), |r| {
        temperature_back(r) && others_hold(r)
    })
    .await;
}
