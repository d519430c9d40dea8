//! Parsing and validation of a `ModbusDevice` spec (`template.spec` of a DeviceLink).
//!
//! Parsing works on a `serde_json::Value` by hand so that every error names the JSON
//! path of the problem (`properties[2].visitor.quantity: ...`), and everything that
//! can be checked before talking to the device is: types against tables and
//! quantities, values to write against their types, operands of the arithmetic.
//! Unknown fields (such as `extension`) are ignored.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::codec::{MAX_READ_BITS, MAX_READ_REGISTERS, MAX_WRITE_COILS, MAX_WRITE_REGISTERS};
use crate::codec::{Request, Table};
use crate::duration;
use crate::value::{self, Endianness, Operation, ValueType};

/// Poll interval when the spec gives none.
pub const DEFAULT_SYNC_INTERVAL: &str = "15s";
/// Request timeout when the spec gives none.
pub const DEFAULT_TIMEOUT: &str = "10s";

/// A spec that cannot be used; the message starts with the offending field's path.
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

/// Parses and validates a spec.
pub fn parse(spec: &str) -> Result<Spec> {
    let value: Value = serde_json::from_str(spec)
        .map_err(|e| SpecError(format!("spec is not valid JSON: {e}")))?;
    let root = as_object(&value, "spec")?;
    let (link, unit) = parse_protocol(root)?;
    let parameters = match root.get("parameters") {
        None | Some(Value::Null) => None,
        Some(v) => Some(as_object(v, "parameters")?),
    };
    let poll_interval_ms = parse_duration(parameters, "syncInterval", DEFAULT_SYNC_INTERVAL)?;
    let timeout_ms = parse_duration(parameters, "timeout", DEFAULT_TIMEOUT)?;
    let timeout_ms = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    let properties = match root.get("properties") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_property(item, &format!("properties[{i}]")))
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
        link,
        unit,
        poll_interval_ms,
        timeout_ms,
        properties,
    })
}

fn parse_protocol(root: &Map<String, Value>) -> Result<(Link, u8)> {
    let protocol = match root.get("protocol") {
        None | Some(Value::Null) => return Err(error("protocol", "is required")),
        Some(v) => as_object(v, "protocol")?,
    };
    let present = |key: &str| !matches!(protocol.get(key), None | Some(Value::Null));
    match (present("tcp"), present("rtu")) {
        (true, false) => {
            let tcp = object_at(protocol, "protocol", "tcp")?;
            let endpoint = required_string(tcp, "protocol.tcp", "endpoint")?;
            // Gateways and TCP-native slaves commonly use 0 or 255, so TCP takes any byte.
            let unit = required_u8(tcp, "protocol.tcp", "workerID", 0..=255)?;
            Ok((Link::Tcp { endpoint }, unit))
        }
        (false, true) => {
            let rtu = object_at(protocol, "protocol", "rtu")?;
            let path = "protocol.rtu";
            let endpoint = required_string(rtu, path, "endpoint")?;
            // 0 is broadcast (no reply) and 248-255 are reserved on a serial line.
            let unit = required_u8(rtu, path, "workerID", 1..=247)?;
            let baud_rate = optional_u64(rtu, path, "baudRate")?.unwrap_or(19_200);
            let baud_rate = u32::try_from(baud_rate)
                .ok()
                .filter(|b| *b > 0)
                .ok_or_else(|| error(&join(path, "baudRate"), "must be a positive baud rate"))?;
            let data_bits = optional_u64(rtu, path, "dataBits")?.unwrap_or(8);
            if data_bits != 8 {
                // RTU frames are 8-bit bytes; 5-7 data bits would corrupt every frame.
                return Err(error(
                    &join(path, "dataBits"),
                    format!("Modbus RTU needs 8 data bits, got {data_bits}"),
                ));
            }
            let parity = match optional_string(rtu, path, "parity")?.as_deref() {
                None | Some("E") => Parity::Even,
                Some("N") => Parity::None,
                Some("O") => Parity::Odd,
                Some(other) => {
                    return Err(error(
                        &join(path, "parity"),
                        format!("unknown parity {other:?} (expected N, E or O)"),
                    ));
                }
            };
            let stop_bits = match optional_u64(rtu, path, "stopBits")?.unwrap_or(1) {
                1 => 1,
                2 => 2,
                other => {
                    return Err(error(
                        &join(path, "stopBits"),
                        format!("must be 1 or 2, got {other}"),
                    ));
                }
            };
            let line = Line {
                baud_rate,
                data_bits: 8,
                parity,
                stop_bits,
            };
            Ok((Link::Rtu { endpoint, line }, unit))
        }
        (false, false) => Err(SpecError("protocol: needs one of tcp or rtu".to_owned())),
        (true, true) => Err(SpecError(
            "protocol: takes only one of tcp or rtu".to_owned(),
        )),
    }
}

