//! Parsing and validation of an `MQTTDevice` spec (`template.spec` of a DeviceLink),
//! with its `*Ref` fields resolved against the DeviceLink's references.
//!
//! Every error starts with the JSON path of the problem
//! (`protocol.client.basicAuth.passwordRef: ...`). Fields of Octopus's client options
//! that make no sense here (`store`, `order`, `messageChannelDepth`, `httpHeaders`,
//! `resumeSubs`, `writeTimeout`, `waitTimeout`, `disconnectQuiesce`) are accepted and
//! ignored.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::duration;
use crate::jsonpath::Path;
use crate::value::{self, Kind};

/// The longest wait for a connection or its CONNACK within one call; the limb caps it
/// further at what is left of the call.
pub const MAX_CONNECT_MS: u64 = 3_000;
/// The longest pause between reconnection attempts.
pub const MAX_BACKOFF_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, SpecError>;

fn error(path: &str, message: impl fmt::Display) -> SpecError {
    SpecError(format!("{path}: {message}"))
}

/// One resolved item of the DeviceLink's references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub item: String,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    AttributedMessage,
    AttributedTopic,
}

/// `protocolVersion`: 0 tries 3.1.1 and falls back to 3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionChoice {
    Auto,
    V31,
    V311,
}

/// What `connect-tls` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub server_name: Option<String>,
    pub ca: Option<Vec<u8>>,
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillSpec {
    /// A topic template.
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Everything the broker session depends on: two equal values mean a reconfigure keeps
/// the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub server: String,
    /// Present for `ssl`, `tls`, `tcps` and `mqtts` servers.
    pub tls: Option<Tls>,
    pub version: VersionChoice,
    pub clean_session: bool,
    pub keep_alive_s: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub will: Option<WillSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub connect_ms: u32,
    pub ping_timeout_ms: u64,
    pub max_backoff_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operator {
    pub read: Option<String>,
    pub write: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub qos: u8,
    pub retained: bool,
    pub path: Option<String>,
    pub operator: Operator,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub kind: Kind,
    pub read_only: bool,
    /// The value to publish (writable properties only), already checked against `kind`.
    pub value: Option<Value>,
    /// `path`, or the name when unset: the JSON path (AttributedMessage) or the
    /// `:path` keyword (AttributedTopic).
    pub path: String,
    /// `path` parsed (AttributedMessage only).
    pub json_path: Option<Path>,
    pub operator: Option<Operator>,
    pub qos: Option<u8>,
    pub retained: Option<bool>,
    /// The spec's fields echoed in the status (all but `value`).
    pub echo: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub connection: Connection,
    pub timing: Timing,
    pub pattern: Pattern,
    pub message: Message,
    pub properties: Vec<Property>,
}

/// Parses and validates a spec.
pub fn parse(spec: &str, references: &[Reference]) -> Result<Spec> {
    let value: Value = serde_json::from_str(spec)
        .map_err(|e| SpecError(format!("spec is not valid JSON: {e}")))?;
    let root = as_object(&value, "spec")?;
    let protocol = required_object(root, "", "protocol")?;
    let pattern = match required_string(protocol, "protocol", "pattern")?.as_str() {
        "AttributedMessage" => Pattern::AttributedMessage,
        "AttributedTopic" => Pattern::AttributedTopic,
        other => {
            return Err(error(
                "protocol.pattern",
                format!(
                    "unknown pattern {other:?} (expected AttributedMessage or AttributedTopic)"
                ),
            ));
        }
    };
    let refs = Refs(references);
    let client = required_object(protocol, "protocol", "client")?;
    let (connection, timing) = parse_client(client, &refs)?;
    let message_object = required_object(protocol, "protocol", "message")?;
    let (message, will) = parse_message(message_object)?;
    let connection = Connection { will, ..connection };
    let properties = match root.get("properties") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_property(item, &format!("properties[{i}]"), pattern))
            .collect::<Result<Vec<_>>>()?,
        Some(other) => return Err(wrong_type("properties", "an array", other)),
    };
    let mut names = BTreeSet::new();
    for (i, property) in properties.iter().enumerate() {
        if !names.insert(property.name.as_str()) {
            return Err(error(
                &format!("properties[{i}].name"),
                format!("duplicate property name {:?}", property.name),
            ));
        }
    }
    Ok(Spec {
        connection,
        timing,
        pattern,
        message,
        properties,
    })
}

