//! Parsing of the two dummy models' specs (`template.spec` of a DeviceLink).
//!
//! The SDK decodes the JSON into the models' types from `crds`, the ones the CRDs are
//! generated from, so a wrong type is `invalid-spec` naming the field path
//! (`properties.temp.type`, ...); what the types cannot say (a blank required string,
//! the sync interval's two forms) is checked here with the same paths.

use std::collections::BTreeMap;

use crds::models::dummy::{
    DummyPropertyType, DummyProtocolDeviceProperty, DummyProtocolDeviceSpec, DummySpecialDeviceSpec,
};
use octopus_adaptor_sdk::{Error, Result, duration, spec::invalid};
use serde_json::Value;

pub use octopus_adaptor_sdk::status::PropertyType;

/// Poll interval when the spec has no `parameters.syncInterval`.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 2_000;

/// The device models this adaptor serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Special,
    Protocol,
}

impl Kind {
    pub const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
    pub const ALL: [Kind; 2] = [Kind::Special, Kind::Protocol];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Special => "DummySpecialDevice",
            Kind::Protocol => "DummyProtocolDevice",
        }
    }

    /// The model's declaration, generated from the `crds` types by `crdgen`.
    pub fn declaration(self) -> &'static str {
        match self {
            Kind::Special => {
                include_str!("../../../crds/generated/models/dummyspecialdevices.json")
            }
            Kind::Protocol => {
                include_str!("../../../crds/generated/models/dummyprotocoldevices.json")
            }
        }
    }

    /// Finds the kind for a model, or explains why the model is not ours.
    pub fn from_model(api_version: &str, kind: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| api_version == Kind::API_VERSION && kind == k.name())
            .ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "unsupported model {api_version}/{kind}: this adaptor serves {0}/{1} and {0}/{2}",
                    Kind::API_VERSION,
                    Kind::Special.name(),
                    Kind::Protocol.name(),
                ))
            })
    }
}

/// A parsed spec of either model.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub poll_interval_ms: u64,
    pub device: DeviceSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceSpec {
    Special(SpecialSpec),
    Protocol(ProtocolSpec),
}

impl DeviceSpec {
    pub fn kind(&self) -> Kind {
        match self {
            DeviceSpec::Special(_) => Kind::Special,
            DeviceSpec::Protocol(_) => Kind::Protocol,
        }
    }
}

/// How fast a `DummySpecialDevice` turns: the model's own type.
pub use crds::models::dummy::DummySpecialDeviceGear as Gear;

/// `DummySpecialDevice` spec: `{protocol: {location}, on, gear}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialSpec {
    pub location: String,
    pub on: bool,
    pub gear: Gear,
}

/// `DummyProtocolDevice` spec: `{protocol: {ip}, properties: {<name>: <property>}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolSpec {
    pub ip: String,
    pub properties: BTreeMap<String, Property>,
}

/// One declared property; `item` and `fields` describe array items and object fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub kind: PropertyType,
    pub read_only: bool,
    pub item: Option<Box<Property>>,
    pub fields: BTreeMap<String, Property>,
}

impl From<&DummyProtocolDeviceProperty> for Property {
    fn from(declared: &DummyProtocolDeviceProperty) -> Self {
        Property {
            kind: match declared.r#type {
                DummyPropertyType::String => PropertyType::String,
                DummyPropertyType::Int => PropertyType::Int,
                DummyPropertyType::Float => PropertyType::Float,
                DummyPropertyType::Boolean => PropertyType::Boolean,
                DummyPropertyType::Array => PropertyType::Array,
                DummyPropertyType::Object => PropertyType::Object,
            },
            read_only: declared.read_only(),
            item: declared
                .array_properties
                .as_deref()
                .map(|item| Box::new(Property::from(item))),
            fields: declared
                .object_properties
                .iter()
                .map(|(name, field)| (name.clone(), Property::from(field)))
                .collect(),
        }
    }
}

