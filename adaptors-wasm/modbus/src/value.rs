//! Typed values over Modbus registers and coils: byte orders, decoding for the status,
//! encoding of values to write, and the `orderOfOperations` arithmetic.
//!
//! Everything here is pure so that every type and byte order can be tested natively.

use std::fmt::Write as _;

use octopus_adaptor_sdk::text;

/// The type of a property value, as the spec's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Int16,
    Int32,
    Int64,
    Uint16,
    Uint32,
    Uint64,
    Float,
    Double,
    Boolean,
    HexString,
    String,
}

impl ValueType {
    /// The canonical name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Int16 => "int16",
            ValueType::Int32 => "int32",
            ValueType::Int64 => "int64",
            ValueType::Uint16 => "uint16",
            ValueType::Uint32 => "uint32",
            ValueType::Uint64 => "uint64",
            ValueType::Float => "float",
            ValueType::Double => "double",
            ValueType::Boolean => "boolean",
            ValueType::HexString => "hexString",
            ValueType::String => "string",
        }
    }

    /// How many 16-bit registers a fixed-size type occupies; `None` for the types that
    /// take any quantity (boolean, hexString, string).
    pub fn registers(self) -> Option<u16> {
        match self {
            ValueType::Int16 | ValueType::Uint16 => Some(1),
            ValueType::Int32 | ValueType::Uint32 | ValueType::Float => Some(2),
            ValueType::Int64 | ValueType::Uint64 | ValueType::Double => Some(4),
            ValueType::Boolean | ValueType::HexString | ValueType::String => None,
        }
    }

    /// Whether `orderOfOperations` can apply (booleans count as 0 and 1).
    pub fn is_arithmetic(self) -> bool {
        !matches!(self, ValueType::HexString | ValueType::String)
    }
}

/// Byte order of a multi-register value, relative to the big-endian bytes `ABCD...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endianness {
    /// `ABCD`: as the registers arrive.
    #[default]
    BigEndian,
    /// `BADC`: bytes swapped inside each register.
    BigEndianSwap,
    /// `CDAB`: register order reversed, bytes inside registers kept.
    LittleEndian,
    /// `DCBA`: everything reversed.
    LittleEndianSwap,
}

impl Endianness {
    pub fn name(self) -> &'static str {
        match self {
            Endianness::BigEndian => "BigEndian",
            Endianness::BigEndianSwap => "BigEndianSwap",
            Endianness::LittleEndian => "LittleEndian",
            Endianness::LittleEndianSwap => "LittleEndianSwap",
        }
    }

    /// Converts between wire order and big-endian order, in place. Every order is its
    /// own inverse, so the same call serves decoding and encoding.
    pub fn reorder(self, bytes: &mut [u8]) {
        match self {
            Endianness::BigEndian => {}
            Endianness::BigEndianSwap => swap_pairs(bytes),
            Endianness::LittleEndian => {
                bytes.reverse();
                swap_pairs(bytes);
            }
            Endianness::LittleEndianSwap => bytes.reverse(),
        }
    }
}

fn swap_pairs(bytes: &mut [u8]) {
    for pair in bytes.chunks_exact_mut(2) {
        pair.swap(0, 1);
    }
}

/// One arithmetic step of `orderOfOperations`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operation {
    Add(f64),
    Subtract(f64),
    Multiply(f64),
    Divide(f64),
}

impl Operation {
    fn apply(self, x: f64) -> f64 {
        match self {
            Operation::Add(v) => x + v,
            Operation::Subtract(v) => x - v,
            Operation::Multiply(v) => x * v,
            Operation::Divide(v) => x / v,
        }
    }
}

/// Applies the operations in order, in f64.
pub fn operate(operations: &[Operation], x: f64) -> f64 {
    operations.iter().fold(x, |acc, op| op.apply(acc))
}

/// A decoded value, kept in its own type so integers render exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Uint(u64),
    Float(f32),
    Double(f64),
    Bool(bool),
    Text(String),
}

