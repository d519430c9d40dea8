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
            let path = field.path();
            let pointer = format!("/{}", path.replace('.', "/"));
            match spec.pointer(&pointer) {
                None | Some(Value::Null) => {}
                Some(Value::String(target)) if !target.is_empty() => {
                    let kind = field.kind();
                    grants.insert(
                        path.to_owned(),
                        ResolvedGrant {
                            name: path.to_owned(),
                            kind,
                            target: endpoint(kind, target),
                            source: Source::SpecField,
                        },
                    );
                }
                Some(other) => problems.push(Problem(format!(
                    "spec field {path} names a {} resource but holds {other}",
                    field.kind()
                ))),
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
    fn non_string_resource_field_is_a_problem() {
        let spec = json!({"protocol": {"tcp": {"endpoint": 502}}});
        let (_, problems) =
            Grants::resolve(&[], &spec, &[("protocol.tcp.endpoint", GrantKind::Tcp)]);
        assert!(problems[0].0.contains("protocol.tcp.endpoint"));
    }
}
