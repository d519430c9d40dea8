//! `BluetoothDevice`: a Bluetooth LE GATT peripheral (Octopus `adaptors/ble`).
//!
//! Field names and defaults are Octopus's (`bluetoothdevice_types.go`): the peripheral is
//! found by `protocol.endpoint` (a local name or an address), and each property is one
//! GATT characteristic read, written or subscribed to by its `accessMode`.

use std::collections::BTreeMap;

#[cfg(feature = "kube")]
use kube::CustomResource;
#[cfg(feature = "kube")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extension::DeviceExtension;

/// A Bluetooth LE peripheral whose GATT characteristics are the device properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(CustomResource, JsonSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "devices.edge.cattle.io",
        version = "v1alpha1",
        kind = "BluetoothDevice",
        namespaced,
        status = "BluetoothDeviceStatus",
        derive = "PartialEq",
        shortname = "ble",
        doc = "BluetoothDevice is a Bluetooth LE GATT peripheral.",
        annotation("devices.edge.cattle.io/enable", "true"),
        printcolumn = r#"{"name":"ENDPOINT","type":"string","jsonPath":".spec.protocol.endpoint"}"#,
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct BluetoothDeviceSpec {
    // Read by the limb, never by the adaptor (as for the other models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub extension: Option<DeviceExtension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BluetoothDeviceParameters>,
    pub protocol: BluetoothDeviceProtocol,
    /// The characteristics to read, write or subscribe to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "kube", schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])))]
    pub properties: Vec<BluetoothDeviceProperty>,
}

/// Poll settings (durations).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BluetoothDeviceParameters {
    /// How often ReadOnly properties are read.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::string_or_count"
    )]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "15s")))]
    pub sync_interval: Option<String>,
    /// Timeout of finding and connecting to the peripheral, and of one GATT operation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::string_or_count"
    )]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "30s")))]
    pub timeout: Option<String>,
}

impl BluetoothDeviceParameters {
    pub fn sync_interval(&self) -> &str {
        self.sync_interval.as_deref().unwrap_or("15s")
    }
    pub fn timeout(&self) -> &str {
        self.timeout.as_deref().unwrap_or("30s")
    }
}

/// How to find the peripheral.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BluetoothDeviceProtocol {
    /// The peripheral's address (`C0:98:E5:49:00:01`) or its advertised local name. A
    /// name can be spoofed by any nearby device; an address is the stronger grant.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub endpoint: String,
}

/// How a property is accessed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub enum BluetoothDevicePropertyAccessMode {
    /// Written (`dataWrite[defaultValue]`) when the spec changes, then read back.
    ReadWrite,
    /// Read every `syncInterval`.
    ReadOnly,
    /// Updated on each notification or indication, without a poll.
    #[default]
    NotifyOnly,
}

impl BluetoothDevicePropertyAccessMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::ReadWrite => "ReadWrite",
            Self::ReadOnly => "ReadOnly",
            Self::NotifyOnly => "NotifyOnly",
        }
    }
}

/// One characteristic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BluetoothDeviceProperty {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "NotifyOnly")))]
    pub access_mode: Option<BluetoothDevicePropertyAccessMode>,
    pub visitor: BluetoothDevicePropertyVisitor,
}

impl BluetoothDeviceProperty {
    pub fn access_mode(&self) -> BluetoothDevicePropertyAccessMode {
        self.access_mode.unwrap_or_default()
    }
}

/// Where the property lives and how its bytes are converted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BluetoothDevicePropertyVisitor {
    /// The characteristic's UUID: 16-bit (`2A19`) or 128-bit, with or without dashes.
    #[serde(rename = "characteristicUUID")]
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub characteristic_uuid: String,
    /// For ReadWrite: the key of `dataWrite` to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
    /// For ReadWrite: the bytes each named value writes. Go's `map[string][]byte`, so
    /// base64 in JSON as `encoding/json` writes it; a list of byte values is accepted too.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "super::null_as_default"
    )]
    pub data_write: BTreeMap<String, DataBytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_converter: Option<BluetoothDataConverter>,
}

/// Bytes written as Go's `encoding/json` writes a `[]byte` (standard base64); read from
/// that or from a list of byte values (`ON: [1]`, as Octopus's examples wrote them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataBytes(pub Vec<u8>);

impl Serialize for DataBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for DataBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DataBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("base64 text or a list of byte values")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(DataBytes)
                    .map_err(|e| E::custom(format!("not base64: {e}")))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut bytes = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                Ok(DataBytes(bytes))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(feature = "kube")]
impl JsonSchema for DataBytes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DataBytes".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // What controller-gen wrote for Go's []byte.
        schemars::json_schema!({"type": "string", "format": "byte"})
    }
    fn inline_schema() -> bool {
        true
    }
}

