//! The OPC UA adaptor's transport and secure-channel decoder, typed values and spec
//! checks (`adaptors-wasm/opcua`: `wire.rs`, `value.rs`, `spec.rs`), natively.
//!
//! Input, by its first byte modulo 3:
//! - 0, a byte stream from a server: `[chunk size]` then bytes, pushed in chunks and
//!   cut into messages; the first is read as the reply to Hello, the rest as chunks of
//!   a secure channel (channel 0, the one a fresh channel has);
//! - 1, a value: `[type]` then text, parsed as that property type; what parses must
//!   format, and the formatted text must parse to a value that formats the same;
//! - 2, a spec: the rest is an `OPCUADevice` spec in JSON, as the limb hands it over.
#![no_main]

use adaptor_opcua::fuzz::{spec, value, wire};
use crds::models::opcua::{OPCUADeviceSpec, OpcuaPropertyType as Type};
use libfuzzer_sys::fuzz_target;
use octopus_adaptor_sdk::{Context, DeviceIdentity, Model};

const TYPES: [Type; 12] = [
    Type::Float,
    Type::Double,
    Type::Int64,
    Type::Int32,
    Type::Int16,
    Type::Uint64,
    Type::Uint32,
    Type::Uint16,
    Type::String,
    Type::Boolean,
    Type::ByteString,
    Type::Datetime,
];

fn stream(data: &[u8]) {
    let Some((&size, bytes)) = data.split_first() else {
        return;
    };
    let mut buf = Vec::new();
    let mut channel: Option<wire::Channel> = None;
    for chunk in bytes.chunks(1 + usize::from(size % 64)) {
        buf.extend_from_slice(chunk);
        loop {
            let frame = match wire::take_frame(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return,
            };
            assert!(frame.len() >= wire::HEADER_LEN);
            match channel.as_mut() {
                None => match wire::acknowledge(&frame) {
                    Ok(limits) => channel = Some(wire::Channel::new(limits)),
                    Err(_) => return,
                },
                Some(channel) => {
                    if channel.receive(&frame).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn typed(data: &[u8]) {
    let Some((&kind, text)) = data.split_first() else {
        return;
    };
    let kind = TYPES[usize::from(kind) % TYPES.len()];
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(variant) = value::parse(kind, text) {
        let shown = value::format(kind, &variant).expect("a parsed value formats");
        let again = value::parse(kind, &shown).expect("a formatted value parses");
        assert_eq!(value::format(kind, &again).as_deref(), Ok(shown.as_str()));
    }
}

fn spec_json(data: &[u8]) {
    let Ok(parsed) = serde_json::from_slice::<OPCUADeviceSpec>(data) else {
        return;
    };
    let ctx = Context {
        model: Model::new("devices.edge.cattle.io/v1alpha1", "OPCUADevice"),
        device: DeviceIdentity {
            namespace: "default".into(),
            name: "fuzz".into(),
            uid: "uid".into(),
        },
        references: Vec::new(),
    };
    if let Ok(config) = spec::check(&parsed, &ctx) {
        assert_eq!(config.properties.len(), parsed.properties.len());
        assert!(config.endpoint.starts_with("opc.tcp://"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => stream(rest),
        1 => typed(rest),
        _ => spec_json(rest),
    }
});
