//! Status building: a status is any `Serialize` value that becomes a JSON object, plus
//! the property shape Octopus's device models share (`{"type", "value", "updatedAt"}`),
//! so adaptors of different authors report readings the same way.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Serialises a status; the contract wants a JSON object, so anything else (a number,
/// a list) is an `internal` error here rather than a confusing one in the limb.
pub fn to_json<S: Serialize + ?Sized>(status: &S) -> Result<String> {
    let json = serde_json::to_string(status)
        .map_err(|e| Error::Internal(format!("cannot encode status: {e}")))?;
    if json.starts_with('{') {
        Ok(json)
    } else {
        Err(Error::Internal(format!(
            "status must be a JSON object, got {json:.40}"
        )))
    }
}

/// The property types of Octopus's device models (`DummyProtocolDevice`, MQTT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PropertyType {
    String,
    Int,
    Float,
    Boolean,
    Array,
    Object,
}

impl PropertyType {
    /// Whether `value` is of this type; for checking a spec's desired value.
    pub fn matches(self, value: &Value) -> bool {
        match self {
            PropertyType::String => value.is_string(),
            PropertyType::Int => value.is_i64() || value.is_u64(),
            PropertyType::Float => value.is_number(),
            PropertyType::Boolean => value.is_boolean(),
            PropertyType::Array => value.is_array(),
            PropertyType::Object => value.is_object(),
        }
    }
}

/// One observed property in a status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    #[serde(rename = "type")]
    pub kind: PropertyType,
    pub value: Value,
    /// RFC 3339, UTC; absent until the value was first read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl Property {
    /// A property of `kind` holding `value`, not yet time-stamped.
    pub fn new(kind: PropertyType, value: impl Into<Value>) -> Self {
        Property {
            kind,
            value: value.into(),
            updated_at: None,
        }
    }

    /// Stamps the property with `epoch_ms` (from [`crate::clock::now_ms`]).
    #[must_use]
    pub fn at(mut self, epoch_ms: u64) -> Self {
        self.updated_at = Some(crate::time::rfc3339(epoch_ms));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Status {
        registers: Vec<u16>,
        polls: u64,
        language: &'static str,
    }

    #[test]
    fn builds_objects() {
        let status = Status {
            registers: vec![53191, 54321],
            polls: 3,
            language: "rust",
        };
        assert_eq!(
            to_json(&status).unwrap(),
            r#"{"registers":[53191,54321],"polls":3,"language":"rust"}"#
        );
    }

    #[test]
    fn refuses_non_objects() {
        assert!(matches!(to_json(&[1, 2]), Err(Error::Internal(m)) if m.contains("[1,2]")));
        assert!(to_json(&7).is_err());
    }

    #[test]
    fn properties() {
        #[derive(Serialize)]
        struct WithProperties {
            properties: BTreeMap<&'static str, Property>,
        }
        let mut properties = BTreeMap::new();
        properties.insert(
            "speed",
            Property::new(PropertyType::Int, 42).at(1_714_557_600_000),
        );
        properties.insert("name", Property::new(PropertyType::String, "fan"));
        assert_eq!(
            to_json(&WithProperties { properties }).unwrap(),
            r#"{"properties":{"name":{"type":"string","value":"fan"},"speed":{"type":"int","value":42,"updatedAt":"2024-05-01T10:00:00Z"}}}"#
        );
        assert!(PropertyType::Int.matches(&Value::from(-3)));
        assert!(!PropertyType::Int.matches(&Value::from(1.5)));
        assert!(PropertyType::Float.matches(&Value::from(1)));
    }
}