impl Value {
    /// The status form: integers exactly, floats as Go's `fmt.Sprint` wrote them
    /// (shortest round-trip digits; [`go_float`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    /// Replaces `out` with [`Value::render`], reusing its buffer. Integers, what most
    /// registers hold, skip `core::fmt`.
    pub fn render_into(&self, out: &mut String) {
        out.clear();
        match self {
            Value::Int(v) => {
                if *v < 0 {
                    out.push('-');
                }
                text::push_decimal(out, v.unsigned_abs());
            }
            Value::Uint(v) => text::push_decimal(out, *v),
            Value::Float(v) => go_float(out, *v),
            Value::Double(v) => go_float(out, *v),
            Value::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            Value::Text(v) => out.push_str(v),
        }
    }

    /// The number arithmetic works on. A float32 goes through its shortest decimal
    /// form so that `0.1` stays 0.1 rather than 0.10000000149.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(*v as f64),
            Value::Uint(v) => Some(*v as f64),
            Value::Float(v) => v.to_string().parse().ok(),
            Value::Double(v) => Some(*v),
            Value::Bool(v) => Some(if *v { 1.0 } else { 0.0 }),
            Value::Text(_) => None,
        }
    }
}

/// Writes a float as Go's `fmt.Sprint` does (`%v`), which is how Octopus's Modbus adaptor
/// wrote float values: the shortest digits that read back as the same number at the
/// value's width, a tie between two shortest candidates going to the even digit as Go's
/// does; plain decimals unless the decimal exponent is below -4 or at least 6
/// (`0.00012`, `999999`, `1.2e-05`, `1.5e+06`); `NaN`, `+Inf`, `-Inf`. Checked against
/// Go on 400,000 float64 and float32 values, random bit patterns among them.
fn go_float<F>(out: &mut String, v: F)
where
    F: Copy + PartialEq + PartialOrd + Default + std::fmt::LowerExp + std::str::FromStr,
{
    #[allow(clippy::eq_op, reason = "NaN is the one value unequal to itself")]
    if v != v {
        out.push_str("NaN");
        return;
    }
    let sci = format!("{v:e}");
    let (negative, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci.as_str()),
    };
    if sci == "inf" {
        out.push_str(if negative { "-Inf" } else { "+Inf" });
        return;
    }
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    // Two shortest candidates for one value: the one nearer the exact value wins, and
    // an exact tie goes to the even last digit (Rust's shortest takes the upper one).
    let reads_back = |d: &[u8]| {
        let text = format!(
            "{sign}{}.{}e{exponent}",
            d[0] as char,
            std::str::from_utf8(&d[1..]).unwrap_or("")
        );
        text.parse::<F>().ok() == Some(v)
    };
    if digits.len() >= 2 && digits[digits.len() - 1] % 2 == 1 {
        for step in [-1i8, 1] {
            let mut other = digits.clone();
            let last = other.len() - 1;
            let d = other[last] as i8 + step;
            if !(b'0' as i8..=b'9' as i8).contains(&d) {
                continue;
            }
            other[last] = d as u8;
            if !reads_back(&other) {
                continue;
            }
            // The midpoint of the two, exactly; a tie when the value is exactly it.
            let lower = if step < 0 { &other } else { &digits };
            let mut mid: Vec<u8> = lower.clone();
            mid.push(b'5');
            let exact = format!("{:.1100e}", v);
            let exact = exact.trim_start_matches('-');
            let (m, _) = exact.split_once('e').unwrap_or((exact, ""));
            let exact_digits: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
            let significant = exact_digits
                .iter()
                .rposition(|&c| c != b'0')
                .map_or(0, |i| i + 1);
            if exact_digits[..significant] == mid[..] {
                digits = other;
                break;
            }
        }
    }
    let digits = std::str::from_utf8(&digits).unwrap_or("0");
    if (-4..6).contains(&exponent) {
        out.push_str(sign);
        if exponent >= 0 {
            let point = usize::try_from(exponent).unwrap_or(0) + 1;
            if digits.len() <= point {
                out.push_str(digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n(
                '0',
                usize::try_from(-exponent - 1).unwrap_or(0),
            ));
            out.push_str(digits);
        }
    } else {
        out.push_str(sign);
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let esign = if exponent < 0 { '-' } else { '+' };
        out.push('e');
        out.push(esign);
        let e = exponent.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
    }
}