/// Parses `spec` (the DeviceLink's `template.spec` JSON) for the given model kind, as
/// the SDK does before [`from_value`].
#[cfg(test)]
pub fn parse(kind: Kind, spec: &str) -> Result<Spec> {
    from_value(kind, &octopus_adaptor_sdk::spec::parse(spec)?)
}

/// Decodes a spec the SDK already read as JSON, for the given model kind, into the
/// model's types (shared with the CRD), then checks what the types cannot say.
pub fn from_value(kind: Kind, spec: &Value) -> Result<Spec> {
    let (parameters, device) = match kind {
        Kind::Special => {
            let raw: DummySpecialDeviceSpec = octopus_adaptor_sdk::spec::from_value(spec)?;
            let special = SpecialSpec {
                location: not_blank("protocol.location", raw.protocol.location)?,
                on: raw.on,
                gear: raw.gear.unwrap_or_default(),
            };
            (raw.parameters, DeviceSpec::Special(special))
        }
        Kind::Protocol => {
            let raw: DummyProtocolDeviceSpec = octopus_adaptor_sdk::spec::from_value(spec)?;
            let protocol = ProtocolSpec {
                ip: not_blank("protocol.ip", raw.protocol.ip)?,
                properties: raw
                    .properties
                    .iter()
                    .map(|(name, declared)| (name.clone(), Property::from(declared)))
                    .collect(),
            };
            (raw.parameters, DeviceSpec::Protocol(protocol))
        }
    };
    let interval = parameters.and_then(|p| p.sync_interval);
    Ok(Spec {
        poll_interval_ms: poll_interval(interval.as_deref())?,
        device,
    })
}

/// A required string that serde found: blank is refused too.
fn not_blank(path: &str, value: String) -> Result<String> {
    if value.trim().is_empty() {
        Err(invalid(path, "must not be empty"))
    } else {
        Ok(value)
    }
}

/// `parameters.syncInterval`: a Go duration (`"2s"`, `"500ms"`, `"1m30s"`) or a plain
/// integer number of seconds (`5` or `"5"`; the model keeps a bare number as its digits).
fn poll_interval(value: Option<&str>) -> Result<u64> {
    const PATH: &str = "parameters.syncInterval";
    let Some(text) = value else {
        return Ok(DEFAULT_POLL_INTERVAL_MS);
    };
    let ms = interval_ms(text).map_err(|reason| {
        Error::InvalidSpec(format!("{PATH}: invalid duration {text:?}: {reason}"))
    })?;
    if ms == 0 {
        return Err(Error::InvalidSpec(format!(
            "{PATH}: the interval must be positive"
        )));
    }
    Ok(ms)
}

