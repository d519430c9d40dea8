//! Parsing of the `ProbeDevice` spec (`template.spec` of a DeviceLink).
//!
//! Every section is optional. The resource fields themselves (`tcp.endpoint`,
//! `serial.port`, ...) are resolved into grants by the host; the probe only checks that
//! they are strings and opens them by their grant names. Errors name the field path.

use serde_json::{Map, Value};

/// Poll interval when the spec has no `parameters.syncIntervalMs`.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 200;
/// What the probe sends when a section has no `message`.
pub const DEFAULT_MESSAGE: &str = "ping";
/// Serial baud rate when `serial.baudRate` is absent.
pub const DEFAULT_BAUD_RATE: u32 = 9600;
/// Largest `openMany` accepted; far above any sane per-device handle cap.
pub const MAX_OPEN_MANY: u32 = 4096;

/// A spec that cannot be used; the message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

type Result<T> = std::result::Result<T, SpecError>;

/// A parsed `ProbeDevice` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub poll_interval_ms: u64,
    pub tcp: Option<Exchange>,
    pub udp: Option<Exchange>,
    pub serial: Option<SerialSpec>,
    /// Whether the `gpio` section is present.
    pub gpio: bool,
    /// Whether `gpioEdges` is present: watch `gpio.input` for edges (contract 0.1.1).
    pub gpio_edges: bool,
    /// An explicit grant name to try `connect-tcp` with.
    pub grant: Option<String>,
    /// How many TCP streams to open on `tcp.endpoint` and hold.
    pub open_many: Option<u32>,
}

/// A `tcp` or `udp` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub message: String,
}

/// The `serial` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSpec {
    pub baud_rate: u32,
    pub message: String,
}

fn invalid(msg: String) -> SpecError {
    SpecError(msg)
}

/// The object at `path`, or `None` when the field is absent or null.
fn section<'a>(spec: &'a Map<String, Value>, path: &str) -> Result<Option<&'a Map<String, Value>>> {
    match spec.get(path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(fields)) => Ok(Some(fields)),
        Some(_) => Err(invalid(format!("{path} must be an object"))),
    }
}

/// The string at `section.field`, or `None` when absent or null.
fn string<'a>(
    fields: &'a Map<String, Value>,
    section: &str,
    field: &str,
) -> Result<Option<&'a str>> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{section}.{field} must be a string"))),
    }
}

fn message(fields: &Map<String, Value>, section: &str) -> Result<String> {
    Ok(string(fields, section, "message")?
        .unwrap_or(DEFAULT_MESSAGE)
        .to_owned())
}

fn exchange(spec: &Map<String, Value>, name: &str, resource: &str) -> Result<Option<Exchange>> {
    let Some(fields) = section(spec, name)? else {
        return Ok(None);
    };
    string(fields, name, resource)?;
    Ok(Some(Exchange {
        message: message(fields, name)?,
    }))
}

fn serial(spec: &Map<String, Value>) -> Result<Option<SerialSpec>> {
    let Some(fields) = section(spec, "serial")? else {
        return Ok(None);
    };
    string(fields, "serial", "port")?;
    let baud_rate = match fields.get("baudRate") {
        None | Some(Value::Null) => DEFAULT_BAUD_RATE,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid("serial.baudRate must be a positive integer".to_owned()))?,
    };
    Ok(Some(SerialSpec {
        baud_rate,
        message: message(fields, "serial")?,
    }))
}

fn gpio(spec: &Map<String, Value>) -> Result<bool> {
    let Some(fields) = section(spec, "gpio")? else {
        return Ok(false);
    };
    string(fields, "gpio", "output")?;
    string(fields, "gpio", "input")?;
    Ok(true)
}

