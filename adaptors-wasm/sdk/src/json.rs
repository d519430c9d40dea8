//! JSON decoding whose errors name the field, for specs and snapshots alike. serde_json
//! alone says "invalid type ... at line 1 column 31", which a DeviceLink author cannot
//! map back to a field; serde_path_to_error tracks the path, and the wording is turned
//! from Rust type names into what a YAML author knows.

use serde::de::DeserializeOwned;

/// Decodes `bytes`, a JSON object, as `T`; the error message names the offending field
/// (`what` for the document itself, e.g. `spec`).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    // serde's derived structs also accept an array of the field values; specs and
    // snapshots are objects in every language, so `[3]` must not pass as `{"polls": 3}`.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => {}
        Some(b'[') => return Err(format!("{what} must be an object, got an array")),
        Some(_) => {
            // Invalid JSON falls through to the decoder, which says where it breaks.
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
                return Err(format!("{what} must be an object, got {value:.40}"));
            }
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        describe(what, &path, err.inner())
    })?;
    de.end().map_err(|err| describe(what, ".", &err))?;
    Ok(value)
}

/// Decodes an already parsed JSON `value` as `T`, with the same messages as [`decode`].
pub(crate) fn decode_value<T: DeserializeOwned>(
    value: &serde_json::Value,
    what: &str,
) -> Result<T, String> {
    if !value.is_object() {
        return Err(format!("{what} must be an object, got {value:.40}"));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        describe(what, &path, err.inner())
    })
}

/// One message for one serde_json error found at `path` (`.` for the root).
fn describe(what: &str, path: &str, err: &serde_json::Error) -> String {
    let text = err.to_string();
    let text = if err.line() == 0 {
        text.as_str()
    } else {
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        text.strip_suffix(&suffix).unwrap_or(&text)
    }
    .to_owned();
    if err.is_syntax() || err.is_eof() {
        return format!("{what} is not valid JSON: {text}");
    }
    let field = |name: &str| {
        if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(name) = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return format!("{} is required", field(name));
    }
    let subject = if path == "." { what } else { path };
    if let Some((got, expected)) = text
        .strip_prefix("unknown variant `")
        .and_then(|rest| rest.split_once("`, expected "))
    {
        return format!("{subject} must be {}, got {got:?}", choices(expected));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, expected)) = text
            .strip_prefix(prefix)
            .and_then(|rest| rest.rsplit_once(", expected "))
        {
            return format!(
                "{subject} must be {}, got {}",
                expected_words(expected),
                got_words(got)
            );
        }
    }
    format!("{subject}: {text}")
}

/// serde's list of variants (`` one of `a`, `b`, `c` ``, `` `a` or `b` ``, `` `a` ``) as
/// `one of a, b or c`.
fn choices(expected: &str) -> String {
    // The names are every other piece between backticks.
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match names.as_slice() {
        [] => "nothing".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("one of {} or {last}", init.join(", ")),
    }
}

/// serde's `expected` for primitives is the Rust type; say the range instead.
fn expected_words(expected: &str) -> String {
    match expected {
        "u8" => "an integer 0..=255".to_owned(),
        "u16" => "an integer 0..=65535".to_owned(),
        "u32" => "an integer 0..=4294967295".to_owned(),
        "u64" | "u128" | "usize" => "a non-negative integer".to_owned(),
        "i8" => "an integer -128..=127".to_owned(),
        "i16" => "an integer -32768..=32767".to_owned(),
        "i32" => "an integer -2147483648..=2147483647".to_owned(),
        "i64" | "i128" | "isize" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a map" => "an object".to_owned(),
        "a sequence" => "an array".to_owned(),
        other if other.starts_with("struct ") => "an object".to_owned(),
        other => other.to_owned(),
    }
}

/// serde's `unexpected` (``integer `40` ``, `string "x"`, `map`) as the value itself.
fn got_words(got: &str) -> String {
    if let Some((_, rest)) = got.split_once('`')
        && let Some((value, _)) = rest.rsplit_once('`')
    {
        return value.to_owned();
    }
    if let Some(quoted) = got.strip_prefix("string ") {
        return quoted.to_owned();
    }
    match got {
        "map" => "an object".to_owned(),
        "sequence" => "an array".to_owned(),
        "unit value" => "null".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code, reason = "only the errors matter here")]
    struct Spec {
        endpoint: String,
        #[serde(default)]
        unit_id: u8,
        #[serde(default)]
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "only the errors matter here")]
    struct Nested {
        flag: bool,
        list: Vec<u16>,
    }

    fn err(json: &str) -> String {
        decode::<Spec>(json.as_bytes(), "spec").unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"unitId": 1}"#), "endpoint is required");
        assert_eq!(
            err(r#"{"endpoint": "a:1", "unitId": 300}"#),
            "unitId must be an integer 0..=255, got 300"
        );
        assert_eq!(
            err(r#"{"endpoint": "a:1", "unitId": "x"}"#),
            r#"unitId must be an integer 0..=255, got "x""#
        );
        assert_eq!(
            err(r#"{"endpoint": 5}"#),
            "endpoint must be a string, got 5"
        );
        assert_eq!(
            err(r#"{"endpoint": "a:1", "nested": {"list": []}}"#),
            "nested.flag is required"
        );
        assert_eq!(
            err(r#"{"endpoint": "a:1", "nested": {"flag": true, "list": [1, -2]}}"#),
            "nested.list[1] must be an integer 0..=65535, got -2"
        );
        assert_eq!(err("[1]"), "spec must be an object, got an array");
        assert_eq!(err(" 12"), "spec must be an object, got 12");
        assert_eq!(err("\"x\""), "spec must be an object, got \"x\"");
    }

    #[test]
    fn syntax_errors_say_so() {
        assert!(
            err("{").starts_with("spec is not valid JSON: "),
            "{}",
            err("{")
        );
        assert!(err(r#"{"endpoint": "a"} x"#).starts_with("spec is not valid JSON"));
        assert!(err("nope").starts_with("spec is not valid JSON"));
    }

    #[test]
    fn unknown_variants_list_the_choices() {
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "lowercase")]
        #[allow(dead_code, reason = "only the errors matter here")]
        enum Gear {
            Slow,
            Fast,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code, reason = "only the errors matter here")]
        struct Fan {
            gear: Gear,
        }
        assert_eq!(
            decode::<Fan>(br#"{"gear": "warp"}"#, "spec").unwrap_err(),
            r#"gear must be one of slow or fast, got "warp""#
        );
        let value = serde_json::json!({"gear": "x"});
        assert_eq!(
            decode_value::<Fan>(&value, "spec").unwrap_err(),
            r#"gear must be one of slow or fast, got "x""#
        );
        assert_eq!(
            decode_value::<Fan>(&serde_json::json!([1]), "spec").unwrap_err(),
            "spec must be an object, got [1]"
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let spec: Spec = decode(br#"{"endpoint": "a:1", "extra": [1]}"#, "spec").unwrap();
        assert_eq!(spec.endpoint, "a:1");
    }
}