/// A Go duration string, or a string of digits meaning seconds, in whole milliseconds
/// (rounded up, so `"1us"` is 1 ms rather than 0).
fn interval_ms(text: &str) -> std::result::Result<u64, String> {
    let s = text.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s.parse().map_err(|_| "number out of range".to_owned())?;
        return secs
            .checked_mul(1_000)
            .ok_or_else(|| "number out of range".to_owned());
    }
    duration::parse_ms(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: Kind, spec: &str) -> String {
        parse(kind, spec).unwrap_err().message().to_owned()
    }

    #[test]
    fn special_spec_defaults_gear_to_slow() {
        let spec = parse(
            Kind::Special,
            r#"{"protocol":{"location":"lab"},"on":true}"#,
        )
        .unwrap();
        assert_eq!(spec.poll_interval_ms, DEFAULT_POLL_INTERVAL_MS);
        assert_eq!(
            spec.device,
            DeviceSpec::Special(SpecialSpec {
                location: "lab".into(),
                on: true,
                gear: Gear::Slow
            })
        );
    }

    #[test]
    fn special_spec_errors_name_the_field() {
        assert_eq!(err(Kind::Special, r#"{"on":true}"#), "protocol is required");
        assert_eq!(
            err(Kind::Special, r#"{"protocol":{},"on":true}"#),
            "protocol.location is required"
        );
        assert_eq!(
            err(Kind::Special, r#"{"protocol":{"location":"x"}}"#),
            "on is required"
        );
        assert!(
            err(Kind::Special, r#"{"protocol":{"location":"x"},"on":1}"#)
                .starts_with("on must be a boolean")
        );
        assert!(
            err(
                Kind::Special,
                r#"{"protocol":{"location":"x"},"on":true,"gear":"turbo"}"#
            )
            .contains("\"turbo\"")
        );
        assert!(err(Kind::Special, "not json").starts_with("spec is not valid JSON"));
    }

    #[test]
    fn protocol_spec_parses_nested_properties() {
        let spec = parse(
            Kind::Protocol,
            r#"{"protocol":{"ip":"10.0.0.1"},"properties":{
                "temp":{"type":"float","readOnly":true,"description":"°C"},
                "list":{"type":"array","arrayProperties":{"type":"string"}},
                "obj":{"type":"object","objectProperties":{"a":{"type":"int"}}}}}"#,
        )
        .unwrap();
        let DeviceSpec::Protocol(protocol) = spec.device else {
            panic!("wrong kind")
        };
        assert_eq!(protocol.ip, "10.0.0.1");
        assert!(protocol.properties["temp"].read_only);
        assert_eq!(
            protocol.properties["list"].item.as_ref().unwrap().kind,
            PropertyType::String
        );
        assert_eq!(
            protocol.properties["obj"].fields["a"].kind,
            PropertyType::Int
        );
    }

    #[test]
    fn unknown_property_type_names_property_and_type() {
        let msg = err(
            Kind::Protocol,
            r#"{"protocol":{"ip":"x"},"properties":{"volume":{"type":"decimal"}}}"#,
        );
        assert!(msg.contains("properties.volume"), "{msg}");
        assert!(msg.contains("\"decimal\""), "{msg}");
        let nested = err(
            Kind::Protocol,
            r#"{"protocol":{"ip":"x"},"properties":{"o":{"type":"object","objectProperties":{"f":{"type":"x"}}}}}"#,
        );
        assert!(
            nested.contains("properties.o.objectProperties.f"),
            "{nested}"
        );
        assert_eq!(
            err(Kind::Protocol, r#"{"protocol":{}}"#),
            "protocol.ip is required"
        );
    }

    #[test]
    fn sync_interval_accepts_go_durations_and_seconds() {
        let interval = |v: &str| {
            parse(
                Kind::Special,
                &format!(
                    r#"{{"protocol":{{"location":"x"}},"on":false,"parameters":{{"syncInterval":{v}}}}}"#
                ),
            )
            .map(|s| s.poll_interval_ms)
        };
        assert_eq!(interval(r#""2s""#), Ok(2_000));
        assert_eq!(interval(r#""500ms""#), Ok(500));
        assert_eq!(interval(r#""1m""#), Ok(60_000));
        assert_eq!(interval(r#""1m30s""#), Ok(90_000));
        assert_eq!(interval(r#""1.5s""#), Ok(1_500));
        assert_eq!(interval(r#""1h""#), Ok(3_600_000));
        assert_eq!(interval(r#""10us""#), Ok(1));
        assert_eq!(interval("3"), Ok(3_000));
        assert_eq!(interval(r#""7""#), Ok(7_000));
        for bad in [
            r#""""#, r#""2x""#, r#""-1s""#, r#""0s""#, "0", "1.5", "true", r#""s""#,
        ] {
            let err = interval(bad).unwrap_err();
            let msg = err.message();
            assert!(msg.starts_with("parameters.syncInterval"), "{bad}: {msg}");
        }
    }

    #[test]
    fn wrong_model_is_refused() {
        assert_eq!(
            Kind::from_model("devices.edge.cattle.io/v1alpha1", "DummyProtocolDevice"),
            Ok(Kind::Protocol)
        );
        assert!(Kind::from_model("devices.edge.cattle.io/v1alpha1", "ModbusDevice").is_err());
        assert!(Kind::from_model("devices.edge.cattle.io/v1", "DummySpecialDevice").is_err());
    }
}