struct Refs<'a>(&'a [Reference]);

impl Refs<'_> {
    /// The value of a `*Ref` field (`{name, item}`), if the field is set.
    fn resolve(
        &self,
        object: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        let field = join(path, key);
        let Some(r) = optional_object(object, path, key)? else {
            return Ok(None);
        };
        let name = required_string(r, &field, "name")?;
        let item = required_string(r, &field, "item")?;
        self.0
            .iter()
            .find(|x| x.name == name && x.item == item)
            .map(|x| Some(x.value.clone()))
            .ok_or_else(|| {
                error(
                    &field,
                    format!(
                        "reference {name:?} item {item:?} is not among the DeviceLink's resolved references"
                    ),
                )
            })
    }

    /// A literal field or its `*Ref` twin; the reference wins when both are set.
    fn literal_or_ref(
        &self,
        object: &Map<String, Value>,
        path: &str,
        key: &str,
        ref_key: &str,
    ) -> Result<Option<Vec<u8>>> {
        if let Some(bytes) = self.resolve(object, path, ref_key)? {
            return Ok(Some(bytes));
        }
        Ok(optional_string(object, path, key)?.map(String::into_bytes))
    }
}

fn parse_client(client: &Map<String, Value>, refs: &Refs<'_>) -> Result<(Connection, Timing)> {
    let path = "protocol.client";
    let server = required_string(client, path, "server")?;
    let server_path = join(path, "server");
    let (scheme, rest) = server.split_once("://").ok_or_else(|| {
        error(
            &server_path,
            format!("{server:?} is not a URL such as tcp://broker:1883"),
        )
    })?;
    let secure = match scheme.to_ascii_lowercase().as_str() {
        "tcp" | "mqtt" => false,
        "ssl" | "tls" | "tcps" | "mqtts" => true,
        "ws" | "wss" | "unix" => {
            return Err(error(
                &server_path,
                format!("{scheme}:// is not supported; use tcp:// or ssl:// (tls://, tcps://)"),
            ));
        }
        other => {
            return Err(error(
                &server_path,
                format!("unknown scheme {other}:// (expected tcp, ssl, tls or tcps)"),
            ));
        }
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(error(
            &server_path,
            format!("{server:?} needs a host (and no user info), e.g. {scheme}://broker:1883"),
        ));
    }
    let version = match optional_u64(client, path, "protocolVersion")? {
        None | Some(0) => VersionChoice::Auto,
        Some(3) => VersionChoice::V31,
        Some(4) => VersionChoice::V311,
        Some(other) => {
            return Err(error(
                &join(path, "protocolVersion"),
                format!("must be 0, 3 or 4, got {other}"),
            ));
        }
    };
    let clean_session = optional_bool(client, path, "cleanSession")?.unwrap_or(true);
    let keep_alive_ms = duration_ms(client, path, "keepAlive", "30s")?;
    let keep_alive_s = u16::try_from(keep_alive_ms.div_ceil(1000)).map_err(|_| {
        error(
            &join(path, "keepAlive"),
            "must be at most 65535 seconds (18h12m15s)",
        )
    })?;
    let ping_timeout_ms = duration_ms(client, path, "pingTimeout", "10s")?.max(1);
    let connect_ms = match duration_ms(client, path, "connectTimeout", "30s")? {
        0 => MAX_CONNECT_MS,
        ms => ms.min(MAX_CONNECT_MS),
    };
    let max_backoff_ms =
        duration_ms(client, path, "maxReconnectInterval", "10m")?.clamp(1_000, MAX_BACKOFF_MS);

    let (username, password) = match optional_object(client, path, "basicAuth")? {
        None => (None, None),
        Some(auth) => {
            let auth_path = join(path, "basicAuth");
            let username = refs
                .literal_or_ref(auth, &auth_path, "username", "usernameRef")?
                .map(|bytes| {
                    String::from_utf8(bytes).map_err(|_| {
                        error(
                            &join(&auth_path, "usernameRef"),
                            "the username is not UTF-8",
                        )
                    })
                })
                .transpose()?;
            let password = refs.literal_or_ref(auth, &auth_path, "password", "passwordRef")?;
            if password.is_some() && username.is_none() {
                return Err(error(&auth_path, "a password needs a username in MQTT"));
            }
            (username, password)
        }
    };
    let tls = match optional_object(client, path, "tlsConfig")? {
        _ if !secure => None,
        None => Some(Tls {
            server_name: None,
            ca: None,
            cert: None,
            key: None,
            insecure: false,
        }),
        Some(tls) => {
            let tls_path = join(path, "tlsConfig");
            let cert = refs.literal_or_ref(tls, &tls_path, "certFilePEM", "certFilePEMRef")?;
            let key = refs.literal_or_ref(tls, &tls_path, "keyFilePEM", "keyFilePEMRef")?;
            if cert.is_some() != key.is_some() {
                return Err(error(
                    &tls_path,
                    "a client certificate needs its key and a key its certificate",
                ));
            }
            Some(Tls {
                server_name: optional_string(tls, &tls_path, "serverName")?
                    .filter(|s| !s.is_empty()),
                ca: refs.literal_or_ref(tls, &tls_path, "caFilePEM", "caFilePEMRef")?,
                cert,
                key,
                insecure: optional_bool(tls, &tls_path, "insecureSkipVerify")?.unwrap_or(false),
            })
        }
    };
    Ok((
        Connection {
            server,
            tls,
            version,
            clean_session,
            keep_alive_s,
            username,
            password,
            will: None,
        },
        Timing {
            connect_ms: u32::try_from(connect_ms).unwrap_or(u32::MAX),
            ping_timeout_ms,
            max_backoff_ms,
        },
    ))
}

