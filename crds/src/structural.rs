//! A structural-schema validator: the checks the API server would run on a device
//! instance, plus the one it does not report at all (unknown fields, which it silently
//! prunes). The brain runs it on `template.spec` at admission; the limb on every spec
//! and status against the schema the adaptor declares, so standalone mode gets the same
//! refusals with no API server.
//!
//! The schema is a CRD's `openAPIV3Schema` as JSON. CRDs served by `apiextensions/v1` are
//! structural: every field is declared in `properties` at its own level (junctors such as
//! `anyOf` may only add value checks), so pruning is decided by the top-level
//! `properties`, `additionalProperties` and `x-kubernetes-preserve-unknown-fields` alone.
//! `format` is not checked (the API server checks few formats and never prunes on them).

use serde_json::{Map, Value};

/// One violation, at a JSON path such as `spec.template.spec.properties[0].readOnlye`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Checks `value` against `schema`; `path` names `value` in messages.
pub fn validate(schema: &Value, value: &Value, path: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    check(schema, value, &Path::Root(path), true, &mut out);
    out
}

/// Checks `value` against `schema` for what the API server would refuse, letting through
/// the fields it silently prunes (unknown ones): how a status document is judged, since
/// the API server drops an undeclared status field rather than refusing the write.
pub fn validate_values(schema: &Value, value: &Value, path: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    check(schema, value, &Path::Root(path), false, &mut out);
    out
}

fn push(out: &mut Vec<Problem>, path: &Path<'_>, message: String) {
    out.push(Problem {
        path: path.to_string(),
        message,
    });
}

