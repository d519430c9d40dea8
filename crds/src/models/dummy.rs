//! The dummy adaptor's simulated models: `DummySpecialDevice` and `DummyProtocolDevice`
//! (Octopus `adaptors/dummy/api/v1alpha1`).

use std::collections::BTreeMap;

#[cfg(feature = "kube")]
use kube::CustomResource;
#[cfg(feature = "kube")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extension::DeviceExtension;

/// Poll settings of the dummy models.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DummyParameters {
    /// How often the simulated device changes (a duration, 2s when unset).
    // A bare whole number (`5`) is read as its digits, which the adaptor takes as
    // seconds. (A `//` comment: doc comments become the CRD's descriptions.)
    #[serde(
        default,
        deserialize_with = "super::string_or_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub sync_interval: Option<String>,
}

impl DummyParameters {
    pub fn sync_interval(&self) -> &str {
        self.sync_interval.as_deref().unwrap_or("2s")
    }
}

/// A simulated fan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(CustomResource, JsonSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "devices.edge.cattle.io",
        version = "v1alpha1",
        kind = "DummySpecialDevice",
        namespaced,
        status = "DummySpecialDeviceStatus",
        derive = "PartialEq",
        shortname = "dummyspecial",
        doc = "DummySpecialDevice is a simulated fan of the dummy adaptor.",
        annotation("devices.edge.cattle.io/enable", "true"),
        printcolumn = r#"{"name":"LOCATION","type":"string","jsonPath":".spec.protocol.location"}"#,
        printcolumn = r#"{"name":"GEAR","type":"string","jsonPath":".status.gear"}"#,
        printcolumn = r#"{"name":"SPEED","type":"integer","format":"int32","jsonPath":".status.rotatingSpeed"}"#,
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct DummySpecialDeviceSpec {
    // Read by the limb, never by the adaptor: not decoded without `kube`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub extension: Option<DeviceExtension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<DummyParameters>,
    pub protocol: DummySpecialDeviceProtocol,
    /// Turns the device on.
    pub on: bool,
    /// How fast the device turns (slow when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gear: Option<DummySpecialDeviceGear>,
}

impl DummySpecialDeviceSpec {
    pub fn gear(&self) -> DummySpecialDeviceGear {
        self.gear.unwrap_or_default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DummySpecialDeviceProtocol {
    /// Where the device is.
    pub location: String,
}

/// How fast a dummy special device turns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum DummySpecialDeviceGear {
    // Also `""`, Go's unset string, as Octopus read it.
    #[default]
    #[serde(alias = "")]
    Slow,
    Middle,
    Fast,
}

impl DummySpecialDeviceGear {
    /// The name as written in a spec.
    pub fn as_str(self) -> &'static str {
        match self {
            DummySpecialDeviceGear::Slow => "slow",
            DummySpecialDeviceGear::Middle => "middle",
            DummySpecialDeviceGear::Fast => "fast",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct DummySpecialDeviceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gear: Option<DummySpecialDeviceGear>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotating_speed: Option<i32>,
    /// Polls the adaptor has made: the guest's own count, carried across hot swaps
    /// (not in Octopus; docs/from-octopus.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polls: Option<u64>,
}

/// A simulated device with typed properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(CustomResource, JsonSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "devices.edge.cattle.io",
        version = "v1alpha1",
        kind = "DummyProtocolDevice",
        namespaced,
        status = "DummyProtocolDeviceStatus",
        derive = "PartialEq",
        shortname = "dummyprotocol",
        doc = "DummyProtocolDevice is a simulated device with typed properties of the dummy adaptor.",
        annotation("devices.edge.cattle.io/enable", "true"),
        printcolumn = r#"{"name":"IP","type":"string","jsonPath":".spec.protocol.ip"}"#,
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct DummyProtocolDeviceSpec {
    // Read by the limb, never by the adaptor: not decoded without `kube`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub extension: Option<DeviceExtension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<DummyParameters>,
    pub protocol: DummyProtocolDeviceProtocol,
    /// The properties of the device, by name.
    // `null` is none, as a hand-written spec means it.
    #[serde(
        default,
        deserialize_with = "super::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub properties: BTreeMap<String, DummyProtocolDeviceProperty>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DummyProtocolDeviceProtocol {
    /// The IP address of the device.
    pub ip: String,
}

/// The type of a dummy protocol device property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum DummyPropertyType {
    String,
    Int,
    Float,
    Boolean,
    Array,
    Object,
}

impl DummyPropertyType {
    pub const ALL: [DummyPropertyType; 6] = [
        DummyPropertyType::String,
        DummyPropertyType::Int,
        DummyPropertyType::Float,
        DummyPropertyType::Boolean,
        DummyPropertyType::Array,
        DummyPropertyType::Object,
    ];