fn parse_qos(object: &Map<String, Value>, path: &str) -> Result<Option<u8>> {
    match optional_u64(object, path, "qos")? {
        None => Ok(None),
        Some(q @ 0..=2) => Ok(Some(q as u8)),
        Some(other) => Err(error(
            &join(path, "qos"),
            format!("must be 0, 1 or 2, got {other}"),
        )),
    }
}

fn parse_operator(object: &Map<String, Value>, path: &str) -> Result<Option<Operator>> {
    let Some(op) = optional_object(object, path, "operator")? else {
        return Ok(None);
    };
    let op_path = join(path, "operator");
    Ok(Some(Operator {
        read: optional_string(op, &op_path, "read")?,
        write: optional_string(op, &op_path, "write")?,
    }))
}

fn parse_message(message: &Map<String, Value>) -> Result<(Message, Option<WillSpec>)> {
    let path = "protocol.message";
    let topic = required_string(message, path, "topic")?;
    if topic.trim_matches('/').is_empty() {
        return Err(error(&join(path, "topic"), "must not be empty"));
    }
    let will = match optional_object(message, path, "will")? {
        None => None,
        Some(will) => {
            let will_path = join(path, "will");
            let content = required_string(will, &will_path, "content")?;
            let payload = value::base64(&content)
                .map_err(|e| error(&join(&will_path, "content"), format!("not base64: {e}")))?;
            let topic = optional_string(will, &will_path, "topic")?
                .unwrap_or_else(|| format!("{topic}/$will"));
            Some(WillSpec { topic, payload })
        }
    };
    Ok((
        Message {
            topic,
            qos: parse_qos(message, path)?.unwrap_or(1),
            retained: optional_bool(message, path, "retained")?.unwrap_or(true),
            path: optional_string(message, path, "path")?,
            operator: parse_operator(message, path)?.unwrap_or_default(),
        },
        will,
    ))
}