/// Renders an arithmetic result as Octopus did, Go's `strconv.FormatFloat(x, 'f', 6, 64)`:
/// six decimals, correctly rounded (`27.100000000000023` is `"27.100000"`), so readers
/// of `operatedValue` see the same text; Go's spellings of the non-finite values.
pub fn render_f64(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{x:.6}")
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Registers as their big-endian wire bytes.
pub fn register_bytes(registers: &[u16]) -> Vec<u8> {
    registers.iter().flat_map(|r| r.to_be_bytes()).collect()
}

fn bytes_to_registers(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
        .collect()
}

/// Packs bits LSB-first, as Modbus packs coils in a PDU.
pub fn pack_bits(bits: &[bool]) -> Vec<u8> {
    bits.chunks(8)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |acc, (i, &bit)| acc | (u8::from(bit) << i))
        })
        .collect()
}

/// Unpacks `count` bits LSB-first; missing bytes read as zero.
pub fn unpack_bits(bytes: &[u8], count: usize) -> Vec<bool> {
    (0..count)
        .map(|i| bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .collect()
}

/// Decodes registers (wire order) into a value of `kind`. The bytes of hexString and
/// string values follow the byte order too, so devices that swap the bytes of text can
/// be read; the default (BigEndian) is the raw register order.
pub fn decode_registers(
    kind: ValueType,
    endianness: Endianness,
    registers: &[u16],
) -> Result<Value, String> {
    if let Some(needed) = kind.registers()
        && registers.len() != usize::from(needed)
    {
        return Err(format!(
            "{} needs {needed} registers, got {}",
            kind.name(),
            registers.len()
        ));
    }
    let mut bytes = register_bytes(registers);
    endianness.reorder(&mut bytes);
    let value = match kind {
        ValueType::Int16 => Value::Int(i64::from(i16::from_be_bytes(array(&bytes)?))),
        ValueType::Int32 => Value::Int(i64::from(i32::from_be_bytes(array(&bytes)?))),
        ValueType::Int64 => Value::Int(i64::from_be_bytes(array(&bytes)?)),
        ValueType::Uint16 => Value::Uint(u64::from(u16::from_be_bytes(array(&bytes)?))),
        ValueType::Uint32 => Value::Uint(u64::from(u32::from_be_bytes(array(&bytes)?))),
        ValueType::Uint64 => Value::Uint(u64::from_be_bytes(array(&bytes)?)),
        ValueType::Float => Value::Float(f32::from_be_bytes(array(&bytes)?)),
        ValueType::Double => Value::Double(f64::from_be_bytes(array(&bytes)?)),
        ValueType::Boolean => Value::Bool(bytes.iter().any(|&b| b != 0)),
        ValueType::HexString => Value::Text(hex(&bytes)),
        ValueType::String => {
            let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            Value::Text(String::from_utf8_lossy(&bytes[..end]).into_owned())
        }
    };
    Ok(value)
}

fn array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", bytes.len()))
}

/// Decodes coils or discrete inputs into a value: a boolean (any bit set) or the
/// packed bits as hex.
pub fn decode_bits(kind: ValueType, bits: &[bool]) -> Result<Value, String> {
    match kind {
        ValueType::Boolean => Ok(Value::Bool(bits.iter().any(|&b| b))),
        ValueType::HexString => Ok(Value::Text(hex(&pack_bits(bits)))),
        other => Err(format!("{} cannot be read from bits", other.name())),
    }
}

/// Parses a boolean the way a spec writes one.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Parses hex digits (an optional `0x` prefix allowed) into exactly `len` bytes.
fn parse_hex(text: &str, len: usize) -> Result<Vec<u8>, String> {
    let t = text.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if digits.len() != len * 2 {
        return Err(format!(
            "needs exactly {} hex digits, got {}",
            len * 2,
            digits.len()
        ));
    }
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not hexadecimal"));
    }
    (0..len)
        .map(|i| {
            u8::from_str_radix(&digits[i * 2..i * 2 + 2], 16)
                .map_err(|_| format!("{text:?} is not hexadecimal"))
        })
        .collect()
}

fn parse_number<T: std::str::FromStr>(text: &str, kind: ValueType) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a valid {}", kind.name()))
}

