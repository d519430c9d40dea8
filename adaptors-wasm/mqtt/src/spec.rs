//! The `MQTTDevice` spec (`template.spec` of a DeviceLink) as the engine uses it: decoded
//! with the types that generate the CRD (`crds::models::mqtt`), checked, with defaults
//! applied and the `*Ref` fields resolved against the DeviceLink's references.
//!
//! A value of the wrong type or shape fails in the decoding, worded by the SDK
//! (`protocol.client.server is required`). What the types cannot say fails here, as
//! `path: sentence` (`protocol.client.basicAuth.passwordRef: reference ...`).
//!
//! Fields of Octopus's client options that make no sense here (`store`, `order`,
//! `messageChannelDepth`, `httpHeaders`, `resumeSubs`, `writeTimeout`, `waitTimeout`,
//! `disconnectQuiesce`, `autoReconnect`) and `protocol.schema` are accepted with any
//! value and ignored. A property's `value` and the fields its status echoes are read
//! from the document as written. The crds types skip all of these in this build (see
//! `crds::models::mqtt`), which keeps the component small.

use std::fmt;

use crds::models::extension::{
    MqttClientOptions, MqttClientTls, MqttMessageOptions, ReferenceRelationship,
};
use crds::models::mqtt::{MQTTDeviceSpec, MqttDeviceProperty, MqttPropertyType};
use serde_json::{Map, Value, json};

use crate::duration;
use crate::jsonpath::Path;
use crate::value::{self, Kind};

pub use crds::models::extension::MqttTopicOperator as Operator;
pub use crds::models::mqtt::MqttDevicePattern as Pattern;

/// The longest wait for a connection or its CONNACK within one call; the limb caps it
/// further at what is left of the call.
pub const MAX_CONNECT_MS: u64 = 3_000;
/// The longest pause between reconnection attempts.
pub const MAX_BACKOFF_MS: u64 = 30_000;

pub use octopus_adaptor_sdk::spec::SpecError;

type Result<T> = std::result::Result<T, SpecError>;

fn error(path: &str, message: impl fmt::Display) -> SpecError {
    SpecError::at(path, message)
}

/// One resolved item of the DeviceLink's references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub item: String,
    pub value: Vec<u8>,
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
    // The document is kept: each property's `value` and the fields its status echoes
    // are read from it as written.
    let document: Value = octopus_adaptor_sdk::spec::parse(spec)?;
    let decoded: MQTTDeviceSpec = octopus_adaptor_sdk::spec::from_value(&document)?;
    let protocol = decoded.protocol;
    let pattern = protocol.pattern;
    let refs = Refs(references);
    let (connection, timing) = parse_client(&protocol.client, &refs)?;
    let (message, will) = parse_message(protocol.message)?;
    let connection = Connection { will, ..connection };
    let written = document.get("properties").and_then(Value::as_array);
    let properties = decoded
        .properties
        .into_iter()
        .enumerate()
        .map(|(i, property)| {
            let written = written
                .and_then(|items| items.get(i))
                .and_then(Value::as_object);
            parse_property(property, written, &format!("properties[{i}]"), pattern)
        })
        .collect::<Result<Vec<_>>>()?;
    octopus_adaptor_sdk::spec::unique_names(
        "properties",
        properties.iter().map(|p| p.name.as_str()),
    )?;
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
    /// The value of a `*Ref` field (`field` names it), if the field is set.
    fn resolve(
        &self,
        reference: Option<&ReferenceRelationship>,
        field: &str,
    ) -> Result<Option<Vec<u8>>> {
        let Some(ReferenceRelationship { name, item }) = reference else {
            return Ok(None);
        };
        self.0
            .iter()
            .find(|x| &x.name == name && &x.item == item)
            .map(|x| Some(x.value.clone()))
            .ok_or_else(|| {
                error(
                    field,
                    format!(
                        "reference {name:?} item {item:?} is not among the DeviceLink's resolved references"
                    ),
                )
            })
    }

    /// A literal field or its `*Ref` twin (`field` names the twin); the reference wins
    /// when both are set.
    fn literal_or_ref(
        &self,
        literal: Option<&String>,
        reference: Option<&ReferenceRelationship>,
        field: &str,
    ) -> Result<Option<Vec<u8>>> {
        if let Some(bytes) = self.resolve(reference, field)? {
            return Ok(Some(bytes));
        }
        Ok(literal.map(|s| s.clone().into_bytes()))
    }
}

