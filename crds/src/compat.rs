//! What changed between two versions of a model's schema, and which changes break specs
//! (or statuses) the old version accepted: what `octopus push` reports before it writes,
//! and what tells a limb that a new version would lose a status field a link shows.
//!
//! Structural schemas only (see [`crate::structural`]): fields live in `properties`, so
//! the walk follows `properties` and `items` and compares each field's own checks.

use serde_json::{Map, Value};

/// One difference, at a dotted path such as `spec.properties[].name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new optional field: every old document still validates.
    Added,
    /// A new field that is required: old documents without it are rejected.
    AddedRequired,
    /// A field that is gone: old documents that set it are rejected (unknown field).
    Removed,
    /// A field gone and one added beside it with the same schema: most likely renamed.
    Renamed { to: String },
    /// An existing field became required.
    Required,
    /// The type changed; `integer` to `number` widens, anything else breaks.
    Type { from: String, to: String },
    /// Values the enum allowed before and no longer does.
    EnumShrunk { removed: Vec<String> },
    /// Values the enum allows now and did not before.
    EnumGrown { added: Vec<String> },
    /// A bound (`minimum`, `maxLength`, ...) tightened.
    Narrowed { bound: &'static str },
}

impl Change {
    /// Whether a document valid under the old schema may be invalid under the new one.
    pub fn breaking(&self) -> bool {
        match &self.kind {
            ChangeKind::Added | ChangeKind::EnumGrown { .. } => false,
            ChangeKind::Type { from, to } => !(from == "integer" && to == "number"),
            _ => true,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.path;
        match &self.kind {
            ChangeKind::Added => write!(f, "{p}: added"),
            ChangeKind::AddedRequired => write!(f, "{p}: added, required"),
            ChangeKind::Removed => write!(f, "{p}: removed"),
            ChangeKind::Renamed { to } => write!(f, "{p}: renamed to {to}"),
            ChangeKind::Required => write!(f, "{p}: now required"),
            ChangeKind::Type { from, to } => write!(f, "{p}: type {from} -> {to}"),
            ChangeKind::EnumShrunk { removed } => {
                write!(f, "{p}: no longer allows {}", removed.join(", "))
            }
            ChangeKind::EnumGrown { added } => {
                write!(f, "{p}: now also allows {}", added.join(", "))
            }
            ChangeKind::Narrowed { bound } => write!(f, "{p}: {bound} tightened"),
        }
    }
}

/// Every change from `old` to `new`, the schemas of the document at `path`.
pub fn compare(old: &Value, new: &Value, path: &str) -> Vec<Change> {
    let mut out = Vec::new();
    walk(old, new, path, &mut out);
    out
}

fn object(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}

fn words(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|w| w.as_str().map_or_else(|| w.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn push(out: &mut Vec<Change>, path: &str, kind: ChangeKind) {
    out.push(Change {
        path: path.to_owned(),
        kind,
    });
}

fn walk(old: &Value, new: &Value, path: &str, out: &mut Vec<Change>) {
    let (Some(o), Some(n)) = (object(old), object(new)) else {
        return;
    };
    let (ot, nt) = (o.get("type"), n.get("type"));
    if let (Some(ot), Some(nt)) = (ot, nt)
        && ot != nt
    {
        push(
            out,
            path,
            ChangeKind::Type {
                from: ot.as_str().unwrap_or_default().to_owned(),
                to: nt.as_str().unwrap_or_default().to_owned(),
            },
        );
        return;
    }
    enums(o, n, path, out);
    bounds(o, n, path, out);
    if let (Some(oi), Some(ni)) = (o.get("items"), n.get("items")) {
        walk(oi, ni, &format!("{path}[]"), out);
    }
    let empty = Map::new();
    let op = o
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let np = n
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let (oreq, nreq) = (words(o.get("required")), words(n.get("required")));
    let child = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    let added: Vec<&String> = np.keys().filter(|k| !op.contains_key(*k)).collect();
    let mut renamed_to: Vec<&String> = Vec::new();
    for (k, os) in op {
        match np.get(k) {
            Some(ns) => {
                if nreq.contains(k) && !oreq.contains(k) {
                    push(out, &child(k), ChangeKind::Required);
                }
                walk(os, ns, &child(k), out);
            }
            None => {
                let twin = added
                    .iter()
                    .find(|a| !renamed_to.contains(a) && np.get(a.as_str()) == Some(os));
                match twin {
                    Some(to) => {
                        renamed_to.push(to);
                        push(out, &child(k), ChangeKind::Renamed { to: child(to) });
                    }
                    None => push(out, &child(k), ChangeKind::Removed),
                }
            }
        }
    }
    for k in added.into_iter().filter(|a| !renamed_to.contains(a)) {
        let kind = if nreq.contains(k) {
            ChangeKind::AddedRequired
        } else {
            ChangeKind::Added
        };
        push(out, &child(k), kind);
    }
}

fn enums(o: &Map<String, Value>, n: &Map<String, Value>, path: &str, out: &mut Vec<Change>) {
    let (Some(oe), Some(ne)) = (o.get("enum"), n.get("enum")) else {
        if o.get("enum").is_none() && n.get("enum").is_some() {
            push(
                out,
                path,
                ChangeKind::EnumShrunk {
                    removed: vec!["any value outside the new enum".to_owned()],
                },
            );
        }
        return;
    };
    let (ow, nw) = (words(Some(oe)), words(Some(ne)));
    let removed: Vec<String> = ow.iter().filter(|w| !nw.contains(w)).cloned().collect();
    let added: Vec<String> = nw.iter().filter(|w| !ow.contains(w)).cloned().collect();
    if !removed.is_empty() {
        push(out, path, ChangeKind::EnumShrunk { removed });
    }
    if !added.is_empty() {
        push(out, path, ChangeKind::EnumGrown { added });
    }
}

fn bounds(o: &Map<String, Value>, n: &Map<String, Value>, path: &str, out: &mut Vec<Change>) {
    // (bound, whether a larger new value tightens it)
    const BOUNDS: [(&str, bool); 8] = [
        ("minimum", true),
        ("exclusiveMinimum", true),
        ("minLength", true),
        ("minItems", true),
        ("maximum", false),
        ("exclusiveMaximum", false),
        ("maxLength", false),
        ("maxItems", false),
    ];
    for (bound, larger_tightens) in BOUNDS {
        let tightened = match (
            o.get(bound).and_then(Value::as_f64),
            n.get(bound).and_then(Value::as_f64),
        ) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => (b > a) == larger_tightens && a != b,
            _ => false,
        };
        if tightened {
            push(out, path, ChangeKind::Narrowed { bound });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(properties: Value, required: &[&str]) -> Value {
        json!({"type": "object", "properties": properties, "required": required})
    }

    #[test]
    fn changes_are_named_and_judged() {
        let base = || {
            json!({
                "step": {"type": "integer", "minimum": 1},
                "unit": {"type": "string", "enum": ["C", "F", "K"]},
                "name": {"type": "string"}
            })
        };
        let with = |f: &dyn Fn(&mut Value)| {
            let mut p = base();
            f(&mut p);
            p
        };
        type Case = (
            &'static str,
            Value,
            Vec<&'static str>,
            Vec<&'static str>,
            bool,
        );
        let cases: Vec<Case> = vec![
            ("unchanged", spec(base(), &[]), vec![], vec![], false),
            (
                "field added",
                spec(with(&|p| p["offset"] = json!({"type": "number"})), &[]),
                vec![],
                vec!["spec.offset: added"],
                false,
            ),
            (
                "required field added",
                spec(
                    with(&|p| p["offset"] = json!({"type": "number"})),
                    &["offset"],
                ),
                vec![],
                vec!["spec.offset: added, required"],
                true,
            ),
            (
                "field removed",
                spec(
                    with(&|p| {
                        p.as_object_mut().unwrap().remove("name");
                    }),
                    &[],
                ),
                vec![],
                vec!["spec.name: removed"],
                true,
            ),
            (
                "field renamed",
                spec(
                    with(&|p| {
                        let s = p.as_object_mut().unwrap().remove("step").unwrap();
                        p["increment"] = s;
                    }),
                    &[],
                ),
                vec![],
                vec!["spec.step: renamed to spec.increment"],
                true,
            ),
            (
                "type narrowed",
                spec(with(&|p| p["step"]["type"] = json!("string")), &[]),
                vec![],
                vec!["spec.step: type integer -> string"],
                true,
            ),
            (
                "integer widened to number",
                spec(with(&|p| p["step"]["type"] = json!("number")), &[]),
                vec![],
                vec!["spec.step: type integer -> number"],
                false,
            ),
            (
                "enum shrunk",
                spec(with(&|p| p["unit"]["enum"] = json!(["C", "F"])), &[]),
                vec![],
                vec!["spec.unit: no longer allows K"],
                true,
            ),
            (
                "enum grown",
                spec(
                    with(&|p| p["unit"]["enum"] = json!(["C", "F", "K", "R"])),
                    &[],
                ),
                vec![],
                vec!["spec.unit: now also allows R"],
                false,
            ),
            (
                "an existing field made required",
                spec(base(), &["name"]),
                vec![],
                vec!["spec.name: now required"],
                true,
            ),
            (
                "a bound tightened",
                spec(with(&|p| p["step"]["minimum"] = json!(5)), &[]),
                vec![],
                vec!["spec.step: minimum tightened"],
                true,
            ),
            (
                "a bound loosened",
                spec(with(&|p| p["step"]["minimum"] = json!(0)), &[]),
                vec![],
                vec![],
                false,
            ),
            (
                "nested in a list",
                json!({"type": "object", "properties": {"items": {"type": "array", "items":
                    {"type": "object", "properties": {"id": {"type": "string"}}}}}}),
                vec!["old-list"],
                vec!["spec.items[].id: type integer -> string"],
                true,
            ),
        ];
        for (name, new, flags, want, breaking) in cases {
            let old = if flags.contains(&"old-list") {
                json!({"type": "object", "properties": {"items": {"type": "array", "items":
                    {"type": "object", "properties": {"id": {"type": "integer"}}}}}})
            } else {
                spec(base(), &[])
            };
            let got = compare(&old, &new, "spec");
            let text: Vec<String> = got.iter().map(ToString::to_string).collect();
            assert_eq!(text, want, "{name}");
            assert_eq!(got.iter().any(Change::breaking), breaking, "{name}");
        }
    }
}
