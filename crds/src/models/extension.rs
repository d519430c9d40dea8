//! The MQTT options shared by `spec.extension.mqtt` of every model and by the
//! `MQTTDevice` protocol (Octopus `pkg/mqtt/api`).
//!
//! Optional fields stay `None` when the YAML leaves them out, so a spec round-trips
//! unchanged; the CRD carries Octopus's defaults and the getters here apply them.
//!
//! Without the `kube` feature (the adaptors' build) the client options that no
//! adaptor uses (`store`, `resumeSubs`, `order`, `writeTimeout`, `waitTimeout`,
//! `disconnectQuiesce`, `autoReconnect`, `messageChannelDepth`, `httpHeaders`) are
//! skipped, not decoded: they stay `None` or empty, any value is accepted as the MQTT
//! adaptor always did, and their decoders (some 15 KB of the MQTT component) are left
//! out. The CRD still holds them to its schema.

use std::collections::BTreeMap;

#[cfg(feature = "kube")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec.extension` of a device model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceExtension {
    /// Publishes the device status to an MQTT broker on every sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttOptions>,
}

/// Points at one item of one of the DeviceLink's `references`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReferenceRelationship {
    /// The name of the reference.
    pub name: String,
    /// The item (key) of the reference.
    pub item: String,
}

/// Username and password, each given inline or through a reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_ref: Option<ReferenceRelationship>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_ref: Option<ReferenceRelationship>,
}

/// The MQTT client and the message it publishes or subscribes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttOptions {
    pub client: MqttClientOptions,
    pub message: MqttMessageOptions,
}

/// Connection settings of the MQTT client.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttClientOptions {
    /// Broker URI, `scheme://host:port` with scheme ws, wss, tcp, unix, ssl, tls or tcps.
    #[cfg_attr(
        feature = "kube",
        schemars(regex(pattern = r"^(ws|wss|tcp|unix|ssl|tls|tcps)://[^\s]*$"))
    )]
    pub server: String,
    /// 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 0 (3.1.1, falling back to 3.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("enum" = [0, 3, 4], "default" = 0)))]
    pub protocol_version: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<MqttClientTls>,
    /// Asks the broker not to keep the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = true)))]
    pub clean_session: Option<bool>,
    /// Persistence of QoS 1 and 2 messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub store: Option<MqttClientStore>,
    /// Resumes stored (un)subscriptions on connect; needs `cleanSession: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = false)))]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub resume_subs: Option<bool>,
    /// How long to try to connect; 0 never times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "30s")))]
    pub connect_timeout: Option<String>,
    /// Interval between PINGs; 0 disables keep-alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "30s")))]
    pub keep_alive: Option<String>,
    /// How long to wait for a PING response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "10s")))]
    pub ping_timeout: Option<String>,
    /// Delivers messages in order within each QoS level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = true)))]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub order: Option<bool>,
    /// How long a publish may take; 0 never times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "30s")))]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub write_timeout: Option<String>,
    /// How long to wait after subscribing or publishing; 0 never times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub wait_timeout: Option<String>,
    /// Quiesce on disconnect (5s when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub disconnect_quiesce: Option<String>,
    /// Reconnects automatically after a lost connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = true)))]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub auto_reconnect: Option<bool>,
    /// Upper bound of the doubling reconnect interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "10m")))]
    pub max_reconnect_interval: Option<String>,
    /// Messages queued while offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = 100)))]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub message_channel_depth: Option<u32>,
    /// Extra HTTP headers of the WebSocket handshake.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub http_headers: BTreeMap<String, Vec<String>>,
}

