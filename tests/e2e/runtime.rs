//! The dummy adaptor through the supervisor: configure, poll, status, spec changes.

use std::time::Duration;

use crds::{ConditionStatus, ConditionType};
use limb::status::Phase;
use limb::supervisor::Command;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn special_device_reports_status_and_speed_follows_the_gear() {
    let h = harness();
    let dummy = h.load("adaptor_dummy").await;
    let dev = h.spawn(fan("fan", "fast", "50ms"), dummy);
    let r = h
        .wait(&key("fan"), Duration::from_secs(10), |r| r.polls >= 3)
        .await;
    assert_eq!(r.phase, Phase::Healthy);
    assert_eq!(r.status["gear"], "fast");
    let speed = r.status["rotatingSpeed"].as_u64().unwrap();
    assert!((200..=300).contains(&speed), "fast gear speed {speed}");
    assert_eq!(r.poll_interval_ms, Some(50));
    let last = r.conditions.phase().unwrap();
    assert_eq!(
        (last.type_, last.status, last.reason.as_str()),
        (
            ConditionType::DeviceConnected,
            ConditionStatus::True,
            "Healthy"
        )
    );
    assert!(
        r.events.iter().any(|e| e.reason == "Configured"),
        "{:?}",
        r.events
    );
    dev.stop().await;
}

#[tokio::test]
async fn protocol_device_reports_typed_properties() {
    let h = harness();
    let dummy = h.load("adaptor_dummy").await;
    let spec = json!({
        "protocol": {"ip": "127.0.0.1"},
        "parameters": {"syncInterval": "50ms"},
        "properties": {
            "i": {"type": "int"}, "f": {"type": "float"}, "b": {"type": "boolean"},
            "s": {"type": "string"}, "a": {"type": "array"}, "o": {"type": "object"}
        }
    });
    let dev = h.spawn(link("robot", "dummy", "DummyProtocolDevice", spec), dummy);
    let r = h
        .wait(&key("robot"), Duration::from_secs(10), |r| r.polls >= 2)
        .await;
    let props = &r.status["properties"];
    // Octopus's typed fields: `.status.properties.s.stringValue` and so on.
    assert!(
        props["i"]["intValue"].is_i64(),
        "{props} {:?}",
        r.last_error
    );
    assert!(
        props["f"]["floatValue"]
            .as_str()
            .is_some_and(crds::octopus::is_quantity),
        "{props}"
    );
    assert!(props["b"]["booleanValue"].is_boolean(), "{props}");
    assert!(props["s"]["stringValue"].is_string(), "{props}");
    assert!(props["a"]["arrayValue"].is_array(), "{props}");
    assert!(props["o"]["objectValue"].is_object(), "{props}");
    assert_eq!(
        crds::octopus::check("DummyProtocolDevice", &r.status),
        Vec::<String>::new(),
        "{props}"
    );
    dev.stop().await;
}

#[tokio::test]
async fn a_spec_change_is_applied_in_place_keeping_state() {
    let h = harness();
    let dummy = h.load("adaptor_dummy").await;
    let dev = h.spawn(fan("fan2", "slow", "50ms"), dummy);
    let before = h
        .wait(&key("fan2"), Duration::from_secs(10), |r| r.polls >= 3)
        .await;
    let guest_polls = before.status["polls"].as_u64().unwrap();
    dev.send(Command::Update(fan("fan2", "fast", "80ms"), vec![]));
    let after = h
        .wait(&key("fan2"), Duration::from_secs(10), |r| {
            r.status["gear"] == "fast" && r.poll_interval_ms == Some(80)
        })
        .await;
    assert!(
        after.status["polls"].as_u64().unwrap() > guest_polls,
        "the adaptor's own counter kept counting"
    );
    assert_eq!(
        after.restarts, 0,
        "reconfigure must not restart the instance"
    );
    assert!(after.events.iter().any(|e| e.reason == "Reconfigured"));
    dev.stop().await;
}

#[tokio::test]
async fn a_shorter_sync_interval_counts_from_the_last_poll_not_after_the_old_one() {
    let h = harness();
    let dummy = h.load("adaptor_dummy").await;
    // An hour: after the first poll, the next one is an hour away.
    let dev = h.spawn(fan("slow", "slow", "1h"), dummy);
    let first = h
        .wait(&key("slow"), Duration::from_secs(10), |r| r.polls >= 1)
        .await;
    let changed = std::time::Instant::now();
    dev.send(Command::Update(fan("slow", "slow", "50ms"), vec![]));
    // The new spacing counts from the last poll, so the next poll is due at most 50 ms
    // from now and a few come within seconds instead of after the hour.
    h.polls_past(&key("slow"), &first, 3).await;
    assert!(changed.elapsed() < Duration::from_secs(10));
    dev.stop().await;
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_waits_for_a_fix() {
    let h = harness();
    let dummy = h.load("adaptor_dummy").await;
    let bad = link(
        "bad",
        "dummy",
        "DummySpecialDevice",
        json!({"protocol": {"location": "x"}, "on": true, "gear": "warp"}),
    );
    let dev = h.spawn(bad, dummy);
    let r = h
        .wait(&key("bad"), Duration::from_secs(10), |r| {
            r.phase == Phase::Pending && r.last_error.is_some()
        })
        .await;
    let cond = r.conditions.get(ConditionType::DeviceConnected).unwrap();
    assert_eq!(cond.status, ConditionStatus::False);
    assert!(cond.message.contains("gear"), "{}", cond.message);
    assert_eq!(r.polls, 0);
    dev.send(Command::Update(fan("bad", "middle", "50ms"), vec![]));
    let fixed = h
        .wait(&key("bad"), Duration::from_secs(10), |r| r.polls >= 1)
        .await;
    assert_eq!(fixed.phase, Phase::Healthy);
    dev.stop().await;
}

#[tokio::test]
async fn a_model_the_adaptor_does_not_serve_is_refused_with_a_condition() {
    let h = harness();
    let dummy = h.load("adaptor_dummy").await;
    let wrong = link("wrong", "dummy", "ModbusDevice", json!({}));
    let dev = h.spawn(wrong, dummy);
    let r = h
        .wait(&key("wrong"), Duration::from_secs(10), |r| {
            r.last_error.is_some()
        })
        .await;
    assert!(r.last_error.unwrap().contains("does not serve"));
    dev.stop().await;
}
