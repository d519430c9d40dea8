//! JSON decoding whose errors name the field, for specs and snapshots alike. serde_json
//! alone says "invalid type ... at line 1 column 31", which a DeviceLink author cannot
//! map back to a field; the document is parsed to a `Value` first and decoded from it
//! by [`crate::tracked`], which keeps the path, and the wording is turned from Rust type
//! names into what a YAML author knows.

use serde::de::DeserializeOwned;

/// Decodes `bytes`, a JSON object, as `T`; the error message names the offending field
/// (`what` for the document itself, e.g. `spec`).
pub(crate) fn decode<T: DeserializeOwned + 'static>(bytes: &[u8], what: &str) -> Result<T, String> {
    // serde's derived structs also accept an array of the field values; specs and
    // snapshots are objects in every language, so `[3]` must not pass as `{"polls": 3}`.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(format!("{what} must be an object, got an array"));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|err| {
        // serde_json ends the message of an error with " at line L column C".
        let text = err.to_string();
        let text = match split(&text, " at line ", true) {
            Some((text, _)) if err.line() != 0 => text,
            _ => text.as_str(),
        };
        format!("{what} is not valid JSON: {text}")
    })?;
    if !value.is_object() {
        return Err(format!("{what} must be an object, got {value:.40}"));
    }
    // An adaptor that picks its spec type by model asks for the `Value` itself: it is
    // handed over, not decoded into a copy that would hold the document twice.
    let mut parsed = Some(value);
    if let Some(wanted) = (&mut parsed as &mut dyn std::any::Any).downcast_mut::<Option<T>>()
        && let Some(value) = wanted.take()
    {
        return Ok(value);
    }
    match &parsed {
        Some(value) => decode_value(value, what),
        None => Err(format!("{what} was taken")),
    }
}

/// Decodes an already parsed JSON `value` as `T`, with the same messages as [`decode`].
pub(crate) fn decode_value<T: DeserializeOwned>(
    value: &serde_json::Value,
    what: &str,
) -> Result<T, String> {
    if !value.is_object() {
        return Err(format!("{what} must be an object, got {value:.40}"));
    }
    crate::tracked::decode(value).map_err(|(path, err)| describe(what, &path, &err.0))
}

/// One message for serde's error `text` about the value at `path` (`.` for the root).
fn describe(what: &str, path: &str, text: &str) -> String {
    if let Some(name) = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return if path == "." {
            format!("{name} is required")
        } else {
            format!("{path}.{name} is required")
        };
    }
    let subject = if path == "." { what } else { path };
    if let Some((got, expected)) = text
        .strip_prefix("unknown variant `")
        .and_then(|rest| split(rest, "`, expected ", false))
    {
        return format!("{subject} must be {}, got {got:?}", choices(expected));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, expected)) = text
            .strip_prefix(prefix)
            .and_then(|rest| split(rest, ", expected ", true))
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

/// `text` around the first (or `last`) occurrence of `separator`. A byte comparison
/// rather than `str::split_once`, whose substring searcher is the bigger code.
fn split<'a>(text: &'a str, separator: &str, last: bool) -> Option<(&'a str, &'a str)> {
    let mut windows = text.as_bytes().windows(separator.len());
    let is_separator = |w: &[u8]| w == separator.as_bytes();
    let at = if last {
        windows.rposition(is_separator)
    } else {
        windows.position(is_separator)
    }?;
    Some((text.get(..at)?, text.get(at + separator.len()..)?))
}

/// serde's list of variants (`` one of `a`, `b`, `c` ``, `` `a` or `b` ``, `` `a` ``) as
/// `one of a, b or c`.
fn choices(expected: &str) -> String {
    // The names are every other piece between backticks.
    let mut names = expected
        .split('`')
        .enumerate()
        .filter_map(|(i, piece)| (i % 2 == 1).then_some(piece))
        .peekable();
    let mut out = String::new();
    let mut count = 0;
    while let Some(name) = names.next() {
        if count > 0 {
            out.push_str(if names.peek().is_some() { ", " } else { " or " });
        }
        out.push_str(name);
        count += 1;
    }
    match count {
        0 => "nothing".to_owned(),
        1 => out,
        _ => format!("one of {out}"),
    }
}

/// serde's `expected` for primitives is the Rust type; say the range instead.
fn expected_words(expected: &str) -> &str {
    match expected {
        "u8" => "an integer 0..=255",
        "u16" => "an integer 0..=65535",
        "u32" => "an integer 0..=4294967295",
        "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" => "an integer -128..=127",
        "i16" => "an integer -32768..=32767",
        "i32" => "an integer -2147483648..=2147483647",
        "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a map" => "an object",
        "a sequence" => "an array",
        other if other.starts_with("struct ") => "an object",
        other => other,
    }
}