    /// The name as written in a spec or status.
    pub fn as_str(self) -> &'static str {
        match self {
            DummyPropertyType::String => "string",
            DummyPropertyType::Int => "int",
            DummyPropertyType::Float => "float",
            DummyPropertyType::Boolean => "boolean",
            DummyPropertyType::Array => "array",
            DummyPropertyType::Object => "object",
        }
    }

    /// The type named `name` (as [`DummyPropertyType::as_str`] writes it).
    pub fn parse(name: &str) -> Option<DummyPropertyType> {
        DummyPropertyType::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

/// A declared property. `arrayProperties` and `objectProperties` nest properties
/// without limit; the CRD validates one level and keeps deeper ones as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DummyProtocolDeviceProperty {
    #[serde(rename = "type")]
    pub r#type: DummyPropertyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// The item of an array property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(schema_with = "nested_property"))]
    pub array_properties: Option<Box<DummyProtocolDeviceProperty>>,
    /// The fields of an object property, by name.
    // `null` is none, as a hand-written spec means it.
    #[serde(
        default,
        deserialize_with = "super::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    #[cfg_attr(feature = "kube", schemars(schema_with = "nested_property_map"))]
    pub object_properties: BTreeMap<String, DummyProtocolDeviceProperty>,
}

impl DummyProtocolDeviceProperty {
    pub fn read_only(&self) -> bool {
        self.read_only.unwrap_or(false)
    }
}

// One level of a nested property, for the schema only: a recursive schema would not be
// structural, so deeper levels are kept as written (as Octopus did).
/// A nested property; its own nested properties are kept as written.
#[cfg(feature = "kube")]
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct NestedProperty {
    #[serde(rename = "type")]
    r#type: DummyPropertyType,
    description: Option<String>,
    read_only: Option<bool>,
}

#[cfg(feature = "kube")]
fn nested_property(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<NestedProperty>();
    schema.insert(
        "x-kubernetes-preserve-unknown-fields".to_owned(),
        true.into(),
    );
    schema.insert("nullable".to_owned(), true.into());
    schema
}

#[cfg(feature = "kube")]
fn nested_property_map(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut item = generator.subschema_for::<NestedProperty>();
    item.insert(
        "x-kubernetes-preserve-unknown-fields".to_owned(),
        true.into(),
    );
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": item
    })
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct DummyProtocolDeviceStatus {
    /// The observed properties, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, DummyProtocolDeviceStatusProperty>,
    /// Polls the adaptor has made: the guest's own count, carried across hot swaps
    /// (not in Octopus; docs/from-octopus.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polls: Option<u64>,
}

/// An observed property as Octopus's `DummyProtocolDeviceStatusProperty`: its type and
/// the one typed field that holds the value. Elements of arrays and objects are typed
/// properties again (validated one level, kept as written below, as Octopus did).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DummyProtocolDeviceStatusProperty {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<DummyPropertyType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int_value: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// A `resource.Quantity`, as Kubernetes writes it (`"7240m"` for 7.24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(schema_with = "quantity"))]
    pub float_value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boolean_value: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(schema_with = "nested_status_list"))]
    pub array_value: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(schema_with = "nested_status_map"))]
    pub object_value: Option<BTreeMap<String, Value>>,
    /// When the value was read (not in Octopus; docs/from-octopus.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("format" = "date-time")))]
    pub updated_at: Option<String>,
}

/// Kubernetes's schema of a `resource.Quantity`.
#[cfg(feature = "kube")]
fn quantity(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": true
    })
}

/// The pattern Kubernetes's OpenAPI gives a `resource.Quantity`.
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

// One level of a nested status property, for the schema only (see `NestedProperty`).
/// A nested observed property; its own nested values are kept as written.
#[cfg(feature = "kube")]
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct NestedStatusProperty {
    #[serde(rename = "type")]
    r#type: Option<DummyPropertyType>,
    int_value: Option<i64>,
    string_value: Option<String>,
    // `default`: a `schema_with` field is otherwise required, and the API server then
    // refused every nested value without a float (found by the limb's status check).
    #[serde(default)]
    #[schemars(schema_with = "quantity")]
    float_value: Option<Value>,
    boolean_value: Option<bool>,
}

#[cfg(feature = "kube")]
fn nested_status(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut item = generator.subschema_for::<NestedStatusProperty>();
    item.insert(
        "x-kubernetes-preserve-unknown-fields".to_owned(),
        true.into(),
    );
    item
}

#[cfg(feature = "kube")]
fn nested_status_list(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = nested_status(generator);
    schemars::json_schema!({"type": "array", "items": item})
}

#[cfg(feature = "kube")]
fn nested_status_map(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = nested_status(generator);
    schemars::json_schema!({"type": "object", "additionalProperties": item})
}