/// Where in the document a check is. Rendered only for a problem: the limb checks
/// every status it polls, and naming each field it passes cost more than the check.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Field(&'a Path<'a>, &'a str),
    Item(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(root) => f.write_str(root),
            Path::Field(parent, key) => {
                let plain = !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if plain {
                    write!(f, "{parent}.{key}")
                } else {
                    write!(f, "{parent}[{key:?}]")
                }
            }
            Path::Item(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn number(schema: &Map<String, Value>, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn count(schema: &Map<String, Value>, key: &str) -> Option<usize> {
    schema
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

/// What a value is, in the words of a schema `type`.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A short rendering of a value for messages.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// `prune` is false inside `allOf`/`anyOf`/`oneOf`/`not`, whose branches may not
/// declare fields and so cannot make a field unknown.
fn check(schema: &Value, value: &Value, path: &Path<'_>, prune: bool, out: &mut Vec<Problem>) {
    let Some(s) = schema.as_object() else {
        return; // `true` or a malformed schema: nothing we can hold the value to
    };
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    let int_or_string = flag(s, "x-kubernetes-int-or-string");
    if value.is_null() {
        let untyped = s.get("type").is_none();
        if !flag(s, "nullable") && !(untyped && (preserve || !prune)) {
            push(
                out,
                path,
                "null is not allowed here (Kubernetes would drop the field)".to_owned(),
            );
        }
        return;
    }
    if int_or_string {
        if !matches!(type_name(value), "integer" | "string") {
            push(
                out,
                path,
                format!("expected integer or string, got {}", type_name(value)),
            );
            return;
        }
    } else if let Some(want) = s.get("type").and_then(Value::as_str) {
        let got = type_name(value);
        let fits = want == got || (want == "number" && got == "integer");
        if !fits {
            push(
                out,
                path,
                format!("expected {want}, got {got} {}", show(value)),
            );
            return;
        }
    }
    if let Some(Value::Array(allowed)) = s.get("enum")
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(show).collect();
        push(
            out,
            path,
            format!(
                "unsupported value {}: expected one of {}",
                show(value),
                list.join(", ")
            ),
        );
    }
    match value {
        Value::Object(fields) => check_object(s, fields, path, prune, preserve, out),
        Value::Array(items) => check_array(s, items, path, prune, out),
        Value::String(text) => check_string(s, text, path, out),
        Value::Number(_) => check_number(s, value, path, out),
        Value::Bool(_) | Value::Null => {}
    }
    check_junctors(s, value, path, out);
}

/// The declared field `key` was most likely meant as: the nearest by edit distance
/// (a swap of two neighbours counts as one edit, `nmae` is one from `name`), within a
/// third of the name's length; ties go to the first in order.
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).max(1);
    known
        .map(|k| (edit_distance(key, k), k.as_str()))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

fn check_object(
    s: &Map<String, Value>,
    fields: &Map<String, Value>,
    path: &Path<'_>,
    prune: bool,
    preserve: bool,
    out: &mut Vec<Problem>,
) {
    let properties = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties");
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    for (key, v) in fields {
        let p = Path::Field(path, key);
        if let Some(sub) = properties.and_then(|props| props.get(key)) {
            check(sub, v, &p, prune, out);
        } else if let Some(sub @ Value::Object(_)) = additional {
            check(sub, v, &p, prune, out);
        } else if matches!(additional, Some(Value::Bool(true)))
            || preserve
            || !prune
            || (embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata"))
        {
        } else {
            let known = properties.into_iter().flat_map(|props| props.keys());
            let hint = closest(key, known)
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            push(
                out,
                &p,
                format!("unknown field (Kubernetes would silently drop it){hint}"),
            );
        }
    }
    if let Some(Value::Array(required)) = s.get("required") {
        for key in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(key) {
                push(
                    out,
                    &Path::Field(path, key),
                    "required field is missing".to_owned(),
                );
            }
        }
    }
    if let Some(min) = count(s, "minProperties")
        && fields.len() < min
    {
        push(out, path, format!("needs at least {min} fields"));
    }
    if let Some(max) = count(s, "maxProperties")
        && fields.len() > max
    {
        push(out, path, format!("allows at most {max} fields"));
    }
}

fn check_array(
    s: &Map<String, Value>,
    items: &[Value],
    path: &Path<'_>,
    prune: bool,
    out: &mut Vec<Problem>,
) {
    if let Some(sub) = s.get("items") {
        for (i, v) in items.iter().enumerate() {
            check(sub, v, &Path::Item(path, i), prune, out);
        }
    }
    if let Some(min) = count(s, "minItems")
        && items.len() < min
    {
        push(out, path, format!("needs at least {min} items"));
    }
    if let Some(max) = count(s, "maxItems")
        && items.len() > max
    {
        push(out, path, format!("allows at most {max} items"));
    }
    if flag(s, "uniqueItems") {
        for (i, v) in items.iter().enumerate() {
            if items.iter().take(i).any(|w| w == v) {
                push(out, &Path::Item(path, i), "duplicate item".to_owned());
            }
        }
    }
}

fn check_string(s: &Map<String, Value>, text: &str, path: &Path<'_>, out: &mut Vec<Problem>) {
    let len = text.chars().count();
    if let Some(min) = count(s, "minLength")
        && len < min
    {
        push(out, path, format!("must be at least {min} characters long"));
    }
    if let Some(max) = count(s, "maxLength")
        && len > max
    {
        push(out, path, format!("must be at most {max} characters long"));
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        // A pattern our engine cannot compile is the CRD's problem, not the link's.
        if let Some(re) = compiled(pattern)
            && !re.is_match(text)
        {
            push(
                out,
                path,
                format!("{:?} does not match the pattern {pattern:?}", text),
            );
        }
    }
}

/// A schema's `pattern`, compiled once per thread. The limb checks a device's status
/// on every poll, and compiling the pattern each time (the quantity pattern of a float
/// property is long) made the check most of the limb's CPU at 10,000 devices. Bounded:
/// a thread forgets its patterns past 256 of them.
fn compiled(pattern: &str) -> Option<regex::Regex> {
    thread_local! {
        static PATTERNS: std::cell::RefCell<std::collections::HashMap<String, Option<regex::Regex>>> =
            std::cell::RefCell::default();
    }
    PATTERNS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(re) = cache.get(pattern) {
            return re.clone();
        }
        if cache.len() >= 256 {
            cache.clear();
        }
        let re = regex::Regex::new(pattern).ok();
        cache.insert(pattern.to_owned(), re.clone());
        re
    })
}

fn check_number(s: &Map<String, Value>, value: &Value, path: &Path<'_>, out: &mut Vec<Problem>) {
    let Some(n) = value.as_f64() else {
        return;
    };
    if let Some(min) = number(s, "minimum") {
        let exclusive = flag(s, "exclusiveMinimum");
        if n < min || (exclusive && n == min) {
            let op = if exclusive { ">" } else { ">=" };
            push(out, path, format!("{value} must be {op} {min}"));
        }
    }
    if let Some(max) = number(s, "maximum") {
        let exclusive = flag(s, "exclusiveMaximum");
        if n > max || (exclusive && n == max) {
            let op = if exclusive { "<" } else { "<=" };
            push(out, path, format!("{value} must be {op} {max}"));
        }
    }
    if let Some(m) = number(s, "multipleOf")
        && m > 0.0
        && (n / m).fract().abs() > f64::EPSILON
    {
        push(out, path, format!("{value} must be a multiple of {m}"));
    }
}

