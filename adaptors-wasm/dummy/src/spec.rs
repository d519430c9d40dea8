//! Parsing of the two dummy models' specs (`template.spec` of a DeviceLink).
//!
//! Parsing works on a `serde_json::Value` by hand so that every error names the exact
//! field path (`protocol.location`, `properties.temp.type`, ...).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// Poll interval when the spec has no `parameters.syncInterval`.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 2_000;

/// A spec that cannot be used; the message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, SpecError>;

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

    /// Finds the kind for a model, or explains why the model is not ours.
    pub fn from_model(api_version: &str, kind: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| api_version == Kind::API_VERSION && kind == k.name())
            .ok_or_else(|| {
                SpecError(format!(
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

/// How fast a `DummySpecialDevice` turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gear {
    #[default]
    Slow,
    Middle,
    Fast,
}

impl Gear {
    pub fn as_str(self) -> &'static str {
        match self {
            Gear::Slow => "slow",
            Gear::Middle => "middle",
            Gear::Fast => "fast",
        }
    }
}

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

/// The type of a `DummyProtocolDevice` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    String,
    Int,
    Float,
    Boolean,
    Array,
    Object,
}

impl PropertyType {
    const ALL: [PropertyType; 6] = [
        PropertyType::String,
        PropertyType::Int,
        PropertyType::Float,
        PropertyType::Boolean,
        PropertyType::Array,
        PropertyType::Object,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Int => "int",
            PropertyType::Float => "float",
            PropertyType::Boolean => "boolean",
            PropertyType::Array => "array",
            PropertyType::Object => "object",
        }
    }

    pub fn parse(name: &str) -> Option<PropertyType> {
        PropertyType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// One declared property; `item` and `fields` describe array items and object fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub kind: PropertyType,
    pub description: Option<String>,
    pub read_only: bool,
    pub item: Option<Box<Property>>,
    pub fields: BTreeMap<String, Property>,
}

/// Parses `spec` (the DeviceLink's `template.spec` JSON) for the given model kind.
pub fn parse(kind: Kind, spec: &str) -> Result<Spec> {
    let value: Value = serde_json::from_str(spec)
        .map_err(|e| SpecError(format!("spec is not valid JSON: {e}")))?;
    let root = as_object(&value, "spec")?;
    let poll_interval_ms = parse_poll_interval(root)?;
    let device = match kind {
        Kind::Special => DeviceSpec::Special(parse_special(root)?),
        Kind::Protocol => DeviceSpec::Protocol(parse_protocol(root)?),
    };
    Ok(Spec {
        poll_interval_ms,
        device,
    })
}

fn parse_special(root: &Map<String, Value>) -> Result<SpecialSpec> {
    let protocol = required_object(root, "", "protocol")?;
    let location = required_string(protocol, "protocol", "location")?;
    let on = match root.get("on") {
        None => return Err(missing("on")),
        Some(Value::Bool(on)) => *on,
        Some(other) => return Err(wrong_type("on", "a boolean", other)),
    };
    let gear = match root.get("gear") {
        None | Some(Value::Null) => Gear::default(),
        Some(Value::String(s)) => match s.as_str() {
            "" | "slow" => Gear::Slow,
            "middle" => Gear::Middle,
            "fast" => Gear::Fast,
            other => {
                return Err(SpecError(format!(
                    "gear: unknown gear {other:?} (expected slow, middle or fast)"
                )));
            }
        },
        Some(other) => return Err(wrong_type("gear", "a string", other)),
    };
    Ok(SpecialSpec { location, on, gear })
}

fn parse_protocol(root: &Map<String, Value>) -> Result<ProtocolSpec> {
    let protocol = required_object(root, "", "protocol")?;
    let ip = required_string(protocol, "protocol", "ip")?;
    let properties = match root.get("properties") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(value) => parse_property_map(as_object(value, "properties")?, "properties")?,
    };
    Ok(ProtocolSpec { ip, properties })
}

fn parse_property_map(map: &Map<String, Value>, path: &str) -> Result<BTreeMap<String, Property>> {
    map.iter()
        .map(|(name, value)| {
            let property = parse_property(value, &join(path, name))?;
            Ok((name.clone(), property))
        })
        .collect()
}

