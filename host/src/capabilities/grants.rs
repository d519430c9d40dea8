//! Resolving a device's grants from its DeviceLink: the explicit `spec.grants` list plus
//! every spec field the adaptor declared as naming a resource.

use std::collections::BTreeMap;

use crds::{Grant, GrantKind};
use serde_json::Value;

/// A spec field that an adaptor declared as naming a resource (from its self-description).
pub trait DeclaredResource {
    /// Dotted path into the spec, e.g. `protocol.tcp.endpoint`.
    fn path(&self) -> &str;
    /// What kind of resource the field names.
    fn kind(&self) -> GrantKind;
}

/// No declared resource fields: links whose grants are all explicit.
pub const NO_FIELDS: &[(&str, GrantKind)] = &[];

impl DeclaredResource for (&str, GrantKind) {
    fn path(&self) -> &str {
        self.0
    }

    fn kind(&self) -> GrantKind {
        self.1
    }
}

/// Spec fields that name a resource whatever adaptor serves the model: the limb owns the
/// Bluetooth radio, so a `BluetoothDevice`'s `protocol.endpoint` is its peripheral grant.
pub fn model_fields(api_version: &str, kind: &str) -> &'static [(&'static str, GrantKind)] {
    match (api_version, kind) {
        (crds::models::API_VERSION, "BluetoothDevice") => &[("protocol.endpoint", GrantKind::Ble)],
        _ => NO_FIELDS,
    }
}

/// Where a grant came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `spec.grants[]` of the DeviceLink.
    Explicit,
    /// A resource field of the adaptor's model, e.g. `protocol.tcp.endpoint`.
    SpecField,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedGrant {
    pub name: String,
    pub kind: GrantKind,
    pub target: String,
    pub source: Source,
}

/// The grants of one device, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants(BTreeMap<String, ResolvedGrant>);

/// A grant the link asked for that cannot be honoured as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem(pub String);

impl Grants {
    /// Resolves the explicit grants and the resource fields found in `spec`. A resource
    /// field that is absent from the spec grants nothing (the adaptor will not need it);
    /// one that is present but not a string is a problem.
    pub fn resolve(
        explicit: &[Grant],
        spec: &Value,
        fields: &[impl DeclaredResource],
    ) -> (Self, Vec<Problem>) {
        let mut grants = BTreeMap::new();
        let mut problems = Vec::new();
        for field in fields {
            let kind = field.kind();
            for found in expand(field.path(), spec) {
                match found {
                    Ok((name, target)) => {
                        grants.insert(
                            name.clone(),
                            ResolvedGrant {
                                name,
                                kind,
                                target: endpoint(kind, &target),
                                source: Source::SpecField,
                            },
                        );
                    }
                    Err((path, other)) => problems.push(Problem(format!(
                        "spec field {path} names a {kind} resource but holds {other}"
                    ))),
                }
            }
        }
        for g in explicit {
            if g.name.is_empty() || g.target.is_empty() {
                problems.push(Problem(format!(
                    "grant {:?} needs a name and a target",
                    g.name
                )));
                continue;
            }
            if grants.contains_key(&g.name) {
                problems.push(Problem(format!("grant {:?} is declared twice", g.name)));
                continue;
            }
            grants.insert(
                g.name.clone(),
                ResolvedGrant {
                    name: g.name.clone(),
                    kind: g.kind,
                    target: endpoint(g.kind, &g.target),
                    source: Source::Explicit,
                },
            );
        }
        (Self(grants), problems)
    }

    /// Adds the grants of the model's own resource fields ([`model_fields`]) found in
    /// `spec`; a grant of the same name already resolved is kept.
    pub fn with_model_fields(
        mut self,
        spec: &Value,
        api_version: &str,
        kind: &str,
    ) -> (Self, Vec<Problem>) {
        let (extra, problems) = Self::resolve(&[], spec, model_fields(api_version, kind));
        for (name, grant) in extra.0 {
            self.0.entry(name).or_insert(grant);
        }
        (self, problems)
    }

    pub fn get(&self, name: &str) -> Option<&ResolvedGrant> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ResolvedGrant> {
        self.0.values()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `name (kind target), ...` or `nothing`, for refusal messages.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "nothing".into();
        }
        self.0
            .values()
            .map(|g| format!("{} ({} {})", g.name, g.kind, g.target))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The grants one declared resource field yields, as `(grant name, target)`, or the
/// field and value that cannot name a resource.
///
/// A path is dotted (`protocol.tcp.endpoint`). Two forms name resources spread over a
/// spec, as GPIO lines are: `prefix:path` joins two fields into `prefix-value:value`
/// (`chip:line` gives `gpiochip0:17`), and a `[*]` step takes every element of a list,
/// each granted under its concrete path (`chip:properties[*].line` gives
/// `properties[0].line`, `properties[1].line`, ...). Numbers count as text there, since
/// a line is an offset or a name. Absent fields grant nothing.
fn expand(path: &str, spec: &Value) -> Vec<Result<(String, String), (String, Value)>> {
    let (prefix, rest) = match path.split_once(':') {
        Some((prefix, rest)) => match lookup(spec, prefix) {
            None => return Vec::new(),
            Some(Value::String(p)) if !p.is_empty() => (Some(p.as_str()), rest),
            Some(other) => return vec![Err((prefix.to_owned(), other.clone()))],
        },
        None => (None, path),
    };
    let found: Vec<(String, &Value)> = match rest.split_once("[*].") {
        Some((list, field)) => match lookup(spec, list) {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    lookup(item, field).map(|v| (format!("{list}[{i}].{field}"), v))
                })
                .collect(),
            _ => Vec::new(),
        },
        None => lookup(spec, rest)
            .map(|v| vec![(rest.to_owned(), v)])
            .unwrap_or_default(),
    };
    found
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(t) if !t.is_empty() => t.clone(),
                Value::Number(n) if prefix.is_some() && n.is_u64() => n.to_string(),
                other => return Err((name, other.clone())),
            };
            Ok(match prefix {
                Some(p) => (name, format!("{p}:{text}")),
                None => (name, text),
            })
        })
        .collect()
}

