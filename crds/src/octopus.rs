//! The status documents Octopus's adaptors wrote, as the contract our models' status
//! is held to: the schema of each model's `status`, transcribed from Octopus's Go types
//! (`adaptors/*/api/v1alpha1/*_types.go` in cnrancher/octopus; JSON names, JSON types
//! and formats as `encoding/json` and the apimachinery types write them), and a checker
//! that names every difference.
//!
//! The checker runs on the documents our adaptors actually write (their unit tests and
//! the end-to-end tests) and on our CRDs' status schemas (`crds` tests), so a field
//! renamed, retyped or added on one side shows up as a failing test. Fields we add on
//! purpose are [`EXTRAS`], each listed with its reason in `docs/from-octopus.md`.
//!
//! Plain `serde_json`, no Kubernetes types: the adaptors' guests use it too.

use serde_json::{Value, json};

/// A schema node: `{"type": "object", "properties": {..}}` (a struct),
/// `{"type": "object", "additionalProperties": node}` (a map), `{"type": "array",
/// "items": node}`, `{"type": "string" | "integer" | "boolean", "format"?}`,
/// `{"type": "any"}` (raw JSON), or `{"$ref": name}` (a named node, for the
/// recursive dummy property).
pub type Schema = Value;

/// Octopus's models whose status we reproduce.
pub const MODELS: [&str; 6] = [
    "BluetoothDevice",
    "DummySpecialDevice",
    "DummyProtocolDevice",
    "MQTTDevice",
    "ModbusDevice",
    "OPCUADevice",
];

/// Fields our status documents add to Octopus's, by model and path (`[]` an array
/// element, `{}` a map value). Each is in `docs/from-octopus.md` with its reason.
pub const EXTRAS: &[(&str, &str)] = &[
    ("BluetoothDevice", "properties[].error"),
    ("DummySpecialDevice", "polls"),
    ("DummyProtocolDevice", "polls"),
    ("DummyProtocolDevice", "properties.{}.updatedAt"),
    ("MQTTDevice", "properties[].error"),
    ("ModbusDevice", "properties[].error"),
    ("OPCUADevice", "properties[].error"),
];

/// `metav1.Time`: RFC 3339.
fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn string() -> Value {
    json!({"type": "string"})
}

/// The schema of `kind`'s status in Octopus, or `None` for a model Octopus did not have.
pub fn status_schema(kind: &str) -> Option<Schema> {
    let schema = match kind {
        // dummyspecialdevice_types.go: DummySpecialDeviceStatus.
        "DummySpecialDevice" => json!({"type": "object", "properties": {
            "gear": string(),
            "rotatingSpeed": {"type": "integer"},
        }}),
        // dummyprotocoldevice_types.go: DummyProtocolDeviceStatus; its property holds
        // `type` and one typed value, array and object elements being properties again.
        "DummyProtocolDevice" => json!({"type": "object", "properties": {
            "properties": {"type": "object", "additionalProperties": {"$ref": "dummyProperty"}},
        }}),
        // mqttdevice_types.go: MQTTDeviceStatusProperty embeds MQTTDeviceProperty
        // (MQTTMessagePayloadOptions and MQTTMessageTopicOperation inline) and adds
        // `updateAt` (sic).
        "MQTTDevice" => json!({"type": "object", "properties": {
            "properties": {"type": "array", "items": {"type": "object", "properties": {
                "qos": {"type": "integer"},
                "retained": {"type": "boolean"},
                "path": string(),
                "operator": {"type": "object", "properties": {"read": string(), "write": string()}},
                "annotations": {"type": "object", "additionalProperties": string()},
                "name": string(),
                "description": string(),
                "type": string(),
                "value": {"type": "any"},
                "contentType": string(),
                "readOnly": {"type": "boolean"},
                "updateAt": time(),
            }}},
        }}),
        // bluetoothdevice_types.go: BluetoothDeviceStatusProperty.
        "BluetoothDevice" => json!({"type": "object", "properties": {
            "properties": {"type": "array", "items": {"type": "object", "properties": {
                "name": string(),
                "value": string(),
                "accessMode": string(),
                "updatedAt": time(),
            }}},
        }}),
        // modbusdevice_types.go: ModbusDeviceStatusProperty.
        "ModbusDevice" => json!({"type": "object", "properties": {
            "properties": {"type": "array", "items": {"type": "object", "properties": {
                "name": string(),
                "type": string(),
                "value": string(),
                "operatedValue": string(),
                "updatedAt": time(),
            }}},
        }}),
        // opcuadevice_types.go: OPCUADeviceStatusProperty.
        "OPCUADevice" => json!({"type": "object", "properties": {
            "properties": {"type": "array", "items": {"type": "object", "properties": {
                "name": string(),
                "type": string(),
                "value": string(),
                "updatedAt": time(),
            }}},
        }}),
        _ => return None,
    };
    Some(schema)
}