/// Encodes `text` as `quantity` registers (wire order) of `kind`. The inverse of
/// [`decode_registers`]; fails when the text does not parse or does not fit.
pub fn encode_registers(
    kind: ValueType,
    endianness: Endianness,
    quantity: u16,
    text: &str,
) -> Result<Vec<u16>, String> {
    let len = usize::from(quantity) * 2;
    let mut bytes: Vec<u8> = match kind {
        ValueType::Int16 => parse_number::<i16>(text, kind)?.to_be_bytes().to_vec(),
        ValueType::Int32 => parse_number::<i32>(text, kind)?.to_be_bytes().to_vec(),
        ValueType::Int64 => parse_number::<i64>(text, kind)?.to_be_bytes().to_vec(),
        ValueType::Uint16 => parse_number::<u16>(text, kind)?.to_be_bytes().to_vec(),
        ValueType::Uint32 => parse_number::<u32>(text, kind)?.to_be_bytes().to_vec(),
        ValueType::Uint64 => parse_number::<u64>(text, kind)?.to_be_bytes().to_vec(),
        ValueType::Float => parse_number::<f32>(text, kind)?.to_be_bytes().to_vec(),
        ValueType::Double => parse_number::<f64>(text, kind)?.to_be_bytes().to_vec(),
        ValueType::Boolean => {
            let on = parse_bool(text).ok_or_else(|| format!("{text:?} is not a boolean"))?;
            let mut bytes = vec![0; len];
            if let Some(last) = bytes.last_mut() {
                *last = u8::from(on);
            }
            bytes
        }
        ValueType::HexString => parse_hex(text, len)?,
        ValueType::String => {
            if !text.is_ascii() {
                return Err(format!("{text:?} is not ASCII"));
            }
            if text.len() > len {
                return Err(format!(
                    "{} characters do not fit in {quantity} registers ({len} at most)",
                    text.len()
                ));
            }
            let mut bytes = text.as_bytes().to_vec();
            bytes.resize(len, 0);
            bytes
        }
    };
    if bytes.len() != len {
        return Err(format!(
            "{} needs {} registers, got {quantity}",
            kind.name(),
            bytes.len() / 2
        ));
    }
    endianness.reorder(&mut bytes);
    Ok(bytes_to_registers(&bytes))
}