/// Parses a `ProbeDevice` spec.
pub fn parse(spec: &str) -> Result<Spec> {
    let value: Value =
        serde_json::from_str(spec).map_err(|e| invalid(format!("spec is not valid JSON: {e}")))?;
    let empty = Map::new();
    let spec = match &value {
        Value::Object(fields) => fields,
        Value::Null => &empty,
        _ => return Err(invalid("spec must be a JSON object".to_owned())),
    };
    let grant = match spec.get("grant") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => return Err(invalid("grant must be a string".to_owned())),
    };
    let open_many = match spec.get("openMany") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= MAX_OPEN_MANY)
                .ok_or_else(|| {
                    invalid(format!(
                        "openMany must be an integer from 0 to {MAX_OPEN_MANY}"
                    ))
                })?,
        ),
    };
    let poll_interval_ms = match section(spec, "parameters")? {
        None => DEFAULT_POLL_INTERVAL_MS,
        Some(parameters) => match parameters.get("syncIntervalMs") {
            None | Some(Value::Null) => DEFAULT_POLL_INTERVAL_MS,
            Some(v) => v.as_u64().filter(|ms| *ms > 0).ok_or_else(|| {
                invalid("parameters.syncIntervalMs must be a positive integer".to_owned())
            })?,
        },
    };
    Ok(Spec {
        poll_interval_ms,
        tcp: exchange(spec, "tcp", "endpoint")?,
        udp: exchange(spec, "udp", "endpoint")?,
        serial: serial(spec)?,
        gpio: gpio(spec)?,
        gpio_edges: section(spec, "gpioEdges")?.is_some(),
        grant,
        open_many,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_spec_has_defaults() {
        for text in ["{}", "null"] {
            let spec = parse(text).unwrap();
            assert_eq!(spec.poll_interval_ms, DEFAULT_POLL_INTERVAL_MS);
            assert_eq!(spec.tcp, None);
            assert_eq!(spec.udp, None);
            assert_eq!(spec.serial, None);
            assert!(!spec.gpio);
            assert_eq!(spec.grant, None);
            assert_eq!(spec.open_many, None);
        }
    }

    #[test]
    fn full_spec() {
        let spec = parse(
            r#"{"tcp": {"endpoint": "127.0.0.1:5020", "message": "hello"},
                "udp": {"endpoint": "127.0.0.1:5021"},
                "serial": {"port": "/tmp/ttyV0", "baudRate": 115200, "message": "hi"},
                "gpio": {"output": "gpiochip0:17", "input": "gpiochip0:17"},
                "grant": "extra", "openMany": 20,
                "parameters": {"syncIntervalMs": 50}}"#,
        )
        .unwrap();
        assert_eq!(spec.poll_interval_ms, 50);
        assert_eq!(spec.tcp.unwrap().message, "hello");
        assert_eq!(spec.udp.unwrap().message, "ping");
        assert_eq!(
            spec.serial,
            Some(SerialSpec {
                baud_rate: 115_200,
                message: "hi".into()
            })
        );
        assert!(spec.gpio);
        assert_eq!(spec.grant.as_deref(), Some("extra"));
        assert_eq!(spec.open_many, Some(20));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            ("[]", "spec must be"),
            ("{", "spec is not valid JSON"),
            (r#"{"tcp": "x"}"#, "tcp must be an object"),
            (r#"{"tcp": {"endpoint": 5}}"#, "tcp.endpoint"),
            (r#"{"udp": {"message": 1}}"#, "udp.message"),
            (r#"{"serial": {"port": true}}"#, "serial.port"),
            (r#"{"serial": {"baudRate": "fast"}}"#, "serial.baudRate"),
            (r#"{"serial": {"baudRate": 0}}"#, "serial.baudRate"),
            (r#"{"gpio": {"output": 17}}"#, "gpio.output"),
            (r#"{"gpio": {"input": []}}"#, "gpio.input"),
            (r#"{"grant": 1}"#, "grant"),
            (r#"{"openMany": -1}"#, "openMany"),
            (r#"{"openMany": 1.5}"#, "openMany"),
            (r#"{"openMany": 100000}"#, "openMany"),
            (r#"{"parameters": 1}"#, "parameters must be"),
            (
                r#"{"parameters": {"syncIntervalMs": 0}}"#,
                "parameters.syncIntervalMs",
            ),
        ];
        for (text, field) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.0.starts_with(field), "{text}: {}", err.0);
        }
    }
}