/// Spec fields of a property that the status echoes.
const ECHOED: &[&str] = &[
    "description",
    "readOnly",
    "contentType",
    "annotations",
    "path",
    "operator",
    "qos",
    "retained",
];

fn parse_property(item: &Value, path: &str, pattern: Pattern) -> Result<Property> {
    let object = as_object(item, path)?;
    let name = required_string(object, path, "name")?;
    if name.is_empty() {
        return Err(error(&join(path, "name"), "must not be empty"));
    }
    let type_name = required_string(object, path, "type")?;
    let kind = Kind::parse(&type_name).ok_or_else(|| {
        error(
            &join(path, "type"),
            format!(
                "unknown type {type_name:?} (expected int, string, float, boolean, object or array)"
            ),
        )
    })?;
    let read_only = optional_bool(object, path, "readOnly")?.unwrap_or(true);
    let value = match object.get("value") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let value_path = join(path, "value");
            if read_only {
                return Err(error(
                    &value_path,
                    "a readOnly property takes no value to publish (set readOnly: false)",
                ));
            }
            Some(value::coerce(kind, v).map_err(|e| error(&value_path, e))?)
        }
    };
    let property_path = optional_string(object, path, "path")?
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| name.clone());
    let json_path = match pattern {
        Pattern::AttributedMessage => {
            Some(Path::parse(&property_path).map_err(|e| error(&join(path, "path"), e))?)
        }
        Pattern::AttributedTopic => None,
    };
    let echo = ECHOED
        .iter()
        .filter_map(|key| {
            object
                .get(*key)
                .filter(|v| !v.is_null())
                .map(|v| ((*key).to_owned(), v.clone()))
        })
        .collect();
    Ok(Property {
        name,
        kind,
        read_only,
        value,
        path: property_path,
        json_path,
        operator: parse_operator(object, path)?,
        qos: parse_qos(object, path)?,
        retained: optional_bool(object, path, "retained")?,
        echo,
    })
}

fn duration_ms(object: &Map<String, Value>, path: &str, key: &str, default: &str) -> Result<u64> {
    let field = join(path, key);
    let text = match object.get(key) {
        None | Some(Value::Null) => default.to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => format!("{n}s"),
        Some(other) => return Err(wrong_type(&field, "a duration such as \"30s\"", other)),
    };
    duration::parse_ms(&text)
        .map_err(|why| error(&field, format!("invalid duration {text:?}: {why}")))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(path: &str, expected: &str, got: &Value) -> SpecError {
    error(path, format!("must be {expected}, got {}", kind_of(got)))
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(path, "an object", value))
}

fn optional_object<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_object(v, &join(path, key)).map(Some),
    }
}

fn required_object<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<&'a Map<String, Value>> {
    optional_object(object, path, key)?.ok_or_else(|| error(&join(path, key), "is required"))
}

fn optional_string(object: &Map<String, Value>, path: &str, key: &str) -> Result<Option<String>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(&join(path, key), "a string", other)),
    }
}

fn required_string(object: &Map<String, Value>, path: &str, key: &str) -> Result<String> {
    optional_string(object, path, key)?.ok_or_else(|| error(&join(path, key), "is required"))
}

fn optional_bool(object: &Map<String, Value>, path: &str, key: &str) -> Result<Option<bool>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(&join(path, key), "a boolean", other)),
    }
}

