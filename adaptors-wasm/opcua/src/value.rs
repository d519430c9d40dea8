//! The property types of `OPCUADevice` as OPC UA variants, and back to the strings the
//! status carries. Values to write are parsed at configure time, so a bad value is an
//! `invalid-spec` error, not a failed write.

use crds::models::opcua::OpcuaPropertyType as Type;
use opcua_types::{ByteString, DateTime, UAString, Variant};

/// The name the spec and the status use for a type.
pub fn type_name(kind: Type) -> &'static str {
    match kind {
        Type::Float => "float",
        Type::Double => "double",
        Type::Int64 => "int64",
        Type::Int32 => "int32",
        Type::Int16 => "int16",
        Type::Uint64 => "uint64",
        Type::Uint32 => "uint32",
        Type::Uint16 => "uint16",
        Type::String => "string",
        Type::Boolean => "boolean",
        Type::ByteString => "byteString",
        Type::Datetime => "datetime",
    }
}

/// Parses a spec value of `kind` into the variant written to the node. Byte strings
/// are base64, date-times RFC 3339.
pub fn parse(kind: Type, text: &str) -> Result<Variant, String> {
    fn num<T: std::str::FromStr>(text: &str, kind: Type) -> Result<T, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a {}", type_name(kind)))
    }
    Ok(match kind {
        Type::Float => Variant::Float(num(text, kind)?),
        Type::Double => Variant::Double(num(text, kind)?),
        Type::Int64 => Variant::Int64(num(text, kind)?),
        Type::Int32 => Variant::Int32(num(text, kind)?),
        Type::Int16 => Variant::Int16(num(text, kind)?),
        Type::Uint64 => Variant::UInt64(num(text, kind)?),
        Type::Uint32 => Variant::UInt32(num(text, kind)?),
        Type::Uint16 => Variant::UInt16(num(text, kind)?),
        Type::Boolean => Variant::Boolean(num(text, kind)?),
        Type::String => Variant::String(UAString::from(text)),
        Type::ByteString => Variant::ByteString(
            ByteString::from_base64(text.trim())
                .ok_or_else(|| format!("{text:?} is not base64"))?,
        ),
        Type::Datetime => Variant::DateTime(Box::new(
            DateTime::parse_from_rfc3339(text.trim())
                .map_err(|e| format!("{text:?} is not an RFC 3339 date-time: {e}"))?,
        )),
    })
}

/// A value the server reported, as the status string of `kind`. A variant of another
/// type is an error naming it: the spec and the server disagree.
pub fn format(kind: Type, value: &Variant) -> Result<String, String> {
    let text = match (kind, value) {
        (Type::Float, Variant::Float(v)) => v.to_string(),
        (Type::Double, Variant::Double(v)) => v.to_string(),
        (Type::Int64, Variant::Int64(v)) => v.to_string(),
        (Type::Int32, Variant::Int32(v)) => v.to_string(),
        (Type::Int16, Variant::Int16(v)) => v.to_string(),
        (Type::Uint64, Variant::UInt64(v)) => v.to_string(),
        (Type::Uint32, Variant::UInt32(v)) => v.to_string(),
        (Type::Uint16, Variant::UInt16(v)) => v.to_string(),
        (Type::Boolean, Variant::Boolean(v)) => v.to_string(),
        (Type::String, Variant::String(v)) => v.value().clone().unwrap_or_default(),
        (Type::ByteString, Variant::ByteString(v)) => v.as_base64(),
        (Type::Datetime, Variant::DateTime(v)) => v.to_rfc3339(),
        (_, Variant::Empty) => return Err("the node has no value".to_owned()),
        (_, other) => {
            let held = match other.scalar_type_id() {
                Some(scalar) => format!("{scalar:?}"),
                None => "array".to_owned(),
            };
            return Err(format!(
                "the node holds a {held}, not a {}",
                type_name(kind)
            ));
        }
    };
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Type; 12] = [
        Type::Float,
        Type::Double,
        Type::Int64,
        Type::Int32,
        Type::Int16,
        Type::Uint64,
        Type::Uint32,
        Type::Uint16,
        Type::String,
        Type::Boolean,
        Type::ByteString,
        Type::Datetime,
    ];

    #[test]
    fn every_type_round_trips_through_its_variant() {
        let samples = [
            "1.5",
            "-2.25",
            "-9223372036854775808",
            "-2147483648",
            "-32768",
            "18446744073709551615",
            "4294967295",
            "65535",
            "héllo wörld",
            "true",
            "AAEC/w==",
            "2024-05-01T10:00:00Z",
        ];
        for (kind, sample) in ALL.into_iter().zip(samples) {
            let variant = parse(kind, sample).unwrap();
            let back = format(kind, &variant).unwrap();
            if kind == Type::Datetime {
                assert!(back.starts_with("2024-05-01T10:00:00"), "{back}");
            } else {
                assert_eq!(back, sample, "{kind:?}");
            }
        }
    }

    #[test]
    fn bad_values_and_mismatched_variants_are_named() {
        assert!(parse(Type::Int16, "40000").unwrap_err().contains("int16"));
        assert!(parse(Type::Uint32, "-1").is_err());
        assert!(parse(Type::Boolean, "yes").is_err());
        assert!(
            parse(Type::ByteString, "***")
                .unwrap_err()
                .contains("base64")
        );
        assert!(parse(Type::Datetime, "yesterday").is_err());
        let err = format(Type::Int32, &Variant::Double(1.0)).unwrap_err();
        assert!(err.contains("Double") && err.contains("int32"), "{err}");
        assert!(format(Type::String, &Variant::Empty).is_err());
    }
}