/// Encodes `text` as `quantity` coils: a boolean sets them all, a hexString gives
/// the packed bits.
pub fn encode_bits(kind: ValueType, quantity: u16, text: &str) -> Result<Vec<bool>, String> {
    let count = usize::from(quantity);
    match kind {
        ValueType::Boolean => {
            let on = parse_bool(text).ok_or_else(|| format!("{text:?} is not a boolean"))?;
            Ok(vec![on; count])
        }
        ValueType::HexString => {
            let bytes = parse_hex(text, count.div_ceil(8))?;
            let bits = unpack_bits(&bytes, count);
            if pack_bits(&bits) != bytes {
                return Err(format!("{text:?} sets bits beyond the {count} coils"));
            }
            Ok(bits)
        }
        other => Err(format!("{} cannot be written to coils", other.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Endianness::*;
    use ValueType::*;

    const ORDERS: [Endianness; 4] = [BigEndian, BigEndianSwap, LittleEndian, LittleEndianSwap];

    fn regs(bytes: &[u8]) -> Vec<u16> {
        bytes_to_registers(bytes)
    }

    /// Decodes the wire bytes and checks that encoding the rendered value gives them back.
    fn check(kind: ValueType, order: Endianness, wire: &[u8], expected: &str) {
        let registers = regs(wire);
        let value = decode_registers(kind, order, &registers).unwrap();
        assert_eq!(value.render(), expected, "{kind:?} {order:?} decode");
        let quantity = u16::try_from(registers.len()).unwrap();
        let encoded = encode_registers(kind, order, quantity, expected).unwrap();
        assert_eq!(
            register_bytes(&encoded),
            wire,
            "{kind:?} {order:?} encode {expected}"
        );
    }

    #[test]
    fn renders_integers_as_display_does_and_reuses_the_buffer() {
        let mut out = std::string::String::from("left over from the last poll");
        for v in [
            0,
            1,
            -1,
            9,
            -10,
            65_535,
            i64::from(i32::MIN),
            i64::MIN,
            i64::MAX,
        ] {
            Value::Int(v).render_into(&mut out);
            assert_eq!(out, v.to_string());
        }
        for v in [0, 10, 4_294_967_295, u64::MAX] {
            Value::Uint(v).render_into(&mut out);
            assert_eq!(out, v.to_string());
        }
        Value::Float(0.1).render_into(&mut out);
        assert_eq!(out, "0.1");
        Value::Bool(false).render_into(&mut out);
        assert_eq!(out, "false");
    }

    #[test]
    fn reorder_follows_abcd_names_for_32_and_64_bits() {
        let cases: [(Endianness, &[u8]); 4] = [
            (BigEndian, b"ABCDEFGH"),
            (BigEndianSwap, b"BADCFEHG"),
            (LittleEndian, b"GHEFCDAB"),
            (LittleEndianSwap, b"HGFEDCBA"),
        ];
        for (order, expected) in cases {
            let mut bytes = *b"ABCDEFGH";
            order.reorder(&mut bytes);
            assert_eq!(&bytes, expected, "{order:?}");
            order.reorder(&mut bytes);
            assert_eq!(&bytes, b"ABCDEFGH", "{order:?} is an involution");
        }
        let cases32: [(Endianness, &[u8]); 4] = [
            (BigEndian, b"ABCD"),
            (BigEndianSwap, b"BADC"),
            (LittleEndian, b"CDAB"),
            (LittleEndianSwap, b"DCBA"),
        ];
        for (order, expected) in cases32 {
            let mut bytes = *b"ABCD";
            order.reorder(&mut bytes);
            assert_eq!(&bytes, expected, "{order:?}");
        }
    }

    #[test]
    fn sixteen_bit_values_only_swap_bytes() {
        for (order, wire) in [
            (BigEndian, [0xff, 0xfe]),
            (BigEndianSwap, [0xfe, 0xff]),
            (LittleEndian, [0xff, 0xfe]),
            (LittleEndianSwap, [0xfe, 0xff]),
        ] {
            check(Int16, order, &wire, "-2");
            check(Uint16, order, &wire, "65534");
        }
        check(Int16, BigEndian, &[0x80, 0x00], "-32768");
        check(Int16, BigEndian, &[0x7f, 0xff], "32767");
        check(Uint16, BigEndianSwap, &[0x34, 0x12], "4660");
    }

    #[test]
    fn int32_in_all_orders_is_sign_extended() {
        check(Int32, BigEndian, &[0xff, 0xff, 0xff, 0xfe], "-2");
        check(Int32, BigEndianSwap, &[0xff, 0xff, 0xfe, 0xff], "-2");
        check(Int32, LittleEndian, &[0xff, 0xfe, 0xff, 0xff], "-2");
        check(Int32, LittleEndianSwap, &[0xfe, 0xff, 0xff, 0xff], "-2");
        check(Int32, BigEndian, &[0x12, 0x34, 0x56, 0x78], "305419896");
        check(Int32, BigEndianSwap, &[0x34, 0x12, 0x78, 0x56], "305419896");
        check(Int32, LittleEndian, &[0x56, 0x78, 0x12, 0x34], "305419896");
        check(
            Int32,
            LittleEndianSwap,
            &[0x78, 0x56, 0x34, 0x12],
            "305419896",
        );
        check(Int32, BigEndian, &[0x80, 0, 0, 0], "-2147483648");
    }

    #[test]
    fn uint32_and_float_in_all_orders() {
        check(Uint32, BigEndian, &[0xff, 0xff, 0xff, 0xfe], "4294967294");
        check(
            Uint32,
            BigEndianSwap,
            &[0x34, 0x12, 0x78, 0x56],
            "305419896",
        );
        check(Uint32, LittleEndian, &[0x56, 0x78, 0x12, 0x34], "305419896");
        check(
            Uint32,
            LittleEndianSwap,
            &[0x78, 0x56, 0x34, 0x12],
            "305419896",
        );
        // 24.5f32 = 0x41c40000
        check(Float, BigEndian, &[0x41, 0xc4, 0x00, 0x00], "24.5");
        check(Float, BigEndianSwap, &[0xc4, 0x41, 0x00, 0x00], "24.5");
        check(Float, LittleEndian, &[0x00, 0x00, 0x41, 0xc4], "24.5");
        check(Float, LittleEndianSwap, &[0x00, 0x00, 0xc4, 0x41], "24.5");
        // -0.1f32 = 0xbdcccccd
        check(Float, BigEndian, &[0xbd, 0xcc, 0xcc, 0xcd], "-0.1");
    }

    #[test]
    fn sixty_four_bit_values_in_all_orders() {
        let be = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        let wires: [(Endianness, [u8; 8]); 4] = [
            (BigEndian, be),
            (
                BigEndianSwap,
                [0x23, 0x01, 0x67, 0x45, 0xab, 0x89, 0xef, 0xcd],
            ),
            (
                LittleEndian,
                [0xcd, 0xef, 0x89, 0xab, 0x45, 0x67, 0x01, 0x23],
            ),
            (
                LittleEndianSwap,
                [0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01],
            ),
        ];
        for (order, wire) in wires {
            check(Uint64, order, &wire, "81985529216486895");
            check(Int64, order, &wire, "81985529216486895");
        }
        check(Uint64, BigEndian, &[0xff; 8], "18446744073709551615");
        check(Int64, LittleEndian, &[0xff; 8], "-1");
        check(
            Int64,
            LittleEndian,
            &[0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            "-2",
        );
        check(
            Int64,
            BigEndianSwap,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff],
            "-2",
        );
        // 1.5f64 = 0x3ff8000000000000
        let double_wires: [(Endianness, [u8; 8]); 4] = [
            (BigEndian, [0x3f, 0xf8, 0, 0, 0, 0, 0, 0]),
            (BigEndianSwap, [0xf8, 0x3f, 0, 0, 0, 0, 0, 0]),
            (LittleEndian, [0, 0, 0, 0, 0, 0, 0x3f, 0xf8]),
            (LittleEndianSwap, [0, 0, 0, 0, 0, 0, 0xf8, 0x3f]),
        ];
        for (order, wire) in double_wires {
            check(Double, order, &wire, "1.5");
        }
    }

    #[test]
    fn booleans_strings_and_hex_from_registers() {
        check(Boolean, BigEndian, &[0, 1], "true");
        check(Boolean, BigEndian, &[0, 0, 0, 0], "false");
        assert_eq!(
            decode_registers(Boolean, BigEndian, &[0x0100]).unwrap(),
            Value::Bool(true)
        );
        check(HexString, BigEndian, &[0xde, 0xad, 0xbe, 0xef], "deadbeef");
        check(
            HexString,
            BigEndianSwap,
            &[0xad, 0xde, 0xef, 0xbe],
            "deadbeef",
        );
        check(String, BigEndian, b"HELLO\0\0\0", "HELLO");
        check(String, BigEndianSwap, b"EHLL\0O\0\0", "HELLO");
        assert_eq!(
            encode_registers(HexString, BigEndian, 1, "0xBEEF").unwrap(),
            [0xbeef]
        );
    }

    #[test]
    fn encoding_checks_range_and_size() {
        for (kind, q, text) in [
            (Int16, 1, "32768"),
            (Int16, 1, "1.5"),
            (Uint16, 1, "-1"),
            (Uint16, 1, "65536"),
            (Int32, 2, "2147483648"),
            (Uint32, 2, "4294967296"),
            (Uint64, 4, "-1"),
            (Float, 2, "warm"),
            (Boolean, 1, "yes"),
            (HexString, 2, "abcd"),
            (HexString, 1, "zzzz"),
            (String, 2, "HELLO"),
            (String, 2, "é"),
        ] {
            assert!(
                encode_registers(kind, BigEndian, q, text).is_err(),
                "{kind:?} {text}"
            );
        }
        assert!(
            encode_registers(Int32, BigEndian, 1, "1")
                .unwrap_err()
                .contains("needs 2 registers")
        );
        assert_eq!(
            encode_registers(Int16, BigEndian, 1, " -30 ").unwrap(),
            [0xffe2]
        );
        assert_eq!(
            encode_registers(Boolean, LittleEndian, 2, "true").unwrap(),
            [0x0001, 0x0000]
        );
    }

    #[test]
    fn coils_pack_lsb_first() {
        let bits = [
            true, false, true, true, false, false, false, false, true, true,
        ];
        assert_eq!(pack_bits(&bits), [0x0d, 0x03]);
        assert_eq!(decode_bits(HexString, &bits).unwrap().render(), "0d03");
        assert_eq!(unpack_bits(&[0x0d, 0x03], 10), bits);
        assert_eq!(encode_bits(HexString, 10, "0d03").unwrap(), bits);
        assert!(encode_bits(HexString, 10, "0d07").is_err(), "bit 10 set");
        assert!(encode_bits(HexString, 10, "0d").is_err());
        assert_eq!(
            decode_bits(Boolean, &[false, true]).unwrap().render(),
            "true"
        );
        assert_eq!(decode_bits(Boolean, &[false]).unwrap().render(), "false");
        assert_eq!(encode_bits(Boolean, 3, "1").unwrap(), [true; 3]);
        assert_eq!(encode_bits(Boolean, 1, "False").unwrap(), [false]);
        assert!(encode_bits(Int16, 1, "1").is_err());
        assert!(decode_bits(Float, &[true]).is_err());
    }

    #[test]
    fn arithmetic_works_on_the_numeric_value() {
        let ops = [Operation::Divide(10.0), Operation::Add(1.0)];
        let value = decode_registers(Int16, BigEndian, &[0xff06]).unwrap();
        assert_eq!(value.render(), "-250");
        assert_eq!(
            render_f64(operate(&ops, value.as_f64().unwrap())),
            "-24.000000"
        );
        let big = decode_registers(Uint32, BigEndian, &[0x0001, 0x0000]).unwrap();
        assert_eq!(
            render_f64(operate(&[Operation::Multiply(2.0)], big.as_f64().unwrap())),
            "131072.000000"
        );
        let float = Value::Float(0.1);
        assert_eq!(
            render_f64(operate(
                &[Operation::Multiply(3.0)],
                float.as_f64().unwrap()
            )),
            "0.300000"
        );
        assert_eq!(
            render_f64(operate(&[Operation::Subtract(0.5)], 2.0)),
            "1.500000"
        );
        assert_eq!(Value::Bool(true).as_f64(), Some(1.0));
        assert_eq!(Value::Text("x".into()).as_f64(), None);
        assert!(!HexString.is_arithmetic());
    }

    /// The texts Go's `strconv.FormatFloat(v, 'f', 6, 64)` gives for these values
    /// (rounded half to even on the exact binary value, as Go does).
    #[test]
    fn arithmetic_results_read_as_octopus_wrote_them() {
        for (x, go) in [
            (27.100000000000023, "27.100000"),
            (-0.0000004, "-0.000000"),
            (0.0000006, "0.000001"),
            (2.5e-7, "0.000000"),
            (1e21, "1000000000000000000000.000000"),
            (-24.5, "-24.500000"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(render_f64(x), go, "{x:e}");
        }
    }

    /// Go's `fmt.Sprint` of these float64 and float32 values.
    #[test]
    fn float_values_read_as_go_printed_them() {
        for (v, go) in [
            (27.1, "27.1"),
            (999_999.0, "999999"),
            (1_500_000.0, "1.5e+06"),
            (27_100_000.0, "2.71e+07"),
            (123_456_789_012.0, "1.23456789012e+11"),
            (0.000_12, "0.00012"),
            (0.000_012, "1.2e-05"),
            (-4e-7, "-4e-07"),
            (1e21, "1e+21"),
            (-24.5, "-24.5"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(Value::Double(v).render(), go, "{v:e}");
        }
        assert_eq!(Value::Float(27.1).render(), "27.1");
        // Two shortest candidates, 341093.12 and .13, equally near 341093.125: Go's is even.
        assert_eq!(Value::Float(2_728_745.0 / 8.0).render(), "341093.12");
        assert_eq!(
            Value::Double(1.074_932_095_227_513_2e15).render(),
            "1.0749320952275132e+15"
        );
        assert_eq!(Value::Double(-0.0).render(), "-0");
        assert_eq!(Value::Float(1_500_000.0).render(), "1.5e+06");
        assert_eq!(Value::Float(f32::INFINITY).render(), "+Inf");
    }

    #[test]
    fn every_fixed_type_round_trips_in_every_order() {
        let samples = [
            (Int16, "-12345"),
            (Uint16, "54321"),
            (Int32, "-123456789"),
            (Uint32, "3123456789"),
            (Float, "-3.25"),
            (Int64, "-1234567890123456789"),
            (Uint64, "12345678901234567890"),
            (Double, "2.718281828459045"),
        ];
        for (kind, text) in samples {
            let q = kind.registers().unwrap();
            for order in ORDERS {
                let regs = encode_registers(kind, order, q, text).unwrap();
                let back = decode_registers(kind, order, &regs).unwrap();
                assert_eq!(back.render(), text, "{kind:?} {order:?}");
            }
        }
    }
}
