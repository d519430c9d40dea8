//! Parsing and validation of a `ModbusDevice` spec (`template.spec` of a DeviceLink).
//!
//! The spec decodes into `crds`'s `ModbusDevice` types, the ones the CRD is generated
//! from; a wrong type or a missing field is named by its JSON path
//! (`properties[2].visitor.offset must be ...`). Everything else that can be checked
//! before talking to the device is checked here (`path: why`): types against tables
//! and quantities, values to write against their types, operands of the arithmetic.
//! Unknown fields (and `extension`, which the limb reads) are ignored.

use std::fmt;

use crds::models::modbus::{
    ModbusDeviceProperty, ModbusDeviceSpec, ModbusEndianness, ModbusOperation, ModbusOperationType,
    ModbusParity, ModbusPropertyType, ModbusProtocol, ModbusRegister,
};

use crate::codec::{MAX_READ_BITS, MAX_READ_REGISTERS, MAX_WRITE_COILS, MAX_WRITE_REGISTERS};
use crate::codec::{Request, Table};
use crate::duration;
use crate::value::{self, Endianness, Operation, ValueType};

pub use octopus_adaptor_sdk::spec::SpecError;

type Result<T> = std::result::Result<T, SpecError>;

fn error(path: &str, message: impl fmt::Display) -> SpecError {
    SpecError::at(path, message)
}

/// A validated `ModbusDevice` spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub link: Link,
    /// Slave (unit) ID.
    pub unit: u8,
    pub poll_interval_ms: u64,
    pub timeout_ms: u32,
    pub properties: Vec<Property>,
}

/// How the slave is reached. Two links are equal exactly when an open connection can
/// be kept across a reconfigure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Tcp { endpoint: String },
    Rtu { endpoint: String, line: Line },
}

/// Serial line settings of an RTU link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub baud_rate: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
}

impl Line {
    /// Bits on the wire per character: start, data, parity, stop.
    pub fn bits_per_char(self) -> u32 {
        1 + u32::from(self.data_bits)
            + u32::from(self.parity != Parity::None)
            + u32::from(self.stop_bits)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// One property: where it lives, how to decode it, and what to write to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    /// The type as the spec wrote it (`int` stays `int`), echoed in the status.
    pub type_name: String,
    pub kind: ValueType,
    pub table: Table,
    pub offset: u16,
    pub quantity: u16,
    pub endianness: Endianness,
    pub operations: Vec<Operation>,
    /// The write this property asks for, if it is writable and has a `value`.
    pub write: Option<Write>,
    /// [`Property::read_signature`], computed once at parse: every read stamps it.
    signature: String,
}

impl Property {
    /// Identifies how the property is read: a reading taken under another signature
    /// (the register, type or arithmetic changed) must not be shown as current.
    pub fn read_signature(&self) -> &str {
        &self.signature
    }
}

fn signature_of(p: &Property) -> String {
    format!(
        "{}/{}/{}/{}/{}/{:?}",
        p.table.name(),
        p.offset,
        p.quantity,
        p.kind.name(),
        p.endianness.name(),
        p.operations
    )
}

/// A value to write, already encoded as its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub value: String,
    pub request: Request,
}

