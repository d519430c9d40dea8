//! `MQTTDevice`: a device that talks MQTT itself (Octopus `adaptors/mqtt`).
//!
//! The MQTT adaptor decodes its spec with these types. Without the `kube` feature (its
//! build) the fields whose decoded value it has no use for are skipped, which keeps its
//! component small (by some 8 KB): `protocol.schema`, which it ignores, and a
//! property's `value` (any JSON), `description`, `contentType` and `annotations`, which
//! it takes from the document as written (the status echoes them unchanged). The CRD
//! still holds them to its schema.

use std::collections::BTreeMap;

#[cfg(feature = "kube")]
use kube::CustomResource;
#[cfg(feature = "kube")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extension::{MqttClientOptions, MqttMessageOptions, MqttOptions, MqttTopicOperator};

/// A device reached through an MQTT broker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(CustomResource, JsonSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "devices.edge.cattle.io",
        version = "v1alpha1",
        kind = "MQTTDevice",
        namespaced,
        status = "MQTTDeviceStatus",
        derive = "PartialEq",
        shortname = "mqtt",
        doc = "MQTTDevice is a device reached through an MQTT broker.",
        annotation("devices.edge.cattle.io/enable", "true"),
        printcolumn = r#"{"name":"PATTERN","type":"string","jsonPath":".spec.protocol.pattern"}"#,
        printcolumn = r#"{"name":"SERVER","type":"string","jsonPath":".spec.protocol.client.server"}"#,
        printcolumn = r#"{"name":"TOPIC","type":"string","jsonPath":".spec.protocol.message.topic"}"#,
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct MQTTDeviceSpec {
    pub protocol: MqttDeviceProtocol,
    /// The properties carried by the messages.
    // `null` is none, as a hand-written spec means it.
    #[serde(
        default,
        deserialize_with = "super::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[cfg_attr(feature = "kube", schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])))]
    pub properties: Vec<MqttDeviceProperty>,
}

/// The MQTT options (`client`, `message`) plus how properties map to messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttDeviceProtocol {
    pub client: MqttClientOptions,
    pub message: MqttMessageOptions,
    pub pattern: MqttDevicePattern,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub schema: Option<MqttDeviceSchema>,
}

impl MqttDeviceProtocol {
    /// The client and message options, as the MQTT extension takes them.
    pub fn options(&self) -> MqttOptions {
        MqttOptions {
            client: self.client.clone(),
            message: self.message.clone(),
        }
    }
}

/// AttributedMessage: one JSON message holds every property (found by `path`).
/// AttributedTopic: one topic per property (rendered with `:path` and `:operator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub enum MqttDevicePattern {
    AttributedMessage,
    AttributedTopic,
}

/// A schema the messages follow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttDeviceSchema {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The type of an MQTT property value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum MqttPropertyType {
    Int,
    String,
    Float,
    Boolean,
    Object,
    Array,
}

/// One property of the device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttDeviceProperty {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub r#type: MqttPropertyType,
    /// The value to publish (writable properties), any JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(schema_with = "super::any_value"))]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub value: Option<Value>,
    /// Read-only properties are only subscribed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = true)))]
    pub read_only: Option<bool>,
    /// MIME type of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub annotations: BTreeMap<String, String>,
    /// JSON path of the value (AttributedMessage) or the `:path` keyword (AttributedTopic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<MqttTopicOperator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(max = 2), extend("default" = 1)))]
    pub qos: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = true)))]
    pub retained: Option<bool>,
}

impl MqttDeviceProperty {
    pub fn read_only(&self) -> bool {
        self.read_only.unwrap_or(true)
    }
    pub fn qos(&self) -> u8 {
        self.qos.unwrap_or(1)
    }
    pub fn retained(&self) -> bool {
        self.retained.unwrap_or(true)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct MQTTDeviceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<MqttDeviceStatusProperty>,
}

/// A property as observed: the spec's fields echoed, with the value received.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttDeviceStatusProperty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<MqttPropertyType>,
    /// The value received, any JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(schema_with = "super::any_value"))]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<MqttTopicOperator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained: Option<bool>,
    /// When the value was received. `updateAt` (sic) is Octopus's JSON name, which its
    /// readers use; `updatedAt`, which earlier versions wrote, is still read.
    #[serde(
        default,
        rename = "updateAt",
        alias = "updatedAt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "kube", schemars(extend("format" = "date-time")))]
    pub updated_at: Option<String>,
    /// Why the last message for this property could not be used, or its subscription
    /// or write failed (not in Octopus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MqttDeviceStatusProperty {
    /// The observed state of `property`: its fields after the CRD's defaults (as
    /// Octopus's status embedded them), with `value` received at `updated_at`.
    pub fn observed(
        property: &MqttDeviceProperty,
        value: Option<Value>,
        updated_at: Option<String>,
    ) -> Self {
        MqttDeviceStatusProperty {
            name: Some(property.name.clone()),
            description: property.description.clone(),
            r#type: Some(property.r#type),
            value,
            read_only: Some(property.read_only()),
            content_type: property.content_type.clone(),
            annotations: property.annotations.clone(),
            path: property.path.clone(),
            operator: property.operator.clone(),
            qos: Some(property.qos()),
            retained: Some(property.retained()),
            updated_at,
            error: None,
        }
    }
}

