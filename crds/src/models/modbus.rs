//! `ModbusDevice`: a Modbus TCP or RTU slave (Octopus `adaptors/modbus`).

#[cfg(feature = "kube")]
use kube::CustomResource;
#[cfg(feature = "kube")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extension::DeviceExtension;

/// A Modbus TCP or RTU slave whose registers are the device properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(CustomResource, JsonSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "devices.edge.cattle.io",
        version = "v1alpha1",
        kind = "ModbusDevice",
        namespaced,
        status = "ModbusDeviceStatus",
        derive = "PartialEq",
        shortname = "modbus",
        doc = "ModbusDevice is a Modbus TCP or RTU slave.",
        annotation("devices.edge.cattle.io/enable", "true"),
        printcolumn = r#"{"name":"ENDPOINT","type":"string","jsonPath":".spec.protocol..endpoint"}"#,
        printcolumn = r#"{"name":"WORKER ID","type":"string","jsonPath":".spec.protocol..workerID"}"#,
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct ModbusDeviceSpec {
    // Read by the limb, never by the adaptor: without `kube` (the adaptor's build) it is
    // not decoded, so it can neither cost the component code nor refuse a spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(feature = "kube"), serde(skip_deserializing))]
    pub extension: Option<DeviceExtension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<ModbusParameters>,
    pub protocol: ModbusProtocol,
    /// The registers to read and write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "kube", schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])))]
    pub properties: Vec<ModbusDeviceProperty>,
}

/// Poll settings (durations).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModbusParameters {
    /// How often the registers are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "15s")))]
    pub sync_interval: Option<String>,
    /// Timeout of one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "10s")))]
    pub timeout: Option<String>,
}

impl ModbusParameters {
    pub fn sync_interval(&self) -> &str {
        self.sync_interval.as_deref().unwrap_or("15s")
    }
    pub fn timeout(&self) -> &str {
        self.timeout.as_deref().unwrap_or("10s")
    }
}

/// How to reach the slave: `tcp` or `rtu`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(try_from = "ModbusProtocolFields", into = "ModbusProtocolFields")]
pub enum ModbusProtocol {
    Tcp(ModbusTcp),
    Rtu(ModbusRtu),
}

/// The wire form of [`ModbusProtocol`]: a map with exactly one of `tcp` or `rtu`
/// (an externally tagged enum would need YAML tags with serde_yaml).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(extend("oneOf" = [{"required": ["tcp"]}, {"required": ["rtu"]}])))]
struct ModbusProtocolFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp: Option<ModbusTcp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rtu: Option<ModbusRtu>,
}

impl TryFrom<ModbusProtocolFields> for ModbusProtocol {
    type Error = &'static str;

    fn try_from(fields: ModbusProtocolFields) -> Result<Self, Self::Error> {
        match (fields.tcp, fields.rtu) {
            (Some(tcp), None) => Ok(ModbusProtocol::Tcp(tcp)),
            (None, Some(rtu)) => Ok(ModbusProtocol::Rtu(rtu)),
            (None, None) => Err("needs one of tcp or rtu"),
            (Some(_), Some(_)) => Err("takes only one of tcp or rtu"),
        }
    }
}

impl From<ModbusProtocol> for ModbusProtocolFields {
    fn from(protocol: ModbusProtocol) -> Self {
        match protocol {
            ModbusProtocol::Tcp(tcp) => ModbusProtocolFields {
                tcp: Some(tcp),
                rtu: None,
            },
            ModbusProtocol::Rtu(rtu) => ModbusProtocolFields {
                tcp: None,
                rtu: Some(rtu),
            },
        }
    }
}

impl ModbusProtocol {
    /// `ip:port` or the serial device path.
    pub fn endpoint(&self) -> &str {
        match self {
            ModbusProtocol::Tcp(tcp) => &tcp.endpoint,
            ModbusProtocol::Rtu(rtu) => &rtu.endpoint,
        }
    }
    pub fn worker_id(&self) -> u8 {
        match self {
            ModbusProtocol::Tcp(tcp) => tcp.worker_id,
            ModbusProtocol::Rtu(rtu) => rtu.worker_id,
        }
    }
}

