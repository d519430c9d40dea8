//! Property types (`int`, `string`, `float`, `boolean`, `object`, `array`): checking
//! spec values, reading values out of payloads, and writing payloads.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    String,
    Float,
    Boolean,
    Object,
    Array,
}

impl Kind {
    /// The kind named as in a spec's `type`. The spec itself is decoded with the CRD's
    /// types; this stays for the fuzz targets in `fuzz/`.
    #[cfg(feature = "fuzz")]
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "int" => Kind::Int,
            "string" => Kind::String,
            "float" => Kind::Float,
            "boolean" => Kind::Boolean,
            "object" => Kind::Object,
            "array" => Kind::Array,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Int => "int",
            Kind::String => "string",
            Kind::Float => "float",
            Kind::Boolean => "boolean",
            Kind::Object => "object",
            Kind::Array => "array",
        }
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 64 {
        let cut: String = text.chars().take(61).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// A JSON value as the property's type: numbers and booleans may come as strings
/// (`"42"`, `"true"`), an int may come as a whole float, and a string takes any scalar.
pub fn coerce(kind: Kind, value: &Value) -> Result<Value, String> {
    let wrong = || format!("{} is not {}", short(value), article(kind));
    match (kind, value) {
        (Kind::Int, Value::Number(n)) => {
            if n.is_i64() || n.is_u64() {
                Ok(value.clone())
            } else {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| Value::from(f as i64))
                    .ok_or_else(wrong)
            }
        }
        (Kind::Int, Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| s.trim().parse::<u64>().map(Value::from))
            .map_err(|_| wrong()),
        (Kind::Float, Value::Number(n)) => n.as_f64().map(Value::from).ok_or_else(wrong),
        (Kind::Float, Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::from)
            .ok_or_else(wrong),
        (Kind::Boolean, Value::Bool(_)) => Ok(value.clone()),
        (Kind::Boolean, Value::String(s)) => match s.trim() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(wrong()),
        },
        (Kind::Boolean, Value::Number(n)) => match n.as_u64() {
            Some(1) => Ok(Value::Bool(true)),
            Some(0) => Ok(Value::Bool(false)),
            _ => Err(wrong()),
        },
        (Kind::String, Value::String(_)) => Ok(value.clone()),
        (Kind::String, Value::Number(_) | Value::Bool(_)) => Ok(Value::String(value.to_string())),
        (Kind::Object, Value::Object(_)) | (Kind::Array, Value::Array(_)) => Ok(value.clone()),
        _ => Err(wrong()),
    }
}

fn article(kind: Kind) -> String {
    match kind {
        Kind::Int | Kind::Array | Kind::Object => format!("an {}", kind.name()),
        _ => format!("a {}", kind.name()),
    }
}

/// The value of a whole payload (AttributedTopic): JSON when it parses, otherwise, for
/// strings, the text itself.
pub fn from_payload(kind: Kind, payload: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(value) => coerce(kind, &value),
        Err(_) => {
            let text = String::from_utf8_lossy(payload);
            match kind {
                Kind::String => Ok(Value::String(text.into_owned())),
                Kind::Object | Kind::Array => Err(format!(
                    "the payload is not JSON and so not {}",
                    article(kind)
                )),
                _ => coerce(kind, &Value::String(text.into_owned())),
            }
        }
    }
}

/// The payload that publishes a value (AttributedTopic): strings as their text,
/// everything else as JSON.
pub fn to_payload(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn base64(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut padding = false;
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        if c == '=' {
            padding = true;
            continue;
        }
        if padding {
            return Err("data after padding".to_owned());
        }
        let digit = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '+' | '-' => 62,
            '/' | '_' => 63,
            other => return Err(format!("{other:?} is not a base64 character")),
        };
        acc = (acc << 6) | digit;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("truncated base64".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coerces_scalars() {
        assert_eq!(coerce(Kind::Int, &json!(3)), Ok(json!(3)));
        assert_eq!(coerce(Kind::Int, &json!(3.0)), Ok(json!(3)));
        assert_eq!(coerce(Kind::Int, &json!("-7")), Ok(json!(-7)));
        assert!(coerce(Kind::Int, &json!(3.5)).is_err());
        assert_eq!(coerce(Kind::Float, &json!("2.5")), Ok(json!(2.5)));
        assert_eq!(coerce(Kind::Float, &json!(2)), Ok(json!(2.0)));
        assert_eq!(coerce(Kind::Boolean, &json!("true")), Ok(json!(true)));
        assert_eq!(coerce(Kind::Boolean, &json!(0)), Ok(json!(false)));
        assert_eq!(
            coerce(Kind::Boolean, &json!("on")),
            Err("\"on\" is not a boolean".into())
        );
        assert_eq!(coerce(Kind::String, &json!(1.5)), Ok(json!("1.5")));
        assert!(coerce(Kind::Object, &json!([])).is_err());
        assert_eq!(coerce(Kind::Array, &json!([1])), Ok(json!([1])));
    }

    #[test]
    fn reads_payloads() {
        assert_eq!(from_payload(Kind::Float, b"21.5"), Ok(json!(21.5)));
        assert_eq!(from_payload(Kind::Boolean, b"false"), Ok(json!(false)));
        assert_eq!(from_payload(Kind::String, b"low"), Ok(json!("low")));
        assert_eq!(from_payload(Kind::String, b"\"low\""), Ok(json!("low")));
        assert_eq!(from_payload(Kind::Int, b" 42 "), Ok(json!(42)));
        assert_eq!(
            from_payload(Kind::Object, b"{\"a\":1}"),
            Ok(json!({"a": 1}))
        );
        assert!(from_payload(Kind::Object, b"nope").is_err());
        assert!(from_payload(Kind::Int, b"nope").is_err());
    }

    #[test]
    fn writes_payloads() {
        assert_eq!(to_payload(&json!("low")), b"low");
        assert_eq!(to_payload(&json!(true)), b"true");
        assert_eq!(to_payload(&json!({"a": [1]})), b"{\"a\":[1]}");
    }

    #[test]
    fn decodes_base64() {
        assert_eq!(base64("b2ZmbGluZQ==").unwrap(), b"offline");
        assert_eq!(base64("b2ZmbGluZQ").unwrap(), b"offline");
        assert_eq!(base64("").unwrap(), b"");
        assert_eq!(base64("TWFu").unwrap(), b"Man");
        assert!(base64("a").is_err());
        assert!(base64("ab!c").is_err());
        assert!(base64("ab=c").is_err());
    }
}
