//! JSON decoding whose errors name the field, for specs and snapshots alike. serde_json
//! alone says "invalid type ... at line 1 column 31", which a DeviceLink author cannot
//! map back to a field; the field's path is recovered from that position, and the
//! wording is turned from Rust type names into what a YAML author knows.
//!
//! Why not serde_path_to_error: it wraps the deserializer, every visitor and every
//! map and sequence access, generically, so each spec and state type was compiled a
//! second time. In the dummy adaptor that was a third of the component's code and
//! deeper stacks while configuring; finding the path from the error's position after
//! the fact costs one small non-generic scanner, run only when decoding failed.

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
    serde_json::from_slice(bytes).map_err(|err| {
        let path = path_at(bytes, offset(bytes, err.line(), err.column()));
        describe(what, &path, &err)
    })
}

/// Decodes an already parsed JSON `value` as `T`, with the same messages as [`decode`]:
/// the value is written out again so that an error has a position to find the field
/// by (this runs once per `configure`, and keeps one decoder for every type).
pub(crate) fn decode_value<T: DeserializeOwned>(
    value: &serde_json::Value,
    what: &str,
) -> Result<T, String> {
    if !value.is_object() {
        return Err(format!("{what} must be an object, got {value:.40}"));
    }
    decode(value.to_string().as_bytes(), what)
}

/// The byte offset of serde_json's `line` (from 1) and `column` (bytes into the line)
/// in `bytes`; 0 when the error has no position.
fn offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(bytes.len(), |(i, _)| i + 1)
    };
    start.saturating_add(column).min(bytes.len())
}

/// One open object or array on the way to a position, with where inside it we are.
enum Frame {
    /// The key of the member being read (empty before the first).
    Object(String),
    /// The index of the element being read.
    Array(usize),
}

/// The path of the value at byte `at` of `json`, written as serde_path_to_error writes
/// it (`nested.list[1]`, `.` for the document): the value or key that starts or ends
/// there, as serde_json's errors point at (an unexpected `{` or `[` before it is read,
/// anything else just after it, a struct missing a field after its `}`, an unknown
/// field after its key); otherwise the object or array being read there.
fn path_at(json: &[u8], at: usize) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    // Whether the next token is a value (else a key, `,`, `:` or a closing bracket).
    let mut want_value = true;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if i >= at {
            let depth = if i == at && want_value {
                stack.len()
            } else {
                stack.len().saturating_sub(1)
            };
            return render(&stack[..depth]);
        }
        let ended = match b {
            b'{' | b'[' if want_value => {
                stack.push(if b == b'{' {
                    Frame::Object(String::new())
                } else {
                    Frame::Array(0)
                });
                // `[` is followed by a value (or `]`); `{` by a key (or `}`).
                want_value = b == b'[';
                i += 1;
                false
            }
            b'}' | b']' => {
                stack.pop();
                want_value = false;
                i += 1;
                true
            }
            b',' => {
                if let Some(Frame::Array(index)) = stack.last_mut() {
                    *index += 1;
                    want_value = true;
                }
                i += 1;
                false
            }
            b':' => {
                want_value = true;
                i += 1;
                false
            }
            b'"' => {
                let end = string_end(json, i);
                if want_value {
                    want_value = false;
                    i = end;
                    true
                } else {
                    if let Some(Frame::Object(key)) = stack.last_mut() {
                        *key = unquote(&json[i..end]);
                    }
                    i = end;
                    // Just after a key: an unknown field, named by its key.
                    true
                }
            }
            _ => {
                // A number, `true`, `false` or `null` (at least one byte, so that a
                // stray character cannot stop the scan).
                i += 1;
                while i < json.len()
                    && (json[i].is_ascii_alphanumeric() || b"+-.".contains(&json[i]))
                {
                    i += 1;
                }
                want_value = false;
                true
            }
        };
        if ended && i == at {
            return render(&stack);
        }
    }
    render(&stack)
}

/// The index just past the string starting with the quote at `start`.
fn string_end(json: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < json.len() {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    json.len()
}

/// A key as written (with its quotes) as text, escapes resolved.
fn unquote(quoted: &[u8]) -> String {
    let inner = quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default();
    if !inner.contains(&b'\\') {
        return String::from_utf8_lossy(inner).into_owned();
    }
    serde_json::from_slice(quoted).unwrap_or_else(|_| String::from_utf8_lossy(inner).into_owned())
}

/// `a.b[2].c` for a path of frames; `.` for none.
fn render(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return ".".to_owned();
    }
    let mut path = String::new();
    for frame in frames {
        match frame {
            Frame::Object(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Array(index) => {
                path.push('[');
                crate::text::push_decimal(&mut path, *index as u64);
                path.push(']');
            }
        }
    }
    path
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

    /// What the SDK answered with serde_path_to_error tracking the path.
    fn tracked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            describe("spec", &path, err.inner())
        })?;
        de.end().map_err(|err| describe("spec", ".", &err))?;
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

    /// The paths found from error positions are the ones serde_path_to_error tracked,
    /// compact and pretty-printed, for every kind of error and nesting.
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
            r#"{"name": "a", "children": [{"name": "b", "mode": "fast"}, {"name": "c", "mode": 7}]}"#,
            r#"{"any": "x}]\"{,[", "table": {"k\\": {"type": "\\\"", "limits": [1e2]}}}"#,
            r#"{"any": {"a\\\"b": [{"c": ",:"}]}, "children": [{"name": "b"}, {"name": "c", "pair": [0, true, 1]}]}"#,
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

    #[test]
    fn path_scanner_stops_on_broken_input() {
        for (json, at) in [
            (&b"{\"a\": [1, 2"[..], 12),
            (b"{\"a\": {{{", 9),
            (b"\"unterminated", 20),
            (b"{\"a\": tru}", 10),
            (b"", 3),
        ] {
            let _ = path_at(json, at);
        }
        assert_eq!(path_at(b"[{\"a\": [0, 1]}]", 12), "[0].a[1]");
        assert_eq!(path_at(b"[{\"a\": [0, 1]}]", 13), "[0].a");
        assert_eq!(offset(b"{\n  \"a\": 1\n}", 2, 8), 10);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let spec: Spec = decode(br#"{"endpoint": "a:1", "extra": [1]}"#, "spec").unwrap();
        assert_eq!(spec.endpoint, "a:1");
    }
}