/// Modbus TCP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModbusTcp {
    /// `ip:port` of the slave.
    pub endpoint: String,
    /// Unit ID, any byte: gateways and TCP-native slaves commonly answer on 0 or 255.
    #[serde(rename = "workerID")]
    pub worker_id: u8,
}

/// Modbus RTU over a serial line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModbusRtu {
    /// Serial device, e.g. /dev/ttyS0.
    #[cfg_attr(feature = "kube", schemars(regex(pattern = r"^/.*[^/]$")))]
    pub endpoint: String,
    /// Slave ID: 0 is broadcast (no reply) and 248-255 are reserved on a serial line.
    #[serde(rename = "workerID")]
    #[cfg_attr(feature = "kube", schemars(range(min = 1, max = 247)))]
    pub worker_id: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(min = 1), extend("default" = 19200)))]
    pub baud_rate: Option<u32>,
    /// Data bits, 5-8 as Octopus allowed; Modbus RTU needs 8, and the adaptor refuses
    /// any other value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(min = 5, max = 8), extend("default" = 8)))]
    pub data_bits: Option<u8>,
    /// N (none, needs 2 stop bits), E (even) or O (odd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "E")))]
    pub parity: Option<ModbusParity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(min = 1, max = 2), extend("default" = 1)))]
    pub stop_bits: Option<u8>,
}

impl ModbusRtu {
    pub fn baud_rate(&self) -> u32 {
        self.baud_rate.unwrap_or(19200)
    }
    pub fn data_bits(&self) -> u8 {
        self.data_bits.unwrap_or(8)
    }
    pub fn parity(&self) -> ModbusParity {
        self.parity.unwrap_or_default()
    }
    pub fn stop_bits(&self) -> u8 {
        self.stop_bits.unwrap_or(1)
    }
}

/// Parity of a serial line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub enum ModbusParity {
    #[serde(rename = "N")]
    None,
    #[default]
    #[serde(rename = "E")]
    Even,
    #[serde(rename = "O")]
    Odd,
}

/// One value held in one or more registers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModbusDeviceProperty {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub r#type: ModbusPropertyType,
    /// Only coil and holding registers can be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// The value to write, as a string of the property's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub visitor: ModbusVisitor,
}

impl ModbusDeviceProperty {
    pub fn read_only(&self) -> bool {
        self.read_only.unwrap_or(false)
    }
}

/// The type of a property value. `int` means int32, `uint` uint32, `float` float32
/// and `double` float64; `string` is Octopus's first API (ASCII over the registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum ModbusPropertyType {
    Int16,
    Int,
    Int32,
    Int64,
    Uint16,
    Uint,
    Uint32,
    Uint64,
    Float,
    Double,
    Boolean,
    HexString,
    String,
}

impl ModbusPropertyType {
    /// The name as a spec writes it (`int` stays `int`).
    pub fn name(self) -> &'static str {
        match self {
            ModbusPropertyType::Int16 => "int16",
            ModbusPropertyType::Int => "int",
            ModbusPropertyType::Int32 => "int32",
            ModbusPropertyType::Int64 => "int64",
            ModbusPropertyType::Uint16 => "uint16",
            ModbusPropertyType::Uint => "uint",
            ModbusPropertyType::Uint32 => "uint32",
            ModbusPropertyType::Uint64 => "uint64",
            ModbusPropertyType::Float => "float",
            ModbusPropertyType::Double => "double",
            ModbusPropertyType::Boolean => "boolean",
            ModbusPropertyType::HexString => "hexString",
            ModbusPropertyType::String => "string",
        }
    }
}

/// Where a property lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModbusVisitor {
    pub register: ModbusRegister,
    /// Starting address of the register.
    pub offset: u16,
    /// Number of registers (coils for the 1-bit registers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(min = 1), extend("default" = 1)))]
    pub quantity: Option<u16>,
    /// Byte and word order of multi-register values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "BigEndian")))]
    pub endianness: Option<ModbusEndianness>,
    /// Arithmetic applied in order to the value read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_of_operations: Vec<ModbusOperation>,
}

