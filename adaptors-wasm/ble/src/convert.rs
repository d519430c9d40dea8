//! Octopus's BLE data converter, exactly as `ConvertReadData` computed it
//! (`adaptors/ble/pkg/physical/data_converter.go`), so values match what Octopus showed:
//!
//! 1. Take the bytes `startIndex..=endIndex`, or from `startIndex` down to `endIndex`
//!    when the end is below the start.
//! 2. Write each byte in decimal and join them (`[1, 44]` gives `"144"`).
//! 3. Read that text as hexadecimal into 16 bits (`"144"` is 0x144 = 324); past 16 bits
//!    the value is 0xFFFF, and empty text is 0 (Go's `strconv.ParseUint(s, 16, 16)`).
//! 4. Shift left by `shiftLeft` if it is not 0, else right by `shiftRight` if that is not
//!    0; with neither, the result is 0 (Octopus set it only in a shift).
//! 5. Apply `orderOfOperations` in order on the float; an operand that is not a number
//!    counts as 0, as Go's failed `ParseFloat` left it.
//! 6. Print with Go's `%f` (six decimals).
//!
//! Octopus indexed past the end of short data and crashed; here that is an error for the
//! property.

use crds::models::ble::{BluetoothDataConverter, BluetoothDeviceArithmeticOperationType as Op};

/// The converted value, as Octopus's status showed it.
pub fn convert(c: &BluetoothDataConverter, data: &[u8]) -> Result<String, String> {
    let start = c.start_index.unwrap_or(0);
    let end = c.end_index.unwrap_or(0);
    let at = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| data.get(i).copied())
            .ok_or_else(|| format!("byte {i} is past the {} bytes read", data.len()))
    };
    let mut picked = Vec::new();
    if start <= end {
        for i in start..=end {
            picked.push(at(i)?);
        }
    } else {
        for i in (end..=start).rev() {
            picked.push(at(i)?);
        }
    }
    let text: String = picked.iter().map(|b| b.to_string()).collect();
    let parsed = parse_hex_u16(&text);
    let shift = |n: i64, left: bool| -> Result<u64, String> {
        let n = u32::try_from(n).map_err(|_| format!("negative shift {n}"))?;
        Ok(if n >= 64 {
            0
        } else if left {
            parsed << n
        } else {
            parsed >> n
        })
    };
    let intermediate = match (c.shift_left.unwrap_or(0), c.shift_right.unwrap_or(0)) {
        (0, 0) => 0,
        (0, right) => shift(right, false)?,
        (left, _) => shift(left, true)?,
    };
    let mut value = intermediate as f64;
    for op in &c.order_of_operations {
        let operand = op.value.trim().parse::<f64>().unwrap_or(0.0);
        value = match op.r#type {
            Op::Add => value + operand,
            Op::Subtract => value - operand,
            Op::Multiply => value * operand,
            Op::Divide => value / operand,
        };
    }
    Ok(go_f(value))
}

/// `strconv.ParseUint(text, 16, 16)`'s value: 0 when empty, 0xFFFF past 16 bits.
fn parse_hex_u16(text: &str) -> u64 {
    let mut v: u64 = 0;
    if text.is_empty() {
        return 0;
    }
    for c in text.chars() {
        let Some(d) = c.to_digit(16) else {
            return 0;
        };
        v = v * 16 + u64::from(d);
        if v > 0xFFFF {
            return 0xFFFF;
        }
    }
    v
}

/// Go's `fmt.Sprintf("%f", v)`.
fn go_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::models::ble::BluetoothDeviceArithmeticOperation;

    fn conv(
        start: i64,
        end: i64,
        left: i64,
        right: i64,
        ops: &[(Op, &str)],
    ) -> BluetoothDataConverter {
        BluetoothDataConverter {
            start_index: Some(start),
            end_index: Some(end),
            shift_left: Some(left),
            shift_right: Some(right),
            order_of_operations: ops
                .iter()
                .map(|(t, v)| BluetoothDeviceArithmeticOperation {
                    r#type: *t,
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn octopus_s_own_table() {
        // Decimal digits read as hex: [1, 44] is "144" is 0x144 = 324.
        assert_eq!(
            convert(&conv(0, 1, 1, 0, &[]), &[1, 44]).unwrap(),
            "648.000000"
        );
        assert_eq!(
            convert(&conv(0, 1, 0, 1, &[]), &[1, 44]).unwrap(),
            "162.000000"
        );
        // Reversed range: bytes 1 then 0, "441" = 0x441 = 1089; >> 2 = 272; * 0.03125.
        assert_eq!(
            convert(&conv(1, 0, 0, 2, &[(Op::Multiply, "0.03125")]), &[1, 44]).unwrap(),
            "8.500000"
        );
        // No shift: 0 before the operations, as in Octopus.
        assert_eq!(
            convert(&conv(0, 0, 0, 0, &[(Op::Add, "3")]), &[9]).unwrap(),
            "3.000000"
        );
        // Operations in order.
        assert_eq!(
            convert(
                &conv(
                    0,
                    0,
                    1,
                    0,
                    &[
                        (Op::Add, "1"),
                        (Op::Multiply, "2"),
                        (Op::Subtract, "0.5"),
                        (Op::Divide, "4")
                    ]
                ),
                &[5]
            )
            .unwrap(),
            "5.375000"
        );
    }

    #[test]
    fn go_edge_cases_are_kept() {
        // "255255" is past 16 bits: 0xFFFF.
        assert_eq!(
            convert(&conv(0, 1, 0, 1, &[]), &[255, 255]).unwrap(),
            "32767.000000"
        );
        // A bad operand is 0; dividing by it is +Inf as Go prints it.
        assert_eq!(
            convert(&conv(0, 0, 1, 0, &[(Op::Divide, "x")]), &[1]).unwrap(),
            "+Inf"
        );
        assert_eq!(convert(&conv(0, 0, 70, 0, &[]), &[1]).unwrap(), "0.000000");
        assert!(
            convert(&conv(0, 3, 1, 0, &[]), &[1, 2])
                .unwrap_err()
                .contains("past the 2 bytes")
        );
        assert!(convert(&conv(0, 0, -1, 0, &[]), &[1]).is_err());
        assert_eq!(parse_hex_u16(""), 0);
    }
}