impl MqttClientOptions {
    pub fn protocol_version(&self) -> u8 {
        self.protocol_version.unwrap_or(0)
    }
    pub fn clean_session(&self) -> bool {
        self.clean_session.unwrap_or(true)
    }
    pub fn resume_subs(&self) -> bool {
        self.resume_subs.unwrap_or(false)
    }
    pub fn connect_timeout(&self) -> &str {
        self.connect_timeout.as_deref().unwrap_or("30s")
    }
    pub fn keep_alive(&self) -> &str {
        self.keep_alive.as_deref().unwrap_or("30s")
    }
    pub fn ping_timeout(&self) -> &str {
        self.ping_timeout.as_deref().unwrap_or("10s")
    }
    pub fn order(&self) -> bool {
        self.order.unwrap_or(true)
    }
    pub fn write_timeout(&self) -> &str {
        self.write_timeout.as_deref().unwrap_or("30s")
    }
    pub fn disconnect_quiesce(&self) -> &str {
        self.disconnect_quiesce.as_deref().unwrap_or("5s")
    }
    pub fn auto_reconnect(&self) -> bool {
        self.auto_reconnect.unwrap_or(true)
    }
    pub fn max_reconnect_interval(&self) -> &str {
        self.max_reconnect_interval.as_deref().unwrap_or("10m")
    }
    pub fn message_channel_depth(&self) -> u32 {
        self.message_channel_depth.unwrap_or(100)
    }
}

/// TLS settings of the MQTT client; each PEM is given inline or through a reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[cfg_attr(not(feature = "kube"), serde(from = "MqttClientTlsFields"))]
#[serde(rename_all = "camelCase")]
pub struct MqttClientTls {
    /// CA certificate (PEM) to verify the broker with.
    #[serde(default, rename = "caFilePEM", skip_serializing_if = "Option::is_none")]
    pub ca_file_pem: Option<String>,
    #[serde(
        default,
        rename = "caFilePEMRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_file_pem_ref: Option<ReferenceRelationship>,
    #[serde(flatten)]
    pub client: ClientCertificate,
    /// Server name to verify (SNI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Skips verifying the broker certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// [`MqttClientTls`] as its document has it, every field at one level: what it is
/// decoded through without the `kube` feature (the adaptors' build). `#[serde(flatten)]`
/// buffers the object into serde's private `Content` first, which costs the MQTT
/// component some 13 KB and makes an error inside the buffered fields name `tlsConfig`
/// instead of the field. Both accept the same documents.
#[cfg(not(feature = "kube"))]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MqttClientTlsFields {
    #[serde(default, rename = "caFilePEM")]
    ca_file_pem: Option<String>,
    #[serde(default, rename = "caFilePEMRef")]
    ca_file_pem_ref: Option<ReferenceRelationship>,
    #[serde(default, rename = "certFilePEM")]
    cert_file_pem: Option<String>,
    #[serde(default, rename = "certFilePEMRef")]
    cert_file_pem_ref: Option<ReferenceRelationship>,
    #[serde(default, rename = "keyFilePEM")]
    key_file_pem: Option<String>,
    #[serde(default, rename = "keyFilePEMRef")]
    key_file_pem_ref: Option<ReferenceRelationship>,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: Option<bool>,
}

#[cfg(not(feature = "kube"))]
impl From<MqttClientTlsFields> for MqttClientTls {
    fn from(fields: MqttClientTlsFields) -> Self {
        MqttClientTls {
            ca_file_pem: fields.ca_file_pem,
            ca_file_pem_ref: fields.ca_file_pem_ref,
            client: ClientCertificate {
                cert_file_pem: fields.cert_file_pem,
                cert_file_pem_ref: fields.cert_file_pem_ref,
                key_file_pem: fields.key_file_pem,
                key_file_pem_ref: fields.key_file_pem_ref,
            },
            server_name: fields.server_name,
            insecure_skip_verify: fields.insecure_skip_verify,
        }
    }
}

/// Where the client persists in-flight messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub enum MqttStoreType {
    #[default]
    Memory,
    File,
}

/// A client certificate and key, each given inline (PEM) or through a reference; shared
/// by MQTT and OPC UA.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub struct ClientCertificate {
    /// Client certificate (PEM).
    #[serde(
        default,
        rename = "certFilePEM",
        skip_serializing_if = "Option::is_none"
    )]
    pub cert_file_pem: Option<String>,
    #[serde(
        default,
        rename = "certFilePEMRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub cert_file_pem_ref: Option<ReferenceRelationship>,
    /// Client private key (PEM).
    #[serde(
        default,
        rename = "keyFilePEM",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_file_pem: Option<String>,
    #[serde(
        default,
        rename = "keyFilePEMRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_file_pem_ref: Option<ReferenceRelationship>,
}