/// The value at a dotted path; `None` when absent or null.
fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let pointer = format!("/{}", path.replace('.', "/"));
    value.pointer(&pointer).filter(|v| !v.is_null())
}

/// The `host:port` of a network target written as a URL (`tcp://broker:1883`,
/// `ssl://broker:8883/`), as Octopus specs do; other targets are kept as written. MQTT
/// URLs without a port get MQTT's (1883, or 8883 for the TLS schemes).
pub fn endpoint(kind: GrantKind, target: &str) -> String {
    match kind {
        GrantKind::Tcp | GrantKind::Udp => {
            let Some((scheme, rest)) = target.split_once("://") else {
                return target.to_owned();
            };
            let authority = rest.split('/').next().unwrap_or(rest);
            let has_port = authority
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && !port.contains(']'));
            let default_port = match scheme {
                "tcp" | "mqtt" => Some(1883),
                "ssl" | "tls" | "tcps" | "mqtts" => Some(8883),
                _ => None,
            };
            match default_port {
                Some(port) if !has_port => format!("{authority}:{port}"),
                _ => authority.to_owned(),
            }
        }
        _ => target.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_fields_become_grants_named_by_path() {
        let spec = json!({"protocol": {"tcp": {"endpoint": "127.0.0.1:5020"}}});
        let fields = [
            ("protocol.tcp.endpoint", GrantKind::Tcp),
            ("protocol.rtu.endpoint", GrantKind::Serial),
        ];
        let (g, problems) = Grants::resolve(&[], &spec, &fields);
        assert!(problems.is_empty());
        let tcp = g.get("protocol.tcp.endpoint").unwrap();
        assert_eq!(
            (tcp.kind, tcp.target.as_str()),
            (GrantKind::Tcp, "127.0.0.1:5020")
        );
        assert!(
            g.get("protocol.rtu.endpoint").is_none(),
            "absent fields grant nothing"
        );
    }

    #[test]
    fn explicit_grants_add_to_spec_fields_and_duplicates_are_problems() {
        let explicit = vec![
            Grant {
                name: "led".into(),
                kind: GrantKind::Gpio,
                target: "gpiochip0:17".into(),
            },
            Grant {
                name: "led".into(),
                kind: GrantKind::Gpio,
                target: "gpiochip0:18".into(),
            },
        ];
        let (g, problems) = Grants::resolve(&explicit, &json!({}), NO_FIELDS);
        assert_eq!(g.get("led").unwrap().target, "gpiochip0:17");
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn network_targets_in_url_form_become_host_and_port() {
        for (kind, target, want) in [
            (GrantKind::Tcp, "tcp://127.0.0.1:1883", "127.0.0.1:1883"),
            (
                GrantKind::Tcp,
                "ssl://broker.local:8883/",
                "broker.local:8883",
            ),
            (GrantKind::Tcp, "10.0.0.7:502", "10.0.0.7:502"),
            (GrantKind::Udp, "udp://[::1]:47808", "[::1]:47808"),
            (GrantKind::Tcp, "tcp://broker", "broker:1883"),
            (GrantKind::Tcp, "mqtts://[::1]/", "[::1]:8883"),
            (GrantKind::Tcp, "tcp://[::1]:1884", "[::1]:1884"),
            (GrantKind::Serial, "/dev/ttyUSB0", "/dev/ttyUSB0"),
        ] {
            assert_eq!(endpoint(kind, target), want, "{target}");
        }
    }

    #[test]
    fn list_fields_joined_to_a_prefix_become_one_grant_per_element() {
        let spec = json!({"chip": "gpiochip0", "properties": [
            {"name": "relay", "line": "relay1"},
            {"name": "door", "line": 17},
            {"name": "unset"},
        ]});
        let fields = [("chip:properties[*].line", GrantKind::Gpio)];
        let (g, problems) = Grants::resolve(&[], &spec, &fields);
        assert!(problems.is_empty(), "{problems:?}");
        let targets: Vec<_> = g
            .iter()
            .map(|g| (g.name.as_str(), g.target.as_str()))
            .collect();
        assert_eq!(
            targets,
            [
                ("properties[0].line", "gpiochip0:relay1"),
                ("properties[1].line", "gpiochip0:17"),
            ]
        );
        let (g, _) = Grants::resolve(&[], &json!({"properties": [{"line": 3}]}), &fields);
        assert!(g.is_empty(), "no chip, no lines");
        let (_, problems) = Grants::resolve(
            &[],
            &json!({"chip": "c", "properties": [{"line": true}]}),
            &fields,
        );
        assert!(problems[0].0.contains("properties[0].line"), "{problems:?}");
        let (_, problems) = Grants::resolve(&[], &json!({"chip": 7}), &fields);
        assert!(problems[0].0.contains("spec field chip"), "{problems:?}");
    }

    #[test]
    fn non_string_resource_field_is_a_problem() {
        let spec = json!({"protocol": {"tcp": {"endpoint": 502}}});
        let (_, problems) =
            Grants::resolve(&[], &spec, &[("protocol.tcp.endpoint", GrantKind::Tcp)]);
        assert!(problems[0].0.contains("protocol.tcp.endpoint"));
    }
}