/// Octopus's converter from the bytes read to a number; see the adaptor for its exact
/// (and odd) semantics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BluetoothDataConverter {
    /// First byte taken (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_index: Option<i64>,
    /// Last byte taken (inclusive); below `startIndex` takes the bytes in reverse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_left: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_right: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "super::null_as_default"
    )]
    pub order_of_operations: Vec<BluetoothDeviceArithmeticOperation>,
}

/// One arithmetic step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BluetoothDeviceArithmeticOperation {
    #[serde(rename = "type")]
    pub r#type: BluetoothDeviceArithmeticOperationType,
    /// The operand, a float as a string.
    #[serde(deserialize_with = "super::text_or_number")]
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub enum BluetoothDeviceArithmeticOperationType {
    Add,
    Subtract,
    Multiply,
    Divide,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct BluetoothDeviceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<BluetoothDeviceStatusProperty>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BluetoothDeviceStatusProperty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The converted value (`%f`), or for a notification without a converter its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<BluetoothDevicePropertyAccessMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("format" = "date-time")))]
    pub updated_at: Option<String>,
    /// Why the last read, write or subscription of this property failed (not in Octopus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(all(test, feature = "kube"))]
mod tests {
    use super::*;

    /// Octopus's BLE example, in the field names of `bluetoothdevice_types.go`.
    pub(crate) const THERMOMETER: &str = r#"
parameters:
  syncInterval: 15s
  timeout: 10s
protocol:
  endpoint: "MJ_HT_V1"
properties:
  - name: data
    description: XiaoMi temp sensor with temperature and humidity data
    accessMode: NotifyOnly
    visitor:
      characteristicUUID: 226c000064764566756266734470666d
  - name: humidity
    description: Humidity in percent
    accessMode: ReadOnly
    visitor:
      characteristicUUID: f000aa0304514000b000000000000000
      dataConverter:
        startIndex: 1
        endIndex: 0
        shiftRight: 2
        orderOfOperations:
          - type: Multiply
            value: "0.03125"
  - name: power-enabled
    description: turn the device power on or off
    accessMode: ReadWrite
    visitor:
      characteristicUUID: f000aa0104514000b000000000000001
      defaultValue: "OFF"
      dataWrite:
        "ON": "AQ=="
        "OFF": [0]
"#;

    #[test]
    fn octopus_example_parses_with_its_defaults_and_round_trips() {
        let spec: BluetoothDeviceSpec = serde_yaml::from_str(THERMOMETER).unwrap();
        assert_eq!(spec.protocol.endpoint, "MJ_HT_V1");
        let params = spec.parameters.clone().unwrap_or_default();
        assert_eq!(params.sync_interval(), "15s");
        assert_eq!(params.timeout(), "10s");
        assert_eq!(BluetoothDeviceParameters::default().timeout(), "30s");
        assert_eq!(
            spec.properties[0].access_mode(),
            BluetoothDevicePropertyAccessMode::NotifyOnly
        );
        let power = &spec.properties[2].visitor;
        assert_eq!(power.data_write["ON"], DataBytes(vec![1]));
        assert_eq!(power.data_write["OFF"], DataBytes(vec![0]));
        let conv = spec.properties[1].visitor.data_converter.clone().unwrap();
        assert_eq!((conv.start_index, conv.end_index), (Some(1), Some(0)));
        assert_eq!(conv.shift_right, Some(2));
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json["properties"][2]["visitor"]["dataWrite"],
            serde_json::json!({"OFF": "AA==", "ON": "AQ=="})
        );
        let back: BluetoothDeviceSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn access_mode_defaults_to_notify_only_and_unknown_modes_are_refused() {
        let p: BluetoothDeviceProperty = serde_json::from_value(
            serde_json::json!({"name": "a", "visitor": {"characteristicUUID": "2A19"}}),
        )
        .unwrap();
        assert_eq!(
            p.access_mode(),
            BluetoothDevicePropertyAccessMode::NotifyOnly
        );
        let bad = serde_json::from_value::<BluetoothDeviceProperty>(
            serde_json::json!({"name": "a", "accessMode": "WriteOnly", "visitor": {"characteristicUUID": "2A19"}}),
        );
        assert!(bad.is_err());
        let bad_bytes = serde_json::from_value::<DataBytes>(serde_json::json!("not base64!"));
        assert!(bad_bytes.is_err());
    }

    #[test]
    fn the_crd_carries_octopus_defaults_and_byte_strings() {
        let crd =
            serde_json::to_value(<BluetoothDevice as kube::CustomResourceExt>::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["parameters"]["properties"]["syncInterval"]["default"],
            "15s"
        );
        assert_eq!(
            spec["properties"]["parameters"]["properties"]["timeout"]["default"],
            "30s"
        );
        let property = &spec["properties"]["properties"]["items"];
        assert_eq!(
            property["properties"]["accessMode"]["default"],
            "NotifyOnly"
        );
        assert_eq!(
            property["properties"]["visitor"]["properties"]["dataWrite"]["additionalProperties"],
            serde_json::json!({"type": "string", "format": "byte"})
        );
        assert_eq!(spec["required"], serde_json::json!(["protocol"]));
    }
}
