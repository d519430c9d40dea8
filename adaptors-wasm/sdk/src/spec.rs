//! Spec parsing: a spec is a `#[derive(Deserialize)]` struct, and every way it can be
//! wrong becomes `invalid-spec` with a message naming the field, so a DeviceLink author
//! sees `count must be 1..=16, got 40` in the link's conditions.

use std::fmt::Display;
use std::ops::RangeInclusive;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Parses a spec (the DeviceLink's `template.spec` as JSON). Unknown fields are
/// ignored unless `S` says `#[serde(deny_unknown_fields)]`.
pub fn parse<S: DeserializeOwned + 'static>(json: &str) -> Result<S> {
    crate::json::decode(json.as_bytes(), "spec").map_err(Error::InvalidSpec)
}

/// Decodes a spec already parsed to JSON, e.g. once the model picked its type (an
/// adaptor serving several models takes `serde_json::Value` as its `Device::Spec`).
pub fn from_value<S: DeserializeOwned>(value: &serde_json::Value) -> Result<S> {
    crate::json::decode_value(value, "spec").map_err(Error::InvalidSpec)
}

/// A spec an adaptor's own checks refused, before it becomes [`Error::InvalidSpec`]: the
/// message starts with the field's path (`properties[2].visitor.quantity: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl SpecError {
    /// `{path}: {why}`.
    pub fn at(path: &str, why: impl Display) -> SpecError {
        SpecError(format!("{path}: {why}"))
    }
}

impl Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SpecError> for Error {
    fn from(e: SpecError) -> Error {
        Error::InvalidSpec(e.0)
    }
}

/// A decoding error of [`parse`] or [`from_value`], as a [`SpecError`].
impl From<Error> for SpecError {
    fn from(e: Error) -> SpecError {
        SpecError(e.message().to_owned())
    }
}

/// Refuses the second of two items of the list `list` with the same name:
/// `{list}[i].name: duplicate property name "p"`. Items are in spec order.
pub fn unique_names<'a>(
    list: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> std::result::Result<(), SpecError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in names.into_iter().enumerate() {
        if !seen.insert(name) {
            return Err(SpecError::at(
                &format!("{list}[{i}].name"),
                format!("duplicate property name {name:?}"),
            ));
        }
    }
    Ok(())
}

/// `value` if it lies in `range`, else `invalid-spec`: `{field} must be {lo}..={hi}, got {value}`.
pub fn in_range<T: PartialOrd + Display>(
    field: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            field,
            format!("must be {}..={}, got {value}", range.start(), range.end()),
        ))
    }
}

/// `value` if it is at least `min`, else `invalid-spec`: `{field} must be >= {min}, got {value}`.
pub fn at_least<T: PartialOrd + Display>(field: &str, value: T, min: T) -> Result<T> {
    if value >= min {
        Ok(value)
    } else {
        Err(invalid(field, format!("must be >= {min}, got {value}")))
    }
}

/// An `invalid-spec` error about one field: `{field} {why}`.
pub fn invalid(field: &str, why: impl Display) -> Error {
    Error::InvalidSpec(format!("{field} {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Spec {
        #[serde(default = "one")]
        step: i64,
        #[serde(default)]
        sync_interval_ms: Option<u64>,
    }

    fn one() -> i64 {
        1
    }

    #[test]
    fn parses_with_defaults() {
        let spec: Spec = parse("{}").unwrap();
        assert_eq!(
            spec,
            Spec {
                step: 1,
                sync_interval_ms: None
            }
        );
    }

    #[test]
    fn errors_are_invalid_spec_naming_the_field() {
        assert_eq!(
            parse::<Spec>(r#"{"syncIntervalMs": -5}"#),
            Err(Error::InvalidSpec(
                "syncIntervalMs must be a non-negative integer, got -5".into()
            ))
        );
        assert_eq!(
            parse::<Spec>(r#"{"step": 1.5}"#),
            Err(Error::InvalidSpec(
                "step must be an integer, got 1.5".into()
            ))
        );
        assert_eq!(
            parse::<Spec>(r#""text""#),
            Err(Error::InvalidSpec(
                r#"spec must be an object, got "text""#.into()
            ))
        );
    }

    /// A `Value` spec (an adaptor that picks its type by model) is the parsed document
    /// itself, still refused unless it is an object.
    #[test]
    fn value_specs_are_the_document() {
        let value: serde_json::Value = parse(r#"{"a": [1, {"b": null}]}"#).unwrap();
        assert_eq!(value, serde_json::json!({"a": [1, {"b": null}]}));
        assert_eq!(
            parse::<serde_json::Value>("3"),
            Err(Error::InvalidSpec("spec must be an object, got 3".into()))
        );
    }

    #[test]
    fn a_plain_variant_is_its_name_only() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(rename_all = "camelCase")]
        enum Gear {
            Slow,
            Fast,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct Fan {
            gear: Gear,
        }
        assert_eq!(
            parse::<Fan>(r#"{"gear": "fast"}"#),
            Ok(Fan { gear: Gear::Fast })
        );
        for (json, why) in [
            (
                r#"{"gear": {"fast": null}}"#,
                "gear must be a string, got an object",
            ),
            (r#"{"gear": null}"#, "gear must be a string, got null"),
            (
                r#"{"gear": "turbo"}"#,
                r#"gear must be one of slow or fast, got "turbo""#,
            ),
        ] {
            assert_eq!(
                parse::<Fan>(json),
                Err(Error::InvalidSpec(why.into())),
                "{json}"
            );
        }
    }

    #[test]
    fn range_checks() {
        assert_eq!(in_range("count", 4, 1..=16), Ok(4));
        assert_eq!(
            in_range("count", 40, 1..=16),
            Err(Error::InvalidSpec("count must be 1..=16, got 40".into()))
        );
        assert_eq!(
            at_least("syncIntervalMs", 5, 10),
            Err(Error::InvalidSpec(
                "syncIntervalMs must be >= 10, got 5".into()
            ))
        );
    }
}
