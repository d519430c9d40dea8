//! DeviceLinks as `kubectl apply -f` or standalone mode reads them, their structural
//! validation, and the device model specs (`crds::models::*`) from YAML and JSON.
//!
//! Input: UTF-8 text, a multi-document YAML (JSON is YAML too). Every DeviceLink found
//! is validated and must survive a JSON round trip unchanged; the text is also read as
//! each model's spec, which must round-trip too, and run through the YAML 1.1 quoting
//! that `crdgen` applies to its output.
#![no_main]

use std::fmt::Debug;

use crds::models::{dummy, modbus, mqtt, opcua};
use crds::{DeviceLink, generated, parse, v1alpha1, validate};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A model spec read from `text` (YAML and JSON) serializes to what reads back the same.
fn model<T: DeserializeOwned + Serialize + Debug>(text: &str) -> Option<T> {
    if let Ok(spec) = serde_json::from_str::<T>(text) {
        round_trip(&spec);
    }
    let spec = serde_yaml::from_str::<T>(text).ok()?;
    round_trip(&spec);
    Some(spec)
}

fn round_trip<T: DeserializeOwned + Serialize + Debug>(spec: &T) {
    let Ok(json) = serde_json::to_value(spec) else {
        return;
    };
    let back: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("{spec:?} serializes to {json} which does not read back: {e}"));
    assert_eq!(serde_json::to_value(&back).ok(), Some(json), "{spec:?}");
}

fn link(l: &DeviceLink) {
    let problems = validate::device_link(l);
    if problems.is_empty() {
        assert!(!l.name().is_empty() && !l.spec.adaptor.node.is_empty());
    }
    let _ = l.key();
    let _ = l.spec.model.group_version();
    let label = v1alpha1::node_label_value(&l.spec.adaptor.node);
    assert!(label.len() <= 63, "{label}");
    // What the limb writes back (status patches, standalone output) must read back.
    let json = serde_json::to_string(l).expect("a DeviceLink serializes");
    let back: DeviceLink = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{json} does not read back as a DeviceLink: {e}"));
    assert_eq!(
        serde_json::to_value(&back).ok(),
        serde_json::to_value(l).ok(),
        "{json}"
    );
    // The template as the adaptor's model reads it.
    let spec = l.spec.template.spec.to_string();
    match l.spec.model.kind.as_str() {
        "ModbusDevice" => drop(model::<modbus::ModbusDeviceSpec>(&spec)),
        "MQTTDevice" => drop(model::<mqtt::MQTTDeviceSpec>(&spec)),
        "OPCUADevice" => drop(model::<opcua::OPCUADeviceSpec>(&spec)),
        "DummySpecialDevice" => drop(model::<dummy::DummySpecialDeviceSpec>(&spec)),
        "DummyProtocolDevice" => drop(model::<dummy::DummyProtocolDeviceSpec>(&spec)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(links) = parse::device_links(text) {
        links.iter().for_each(link);
    }
    if let Some(spec) = model::<modbus::ModbusDeviceSpec>(text) {
        let _ = (spec.protocol.endpoint(), spec.protocol.worker_id());
        for p in &spec.properties {
            let _ = (p.read_only(), p.visitor.quantity(), p.visitor.endianness());
        }
    }
    if let Some(spec) = model::<mqtt::MQTTDeviceSpec>(text) {
        let _ = spec.protocol.options();
        for p in &spec.properties {
            let _ = (p.read_only(), p.qos(), p.retained());
        }
    }
    drop(model::<opcua::OPCUADeviceSpec>(text));
    drop(model::<dummy::DummySpecialDeviceSpec>(text));
    drop(model::<dummy::DummyProtocolDeviceSpec>(text));
    let quoted = generated::quote_yaml11_booleans(text);
    assert_eq!(quoted.lines().count(), text.lines().count());
});