fn optional_u64(object: &Map<String, Value>, path: &str, key: &str) -> Result<Option<u64>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            error(
                &join(path, key),
                format!("must be a non-negative integer, got {n}"),
            )
        }),
        Some(other) => Err(wrong_type(&join(path, key), "an integer", other)),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;

    pub const KITCHEN: &str = r#"{
      "protocol": {
        "pattern": "AttributedTopic",
        "client": {"server": "tcp://127.0.0.1:1883"},
        "message": {"topic": "cattle.io/octopus/home/:operator/kitchen/light/:path",
                    "operator": {"read": "status", "write": "set"}}
      },
      "properties": [
        {"name": "switch", "path": "switch", "type": "boolean", "readOnly": false, "value": true, "qos": 2},
        {"name": "gear", "type": "string", "readOnly": false, "value": "low",
         "annotations": {"type": "enum"}},
        {"name": "power", "path": "parameter_power", "type": "float", "description": "The power"}
      ]
    }"#;

    fn err(spec: &str, refs: &[Reference]) -> String {
        parse(spec, refs).unwrap_err().0
    }

    fn with_client(client: &str) -> String {
        format!(
            r#"{{"protocol": {{"pattern": "AttributedMessage", "client": {client},
                 "message": {{"topic": "t"}}}}}}"#
        )
    }

    #[test]
    fn parses_the_kitchen_light_with_defaults() {
        let spec = parse(KITCHEN, &[]).unwrap();
        assert_eq!(spec.pattern, Pattern::AttributedTopic);
        let c = &spec.connection;
        assert_eq!(c.server, "tcp://127.0.0.1:1883");
        assert_eq!(c.tls, None);
        assert_eq!(c.version, VersionChoice::Auto);
        assert!(c.clean_session);
        assert_eq!(c.keep_alive_s, 30);
        assert_eq!(spec.timing.connect_ms, 3_000);
        assert_eq!(spec.timing.ping_timeout_ms, 10_000);
        assert_eq!(spec.timing.max_backoff_ms, 30_000);
        assert_eq!(spec.message.qos, 1);
        assert!(spec.message.retained);
        let [switch, gear, power] = spec.properties.as_slice() else {
            panic!("three properties")
        };
        assert_eq!(switch.value, Some(json!(true)));
        assert_eq!(switch.qos, Some(2));
        assert_eq!(gear.path, "gear", "the path defaults to the name");
        assert!(power.read_only);
        assert_eq!(power.path, "parameter_power");
        assert_eq!(power.echo["description"], "The power");
        assert_eq!(gear.echo["annotations"]["type"], "enum");
        assert!(!gear.echo.contains_key("value"));
    }

    #[test]
    fn resolves_references_and_tls() {
        let refs = [
            Reference {
                name: "creds".into(),
                item: "password".into(),
                value: b"s3cret".to_vec(),
            },
            Reference {
                name: "certs".into(),
                item: "ca.pem".into(),
                value: b"-----BEGIN CERTIFICATE-----".to_vec(),
            },
        ];
        let spec = parse(
            &with_client(
                r#"{"server": "ssl://broker:8883", "protocolVersion": 3, "keepAlive": "1m",
                    "basicAuth": {"username": "admin", "passwordRef": {"name": "creds", "item": "password"}},
                    "tlsConfig": {"caFilePEMRef": {"name": "certs", "item": "ca.pem"},
                                  "serverName": "broker.local", "insecureSkipVerify": true}}"#,
            ),
            &refs,
        )
        .unwrap();
        let c = &spec.connection;
        assert_eq!(c.username.as_deref(), Some("admin"));
        assert_eq!(c.password.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(c.version, VersionChoice::V31);
        assert_eq!(c.keep_alive_s, 60);
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.ca.as_deref(), Some(&b"-----BEGIN CERTIFICATE-----"[..]));
        assert_eq!(tls.server_name.as_deref(), Some("broker.local"));
        assert!(tls.insecure);

        let default_tls = parse(&with_client(r#"{"server": "tls://b"}"#), &[]).unwrap();
        assert_eq!(default_tls.connection.tls.unwrap().ca, None);
    }

    #[test]
    fn a_missing_reference_names_the_field_and_the_reference() {
        let e = err(
            &with_client(
                r#"{"server": "tcp://b:1", "basicAuth": {"username": "u",
                    "passwordRef": {"name": "creds", "item": "password"}}}"#,
            ),
            &[],
        );
        assert!(
            e.starts_with(
                "protocol.client.basicAuth.passwordRef: reference \"creds\" item \"password\""
            ),
            "{e}"
        );
        let e = err(
            &with_client(
                r#"{"server": "ssl://b:1", "tlsConfig": {"caFilePEMRef": {"name": "c", "item": "ca"}}}"#,
            ),
            &[],
        );
        assert!(
            e.starts_with("protocol.client.tlsConfig.caFilePEMRef:"),
            "{e}"
        );
    }

    #[test]
    fn refuses_unsupported_servers() {
        for (server, want) in [
            (
                "ws://b:80",
                "protocol.client.server: ws:// is not supported",
            ),
            (
                "wss://b:443",
                "protocol.client.server: wss:// is not supported",
            ),
            (
                "unix:///run/m.sock",
                "protocol.client.server: unix:// is not supported",
            ),
            ("http://b", "protocol.client.server: unknown scheme http://"),
            ("b:1883", "protocol.client.server: \"b:1883\" is not a URL"),
            ("tcp://", "protocol.client.server: \"tcp://\" needs a host"),
        ] {
            let e = err(&with_client(&format!(r#"{{"server": "{server}"}}"#)), &[]);
            assert!(e.starts_with(want), "{server}: {e}");
        }
    }

    #[test]
    fn errors_name_the_path() {
        for (spec, want) in [
            ("{}".to_owned(), "protocol: is required"),
            (
                r#"{"protocol": {"pattern": "X", "client": {}, "message": {}}}"#.to_owned(),
                "protocol.pattern: unknown pattern",
            ),
            (
                with_client(r#"{"server": "tcp://b", "protocolVersion": 5}"#),
                "protocol.client.protocolVersion: must be 0, 3 or 4",
            ),
            (
                with_client(r#"{"server": "tcp://b", "keepAlive": "soon"}"#),
                "protocol.client.keepAlive: invalid duration",
            ),
            (
                with_client(r#"{"server": "tcp://b", "basicAuth": {"password": "p"}}"#),
                "protocol.client.basicAuth: a password needs a username",
            ),
            (
                with_client(r#"{"server": "ssl://b", "tlsConfig": {"certFilePEM": "x"}}"#),
                "protocol.client.tlsConfig: a client certificate needs its key",
            ),
            (
                KITCHEN.replace(r#""value": true, "qos": 2"#, r#""value": true, "qos": 3"#),
                "properties[0].qos: must be 0, 1 or 2",
            ),
            (
                KITCHEN.replace(r#""value": true"#, r#""value": "maybe""#),
                "properties[0].value: \"maybe\" is not a boolean",
            ),
            (
                KITCHEN.replace(r#""type": "float""#, r#""type": "float", "value": 1"#),
                "properties[2].value: a readOnly property takes no value",
            ),
            (
                KITCHEN.replace(r#""name": "gear""#, r#""name": "switch""#),
                "properties[1].name: duplicate property name",
            ),
            (
                KITCHEN.replace(r#""type": "float""#, r#""type": "double""#),
                "properties[2].type: unknown type",
            ),
            (
                r#"{"protocol": {"pattern": "AttributedMessage", "client": {"server": "tcp://b"},
                    "message": {"topic": "t", "will": {"content": "!!"}}}}"#
                    .to_owned(),
                "protocol.message.will.content: not base64",
            ),
            (
                r#"{"protocol": {"pattern": "AttributedMessage", "client": {"server": "tcp://b"},
                    "message": {"topic": "t"}}, "properties": [{"name": "a", "type": "int", "path": "x..y"}]}"#
                    .to_owned(),
                "properties[0].path:",
            ),
        ] {
            let e = err(&spec, &[]);
            assert!(e.starts_with(want), "want {want:?}, got {e:?}");
        }
    }

    #[test]
    fn will_defaults_to_the_message_topic() {
        let spec = parse(
            r#"{"protocol": {"pattern": "AttributedMessage", "client": {"server": "tcp://b"},
                "message": {"topic": "a/:name", "will": {"content": "b2ZmbGluZQ=="}}}}"#,
            &[],
        )
        .unwrap();
        let will = spec.connection.will.unwrap();
        assert_eq!(will.topic, "a/:name/$will");
        assert_eq!(will.payload, b"offline");
    }
}