/// Parses and validates a spec: serde decodes it into the model's types (shared with
/// the CRD, so the two cannot drift) and names the field of any wrong type; what the
/// types cannot say is checked here.
pub fn parse(spec: &str) -> Result<Spec> {
    let raw: ModbusDeviceSpec = octopus_adaptor_sdk::spec::parse(spec)?;
    let (link, unit) = link(&raw.protocol)?;
    let parameters = raw.parameters.unwrap_or_default();
    let poll_interval_ms = parse_duration("syncInterval", parameters.sync_interval())?;
    let timeout_ms = parse_duration("timeout", parameters.timeout())?;
    let timeout_ms = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    let properties = raw
        .properties
        .iter()
        .enumerate()
        .map(|(i, item)| parse_property(item, &format!("properties[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    octopus_adaptor_sdk::spec::unique_names(
        "properties",
        properties.iter().map(|p| p.name.as_str()),
    )?;
    Ok(Spec {
        link,
        unit,
        poll_interval_ms,
        timeout_ms,
        properties,
    })
}

fn link(protocol: &ModbusProtocol) -> Result<(Link, u8)> {
    match protocol {
        ModbusProtocol::Tcp(tcp) => {
            let endpoint = not_blank("protocol.tcp.endpoint", &tcp.endpoint)?;
            Ok((Link::Tcp { endpoint }, tcp.worker_id))
        }
        ModbusProtocol::Rtu(rtu) => {
            let path = "protocol.rtu";
            let endpoint = not_blank(&join(path, "endpoint"), &rtu.endpoint)?;
            if !(1..=247).contains(&rtu.worker_id) {
                return Err(error(
                    &join(path, "workerID"),
                    format!("must be 1 to 247, got {}", rtu.worker_id),
                ));
            }
            let baud_rate = rtu.baud_rate();
            if baud_rate == 0 {
                return Err(error(
                    &join(path, "baudRate"),
                    "must be a positive baud rate",
                ));
            }
            let data_bits = rtu.data_bits();
            if data_bits != 8 {
                // RTU frames are 8-bit bytes; 5-7 data bits would corrupt every frame.
                return Err(error(
                    &join(path, "dataBits"),
                    format!("Modbus RTU needs 8 data bits, got {data_bits}"),
                ));
            }
            let stop_bits = rtu.stop_bits();
            if !matches!(stop_bits, 1 | 2) {
                return Err(error(
                    &join(path, "stopBits"),
                    format!("must be 1 or 2, got {stop_bits}"),
                ));
            }
            let parity = match rtu.parity() {
                ModbusParity::None => Parity::None,
                ModbusParity::Even => Parity::Even,
                ModbusParity::Odd => Parity::Odd,
            };
            let line = Line {
                baud_rate,
                data_bits,
                parity,
                stop_bits,
            };
            Ok((Link::Rtu { endpoint, line }, rtu.worker_id))
        }
    }
}

fn parse_duration(key: &str, text: &str) -> Result<u64> {
    let path = join("parameters", key);
    let ms = duration::parse_ms(text)
        .map_err(|why| error(&path, format!("invalid duration {text:?}: {why}")))?;
    if ms == 0 {
        return Err(error(&path, "must be positive"));
    }
    Ok(ms)
}

fn parse_property(raw: &ModbusDeviceProperty, path: &str) -> Result<Property> {
    let name = not_blank(&join(path, "name"), &raw.name)?;
    let kind = ValueType::from(raw.r#type);
    let visitor = &raw.visitor;
    let visitor_path = join(path, "visitor");
    let table = Table::from(visitor.register);
    let offset = visitor.offset;
    let quantity_path = join(&visitor_path, "quantity");
    let quantity = visitor.quantity();
    if quantity == 0 {
        return Err(error(&quantity_path, "must be at least 1, got 0"));
    }
    if u32::from(offset) + u32::from(quantity) > 65_536 {
        return Err(error(
            &quantity_path,
            format!("offset {offset} + quantity {quantity} runs past address 65535"),
        ));
    }
    check_shape(kind, table, quantity, path)?;
    let operations = parse_operations(&visitor.order_of_operations, &visitor_path, kind)?;

    let mut property = Property {
        name,
        type_name: raw.r#type.name().to_owned(),
        kind,
        table,
        offset,
        quantity,
        endianness: Endianness::from(visitor.endianness()),
        operations,
        write: None,
        signature: String::new(),
    };
    property.signature = signature_of(&property);
    if let Some(value) = &raw.value {
        let value_path = join(path, "value");
        if raw.read_only() {
            return Err(error(
                &value_path,
                "a readOnly property takes no value to write",
            ));
        }
        if !table.is_writable() {
            return Err(error(
                &value_path,
                format!("{} cannot be written", table.name()),
            ));
        }
        let request = write_request(&property, value).map_err(|e| error(&value_path, e))?;
        property.write = Some(Write {
            value: value.clone(),
            request,
        });
    }
    Ok(property)
}

/// Checks that the type can live in `quantity` items of `table`.
fn check_shape(kind: ValueType, table: Table, quantity: u16, path: &str) -> Result<()> {
    let type_path = join(path, "type");
    let quantity_path = format!("{path}.visitor.quantity");
    if table.is_bits() {
        if quantity > MAX_READ_BITS {
            return Err(error(
                &quantity_path,
                format!("at most {MAX_READ_BITS} bits can be read at once, got {quantity}"),
            ));
        }
        return match kind {
            ValueType::Boolean => Ok(()),
            ValueType::HexString if quantity > 1 => Ok(()),
            ValueType::HexString => Err(error(
                &type_path,
                format!(
                    "a single {} bit is a boolean, not a hexString",
                    table.name()
                ),
            )),
            other => Err(error(
                &type_path,
                format!(
                    "{} holds bits: use boolean or hexString, not {}",
                    table.name(),
                    other.name()
                ),
            )),
        };
    }
    if quantity > MAX_READ_REGISTERS {
        return Err(error(
            &quantity_path,
            format!("at most {MAX_READ_REGISTERS} registers can be read at once, got {quantity}"),
        ));
    }
    match kind.registers() {
        Some(needed) if needed != quantity => Err(error(
            &quantity_path,
            format!("{} needs {needed} registers, got {quantity}", kind.name()),
        )),
        _ => Ok(()),
    }
}

fn parse_operations(
    raw: &[ModbusOperation],
    visitor_path: &str,
    kind: ValueType,
) -> Result<Vec<Operation>> {
    let path = join(visitor_path, "orderOfOperations");
    if !raw.is_empty() && !kind.is_arithmetic() {
        return Err(error(
            &path,
            format!("{} values take no arithmetic", kind.name()),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, op)| {
            let operand_path = format!("{path}[{i}].value");
            let text = &op.value;
            let operand: f64 = text
                .trim()
                .parse()
                .map_err(|_| error(&operand_path, format!("{text:?} is not a number")))?;
            if !operand.is_finite() {
                return Err(error(&operand_path, "must be finite"));
            }
            match op.r#type {
                ModbusOperationType::Add => Ok(Operation::Add(operand)),
                ModbusOperationType::Subtract => Ok(Operation::Subtract(operand)),
                ModbusOperationType::Multiply => Ok(Operation::Multiply(operand)),
                ModbusOperationType::Divide if operand == 0.0 => {
                    Err(error(&operand_path, "division by zero"))
                }
                ModbusOperationType::Divide => Ok(Operation::Divide(operand)),
            }
        })
        .collect()
}

/// Encodes `value` as the request that writes it: FC5/FC15 for coils, FC6/FC16 for
/// holding registers.
fn write_request(property: &Property, value: &str) -> std::result::Result<Request, String> {
    let address = property.offset;
    let quantity = property.quantity;
    match property.table {
        Table::Coil => {
            if quantity > MAX_WRITE_COILS {
                return Err(format!(
                    "at most {MAX_WRITE_COILS} coils can be written at once, got {quantity}"
                ));
            }
            let bits = value::encode_bits(property.kind, quantity, value)?;
            Ok(match bits.as_slice() {
                [one] => Request::WriteCoil {
                    address,
                    value: *one,
                },
                _ => Request::WriteCoils {
                    address,
                    values: bits,
                },
            })
        }
        Table::Holding => {
            if quantity > MAX_WRITE_REGISTERS {
                return Err(format!(
                    "at most {MAX_WRITE_REGISTERS} registers can be written at once, got {quantity}"
                ));
            }
            let registers =
                value::encode_registers(property.kind, property.endianness, quantity, value)?;
            Ok(match registers.as_slice() {
                [one] => Request::WriteRegister {
                    address,
                    value: *one,
                },
                _ => Request::WriteRegisters {
                    address,
                    values: registers,
                },
            })
        }
        other => Err(format!("{} cannot be written", other.name())),
    }
}

fn join(parent: &str, key: &str) -> String {
    format!("{parent}.{key}")
}

/// A required string that serde found: blank is refused too.
fn not_blank(path: &str, value: &str) -> Result<String> {
    if value.trim().is_empty() {
        Err(error(path, "must not be empty"))
    } else {
        Ok(value.to_owned())
    }
}

impl From<ModbusPropertyType> for ValueType {
    /// `int` and `uint` are Octopus's names for 32 bits.
    fn from(kind: ModbusPropertyType) -> Self {
        match kind {
            ModbusPropertyType::Int16 => ValueType::Int16,
            ModbusPropertyType::Int | ModbusPropertyType::Int32 => ValueType::Int32,
            ModbusPropertyType::Int64 => ValueType::Int64,
            ModbusPropertyType::Uint16 => ValueType::Uint16,
            ModbusPropertyType::Uint | ModbusPropertyType::Uint32 => ValueType::Uint32,
            ModbusPropertyType::Uint64 => ValueType::Uint64,
            ModbusPropertyType::Float => ValueType::Float,
            ModbusPropertyType::Double => ValueType::Double,
            ModbusPropertyType::Boolean => ValueType::Boolean,
            ModbusPropertyType::HexString => ValueType::HexString,
            ModbusPropertyType::String => ValueType::String,
        }
    }
}

impl From<ModbusRegister> for Table {
    fn from(register: ModbusRegister) -> Self {
        match register {
            ModbusRegister::CoilRegister => Table::Coil,
            ModbusRegister::DiscreteInputRegister => Table::DiscreteInput,
            ModbusRegister::InputRegister => Table::Input,
            ModbusRegister::HoldingRegister => Table::Holding,
        }
    }
}

impl From<ModbusEndianness> for Endianness {
    fn from(endianness: ModbusEndianness) -> Self {
        match endianness {
            ModbusEndianness::BigEndian => Endianness::BigEndian,
            ModbusEndianness::BigEndianSwap => Endianness::BigEndianSwap,
            ModbusEndianness::LittleEndian => Endianness::LittleEndian,
            ModbusEndianness::LittleEndianSwap => Endianness::LittleEndianSwap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = r#""protocol":{"tcp":{"endpoint":"10.0.0.7:5020","workerID":1}}"#;

    fn with_properties(properties: &str) -> String {
        format!(r#"{{{TCP},"properties":[{properties}]}}"#)
    }

    fn err(spec: &str) -> String {
        parse(spec).unwrap_err().0
    }

    fn property_err(property: &str) -> String {
        err(&with_properties(property))
    }

    #[test]
    fn octopus_thermometer_parses_with_defaults() {
        let spec = parse(&with_properties(
            r#"{"name":"temperature","type":"float","readOnly":true,
                "visitor":{"register":"HoldingRegister","offset":0,"quantity":2,
                  "orderOfOperations":[{"type":"Divide","value":"10"}]}},
               {"name":"limitation","type":"int16","value":"30",
                "visitor":{"register":"HoldingRegister","offset":5}}"#,
        ))
        .unwrap();
        assert_eq!(
            spec.link,
            Link::Tcp {
                endpoint: "10.0.0.7:5020".into()
            }
        );
        assert_eq!(spec.unit, 1);
        assert_eq!(spec.poll_interval_ms, 15_000);
        assert_eq!(spec.timeout_ms, 10_000);
        let [temperature, limitation] = spec.properties.as_slice() else {
            panic!("two properties")
        };
        assert_eq!(temperature.kind, ValueType::Float);
        assert_eq!(temperature.operations, [Operation::Divide(10.0)]);
        assert_eq!(temperature.write, None);
        assert_eq!(
            limitation.write,
            Some(Write {
                value: "30".into(),
                request: Request::WriteRegister {
                    address: 5,
                    value: 30
                }
            })
        );
    }

    #[test]
    fn rtu_defaults_and_line_settings() {
        let spec =
            parse(r#"{"protocol":{"rtu":{"endpoint":"/dev/ttyUSB0","workerID":3}},"extension":{"mqtt":{}}}"#)
                .unwrap();
        assert_eq!(
            spec.link,
            Link::Rtu {
                endpoint: "/dev/ttyUSB0".into(),
                line: Line {
                    baud_rate: 19_200,
                    data_bits: 8,
                    parity: Parity::Even,
                    stop_bits: 1
                }
            }
        );
        let Link::Rtu { line, .. } = spec.link else {
            panic!("rtu")
        };
        assert_eq!(line.bits_per_char(), 11);
        let spec = parse(
            r#"{"protocol":{"rtu":{"endpoint":"/dev/ttyS0","workerID":9,"baudRate":9600,"parity":"N","stopBits":2}},
                "parameters":{"syncInterval":"1m30s","timeout":"500ms"}}"#,
        )
        .unwrap();
        assert_eq!(spec.poll_interval_ms, 90_000);
        assert_eq!(spec.timeout_ms, 500);
    }

    #[test]
    fn protocol_errors_name_the_field() {
        for (spec, expected) in [
            (r#"{}"#, "protocol is required"),
            (r#"{"protocol":{}}"#, "protocol: needs one of tcp or rtu"),
            (
                r#"{"protocol":{"tcp":{"endpoint":"a:1","workerID":1},"rtu":{"endpoint":"/dev/x","workerID":1}}}"#,
                "protocol: takes only one of tcp or rtu",
            ),
            (
                r#"{"protocol":{"tcp":{"workerID":1}}}"#,
                "protocol.tcp.endpoint is required",
            ),
            (
                r#"{"protocol":{"tcp":{"endpoint":"a:1"}}}"#,
                "protocol.tcp.workerID is required",
            ),
            (
                r#"{"protocol":{"tcp":{"endpoint":"a:1","workerID":256}}}"#,
                "protocol.tcp.workerID must be an integer 0..=255, got 256",
            ),
            (
                r#"{"protocol":{"rtu":{"endpoint":"/dev/x","workerID":0}}}"#,
                "protocol.rtu.workerID: must be 1 to 247, got 0",
            ),
            (
                r#"{"protocol":{"rtu":{"endpoint":"/dev/x","workerID":1,"parity":"X"}}}"#,
                "protocol.rtu.parity must be one of N, E or O, got \"X\"",
            ),
            (
                r#"{"protocol":{"rtu":{"endpoint":"/dev/x","workerID":1,"dataBits":7}}}"#,
                "protocol.rtu.dataBits: Modbus RTU needs 8 data bits, got 7",
            ),
            (
                r#"{"protocol":{"rtu":{"endpoint":"/dev/x","workerID":1,"stopBits":3}}}"#,
                "protocol.rtu.stopBits: must be 1 or 2, got 3",
            ),
            (
                r#"{"protocol":{"rtu":{"endpoint":"/dev/x","workerID":1,"baudRate":0}}}"#,
                "protocol.rtu.baudRate: must be a positive baud rate",
            ),
        ] {
            assert_eq!(err(spec), expected, "{spec}");
        }
        assert!(err("{").starts_with("spec is not valid JSON"));
        assert_eq!(err("[1]"), "spec must be an object, got an array");
    }

    /// What the shared model types take that Octopus's CRD did not, and what the
    /// adaptor leaves to the limb.
    #[test]
    fn tcp_unit_ids_numeric_operands_and_the_extension() {
        for unit in [0, 255] {
            let spec = parse(&format!(
                r#"{{"protocol":{{"tcp":{{"endpoint":"a:1","workerID":{unit}}}}}}}"#
            ))
            .unwrap();
            assert_eq!(spec.unit, unit);
        }
        let spec = parse(&with_properties(
            r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":0,
                "orderOfOperations":[{"type":"Multiply","value":2.5},{"type":"Add","value":-1}]}}"#,
        ))
        .unwrap();
        assert_eq!(
            spec.properties[0].operations,
            [Operation::Multiply(2.5), Operation::Add(-1.0)]
        );
        // The limb reads (and validates) the extension; the adaptor does not decode it.
        assert!(parse(&format!(r#"{{{TCP},"extension":5}}"#)).is_ok());
        assert_eq!(
            err(r#"{"protocol":{"tcp":{"endpoint":" ","workerID":1}}}"#),
            "protocol.tcp.endpoint: must not be empty"
        );
    }

    #[test]
    fn parameter_errors_name_the_field() {
        let spec = |parameters: &str| format!(r#"{{{TCP},"parameters":{parameters}}}"#);
        assert!(
            err(&spec(r#"{"syncInterval":"soon"}"#))
                .starts_with("parameters.syncInterval: invalid duration \"soon\"")
        );
        assert_eq!(
            err(&spec(r#"{"timeout":"0s"}"#)),
            "parameters.timeout: must be positive"
        );
        assert!(err(&spec(r#"{"timeout":5}"#)).starts_with("parameters.timeout must be a string"));
    }

    #[test]
    fn types_must_fit_tables_and_quantities() {
        let visitor = |register: &str, quantity: u32, kind: &str| {
            format!(
                r#"{{"name":"p","type":"{kind}","readOnly":true,"visitor":{{"register":"{register}","offset":0,"quantity":{quantity}}}}}"#
            )
        };
        let three = format!(
            r#"{},{},{}"#,
            visitor("HoldingRegister", 1, "int16"),
            r#"{"name":"q","type":"int16","visitor":{"register":"InputRegister","offset":1}}"#,
            visitor("HoldingRegister", 1, "int32").replace("\"p\"", "\"r\""),
        );
        assert_eq!(
            err(&with_properties(&three)),
            "properties[2].visitor.quantity: int32 needs 2 registers, got 1"
        );
        for (register, quantity, kind, ok) in [
            ("CoilRegister", 1, "boolean", true),
            ("CoilRegister", 8, "boolean", true),
            ("CoilRegister", 8, "hexString", true),
            ("CoilRegister", 1, "hexString", false),
            ("DiscreteInputRegister", 2000, "hexString", true),
            ("DiscreteInputRegister", 2001, "hexString", false),
            ("CoilRegister", 1, "int16", false),
            ("HoldingRegister", 1, "int16", true),
            ("HoldingRegister", 1, "uint16", true),
            ("HoldingRegister", 2, "int16", false),
            ("InputRegister", 2, "int", true),
            ("InputRegister", 2, "uint", true),
            ("InputRegister", 2, "float", true),
            ("InputRegister", 4, "float", false),
            ("InputRegister", 4, "int64", true),
            ("InputRegister", 4, "uint64", true),
            ("InputRegister", 4, "double", true),
            ("InputRegister", 2, "double", false),
            ("InputRegister", 3, "hexString", true),
            ("InputRegister", 10, "string", true),
            ("InputRegister", 125, "string", true),
            ("InputRegister", 126, "string", false),
            ("InputRegister", 1, "boolean", true),
            ("InputRegister", 0, "boolean", false),
        ] {
            let result = parse(&with_properties(&visitor(register, quantity, kind)));
            assert_eq!(
                result.is_ok(),
                ok,
                "{register} {quantity} {kind}: {result:?}"
            );
        }
        assert_eq!(
            property_err(&visitor("CoilRegister", 1, "float")),
            "properties[0].type: CoilRegister holds bits: use boolean or hexString, not float"
        );
        assert_eq!(
            property_err(&visitor("InputRegister", 0, "int16")),
            "properties[0].visitor.quantity: must be at least 1, got 0"
        );
    }

    #[test]
    fn property_errors_name_the_field() {
        for (property, expected) in [
            (
                r#"{"type":"int16","visitor":{"register":"HoldingRegister","offset":0}}"#,
                "properties[0].name is required",
            ),
            (
                r#"{"name":"p","type":"decimal","visitor":{"register":"HoldingRegister","offset":0}}"#,
                "properties[0].type must be one of int16, int, int32,",
            ),
            (
                r#"{"name":"p","type":"int16"}"#,
                "properties[0].visitor is required",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"Holding","offset":0}}"#,
                "properties[0].visitor.register must be one of CoilRegister,",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister"}}"#,
                "properties[0].visitor.offset is required",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":65536}}"#,
                "properties[0].visitor.offset must be an integer 0..=65535, got 65536",
            ),
            (
                r#"{"name":"p","type":"int32","visitor":{"register":"HoldingRegister","offset":65535,"quantity":2}}"#,
                "properties[0].visitor.quantity: offset 65535 + quantity 2 runs past",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":0,"endianness":"Middle"}}"#,
                "properties[0].visitor.endianness must be one of BigEndian,",
            ),
            (
                r#"{"name":"p","type":"int16","readOnly":"no","visitor":{"register":"HoldingRegister","offset":0}}"#,
                "properties[0].readOnly must be a boolean, got \"no\"",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":0,
                   "orderOfOperations":[{"type":"Add","value":"1"},{"type":"Divide","value":"0"}]}}"#,
                "properties[0].visitor.orderOfOperations[1].value: division by zero",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":0,
                   "orderOfOperations":[{"type":"Power","value":"2"}]}}"#,
                "properties[0].visitor.orderOfOperations[0].type must be one of Add, Subtract, Multiply or Divide, got \"Power\"",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":0,
                   "orderOfOperations":[{"type":"Add","value":"one"}]}}"#,
                "properties[0].visitor.orderOfOperations[0].value: \"one\" is not a number",
            ),
            (
                r#"{"name":"p","type":"string","visitor":{"register":"HoldingRegister","offset":0,
                   "orderOfOperations":[{"type":"Add","value":"1"}]}}"#,
                "properties[0].visitor.orderOfOperations: string values take no arithmetic",
            ),
        ] {
            let message = property_err(property);
            assert!(
                message.starts_with(expected),
                "{message}\n  expected {expected}"
            );
        }
        let twice =
            r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":0}}"#;
        assert_eq!(
            property_err(&format!("{twice},{twice}")),
            "properties[1].name: duplicate property name \"p\""
        );
        assert_eq!(
            err(&format!(r#"{{{TCP},"properties":{{}}}}"#)),
            "properties must be an array, got an object"
        );
    }

    #[test]
    fn values_to_write_are_checked_and_encoded() {
        let property = |register: &str, kind: &str, quantity: u32, extra: &str, value: &str| {
            format!(
                r#"{{"name":"p","type":"{kind}"{extra},"value":"{value}","visitor":{{"register":"{register}","offset":4,"quantity":{quantity},"endianness":"LittleEndian"}}}}"#
            )
        };
        let write = |text: String| {
            parse(&with_properties(&text)).unwrap().properties[0]
                .write
                .clone()
                .unwrap()
                .request
        };
        assert_eq!(
            write(property("CoilRegister", "boolean", 1, "", "true")),
            Request::WriteCoil {
                address: 4,
                value: true
            }
        );
        assert_eq!(
            write(property("CoilRegister", "hexString", 10, "", "0d03")),
            Request::WriteCoils {
                address: 4,
                values: vec![
                    true, false, true, true, false, false, false, false, true, true
                ]
            }
        );
        assert_eq!(
            write(property("HoldingRegister", "int32", 2, "", "-2")),
            Request::WriteRegisters {
                address: 4,
                values: vec![0xfffe, 0xffff]
            }
        );
        assert_eq!(
            write(property("HoldingRegister", "uint16", 1, "", "65535")),
            Request::WriteRegister {
                address: 4,
                value: 0xffff
            }
        );
        for (text, expected) in [
            (
                property("HoldingRegister", "int16", 1, "", "40000"),
                "properties[0].value: \"40000\" is not a valid int16",
            ),
            (
                property("CoilRegister", "boolean", 1, "", "on"),
                "properties[0].value: \"on\" is not a boolean",
            ),
            (
                property("InputRegister", "int16", 1, "", "1"),
                "properties[0].value: InputRegister cannot be written",
            ),
            (
                property("HoldingRegister", "int16", 1, r#","readOnly":true"#, "1"),
                "properties[0].value: a readOnly property takes no value to write",
            ),
            (
                property("HoldingRegister", "string", 124, "", "x"),
                "properties[0].value: at most 123 registers can be written at once, got 124",
            ),
        ] {
            assert_eq!(property_err(&text), expected);
        }
    }

    #[test]
    fn read_signature_changes_with_the_visitor() {
        let spec = |offset: u32| {
            parse(&with_properties(&format!(
                r#"{{"name":"p","type":"int16","visitor":{{"register":"HoldingRegister","offset":{offset}}}}}"#
            )))
            .unwrap()
            .properties
            .remove(0)
        };
        assert_eq!(spec(1).read_signature(), spec(1).read_signature());
        assert_ne!(spec(1).read_signature(), spec(2).read_signature());
    }
}