/// The named nodes `$ref` points at.
fn named(name: &str) -> Option<Schema> {
    match name {
        "dummyProperty" => Some(json!({"type": "object", "properties": {
            "type": string(),
            "intValue": {"type": "integer"},
            "stringValue": string(),
            "floatValue": {"type": "string", "format": "quantity"},
            "booleanValue": {"type": "boolean"},
            "arrayValue": {"type": "array", "items": {"$ref": "dummyProperty"}},
            "objectValue": {"type": "object", "additionalProperties": {"$ref": "dummyProperty"}},
        }})),
        _ => None,
    }
}

/// Resolves a `$ref` node (once: named nodes are not references themselves).
pub fn resolve(schema: &Schema) -> Schema {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(name) => named(name).unwrap_or(Value::Null),
        None => schema.clone(),
    }
}

/// Every way the status document `doc` of model `kind` differs from what Octopus
/// wrote: unknown fields (other than [`EXTRAS`]), wrong JSON types, wrong formats.
/// Empty when it reads as Octopus's.
pub fn check(kind: &str, doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    match status_schema(kind) {
        Some(schema) => walk(kind, "", &schema, doc, &mut errors),
        None => errors.push(format!("{kind} is not an Octopus model")),
    }
    errors
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(kind: &str, path: &str, schema: &Schema, doc: &Value, errors: &mut Vec<String>) {
    let schema = resolve(schema);
    let at = if path.is_empty() { "status" } else { path };
    let want = schema["type"].as_str().unwrap_or("any");
    let ok = match (want, doc) {
        ("any", _) => true,
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("boolean", Value::Bool(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    if !ok {
        errors.push(format!("{at}: {doc} is not of type {want}"));
        return;
    }
    match doc {
        Value::Object(map) if want == "object" => {
            for (key, value) in map {
                let child = join(path, key);
                if let Some(field) = schema["properties"].get(key) {
                    walk(kind, &child, field, value, errors);
                } else if let Some(values) = schema.get("additionalProperties") {
                    walk(kind, &join(path, "{}"), values, value, errors);
                } else if !EXTRAS.contains(&(kind, child.as_str())) {
                    errors.push(format!("{child}: not in Octopus's {kind} status"));
                }
            }
        }
        Value::Array(items) if want == "array" => {
            for item in items {
                walk(kind, &format!("{path}[]"), &schema["items"], item, errors);
            }
        }
        Value::String(text) => match schema["format"].as_str() {
            Some("date-time") if !is_rfc3339(text) => {
                errors.push(format!("{at}: {text:?} is not an RFC 3339 time"));
            }
            Some("quantity") if !is_quantity(text) => {
                errors.push(format!("{at}: {text:?} is not a resource.Quantity"));
            }
            _ => {}
        },
        _ => {}
    }
}

/// `v` as Octopus's dummy wrote a `floatValue`: `resource.MustParse(fmt.Sprintf("%f", v))`
/// serialised. `%f` is six decimals (Rust's `{:.6}` is the same text); Kubernetes's
/// `ParseQuantity` keeps that text when it already looks canonical (its digits neither
/// start with a zero nor end in `000`: `"12.345678"`), and otherwise the value is written
/// in canonical decimal-SI form, an integer mantissa and an exponent that is a multiple
/// of three named by its suffix (`7.24` is `"7240m"`, `0.60466` is `"604660u"`, `1000` is
/// `"1k"`, `1500` stays `"1500"`).
pub fn quantity(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_owned();
    }
    let text = format!("{v:.6}");
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let shifted = format!("{int}{frac}");
    // ParseQuantity's fast path: at most 18 digits, kept as written when canonical-looking.
    if shifted.len() <= 18 && !shifted.ends_with("000") && !shifted.starts_with('0') {
        return text;
    }
    let digits = shifted.trim_start_matches('0');
    if digits.is_empty() {
        return "0".to_owned();
    }
    let mut digits = digits.to_owned();
    let mut exponent = -i32::try_from(frac.len()).unwrap_or(0);
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
        exponent += 1;
    }
    let scaled = (exponent.div_euclid(3) * 3).min(18);
    for _ in 0..(exponent - scaled) {
        digits.push('0');
    }
    let suffix = match scaled {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => "",
    };
    let sign = if negative { "-" } else { "" };
    format!("{sign}{digits}{suffix}")
}

/// `2006-01-02T15:04:05Z`, with optional fractional seconds and a `Z` or `±hh:mm`
/// offset: what Go's `time.Parse(time.RFC3339, ..)` reads.
pub fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':'
            && rest[1..3]
                .bytes()
                .chain(rest[4..].bytes())
                .all(|c| c.is_ascii_digit()))
}