/// The problems of the best-matching branch, as one message.
fn branch_summary(branches: &[Vec<Problem>]) -> String {
    branches
        .iter()
        .min_by_key(|p| p.len())
        .map(|p| {
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

fn check_junctors(s: &Map<String, Value>, value: &Value, path: &Path<'_>, out: &mut Vec<Problem>) {
    let run = |sub: &Value| {
        let mut p = Vec::new();
        check(sub, value, path, false, &mut p);
        p
    };
    if let Some(Value::Array(all)) = s.get("allOf") {
        for sub in all {
            out.extend(run(sub));
        }
    }
    if let Some(Value::Array(any)) = s.get("anyOf") {
        let results: Vec<_> = any.iter().map(run).collect();
        if !results.is_empty() && results.iter().all(|p| !p.is_empty()) {
            push(
                out,
                path,
                format!(
                    "matches none of the {} allowed shapes (closest: {})",
                    results.len(),
                    branch_summary(&results)
                ),
            );
        }
    }
    if let Some(Value::Array(one)) = s.get("oneOf") {
        let results: Vec<_> = one.iter().map(run).collect();
        let matched = results.iter().filter(|p| p.is_empty()).count();
        if matched == 0 && !results.is_empty() {
            push(
                out,
                path,
                format!(
                    "matches none of the {} allowed shapes (closest: {})",
                    results.len(),
                    branch_summary(&results)
                ),
            );
        } else if matched > 1 {
            push(
                out,
                path,
                format!("matches {matched} of the shapes where exactly one is allowed"),
            );
        }
    }
    if let Some(not) = s.get("not")
        && run(not).is_empty()
    {
        push(out, path, "matches a shape that is not allowed".to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(schema: Value, value: Value) -> Vec<String> {
        validate(&schema, &value, "spec")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn table() {
        let obj = json!({"type": "object", "properties": {
            "a": {"type": "integer", "minimum": 1.0, "maximum": 10.0},
            "b": {"type": "string", "enum": ["x", "y"]},
            "c": {"type": "string", "pattern": "^/.*[^/]$", "minLength": 2, "maxLength": 5},
            "n": {"type": "number", "exclusiveMinimum": true, "minimum": 0.0, "multipleOf": 0.5},
            "l": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2, "uniqueItems": true},
            "m": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "ios": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]+%$"}]},
            "nul": {"type": "string", "nullable": true},
            "emb": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
        }, "required": ["a"]});
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("valid", json!({"a": 5, "b": "x"}), vec![]),
            (
                "unknown field",
                json!({"a": 5, "bb": 1}),
                vec!["spec.bb: unknown field"],
            ),
            (
                "required",
                json!({"b": "x"}),
                vec!["spec.a: required field is missing"],
            ),
            (
                "wrong type",
                json!({"a": "5"}),
                vec!["spec.a: expected integer, got string \"5\""],
            ),
            (
                "float is not integer",
                json!({"a": 1.5}),
                vec!["spec.a: expected integer, got number"],
            ),
            ("integer is a number", json!({"a": 1, "n": 2}), vec![]),
            ("minimum", json!({"a": 0}), vec!["spec.a: 0 must be >= 1"]),
            (
                "maximum",
                json!({"a": 11}),
                vec!["spec.a: 11 must be <= 10"],
            ),
            (
                "exclusive minimum",
                json!({"a": 1, "n": 0}),
                vec!["spec.n: 0 must be > 0"],
            ),
            (
                "multipleOf",
                json!({"a": 1, "n": 0.7}),
                vec!["spec.n: 0.7 must be a multiple of 0.5"],
            ),
            (
                "enum",
                json!({"a": 1, "b": "z"}),
                vec!["spec.b: unsupported value \"z\": expected one of \"x\", \"y\""],
            ),
            (
                "pattern",
                json!({"a": 1, "c": "/dev/"}),
                vec!["does not match the pattern"],
            ),
            (
                "minLength",
                json!({"a": 1, "c": "/"}),
                vec!["spec.c: must be at least 2", "spec.c: \"/\" does not match"],
            ),
            (
                "maxLength",
                json!({"a": 1, "c": "/abcdef"}),
                vec!["spec.c: must be at most 5"],
            ),
            (
                "items typed",
                json!({"a": 1, "l": [true, 3]}),
                vec!["spec.l[1]: expected boolean, got integer 3"],
            ),
            (
                "minItems",
                json!({"a": 1, "l": []}),
                vec!["spec.l: needs at least 1 items"],
            ),
            (
                "maxItems and unique",
                json!({"a": 1, "l": [true, true, false]}),
                vec!["spec.l: allows at most 2", "spec.l[1]: duplicate item"],
            ),
            (
                "map values",
                json!({"a": 1, "m": {"k": "v", "j": 2}}),
                vec!["spec.m.j: expected string"],
            ),
            (
                "preserve unknown",
                json!({"a": 1, "free": {"anything": {"at": ["all"]}}}),
                vec![],
            ),
            ("int-or-string int", json!({"a": 1, "ios": 3}), vec![]),
            (
                "int-or-string string",
                json!({"a": 1, "ios": "50%"}),
                vec![],
            ),
            (
                "int-or-string bool",
                json!({"a": 1, "ios": true}),
                vec!["spec.ios: expected integer or string, got boolean"],
            ),
            (
                "int-or-string anyOf",
                json!({"a": 1, "ios": "half"}),
                vec!["spec.ios: matches none of the 2 allowed shapes"],
            ),
            ("nullable", json!({"a": 1, "nul": null}), vec![]),
            (
                "null not allowed",
                json!({"a": null}),
                vec!["spec.a: null is not allowed"],
            ),
            (
                "embedded resource",
                json!({"a": 1, "emb": {"apiVersion": "v1", "kind": "X", "metadata": {}, "spec": {}}}),
                vec![],
            ),
            (
                "odd key",
                json!({"a": 1, "m": {"a.b": 3}}),
                vec!["spec.m[\"a.b\"]: expected string"],
            ),
            (
                "not an object",
                json!([1]),
                vec!["spec: expected object, got array"],
            ),
        ];
        for (name, value, want) in cases {
            let got = messages(obj.clone(), value);
            assert_eq!(got.len(), want.len(), "{name}: {got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    g.starts_with(w) || g.contains(w),
                    "{name}: {g:?} lacks {w:?}"
                );
            }
        }
    }

    #[test]
    fn one_of_needs_exactly_one_and_branches_do_not_prune() {
        let schema = json!({"type": "object", "properties": {
            "tcp": {"type": "object", "properties": {"port": {"type": "integer"}}},
            "rtu": {"type": "object", "properties": {"path": {"type": "string"}}},
        }, "oneOf": [{"required": ["tcp"]}, {"required": ["rtu"]}]});
        assert!(messages(schema.clone(), json!({"tcp": {"port": 1}})).is_empty());
        let none = messages(schema.clone(), json!({}));
        assert_eq!(none.len(), 1, "{none:?}");
        assert!(none[0].contains("matches none of the 2"), "{none:?}");
        assert!(
            none[0].contains("spec.tcp: required field is missing"),
            "{none:?}"
        );
        let both = messages(schema, json!({"tcp": {}, "rtu": {}}));
        assert_eq!(
            both,
            ["spec: matches 2 of the shapes where exactly one is allowed"]
        );
    }

    #[test]
    fn all_of_and_not_apply_their_value_checks() {
        let schema =
            json!({"type": "string", "allOf": [{"minLength": 2}], "not": {"enum": ["no"]}});
        assert_eq!(
            messages(schema.clone(), json!("x")),
            ["spec: must be at least 2 characters long"]
        );
        assert_eq!(
            messages(schema, json!("no")),
            ["spec: matches a shape that is not allowed"]
        );
    }

    #[test]
    fn edit_distance_counts_edits_and_transpositions() {
        assert_eq!(edit_distance("nmae", "name"), 1);
        assert_eq!(edit_distance("readonly", "readOnly"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    #[test]
    fn values_alone_let_unknown_fields_through_and_still_check_types() {
        let schema = json!({"type": "object", "properties": {"count": {"type": "integer"}}});
        let extra = json!({"count": 1, "variant": "v2"});
        assert!(validate_values(&schema, &extra, "status").is_empty());
        assert_eq!(validate(&schema, &extra, "status").len(), 1);
        let wrong = json!({"count": "one"});
        let got: Vec<String> = validate_values(&schema, &wrong, "status")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["status.count: expected integer, got string \"one\""]);
    }
}