#[cfg(all(test, feature = "kube"))]
mod tests {
    use super::*;

    #[test]
    fn a_dummy_special_device_parses_with_its_defaults() {
        let yaml = r#"
apiVersion: devices.edge.cattle.io/v1alpha1
kind: DummySpecialDevice
metadata:
  name: living-room-fan
  namespace: default
spec:
  extension:
    mqtt:
      client:
        server: tcp://test.mosquitto.org:1883
      message:
        topic: "cattle.io/octopus/:namespace/:name"
  protocol:
    location: "living-room"
  on: true
"#;
        let device: DummySpecialDevice = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(device.metadata.name.as_deref(), Some("living-room-fan"));
        assert_eq!(device.spec.protocol.location, "living-room");
        assert!(device.spec.on);
        assert_eq!(device.spec.gear, None);
        assert_eq!(device.spec.gear(), DummySpecialDeviceGear::Slow);
        assert_eq!(
            device.spec.parameters.unwrap_or_default().sync_interval(),
            "2s"
        );
        let mqtt = device.spec.extension.and_then(|e| e.mqtt).unwrap();
        assert_eq!(mqtt.client.server, "tcp://test.mosquitto.org:1883");

        let spec: DummySpecialDeviceSpec = serde_yaml::from_str(
            "{protocol: {location: x}, on: false, gear: fast, parameters: {syncInterval: 5s}}",
        )
        .unwrap();
        assert_eq!(spec.gear(), DummySpecialDeviceGear::Fast);
        assert_eq!(spec.parameters.unwrap().sync_interval(), "5s");
        assert!(
            serde_yaml::from_str::<DummySpecialDeviceSpec>(
                "{protocol: {location: x}, on: true, gear: turbo}"
            )
            .is_err()
        );
        assert!(
            serde_yaml::from_str::<DummySpecialDeviceSpec>("{protocol: {location: x}}").is_err(),
            "on is required"
        );
    }

    #[test]
    fn a_dummy_protocol_device_spec_nests_properties_and_round_trips() {
        let yaml = r#"
protocol:
  ip: 192.168.1.4
properties:
  name:
    type: string
    description: The name of the device
    readOnly: true
  tags:
    type: array
    arrayProperties:
      type: object
      objectProperties:
        key: {type: string}
        weight: {type: float}
  location:
    type: object
    objectProperties:
      lat: {type: float}
      floors:
        type: array
        arrayProperties: {type: int}
"#;
        let spec: DummyProtocolDeviceSpec = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(spec.protocol.ip, "192.168.1.4");
        assert!(spec.properties["name"].read_only());
        assert!(!spec.properties["tags"].read_only());
        let item = spec.properties["tags"].array_properties.as_deref().unwrap();
        assert_eq!(item.r#type, DummyPropertyType::Object);
        assert_eq!(
            item.object_properties["weight"].r#type,
            DummyPropertyType::Float
        );
        let floors = &spec.properties["location"].object_properties["floors"];
        assert_eq!(
            floors.array_properties.as_ref().unwrap().r#type,
            DummyPropertyType::Int
        );

        let original: Value = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), original);
    }

    #[test]
    fn a_dummy_protocol_device_status_has_octopus_typed_values() {
        let status: DummyProtocolDeviceStatus = serde_json::from_value(serde_json::json!({
            "properties": {
                "n": {"type": "int", "intValue": 3},
                "f": {"type": "float", "floatValue": "7240m"},
                "o": {"type": "object", "objectValue": {"a": {"type": "array", "arrayValue": [
                    {"type": "int", "intValue": 1}, {"type": "string", "stringValue": "x"}
                ]}}}
            },
            "polls": 7
        }))
        .unwrap();
        assert_eq!(status.properties["n"].int_value, Some(3));
        assert_eq!(
            status.properties["f"].float_value,
            Some(serde_json::json!("7240m"))
        );
        let object = status.properties["o"].object_value.as_ref().unwrap();
        assert_eq!(object["a"]["arrayValue"][1]["stringValue"], "x");
        assert_eq!(status.polls, Some(7));
    }

    #[test]
    fn nested_properties_are_validated_one_level_and_kept_below() {
        let crd =
            serde_json::to_value(<DummyProtocolDevice as kube::CustomResourceExt>::crd()).unwrap();
        let property = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["properties"]["additionalProperties"];
        let item = &property["properties"]["arrayProperties"];
        assert_eq!(item["type"], "object");
        assert_eq!(item["x-kubernetes-preserve-unknown-fields"], true);
        assert!(
            item["properties"]["type"]["enum"]
                .as_array()
                .is_some_and(|e| e.len() == 6),
            "{item}"
        );
        let field = &property["properties"]["objectProperties"]["additionalProperties"];
        assert_eq!(field["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(field["required"], serde_json::json!(["type"]));
    }
}