/// What `resource.ParseQuantity` reads: a signed decimal number and an optional
/// binary-SI (`Ki`..`Ei`), decimal-SI (`n`..`E`) or exponent suffix.
pub fn is_quantity(text: &str) -> bool {
    fn number(s: &str) -> Option<&str> {
        let s = s.strip_prefix(['+', '-']).unwrap_or(s);
        let int = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut rest = &s[int..];
        let mut frac = 0;
        if let Some(r) = rest.strip_prefix('.') {
            frac = r.bytes().take_while(u8::is_ascii_digit).count();
            rest = &r[frac..];
        }
        (int + frac > 0).then_some(rest)
    }
    let Some(suffix) = number(text) else {
        return false;
    };
    matches!(
        suffix,
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E"
    ) || matches!(suffix, "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei")
        || suffix
            .strip_prefix(['e', 'E'])
            .and_then(number)
            .is_some_and(str::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octopus_documents_pass_and_ours_before_the_fix_do_not() {
        // What Octopus wrote (shapes from its Go types).
        let octopus = [
            (
                "DummySpecialDevice",
                json!({"gear": "slow", "rotatingSpeed": 42}),
            ),
            (
                "DummyProtocolDevice",
                json!({"properties": {"name": {"type": "string", "stringValue": "x"},
                    "f": {"type": "float", "floatValue": "7240m"},
                    "o": {"type": "object", "objectValue": {"l": {"type": "array",
                        "arrayValue": [{"type": "boolean", "booleanValue": true}]}}}}}),
            ),
            (
                "MQTTDevice",
                json!({"properties": [{"name": "t", "type": "float", "value": 21.5,
                    "qos": 1, "retained": true, "readOnly": true,
                    "operator": {"read": "r"}, "updateAt": "2020-07-08T13:24:00Z"}]}),
            ),
            (
                "ModbusDevice",
                json!({"properties": [{"name": "t", "type": "int16", "value": "271",
                    "operatedValue": "27.100000", "updatedAt": "2020-07-08T13:24:00.250Z"}]}),
            ),
        ];
        for (kind, doc) in octopus {
            assert_eq!(check(kind, &doc), Vec::<String>::new(), "{kind}");
        }
        // What we wrote before: every difference the issue found is named.
        let ours = [
            (
                "DummyProtocolDevice",
                json!({"properties": {"name": {"type": "string", "value": "x",
                    "updatedAt": "2024-05-01T10:00:00.000Z"}}}),
                vec!["properties.{}.value"],
            ),
            (
                "MQTTDevice",
                json!({"properties": [{"name": "t", "updatedAt": "2024-05-01T10:00:00Z"}]}),
                vec!["properties[].updatedAt"],
            ),
            (
                "DummyProtocolDevice",
                json!({"properties": {"f": {"type": "float", "floatValue": 7.24}}}),
                vec!["properties.{}.floatValue"],
            ),
            (
                "ModbusDevice",
                json!({"properties": [{"name": "t", "updatedAt": "yesterday"}]}),
                vec!["properties[].updatedAt"],
            ),
        ];
        for (kind, doc, paths) in ours {
            let errors = check(kind, &doc);
            assert_eq!(errors.len(), paths.len(), "{kind}: {errors:?}");
            for path in paths {
                assert!(
                    errors.iter().any(|e| e.starts_with(path)),
                    "{kind}: {path} not named in {errors:?}"
                );
            }
        }
        // The extras we keep on purpose pass, in their place only.
        assert!(check("DummySpecialDevice", &json!({"polls": 3})).is_empty());
        assert!(!check("ModbusDevice", &json!({"polls": 3})).is_empty());
        assert!(!check("GPIODevice", &json!({})).is_empty());
    }

    /// The texts `resource.MustParse(fmt.Sprintf("%f", v))` gives, by Kubernetes's
    /// `ParseQuantity` and `CanonicalizeBytes` (apimachinery `api/resource/quantity.go`).
    #[test]
    fn floats_read_as_octopus_s_quantities() {
        for (v, want) in [
            (7.24, "7240m"),
            (7.0, "7"),
            (0.5, "500m"),
            (0.01, "10m"),
            (1000.0, "1k"),
            (1500.0, "1500"),
            (999.99, "999990m"),
            (-2.5, "-2500m"),
            (0.0001, "100u"),
            (0.60466, "604660u"),
            (123.456, "123456m"),
            (12.345_678, "12.345678"),
            (-2.718_281_7, "-2.718282"),
            (1e-12, "0"),
            (2e6, "2M"),
            (0.0, "0"),
            (-0.0, "0"),
        ] {
            assert_eq!(quantity(v), want, "{v}");
        }
    }

    #[test]
    fn formats_are_read_as_go_reads_them() {
        for good in [
            "2020-07-08T13:24:00Z",
            "2024-05-01T10:00:00.250Z",
            "2024-05-01T10:00:00+02:00",
        ] {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "2024-05-01",
            "2024-05-01T10:00:00",
            "2024-05-01T10:00:00.Z",
            "T1",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
        for good in [
            "7240m", "7", "-2500m", "1k", "1.5", ".5", "100u", "2Mi", "1e3", "1E-3",
        ] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "m", "7.24.1", "1x", "1e", "abc", "1Ki5"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    /// Our CRDs' status schemas against Octopus's: every field Octopus wrote is declared
    /// with its JSON type (and `date-time` format), and every field we declare beyond it
    /// is one of the [`EXTRAS`].
    #[cfg(feature = "kube")]
    #[test]
    fn our_crd_status_schemas_are_octopus_s() {
        fn kind_of(node: &Value) -> &str {
            if node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                return "int-or-string";
            }
            if node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
                && node.get("type").is_none()
            {
                return "any";
            }
            node["type"].as_str().unwrap_or("any")
        }
        fn compare(
            model: &str,
            path: &str,
            octopus: &Value,
            ours: &Value,
            depth: usize,
            errors: &mut Vec<String>,
        ) {
            let octopus = resolve(octopus);
            let want = octopus["type"].as_str().unwrap_or("any");
            let got = kind_of(ours);
            let fits = want == got
                || (want == "string" && octopus["format"] == "quantity" && got == "int-or-string");
            if !fits {
                errors.push(format!("{path}: Octopus {want}, ours {got}"));
                return;
            }
            if octopus["format"] == "date-time" && ours["format"] != "date-time" {
                errors.push(format!("{path}: not a date-time"));
            }
            // Below Octopus's recursive property our schema keeps values as written.
            if depth > 3
                || ours.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
                    && path.contains("Value")
            {
                return;
            }
            if let Some(fields) = octopus["properties"].as_object() {
                let declared = ours["properties"].as_object().cloned().unwrap_or_default();
                for (key, field) in fields {
                    match declared.get(key) {
                        Some(our) => {
                            compare(model, &join(path, key), field, our, depth + 1, errors)
                        }
                        None => errors.push(format!("{}: missing", join(path, key))),
                    }
                }
                for key in declared.keys().filter(|k| !fields.contains_key(*k)) {
                    let child = join(path, key);
                    if !EXTRAS.contains(&(model, child.as_str())) {
                        errors.push(format!("{child}: not in Octopus"));
                    }
                }
            }
            if let Some(values) = octopus.get("additionalProperties") {
                compare(
                    model,
                    &join(path, "{}"),
                    values,
                    &ours["additionalProperties"],
                    depth + 1,
                    errors,
                );
            }
            if let Some(items) = octopus.get("items") {
                compare(
                    model,
                    &format!("{path}[]"),
                    items,
                    &ours["items"],
                    depth + 1,
                    errors,
                );
            }
        }

        let crds = crate::models::crds();
        for model in MODELS {
            let crd = crds
                .iter()
                .find(|c| c.spec.names.kind == model)
                .unwrap_or_else(|| panic!("no CRD for {model}"));
            let crd = serde_json::to_value(crd).unwrap();
            let ours =
                &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
            let mut errors = Vec::new();
            compare(
                model,
                "",
                &status_schema(model).unwrap(),
                ours,
                0,
                &mut errors,
            );
            assert_eq!(errors, Vec::<String>::new(), "{model}: {ours}");
        }
    }
}