impl ModbusVisitor {
    pub fn quantity(&self) -> u16 {
        self.quantity.unwrap_or(1)
    }
    pub fn endianness(&self) -> ModbusEndianness {
        self.endianness.unwrap_or_default()
    }
}

/// The four Modbus data tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub enum ModbusRegister {
    CoilRegister,
    DiscreteInputRegister,
    InputRegister,
    HoldingRegister,
}

impl ModbusRegister {
    /// Only coils and holding registers can be written.
    pub fn is_writable(self) -> bool {
        matches!(
            self,
            ModbusRegister::CoilRegister | ModbusRegister::HoldingRegister
        )
    }
}

/// Byte order: BigEndian ABCD, BigEndianSwap BADC, LittleEndian CDAB, LittleEndianSwap DCBA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub enum ModbusEndianness {
    #[default]
    BigEndian,
    BigEndianSwap,
    LittleEndian,
    LittleEndianSwap,
}

/// One arithmetic step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModbusOperation {
    #[serde(rename = "type")]
    pub r#type: ModbusOperationType,
    /// The operand, a float as a string.
    // A bare number (`value: 10` in a standalone spec) is taken as its text.
    #[serde(deserialize_with = "super::text_or_number")]
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub enum ModbusOperationType {
    Add,
    Subtract,
    Multiply,
    Divide,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct ModbusDeviceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<ModbusDeviceStatusProperty>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModbusDeviceStatusProperty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<ModbusPropertyType>,
    /// The value read, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value after `orderOfOperations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operated_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("format" = "date-time")))]
    pub updated_at: Option<String>,
    /// Why the last read or write of this property failed (not in Octopus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(all(test, feature = "kube"))]
mod tests {
    use super::*;

    const THERMOMETER: &str = r#"
extension:
  mqtt:
    client:
      server: tcp://test.mosquitto.org:1883
    message:
      topic: "cattle.io/octopus/:namespace/:name"
parameters:
  syncInterval: 5s
protocol:
  tcp:
    endpoint: 10.0.0.7:5020
    workerID: 1
properties:
  - name: temperature
    description: "Temperature, divided by 10"
    type: float
    readOnly: true
    visitor:
      register: HoldingRegister
      offset: 0
      quantity: 2
      orderOfOperations:
        - type: Divide
          value: "10"
  - name: limitation
    description: The alert limit
    type: int16
    readOnly: false
    value: "30"
    visitor:
      register: HoldingRegister
      offset: 5
"#;

    #[test]
    fn a_tcp_thermometer_parses_with_its_defaults_and_round_trips() {
        let spec: ModbusDeviceSpec = serde_yaml::from_str(THERMOMETER).unwrap();
        assert_eq!(spec.protocol.endpoint(), "10.0.0.7:5020");
        assert_eq!(spec.protocol.worker_id(), 1);
        let parameters = spec.parameters.clone().unwrap();
        assert_eq!(
            (parameters.sync_interval(), parameters.timeout()),
            ("5s", "10s")
        );
        let [temperature, limitation] = spec.properties.as_slice() else {
            panic!("two properties expected: {:?}", spec.properties);
        };
        assert_eq!(temperature.r#type, ModbusPropertyType::Float);
        assert!(temperature.read_only());
        assert_eq!(temperature.visitor.quantity(), 2);
        assert_eq!(
            temperature.visitor.endianness(),
            ModbusEndianness::BigEndian
        );
        assert_eq!(
            temperature.visitor.order_of_operations,
            [ModbusOperation {
                r#type: ModbusOperationType::Divide,
                value: "10".into()
            }]
        );
        assert_eq!(limitation.value.as_deref(), Some("30"));
        assert!(!limitation.read_only());
        assert_eq!(limitation.visitor.quantity(), 1);
        assert!(limitation.visitor.register.is_writable());
        assert!(
            spec.extension
                .as_ref()
                .and_then(|e| e.mqtt.as_ref())
                .is_some()
        );

        let original: serde_json::Value = serde_yaml::from_str(THERMOMETER).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), original);
    }

    #[test]
    fn an_rtu_slave_gets_octopus_serial_defaults() {
        for (yaml, line) in [
            (
                "protocol: {rtu: {endpoint: /dev/ttyUSB0, workerID: 3}}",
                (19200, 8, ModbusParity::Even, 1),
            ),
            (
                "protocol: {rtu: {endpoint: /dev/ttyS0, workerID: 9, baudRate: 9600, dataBits: 7, parity: N, stopBits: 2}}",
                (9600, 7, ModbusParity::None, 2),
            ),
        ] {
            let spec: ModbusDeviceSpec = serde_yaml::from_str(yaml).unwrap();
            let ModbusProtocol::Rtu(rtu) = &spec.protocol else {
                panic!("rtu expected")
            };
            assert_eq!(
                (
                    rtu.baud_rate(),
                    rtu.data_bits(),
                    rtu.parity(),
                    rtu.stop_bits()
                ),
                line,
                "{yaml}"
            );
        }
        let spec: ModbusDeviceSpec =
            serde_yaml::from_str("protocol: {rtu: {endpoint: /dev/ttyS0, workerID: 9}}").unwrap();
        assert_eq!(spec.parameters.unwrap_or_default().sync_interval(), "15s");
    }

    #[test]
    fn the_protocol_is_exactly_one_of_tcp_or_rtu() {
        let none = serde_yaml::from_str::<ModbusDeviceSpec>("protocol: {}").unwrap_err();
        assert!(none.to_string().contains("one of tcp or rtu"), "{none}");
        assert!(
            serde_yaml::from_str::<ModbusDeviceSpec>(
                "protocol: {tcp: {endpoint: 'a:1', workerID: 1}, rtu: {endpoint: /dev/x, workerID: 1}}"
            )
            .is_err()
        );
        let crd = serde_json::to_value(<ModbusDevice as kube::CustomResourceExt>::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let protocol = &spec["properties"]["protocol"];
        assert_eq!(
            protocol["oneOf"],
            serde_json::json!([{"required": ["tcp"]}, {"required": ["rtu"]}]),
            "{protocol}"
        );
        for (link, range) in [("tcp", (0.0, 255.0)), ("rtu", (1.0, 247.0))] {
            let id = &protocol["properties"][link]["properties"]["workerID"];
            assert_eq!(
                (id["minimum"].as_f64(), id["maximum"].as_f64()),
                (Some(range.0), Some(range.1)),
                "{link}"
            );
        }
        let rtu = &protocol["properties"]["rtu"]["properties"];
        assert_eq!(
            (
                rtu["dataBits"]["minimum"].as_f64(),
                rtu["dataBits"]["maximum"].as_f64()
            ),
            (Some(5.0), Some(8.0))
        );
        assert_eq!(rtu["parity"]["default"], "E");
        assert_eq!(rtu["baudRate"]["default"], 19200);
        let visitor =
            &spec["properties"]["properties"]["items"]["properties"]["visitor"]["properties"];
        assert_eq!(visitor["quantity"]["minimum"].as_f64(), Some(1.0));
        assert_eq!(visitor["quantity"]["default"], 1);
        assert_eq!(visitor["endianness"]["default"], "BigEndian");
    }

    #[test]
    fn status_reports_values_and_per_property_errors() {
        let status: ModbusDeviceStatus = serde_yaml::from_str(
            r#"
properties:
  - name: temperature
    type: float
    value: "245"
    operatedValue: "24.5"
    updatedAt: "2024-05-01T10:00:00Z"
  - name: humidity
    error: "modbus: exception 2 (illegal data address)"
"#,
        )
        .unwrap();
        assert_eq!(status.properties[0].operated_value.as_deref(), Some("24.5"));
        assert_eq!(
            status.properties[1].error.as_deref(),
            Some("modbus: exception 2 (illegal data address)")
        );
    }
}