fn parse_client(client: &MqttClientOptions, refs: &Refs<'_>) -> Result<(Connection, Timing)> {
    let path = "protocol.client";
    let server = &client.server;
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
    let version = match client.protocol_version {
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
    let keep_alive_ms = duration_ms(client.keep_alive(), path, "keepAlive")?;
    let keep_alive_s = u16::try_from(keep_alive_ms.div_ceil(1000)).map_err(|_| {
        error(
            &join(path, "keepAlive"),
            "must be at most 65535 seconds (18h12m15s)",
        )
    })?;
    let ping_timeout_ms = duration_ms(client.ping_timeout(), path, "pingTimeout")?.max(1);
    let connect_ms = match duration_ms(client.connect_timeout(), path, "connectTimeout")? {
        0 => MAX_CONNECT_MS,
        ms => ms.min(MAX_CONNECT_MS),
    };
    let max_backoff_ms = duration_ms(
        client.max_reconnect_interval(),
        path,
        "maxReconnectInterval",
    )?
    .clamp(1_000, MAX_BACKOFF_MS);

    let (username, password) = match &client.basic_auth {
        None => (None, None),
        Some(auth) => {
            let auth_path = join(path, "basicAuth");
            let username_ref = join(&auth_path, "usernameRef");
            let username = refs
                .literal_or_ref(
                    auth.username.as_ref(),
                    auth.username_ref.as_ref(),
                    &username_ref,
                )?
                .map(|bytes| {
                    String::from_utf8(bytes)
                        .map_err(|_| error(&username_ref, "the username is not UTF-8"))
                })
                .transpose()?;
            let password = refs.literal_or_ref(
                auth.password.as_ref(),
                auth.password_ref.as_ref(),
                &join(&auth_path, "passwordRef"),
            )?;
            if password.is_some() && username.is_none() {
                return Err(error(&auth_path, "a password needs a username in MQTT"));
            }
            (username, password)
        }
    };
    let tls = match &client.tls_config {
        // Not looked into (its references are not resolved) for a plain server.
        _ if !secure => None,
        None => Some(Tls {
            server_name: None,
            ca: None,
            cert: None,
            key: None,
            insecure: false,
        }),
        Some(tls) => Some(parse_tls(tls, &join(path, "tlsConfig"), refs)?),
    };
    Ok((
        Connection {
            server: server.clone(),
            tls,
            version,
            clean_session: client.clean_session(),
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

fn parse_tls(tls: &MqttClientTls, path: &str, refs: &Refs<'_>) -> Result<Tls> {
    let certificate = &tls.client;
    let cert = refs.literal_or_ref(
        certificate.cert_file_pem.as_ref(),
        certificate.cert_file_pem_ref.as_ref(),
        &join(path, "certFilePEMRef"),
    )?;
    let key = refs.literal_or_ref(
        certificate.key_file_pem.as_ref(),
        certificate.key_file_pem_ref.as_ref(),
        &join(path, "keyFilePEMRef"),
    )?;
    if cert.is_some() != key.is_some() {
        return Err(error(
            path,
            "a client certificate needs its key and a key its certificate",
        ));
    }
    Ok(Tls {
        server_name: tls.server_name.clone().filter(|s| !s.is_empty()),
        ca: refs.literal_or_ref(
            tls.ca_file_pem.as_ref(),
            tls.ca_file_pem_ref.as_ref(),
            &join(path, "caFilePEMRef"),
        )?,
        cert,
        key,
        insecure: tls.insecure_skip_verify.unwrap_or(false),
    })
}

/// `qos` if it is 0, 1 or 2; `path` names its object.
fn check_qos(qos: Option<u8>, path: &str) -> Result<Option<u8>> {
    match qos {
        None | Some(0..=2) => Ok(qos),
        Some(other) => Err(error(
            &join(path, "qos"),
            format!("must be 0, 1 or 2, got {other}"),
        )),
    }
}

fn parse_message(message: MqttMessageOptions) -> Result<(Message, Option<WillSpec>)> {
    let path = "protocol.message";
    if message.topic.trim_matches('/').is_empty() {
        return Err(error(&join(path, "topic"), "must not be empty"));
    }
    let will = match &message.will {
        None => None,
        Some(will) => {
            let payload = value::base64(&will.content).map_err(|e| {
                error(
                    &join(&join(path, "will"), "content"),
                    format!("not base64: {e}"),
                )
            })?;
            Some(WillSpec {
                topic: will.topic(&message.topic),
                payload,
            })
        }
    };
    let qos = check_qos(message.qos, path)?.unwrap_or(1);
    Ok((
        Message {
            retained: message.retained(),
            topic: message.topic,
            qos,
            path: message.path,
            operator: message.operator.unwrap_or_default(),
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

fn kind(property_type: MqttPropertyType) -> Kind {
    match property_type {
        MqttPropertyType::Int => Kind::Int,
        MqttPropertyType::String => Kind::String,
        MqttPropertyType::Float => Kind::Float,
        MqttPropertyType::Boolean => Kind::Boolean,
        MqttPropertyType::Object => Kind::Object,
        MqttPropertyType::Array => Kind::Array,
    }
}

/// `property` checked. `written` is the same property as the document wrote it: its
/// `value` (any JSON, not decoded, see `crds::models::mqtt`) is taken from there, and
/// the fields the status echoes, unchanged (nulls left out, nothing defaulted).
fn parse_property(
    property: MqttDeviceProperty,
    written: Option<&Map<String, Value>>,
    path: &str,
    pattern: Pattern,
) -> Result<Property> {
    if property.name.is_empty() {
        return Err(error(&join(path, "name"), "must not be empty"));
    }
    let kind = kind(property.r#type);
    let read_only = property.read_only();
    let value = match written
        .and_then(|w| w.get("value"))
        .filter(|v| !v.is_null())
    {
        None => None,
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
    let property_path = property
        .path
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| property.name.clone());
    let json_path = match pattern {
        Pattern::AttributedMessage => {
            Some(Path::parse(&property_path).map_err(|e| error(&join(path, "path"), e))?)
        }
        Pattern::AttributedTopic => None,
    };
    let mut echo: Map<String, Value> = ECHOED
        .iter()
        .filter_map(|key| {
            written?
                .get(*key)
                .filter(|v| !v.is_null())
                .map(|v| ((*key).to_owned(), v.clone()))
        })
        .collect();
    // Octopus's status embeds the property as stored, after the CRD's defaults: a
    // reader of `.status.properties[].qos` finds it whether or not the YAML wrote it.
    for (key, default) in [
        ("readOnly", json!(read_only)),
        ("qos", json!(property.qos.unwrap_or(1))),
        ("retained", json!(property.retained.unwrap_or(true))),
    ] {
        echo.entry(key).or_insert(default);
    }
    Ok(Property {
        name: property.name,
        kind,
        read_only,
        value,
        path: property_path,
        json_path,
        operator: property.operator,
        qos: check_qos(property.qos, path)?,
        retained: property.retained,
        echo,
    })
}

/// `text` (a field's value or its default) in milliseconds; `key` names the field.
fn duration_ms(text: &str, path: &str, key: &str) -> Result<u64> {
    duration::parse_ms(text).map_err(|why| {
        error(
            &join(path, key),
            format!("invalid duration {text:?}: {why}"),
        )
    })
}

fn join(path: &str, key: &str) -> String {
    format!("{path}.{key}")
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
        assert_eq!(
            (
                &power.echo["readOnly"],
                &power.echo["qos"],
                &power.echo["retained"]
            ),
            (&json!(true), &json!(1), &json!(true)),
            "the CRD's defaults, as Octopus's status showed them"
        );
        assert_eq!(switch.echo["qos"], 2, "what the spec wrote wins");
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
            ("{}".to_owned(), "protocol is required"),
            (
                r#"{"protocol": {"pattern": "X", "client": {"server": "tcp://b"},
                    "message": {"topic": "t"}}}"#
                    .to_owned(),
                r#"protocol.pattern must be one of AttributedMessage or AttributedTopic, got "X""#,
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
                r#"properties[2].type must be one of int, string, float, boolean, object or array, got "double""#,
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

    /// What the CRD's types refuse is worded by the SDK and names the field.
    #[test]
    fn type_errors_name_the_field() {
        for (spec, want) in [
            (
                r#"{"protocol": {"pattern": "AttributedTopic", "client": {},
                    "message": {"topic": "t"}}}"#
                    .to_owned(),
                "protocol.client.server is required",
            ),
            (
                KITCHEN.replace(r#""qos": 2"#, r#""qos": "x""#),
                r#"properties[0].qos must be an integer 0..=255, got "x""#,
            ),
            (
                with_client(r#"{"server": "tcp://b", "cleanSession": "no"}"#),
                r#"protocol.client.cleanSession must be a boolean, got "no""#,
            ),
            (
                with_client(r#"{"server": "ssl://b", "tlsConfig": {"certFilePEM": 5}}"#),
                "protocol.client.tlsConfig.certFilePEM must be a string, got 5",
            ),
            (
                with_client(r#"{"server": "tcp://b", "keepAlive": 60}"#),
                "protocol.client.keepAlive must be a string, got 60",
            ),
            ("[]".to_owned(), "spec must be an object, got an array"),
        ] {
            assert_eq!(err(&spec, &[]), want);
        }
    }

    #[test]
    fn the_status_echoes_property_fields_as_written() {
        let spec = parse(
            &KITCHEN.replace(
                r#""annotations": {"type": "enum"}"#,
                r#""annotations": {}, "operator": {"read": null, "write": "w"},
                   "description": 5, "contentType": {"any": ["thing"]}, "path": null"#,
            ),
            &[],
        )
        .unwrap();
        let gear = &spec.properties[1];
        assert_eq!(
            Value::Object(gear.echo.clone()),
            json!({
                "readOnly": false,
                "annotations": {},
                "operator": {"read": null, "write": "w"},
                "description": 5,
                "contentType": {"any": ["thing"]},
                "qos": 1,
                "retained": true,
            }),
            "nulls left out, the CRD's defaults filled in, nothing retyped"
        );
        assert_eq!(gear.operator.as_ref().unwrap().write.as_deref(), Some("w"));
    }

    /// Octopus's client options that make no sense here, and `protocol.schema`, are
    /// not even decoded; `null` is an unset field, as Kubernetes drops it.
    #[test]
    fn ignored_fields_take_any_value_and_null_is_unset() {
        let spec = parse(
            r#"{"protocol": {"pattern": "AttributedMessage", "schema": 5,
                 "client": {"server": "tcp://b", "store": "x", "httpHeaders": null, "order": 1,
                            "messageChannelDepth": -1, "writeTimeout": {}, "protocolVersion": null,
                            "tlsConfig": {"caFilePEMRef": {"name": "missing", "item": "ca"}}},
                 "message": {"topic": "t", "qos": null, "will": null}},
               "properties": null}"#,
            &[],
        )
        .unwrap();
        assert!(spec.properties.is_empty());
        assert_eq!(spec.message.qos, 1);
        assert_eq!(spec.connection.version, VersionChoice::Auto);
        assert_eq!(
            spec.connection.tls, None,
            "a plain server's tlsConfig is not resolved"
        );
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