/// serde's `unexpected` (``integer `40` ``, `string "x"`, `map`) as the value itself.
fn got_words(got: &str) -> &str {
    if let Some((_, rest)) = got.split_once('`')
        && let Some((value, _)) = rest.rsplit_once('`')
    {
        return value;
    }
    if let Some(quoted) = got.strip_prefix("string ") {
        return quoted;
    }
    match got {
        "map" => "an object",
        "sequence" => "an array",
        "unit value" => "null",
        other => other,
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

    /// What the SDK answered when serde_path_to_error tracked the path.
    fn tracked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        let old = |path: &str, err: &serde_json::Error| {
            let text = err.to_string();
            let suffix = format!(" at line {} column {}", err.line(), err.column());
            let text = text.strip_suffix(&suffix).unwrap_or(&text);
            if err.is_syntax() || err.is_eof() {
                format!("spec is not valid JSON: {text}")
            } else {
                describe("spec", path, text)
            }
        };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut de)
            .map_err(|err| old(&err.path().to_string(), err.inner()))?;
        de.end().map_err(|err| old(".", &err))?;
        Ok(value)
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code, reason = "only the errors matter here")]
    struct Deep {
        name: String,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        children: Vec<Deep>,
        #[serde(default)]
        table: std::collections::BTreeMap<String, Leaf>,
        #[serde(default)]
        pair: Option<(u8, bool)>,
        #[serde(default)]
        boxed: Option<Box<Deep>>,
        #[serde(default)]
        any: Option<serde_json::Value>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code, reason = "only the errors matter here")]
    enum Mode {
        Fast,
        Slow { factor: u16 },
        Tuple(i8, String),
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "only the errors matter here")]
    struct Leaf {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        limits: Vec<i16>,
    }

    /// The messages are the ones the SDK gave with serde_path_to_error tracking the
    /// path, compact and pretty-printed, for every kind of error and nesting.
    #[test]
    fn paths_match_serde_path_to_error() {
        let cases = [
            r#"{"name": 5}"#,
            r#"{}"#,
            r#"{"name": "a", "extra": 1}"#,
            r#"{"name": "a", "mode": "warp"}"#,
            r#"{"name": "a", "mode": {"slow": {"factor": -1}}}"#,
            r#"{"name": "a", "mode": {"slow": {}}}"#,
            r#"{"name": "a", "mode": {"tuple": [1, 2]}}"#,
            r#"{"name": "a", "mode": {"tuple": [300, "x"]}}"#,
            r#"{"name": "a", "children": [{"name": "b"}, {"name": []}]}"#,
            r#"{"name": "a", "children": [{"name": "b"}, {"name": "c", "children": [{}]}]}"#,
            r#"{"name": "a", "children": {"name": "b"}}"#,
            r#"{"name": "a", "table": {"x": {"type": "t", "limits": [1, 99999]}}}"#,
            r#"{"name": "a", "table": {"x": {"type": "t"}, "y": {"limits": []}}}"#,
            r#"{"name": "a", "table": {"we\"ird.key": {"type": 1}}}"#,
            r#"{"name": "a", "table": {"\u00e9": {"type": null}}}"#,
            r#"{"name": "a", "table": []}"#,
            r#"{"name": "a", "pair": [1, "no"]}"#,
            r#"{"name": "a", "pair": [1]}"#,
            r#"{"name": "a", "boxed": {"name": "b", "boxed": {"name": true}}}"#,
            r#"{"name": "a", "boxed": {"name": "b", "boxed": {"nope": 1}}}"#,
            r#"{"any": {"x": [1, {"y": 2}]}, "name": {"k": [1, 2]}}"#,
            r#"{"any": [[], {}, "s", 1.5e3, -2, true, null], "name": false}"#,
            r#"{"any": "x}]\"{,[", "table": {"k\\": {"type": "\\\"", "limits": [1e2]}}}"#,
            r#"{"any": {"a\\\"b": [{"c": ",:"}]}, "children": [{"name": "b"}, {"name": "c", "pair": [0]}]}"#,
            r#"{"name": "a", "children": [{"name": "b", "table": {"k": {"type": "t", "limits": [1, 2, 3, "4"]}}}]}"#,
        ];
        for case in cases {
            let value: serde_json::Value = serde_json::from_str(case).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            for text in [case.to_owned(), pretty, format!("\n\t {case} \r\n")] {
                let want = tracked::<Deep>(text.as_bytes()).unwrap_err();
                let got = decode::<Deep>(text.as_bytes(), "spec").unwrap_err();
                assert_eq!(got, want, "{text}");
            }
        }
    }

    /// Where decoding from the text said "not valid JSON" about valid JSON, or took an
    /// array for a struct, the message now names the field.
    #[test]
    fn structs_are_objects_and_enums_strings() {
        let err = |json: &str| decode::<Deep>(json.as_bytes(), "spec").unwrap_err();
        assert_eq!(
            err(r#"{"name": "a", "children": [{"name": "b"}, {"name": "c", "mode": 7}]}"#),
            "children[1].mode must be a string, got 7"
        );
        assert_eq!(
            err(r#"{"name": "a", "pair": [0, true, 1]}"#),
            "pair: invalid length 2, expected fewer elements in array"
        );
        assert_eq!(
            err(r#"{"name": "a", "boxed": ["b"]}"#),
            "boxed must be an object, got an array"
        );
        assert_eq!(
            err(r#"{"name": "a", "mode": {"fast": null, "slow": {}}}"#),
            "mode must be map with a single key, got an object"
        );
        // A variant without data is its name alone, never `{"fast": ...}`.
        for mode in [r#"{"fast": 1}"#, r#"{"fast": null}"#] {
            assert_eq!(
                err(&format!(r#"{{"name": "a", "mode": {mode}}}"#)),
                "mode must be a string, got an object"
            );
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code, reason = "only the errors matter here")]
        struct Keys {
            ports: std::collections::BTreeMap<u16, String>,
        }
        let keys: Keys = decode(br#"{"ports": {"502": "modbus"}}"#, "spec").unwrap();
        assert_eq!(keys.ports[&502], "modbus");
        assert_eq!(
            decode::<Keys>(br#"{"ports": {"x": "modbus"}}"#, "spec").unwrap_err(),
            r#"ports.x must be an integer 0..=65535, got "x""#
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let spec: Spec = decode(br#"{"endpoint": "a:1", "extra": [1]}"#, "spec").unwrap();
        assert_eq!(spec.endpoint, "a:1");
    }
}