/// Message persistence of the MQTT client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttClientStore {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "Memory")))]
    pub r#type: Option<MqttStoreType>,
    /// Directory of the file store (/var/run/octopus/mqtt when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(regex(pattern = r"^/.*[^/]$")))]
    pub directory_prefix: Option<String>,
}

impl MqttClientStore {
    pub fn store_type(&self) -> MqttStoreType {
        self.r#type.unwrap_or_default()
    }
    pub fn directory_prefix(&self) -> &str {
        self.directory_prefix
            .as_deref()
            .unwrap_or("/var/run/octopus/mqtt")
    }
}

/// Values of the `:operator` topic keyword.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttTopicOperator {
    /// Rendered when subscribing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    /// Rendered when publishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
}

/// The message the client publishes (and, for MQTTDevice, subscribes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttMessageOptions {
    /// Topic, may hold `:namespace`, `:name`, `:uid`, `:path` and `:operator`.
    #[cfg_attr(feature = "kube", schemars(regex(pattern = r".*[^/]$")))]
    pub topic: String,
    /// QoS 0, 1 or 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(max = 2), extend("default" = 1)))]
    pub qos: Option<u8>,
    /// Retains the last published message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = true)))]
    pub retained: Option<bool>,
    /// Value of the `:path` topic keyword.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<MqttTopicOperator>,
    /// Last will, sent with QoS 1 and retained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will: Option<MqttWillMessage>,
}

impl MqttMessageOptions {
    pub fn qos(&self) -> u8 {
        self.qos.unwrap_or(1)
    }
    pub fn retained(&self) -> bool {
        self.retained.unwrap_or(true)
    }
}

/// The will message of the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttWillMessage {
    /// Topic of the will (`<topic>/$will` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(regex(pattern = r".*[^/]$")))]
    pub topic: Option<String>,
    /// Content, base64 encoded.
    pub content: String,
}

impl MqttWillMessage {
    /// The will topic, derived from the message topic when unset.
    pub fn topic(&self, message_topic: &str) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("{message_topic}/$will"))
    }
}

#[cfg(all(test, feature = "kube"))]
mod tests {
    use super::*;

    #[test]
    fn mqtt_options_parse_with_defaults_and_references() {
        let yaml = r#"
client:
  server: tcp://test.mosquitto.org:1883
  basicAuth:
    username: admin
    passwordRef:
      name: credentials
      item: password
  tlsConfig:
    caFilePEMRef: {name: certs, item: ca.pem}
    insecureSkipVerify: true
message:
  topic: "cattle.io/octopus/:namespace/:name"
  will:
    content: b2ZmbGluZQ==
"#;
        let options: MqttOptions = serde_yaml::from_str(yaml).unwrap();
        let client = &options.client;
        assert_eq!(client.server, "tcp://test.mosquitto.org:1883");
        assert!(client.clean_session());
        assert!(client.auto_reconnect());
        assert_eq!(client.keep_alive(), "30s");
        assert_eq!(client.max_reconnect_interval(), "10m");
        assert_eq!(client.message_channel_depth(), 100);
        let auth = client.basic_auth.as_ref().unwrap();
        assert_eq!(auth.username.as_deref(), Some("admin"));
        assert_eq!(
            auth.password_ref,
            Some(ReferenceRelationship {
                name: "credentials".into(),
                item: "password".into()
            })
        );
        let tls = client.tls_config.as_ref().unwrap();
        assert_eq!(tls.ca_file_pem_ref.as_ref().unwrap().item, "ca.pem");
        assert_eq!(options.message.qos(), 1);
        assert!(options.message.retained());
        let will = options.message.will.as_ref().unwrap();
        assert_eq!(
            will.topic(&options.message.topic),
            "cattle.io/octopus/:namespace/:name/$will"
        );

        // Round trip: nothing is added or lost.
        let original: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(serde_json::to_value(&options).unwrap(), original);
    }
}