#[cfg(all(test, feature = "kube"))]
mod tests {
    use super::*;

    /// Octopus's `dl_attributed_topic_kitchen_light.yaml`, trimmed.
    const KITCHEN_LIGHT: &str = r#"
protocol:
  pattern: "AttributedTopic"
  client:
    server: "tcp://test.mosquitto.org:1883"
  message:
    topic: "cattle.io/octopus/home/:operator/kitchen/light/:path"
    operator:
      read: "status"
      write: "set"
properties:
  - name: "switch"
    path: "switch"
    description: "The switch of light"
    type: "boolean"
    readOnly: false
    value: true
    qos: 2
  - name: "gear"
    path: "gear"
    description: "The gear of light"
    type: "string"
    readOnly: false
    value: "low"
    annotations:
      type: "enum"
      format: "low,mid,high"
  - name: "power"
    path: "parameter_power"
    description: "The power of light"
    type: "float"
    annotations:
      group: "parameter"
      unit: "watt"
  - name: "config"
    path: "config"
    type: "object"
    readOnly: false
    value: {"brightness": 80, "scenes": ["dinner", "cooking"]}
"#;

    #[test]
    fn an_attributed_topic_device_parses_with_raw_json_values_and_round_trips() {
        let spec: MQTTDeviceSpec = serde_yaml::from_str(KITCHEN_LIGHT).unwrap();
        assert_eq!(spec.protocol.pattern, MqttDevicePattern::AttributedTopic);
        assert_eq!(spec.protocol.client.server, "tcp://test.mosquitto.org:1883");
        assert!(spec.protocol.client.clean_session());
        let operator = spec.protocol.message.operator.as_ref().unwrap();
        assert_eq!(
            (operator.read.as_deref(), operator.write.as_deref()),
            (Some("status"), Some("set"))
        );
        assert_eq!(spec.protocol.options().message.qos(), 1);

        let by_name: BTreeMap<_, _> = spec
            .properties
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();
        assert_eq!(by_name["switch"].value, Some(Value::Bool(true)));
        assert_eq!(by_name["switch"].qos(), 2);
        assert!(!by_name["switch"].read_only());
        assert_eq!(by_name["gear"].annotations["format"], "low,mid,high");
        assert!(
            by_name["power"].read_only(),
            "read-only unless told otherwise"
        );
        assert!(by_name["power"].retained());
        assert_eq!(
            by_name["config"].value.as_ref().unwrap()["scenes"][1],
            "cooking"
        );

        let original: Value = serde_yaml::from_str(KITCHEN_LIGHT).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), original);
    }

    #[test]
    fn the_pattern_is_required_and_closed() {
        let without = "protocol: {client: {server: 'tcp://b:1883'}, message: {topic: t}}";
        assert!(serde_yaml::from_str::<MQTTDeviceSpec>(without).is_err());
        let unknown = "protocol: {client: {server: 'tcp://b:1883'}, message: {topic: t}, pattern: Attributed}";
        assert!(serde_yaml::from_str::<MQTTDeviceSpec>(unknown).is_err());
    }

    #[test]
    fn status_echoes_the_property_and_reads_octopus_update_at() {
        let spec: MQTTDeviceSpec = serde_yaml::from_str(KITCHEN_LIGHT).unwrap();
        let observed = MqttDeviceStatusProperty::observed(
            &spec.properties[2],
            Some(serde_json::json!(3.5)),
            Some("2024-05-01T10:00:00Z".into()),
        );
        let json = serde_json::to_value(&observed).unwrap();
        assert_eq!(json["name"], "power");
        assert_eq!(json["path"], "parameter_power");
        assert_eq!(json["value"], 3.5);
        assert_eq!(json["updateAt"], "2024-05-01T10:00:00Z");
        assert!(json.get("updatedAt").is_none(), "{json}");
        assert_eq!(
            (&json["readOnly"], &json["qos"], &json["retained"]),
            (
                &serde_json::json!(true),
                &serde_json::json!(1),
                &serde_json::json!(true)
            ),
            "the CRD's defaults"
        );

        let octopus: MqttDeviceStatusProperty = serde_json::from_value(
            serde_json::json!({"name": "x", "value": "1", "updateAt": "2020-07-08T13:24:00Z"}),
        )
        .unwrap();
        assert_eq!(octopus.updated_at.as_deref(), Some("2020-07-08T13:24:00Z"));
        let earlier: MqttDeviceStatusProperty =
            serde_json::from_value(serde_json::json!({"updatedAt": "2024-05-01T10:00:00Z"}))
                .unwrap();
        assert!(earlier.updated_at.is_some(), "what earlier versions wrote");
    }
}