fn parse_duration(
    parameters: Option<&Map<String, Value>>,
    key: &str,
    default: &str,
) -> Result<u64> {
    let path = join("parameters", key);
    let text = match parameters.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => default,
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(wrong_type(
                &path,
                "a duration string such as \"15s\"",
                other,
            ));
        }
    };
    let ms = duration::parse_ms(text)
        .map_err(|why| error(&path, format!("invalid duration {text:?}: {why}")))?;
    if ms == 0 {
        return Err(error(&path, "must be positive"));
    }
    Ok(ms)
}

fn parse_property(item: &Value, path: &str) -> Result<Property> {
    let object = as_object(item, path)?;
    let name = required_string(object, path, "name")?;
    let type_name = required_string(object, path, "type")?;
    let kind = ValueType::parse(&type_name).ok_or_else(|| {
        error(
            &join(path, "type"),
            format!(
                "unknown type {type_name:?} (expected int16, int, int32, int64, uint16, uint, \
                 uint32, uint64, float, double, boolean, hexString or string)"
            ),
        )
    })?;
    let read_only = match object.get("readOnly") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(wrong_type(&join(path, "readOnly"), "a boolean", other)),
    };
    let value = optional_string(object, path, "value")?;

    let visitor_path = join(path, "visitor");
    let visitor = object_at(object, path, "visitor")?;
    let register = required_string(visitor, &visitor_path, "register")?;
    let table = Table::parse(&register).ok_or_else(|| {
        error(
            &join(&visitor_path, "register"),
            format!(
                "unknown register {register:?} (expected CoilRegister, DiscreteInputRegister, \
                 InputRegister or HoldingRegister)"
            ),
        )
    })?;
    let offset = match optional_u64(visitor, &visitor_path, "offset")? {
        None => return Err(error(&join(&visitor_path, "offset"), "is required")),
        Some(n) => u16::try_from(n).map_err(|_| {
            error(
                &join(&visitor_path, "offset"),
                format!("{n} is not a register address (0-65535)"),
            )
        })?,
    };
    let quantity_path = join(&visitor_path, "quantity");
    let quantity = optional_u64(visitor, &visitor_path, "quantity")?.unwrap_or(1);
    let quantity = u16::try_from(quantity)
        .ok()
        .filter(|q| *q >= 1)
        .ok_or_else(|| {
            error(
                &quantity_path,
                format!("must be at least 1, got {quantity}"),
            )
        })?;
    if u32::from(offset) + u32::from(quantity) > 65_536 {
        return Err(error(
            &quantity_path,
            format!("offset {offset} + quantity {quantity} runs past address 65535"),
        ));
    }
    check_shape(kind, table, quantity, path)?;
    let endianness = match optional_string(visitor, &visitor_path, "endianness")? {
        None => Endianness::default(),
        Some(name) => Endianness::parse(&name).ok_or_else(|| {
            error(
                &join(&visitor_path, "endianness"),
                format!(
                    "unknown endianness {name:?} (expected BigEndian, BigEndianSwap, \
                     LittleEndian or LittleEndianSwap)"
                ),
            )
        })?,
    };
    let operations = parse_operations(visitor, &visitor_path, kind)?;

    let mut property = Property {
        name,
        type_name,
        kind,
        table,
        offset,
        quantity,
        endianness,
        operations,
        write: None,
        signature: String::new(),
    };
    property.signature = signature_of(&property);
    if let Some(value) = value {
        let value_path = join(path, "value");
        if read_only {
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
        let request = write_request(&property, &value).map_err(|e| error(&value_path, e))?;
        property.write = Some(Write { value, request });
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
    visitor: &Map<String, Value>,
    visitor_path: &str,
    kind: ValueType,
) -> Result<Vec<Operation>> {
    let path = join(visitor_path, "orderOfOperations");
    let items = match visitor.get("orderOfOperations") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type(&path, "an array", other)),
    };
    if !items.is_empty() && !kind.is_arithmetic() {
        return Err(error(
            &path,
            format!("{} values take no arithmetic", kind.name()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            let object = as_object(item, &item_path)?;
            let op = required_string(object, &item_path, "type")?;
            let operand_path = join(&item_path, "value");
            let operand: f64 = match object.get("value") {
                None | Some(Value::Null) => return Err(error(&operand_path, "is required")),
                Some(Value::String(s)) => s
                    .trim()
                    .parse()
                    .map_err(|_| error(&operand_path, format!("{s:?} is not a number")))?,
                Some(Value::Number(n)) => n
                    .as_f64()
                    .ok_or_else(|| error(&operand_path, "is not a number"))?,
                Some(other) => return Err(wrong_type(&operand_path, "a number string", other)),
            };
            if !operand.is_finite() {
                return Err(error(&operand_path, "must be finite"));
            }
            match op.as_str() {
                "Add" => Ok(Operation::Add(operand)),
                "Subtract" => Ok(Operation::Subtract(operand)),
                "Multiply" => Ok(Operation::Multiply(operand)),
                "Divide" if operand == 0.0 => Err(error(&operand_path, "division by zero")),
                "Divide" => Ok(Operation::Divide(operand)),
                other => Err(error(
                    &join(&item_path, "type"),
                    format!(
                        "unknown operation {other:?} (expected Add, Subtract, Multiply or Divide)"
                    ),
                )),
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
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
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
    error(path, format!("must be {expected}, found {found}"))
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(path, "an object", value))
}

fn object_at<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a Map<String, Value>> {
    let path = join(parent, key);
    match object.get(key) {
        None | Some(Value::Null) => Err(error(&path, "is required")),
        Some(value) => as_object(value, &path),
    }
}

fn required_string(object: &Map<String, Value>, parent: &str, key: &str) -> Result<String> {
    let path = join(parent, key);
    match object.get(key) {
        None | Some(Value::Null) => Err(error(&path, "is required")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(error(&path, "must not be empty")),
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

fn optional_u64(object: &Map<String, Value>, parent: &str, key: &str) -> Result<Option<u64>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            error(
                &join(parent, key),
                format!("{n} is not a non-negative integer"),
            )
        }),
        Some(other) => Err(wrong_type(&join(parent, key), "an integer", other)),
    }
}

fn required_u8(
    object: &Map<String, Value>,
    parent: &str,
    key: &str,
    range: std::ops::RangeInclusive<u8>,
) -> Result<u8> {
    let path = join(parent, key);
    let n = optional_u64(object, parent, key)?.ok_or_else(|| error(&path, "is required"))?;
    u8::try_from(n)
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            error(
                &path,
                format!("must be {} to {}, got {n}", range.start(), range.end()),
            )
        })
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
            (r#"{}"#, "protocol: is required"),
            (r#"{"protocol":{}}"#, "protocol: needs one of tcp or rtu"),
            (
                r#"{"protocol":{"tcp":{"endpoint":"a:1","workerID":1},"rtu":{"endpoint":"/dev/x","workerID":1}}}"#,
                "protocol: takes only one of tcp or rtu",
            ),
            (
                r#"{"protocol":{"tcp":{"workerID":1}}}"#,
                "protocol.tcp.endpoint: is required",
            ),
            (
                r#"{"protocol":{"tcp":{"endpoint":"a:1"}}}"#,
                "protocol.tcp.workerID: is required",
            ),
            (
                r#"{"protocol":{"tcp":{"endpoint":"a:1","workerID":256}}}"#,
                "protocol.tcp.workerID: must be 0 to 255, got 256",
            ),
            (
                r#"{"protocol":{"rtu":{"endpoint":"/dev/x","workerID":0}}}"#,
                "protocol.rtu.workerID: must be 1 to 247, got 0",
            ),
            (
                r#"{"protocol":{"rtu":{"endpoint":"/dev/x","workerID":1,"parity":"X"}}}"#,
                "protocol.rtu.parity: unknown parity \"X\" (expected N, E or O)",
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
        assert!(err("[").starts_with("spec is not valid JSON"));
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
        assert!(err(&spec(r#"{"timeout":5}"#)).starts_with("parameters.timeout: must be"));
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
                "properties[0].name: is required",
            ),
            (
                r#"{"name":"p","type":"decimal","visitor":{"register":"HoldingRegister","offset":0}}"#,
                "properties[0].type: unknown type \"decimal\"",
            ),
            (
                r#"{"name":"p","type":"int16"}"#,
                "properties[0].visitor: is required",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"Holding","offset":0}}"#,
                "properties[0].visitor.register: unknown register \"Holding\"",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister"}}"#,
                "properties[0].visitor.offset: is required",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":65536}}"#,
                "properties[0].visitor.offset: 65536 is not a register address",
            ),
            (
                r#"{"name":"p","type":"int32","visitor":{"register":"HoldingRegister","offset":65535,"quantity":2}}"#,
                "properties[0].visitor.quantity: offset 65535 + quantity 2 runs past",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":0,"endianness":"Middle"}}"#,
                "properties[0].visitor.endianness: unknown endianness \"Middle\"",
            ),
            (
                r#"{"name":"p","type":"int16","readOnly":"no","visitor":{"register":"HoldingRegister","offset":0}}"#,
                "properties[0].readOnly: must be a boolean",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":0,
                   "orderOfOperations":[{"type":"Add","value":"1"},{"type":"Divide","value":"0"}]}}"#,
                "properties[0].visitor.orderOfOperations[1].value: division by zero",
            ),
            (
                r#"{"name":"p","type":"int16","visitor":{"register":"HoldingRegister","offset":0,
                   "orderOfOperations":[{"type":"Power","value":"2"}]}}"#,
                "properties[0].visitor.orderOfOperations[0].type: unknown operation \"Power\"",
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
            "properties: must be an array, found an object"
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