fn parse_property(value: &Value, path: &str) -> Result<Property> {
    let object = as_object(value, path)?;
    let type_name = required_string(object, path, "type")?;
    let kind = PropertyType::parse(&type_name).ok_or_else(|| {
        SpecError(format!(
            "{path}: property has unknown type {type_name:?} (expected string, int, float, boolean, array or object)"
        ))
    })?;
    let description = optional_string(object, path, "description")?;
    let read_only = match object.get("readOnly") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(wrong_type(&join(path, "readOnly"), "a boolean", other)),
    };
    let item = match object.get("arrayProperties") {
        None | Some(Value::Null) => None,
        Some(value) => Some(Box::new(parse_property(
            value,
            &join(path, "arrayProperties"),
        )?)),
    };
    let fields = match object.get("objectProperties") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(value) => {
            let fields_path = join(path, "objectProperties");
            parse_property_map(as_object(value, &fields_path)?, &fields_path)?
        }
    };
    Ok(Property {
        kind,
        description,
        read_only,
        item,
        fields,
    })
}

/// `parameters.syncInterval`: a Go duration (`"2s"`, `"500ms"`, `"1m30s"`) or a plain
/// integer number of seconds (`5` or `"5"`).
fn parse_poll_interval(root: &Map<String, Value>) -> Result<u64> {
    const PATH: &str = "parameters.syncInterval";
    let parameters = match root.get("parameters") {
        None | Some(Value::Null) => return Ok(DEFAULT_POLL_INTERVAL_MS),
        Some(value) => as_object(value, "parameters")?,
    };
    let ms = match parameters.get("syncInterval") {
        None | Some(Value::Null) => return Ok(DEFAULT_POLL_INTERVAL_MS),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|secs| secs.checked_mul(1_000))
            .ok_or_else(|| {
                SpecError(format!(
                    "{PATH}: {n} is not a whole number of seconds in range"
                ))
            })?,
        Some(Value::String(s)) => parse_interval_string(s)
            .map_err(|reason| SpecError(format!("{PATH}: invalid duration {s:?}: {reason}")))?,
        Some(other) => return Err(wrong_type(PATH, "a duration string or an integer", other)),
    };
    if ms == 0 {
        return Err(SpecError(format!("{PATH}: the interval must be positive")));
    }
    Ok(ms)
}

/// Parses a Go duration string, or a string of digits meaning seconds, into whole
/// milliseconds (rounded up, so `"1us"` is 1 ms rather than 0).
fn parse_interval_string(input: &str) -> std::result::Result<u64, &'static str> {
    let s = input.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s.parse().map_err(|_| "number out of range")?;
        return secs.checked_mul(1_000).ok_or("number out of range");
    }
    parse_go_duration_ns(s).map(|ns| ns.div_ceil(1_000_000))
}

/// Parses a Go `time.Duration` string (`[0-9.]+unit` repeated) into nanoseconds.
/// Negative durations are refused.
fn parse_go_duration_ns(s: &str) -> std::result::Result<u64, &'static str> {
    const UNITS: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("μs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err("negative durations are not allowed");
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("empty duration");
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(len)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("expected a number");
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or(if unit.is_empty() {
                "missing unit (use ns, us, ms, s, m or h)"
            } else {
                "unknown unit (use ns, us, ms, s, m or h)"
            })?;
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| "number out of range")?
        };
        let mut value = int.checked_mul(scale).ok_or("duration out of range")?;
        // Only the first 18 fraction digits can matter at nanosecond precision.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| "number out of range")?;
            let denom = 10u128.pow(u32::try_from(frac_digits.len()).map_err(|_| "bad fraction")?);
            value = value
                .checked_add(frac * scale / denom)
                .ok_or("duration out of range")?;
        }
        total = total.checked_add(value).ok_or("duration out of range")?;
        rest = after;
    }
    u64::try_from(total).map_err(|_| "duration out of range")
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn missing(path: &str) -> SpecError {
    SpecError(format!("{path} is required"))
}

fn wrong_type(path: &str, expected: &str, found: &Value) -> SpecError {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    SpecError(format!("{path} must be {expected}, found {found}"))
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(path, "an object", value))
}

fn required_object<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a Map<String, Value>> {
    let path = join(parent, key);
    match object.get(key) {
        None | Some(Value::Null) => Err(missing(&path)),
        Some(value) => as_object(value, &path),
    }
}

fn required_string(object: &Map<String, Value>, parent: &str, key: &str) -> Result<String> {
    let path = join(parent, key);
    match object.get(key) {
        None | Some(Value::Null) => Err(missing(&path)),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(SpecError(format!("{path} must not be empty")))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(wrong_type(&path, "a string", other)),
    }
}

fn optional_string(object: &Map<String, Value>, parent: &str, key: &str) -> Result<Option<String>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(&join(parent, key), "a string", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: Kind, spec: &str) -> String {
        parse(kind, spec).unwrap_err().0
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
            let msg = interval(bad).unwrap_err().0;
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
