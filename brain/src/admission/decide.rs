//! The admission decision, pure: a DeviceLink (and the one it replaces) plus what the
//! brain observed about its model, adaptor and references, in; denials and warnings out.
//!
//! Denied: anything that cannot work whatever else is installed later (a template spec the
//! model's schema refuses or would prune, a version the model does not serve, malformed
//! grants, a change to a field that is fixed once created). Warned: what may still appear
//! (the model CRD, the adaptor, referenced Secrets and ConfigMaps) and what the brain could
//! not check.

use crds::v1alpha1::DeviceLink;
use crds::{Grant, GrantKind};
use serde_json::{Value, json};

use super::schema;

/// What the model's CRD says about the requested version.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelLookup {
    /// The CRD serves the version; its whole `openAPIV3Schema` (`None`: the CRD has none).
    Served(Option<Value>),
    /// The CRD exists but does not serve the version.
    NotServed { crd: String, served: Vec<String> },
    /// No CRD of that group and kind (yet).
    Missing,
    /// The brain could not look; the reason.
    Unknown(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum AdaptorLookup {
    /// Installed by a package that does not say which models it serves.
    Present,
    /// Installed, serving these models (`apiVersion/Kind`, from `octopus push`).
    Serves(Vec<String>),
    Missing {
        namespace: String,
    },
    Unknown(String),
}

/// `Secret "mqtt-auth"` or `ConfigMap "x"`, and whether it exists in the link's namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceCheck {
    pub what: String,
    pub outcome: RefOutcome,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RefOutcome {
    Exists,
    Missing,
    /// The brain may not read it (it holds no Secret rights outside its own).
    Forbidden,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub model: ModelLookup,
    pub adaptor: AdaptorLookup,
    pub references: Vec<ReferenceCheck>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub denials: Vec<String>,
    pub warnings: Vec<String>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.denials.is_empty()
    }

    /// `allowed`, `warned` or `denied`: the metric label.
    pub fn outcome(&self) -> &'static str {
        match (self.denials.is_empty(), self.warnings.is_empty()) {
            (false, _) => "denied",
            (true, false) => "warned",
            (true, true) => "allowed",
        }
    }
}

/// True when an update leaves `spec` as it was: metadata (finalizers, labels) and status
/// writes of the limb and the brain, which must never wait on validation.
pub fn spec_unchanged(old: Option<&Value>, new: Option<&Value>) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => o.get("spec") == n.get("spec"),
        _ => false,
    }
}

/// Fields fixed at creation. The node: a link moving between limbs would be driven by
/// two at once while the old one finalises. The model: the device instance is of the
/// model's kind, so a new model is a new device (delete and create the link).
pub fn immutable_changes(old: &DeviceLink, new: &DeviceLink) -> Vec<String> {
    let mut out = Vec::new();
    if old.spec.adaptor.node != new.spec.adaptor.node {
        out.push(format!(
            "spec.adaptor.node: is immutable (was {:?}, now {:?}); delete the link and create it on the new node",
            old.spec.adaptor.node, new.spec.adaptor.node
        ));
    }
    if old.spec.model != new.spec.model {
        out.push(format!(
            "spec.model: is immutable (was {}/{}, now {}/{}); a new model is a new device, so delete and recreate the link",
            old.spec.model.api_version,
            old.spec.model.kind,
            new.spec.model.api_version,
            new.spec.model.kind
        ));
    }
    out
}

/// A target's shape for its kind; the node's policy (which targets are allowed) is the
/// limb's to check, as only it knows the node.
pub fn grant_problem(i: usize, g: &Grant) -> Option<String> {
    if g.target.is_empty() {
        return None; // reported by crds::validate
    }
    let why = match g.kind {
        GrantKind::Tcp | GrantKind::Udp => match g.target.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => None,
            _ => Some("is not `host:port`"),
        },
        GrantKind::Serial if !g.target.starts_with('/') => Some("is not an absolute device path"),
        GrantKind::Serial => None,
        GrantKind::Gpio => match g.target.rsplit_once(':') {
            // `line` is an offset or the name the chip gives the line.
            Some((chip, line))
                if !chip.is_empty()
                    && line
                        .chars()
                        .next()
                        .is_some_and(|c| !c.is_ascii_digit() || line.parse::<u32>().is_ok()) =>
            {
                None
            }
            _ => Some("is not `chip:line` (line: an offset or a line name)"),
        },
        // An address or a local name; the node's policy decides whether names are allowed.
        GrantKind::Ble => None,
    };
    why.map(|why| {
        format!(
            "spec.grants[{i}].target: {:?} {why} (grant {:?}, kind {})",
            g.target, g.name, g.kind
        )
    })
}

/// The whole decision for a create or a spec-changing update.
pub fn decide(link: &DeviceLink, old: Option<&DeviceLink>, seen: &Observed) -> Verdict {
    let mut v = Verdict::default();
    if let Some(old) = old {
        v.denials.extend(immutable_changes(old, link));
    }
    v.denials.extend(crds::validate::device_link(link));
    v.denials.extend(
        link.spec
            .grants
            .iter()
            .enumerate()
            .filter_map(|(i, g)| grant_problem(i, g)),
    );
    let model = format!("{}/{}", link.spec.model.api_version, link.spec.model.kind);
    match &seen.model {
        ModelLookup::Served(root) => {
            let spec_schema = spec_schema(root.as_ref());
            v.denials.extend(
                schema::validate(&spec_schema, &link.spec.template.spec, "spec.template.spec")
                    .iter()
                    .map(ToString::to_string),
            );
        }
        ModelLookup::NotServed { crd, served } => v.denials.push(format!(
            "spec.model.apiVersion: CRD {crd} does not serve {:?} (served: {})",
            link.spec.model.group_version().1,
            if served.is_empty() {
                "none".to_owned()
            } else {
                served.join(", ")
            }
        )),
        ModelLookup::Missing => v.warnings.push(format!(
            "model {model} is not installed: template.spec is unchecked and the link waits until its CRD exists"
        )),
        ModelLookup::Unknown(why) => v.warnings.push(format!(
            "template.spec not checked against {model}: {why}"
        )),
    }
    match &seen.adaptor {
        AdaptorLookup::Present => {}
        AdaptorLookup::Serves(models) => {
            let wanted = format!("{}/{}", link.spec.model.api_version, link.spec.model.kind);
            if !models.contains(&wanted) {
                v.denials.push(format!(
                    "spec.adaptor.name: adaptor {:?} serves {}, not {wanted}",
                    link.spec.adaptor.name,
                    models.join(", ")
                ));
            }
        }
        AdaptorLookup::Missing { namespace } => v.warnings.push(format!(
            "adaptor {:?} is not installed (no adaptor ConfigMap in {namespace}): the link waits until it is",
            link.spec.adaptor.name
        )),
        AdaptorLookup::Unknown(why) => v.warnings.push(format!(
            "adaptor {:?} not checked: {why}",
            link.spec.adaptor.name
        )),
    }
    let mut forbidden = Vec::new();
    for r in &seen.references {
        match &r.outcome {
            RefOutcome::Exists => {}
            RefOutcome::Missing => v.warnings.push(format!(
                "{} does not exist in namespace {}: the device waits until it does",
                r.what,
                link.namespace_or_default()
            )),
            RefOutcome::Forbidden => forbidden.push(r.what.clone()),
            RefOutcome::Failed(why) => v.warnings.push(format!("{} not checked: {why}", r.what)),
        }
    }
    if !forbidden.is_empty() {
        v.warnings.push(format!(
            "not checked (the brain may not read them; the limb reports missing ones in the link's status): {}",
            forbidden.join(", ")
        ));
    }
    // A denial is the one answer: warnings about what the link would wait for
    // ("the link waits until the adaptor is installed") contradict a link that is not
    // created.
    if !v.denials.is_empty() {
        v.warnings.clear();
    }
    v
}

/// The schema `template.spec` is held to: the model's `.properties.spec`; without one,
/// Kubernetes keeps the spec only if the root preserves unknown fields.
fn spec_schema(root: Option<&Value>) -> Value {
    let Some(root) = root else {
        return json!({"x-kubernetes-preserve-unknown-fields": true});
    };
    match root.pointer("/properties/spec") {
        Some(s) => s.clone(),
        None if root
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true) =>
        {
            json!({"x-kubernetes-preserve-unknown-fields": true})
        }
        None => json!({"type": "object", "properties": {}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(spec: Value) -> DeviceLink {
        serde_json::from_value(json!({
            "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
            "metadata": {"name": "l", "namespace": "default"},
            "spec": spec
        }))
        .unwrap()
    }

    fn base() -> Value {
        json!({
            "adaptor": {"node": "n1", "name": "adaptors.edge.cattle.io/dummy"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
            "template": {"spec": {"gear": "slow"}}
        })
    }

    fn with(mut v: Value, pointer: &str, x: Value) -> Value {
        *v.pointer_mut(pointer).unwrap() = x;
        v
    }

    fn served() -> ModelLookup {
        ModelLookup::Served(Some(json!({"type": "object", "properties": {"spec": {
            "type": "object", "properties": {"gear": {"type": "string", "enum": ["slow", "fast"]}}
        }}})))
    }

    #[test]
    fn an_adaptor_that_does_not_serve_the_model_is_refused() {
        let link = link(base());
        let serving = |m: &str| seen(served(), AdaptorLookup::Serves(vec![m.to_owned()]));
        let ok = decide(
            &link,
            None,
            &serving(&format!(
                "{}/{}",
                link.spec.model.api_version, link.spec.model.kind
            )),
        );
        assert!(ok.allowed(), "{ok:?}");
        let other = decide(
            &link,
            None,
            &serving("devices.edge.cattle.io/v1alpha1/ModbusDevice"),
        );
        assert_eq!(
            other.denials,
            vec![format!(
                "spec.adaptor.name: adaptor \"adaptors.edge.cattle.io/dummy\" serves devices.edge.cattle.io/v1alpha1/ModbusDevice, not {}/{}",
                link.spec.model.api_version, link.spec.model.kind
            )]
        );
    }

    fn seen(model: ModelLookup, adaptor: AdaptorLookup) -> Observed {
        Observed {
            model,
            adaptor,
            references: vec![],
        }
    }

    #[test]
    fn table() {
        let ok = seen(served(), AdaptorLookup::Present);
        let grants = |g: Value| {
            with(base(), "/template", json!({"spec": {}}))
                .as_object()
                .cloned()
                .map(|mut o| {
                    o.insert("grants".into(), g);
                    Value::Object(o)
                })
                .unwrap()
        };
        // name, spec, old spec, observed, outcome, message fragments (denials, then warnings)
        type Case<'a> = (
            &'a str,
            Value,
            Option<Value>,
            Observed,
            &'a str,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            ("valid", base(), None, ok.clone(), "allowed", vec![]),
            (
                "typo in template",
                with(base(), "/template/spec", json!({"gera": "slow"})),
                None,
                ok.clone(),
                "denied",
                vec!["spec.template.spec.gera: unknown field"],
            ),
            (
                "enum",
                with(base(), "/template/spec/gear", json!("medium")),
                None,
                ok.clone(),
                "denied",
                vec!["spec.template.spec.gear: unsupported value \"medium\""],
            ),
            (
                "version not served",
                base(),
                None,
                seen(
                    ModelLookup::NotServed {
                        crd: "dummyspecialdevices.devices.edge.cattle.io".into(),
                        served: vec!["v1".into()],
                    },
                    AdaptorLookup::Present,
                ),
                "denied",
                vec![
                    "spec.model.apiVersion: CRD dummyspecialdevices.devices.edge.cattle.io does not serve \"v1alpha1\" (served: v1)",
                ],
            ),
            (
                "model missing warns",
                base(),
                None,
                seen(ModelLookup::Missing, AdaptorLookup::Present),
                "warned",
                vec!["model devices.edge.cattle.io/v1alpha1/DummySpecialDevice is not installed"],
            ),
            (
                "model unknown warns",
                base(),
                None,
                seen(
                    ModelLookup::Unknown("timeout".into()),
                    AdaptorLookup::Present,
                ),
                "warned",
                vec!["template.spec not checked"],
            ),
            (
                "a denial comes without the warnings of a link that would wait",
                with(base(), "/template/spec", json!({"gera": "slow"})),
                None,
                seen(
                    served(),
                    AdaptorLookup::Missing {
                        namespace: "octopus-system".into(),
                    },
                ),
                "denied",
                vec![
                    "spec.template.spec.gera: unknown field (Kubernetes would silently drop it); did you mean `gear`?",
                ],
            ),
            (
                "adaptor missing warns",
                base(),
                None,
                seen(
                    served(),
                    AdaptorLookup::Missing {
                        namespace: "octopus-system".into(),
                    },
                ),
                "warned",
                vec!["adaptor \"adaptors.edge.cattle.io/dummy\" is not installed"],
            ),
            (
                "adaptor unknown warns",
                base(),
                None,
                seen(served(), AdaptorLookup::Unknown("forbidden".into())),
                "warned",
                vec!["adaptor \"adaptors.edge.cattle.io/dummy\" not checked: forbidden"],
            ),
            (
                "bad tcp target",
                grants(json!([{"name": "plc", "kind": "tcp", "target": "plc"}])),
                None,
                ok.clone(),
                "denied",
                vec!["spec.grants[0].target: \"plc\" is not `host:port`"],
            ),
            (
                "bad udp port",
                grants(json!([{"name": "plc", "kind": "udp", "target": "h:99999"}])),
                None,
                ok.clone(),
                "denied",
                vec!["spec.grants[0].target: \"h:99999\" is not `host:port`"],
            ),
            (
                "relative serial",
                grants(json!([{"name": "bus", "kind": "serial", "target": "ttyUSB0"}])),
                None,
                ok.clone(),
                "denied",
                vec!["is not an absolute device path"],
            ),
            (
                "bad gpio",
                grants(json!([{"name": "led", "kind": "gpio", "target": "gpiochip0"}])),
                None,
                ok.clone(),
                "denied",
                vec!["is not `chip:line`"],
            ),
            (
                "gpio offset with trailing text",
                grants(json!([{"name": "led", "kind": "gpio", "target": "gpiochip0:17x"}])),
                None,
                ok.clone(),
                "denied",
                vec!["is not `chip:line`"],
            ),
            (
                "duplicate grant",
                grants(
                    json!([{"name": "a", "kind": "tcp", "target": "h:1"}, {"name": "a", "kind": "gpio", "target": "c:1"}]),
                ),
                None,
                ok.clone(),
                "denied",
                vec!["spec.grants[1].name: \"a\" is used twice"],
            ),
            (
                "good grants",
                grants(
                    json!([{"name": "a", "kind": "tcp", "target": "[::1]:502"}, {"name": "b", "kind": "serial", "target": "/dev/ttyUSB0"}, {"name": "c", "kind": "gpio", "target": "gpiochip0:17"}, {"name": "d", "kind": "gpio", "target": "gpiochip0:relay1"}]),
                ),
                None,
                ok.clone(),
                "allowed",
                vec![],
            ),
            (
                "node changed",
                with(base(), "/adaptor/node", json!("n2")),
                Some(base()),
                ok.clone(),
                "denied",
                vec!["spec.adaptor.node: is immutable (was \"n1\", now \"n2\")"],
            ),
            (
                "model changed",
                with(base(), "/model/kind", json!("DummyProtocolDevice")),
                Some(base()),
                ok.clone(),
                "denied",
                vec!["spec.model: is immutable"],
            ),
            (
                "template change allowed",
                with(base(), "/template/spec/gear", json!("fast")),
                Some(base()),
                ok.clone(),
                "allowed",
                vec![],
            ),
            (
                "adaptor change allowed",
                with(
                    base(),
                    "/adaptor/name",
                    json!("adaptors.edge.cattle.io/other"),
                ),
                Some(base()),
                ok.clone(),
                "allowed",
                vec![],
            ),
        ];
        for (name, spec, old, seen, outcome, want) in cases {
            let old = old.map(link);
            let v = decide(&link(spec), old.as_ref(), &seen);
            assert_eq!(v.outcome(), outcome, "{name}: {v:?}");
            let all: Vec<&String> = v.denials.iter().chain(&v.warnings).collect();
            assert_eq!(all.len(), want.len(), "{name}: {v:?}");
            for (got, w) in all.iter().zip(&want) {
                assert!(got.contains(w), "{name}: {got:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn references_warn_and_forbidden_ones_are_summarised_once() {
        let mut s = seen(served(), AdaptorLookup::Present);
        s.references = vec![
            ReferenceCheck {
                what: "ConfigMap \"a\"".into(),
                outcome: RefOutcome::Exists,
            },
            ReferenceCheck {
                what: "ConfigMap \"b\"".into(),
                outcome: RefOutcome::Missing,
            },
            ReferenceCheck {
                what: "Secret \"c\"".into(),
                outcome: RefOutcome::Forbidden,
            },
            ReferenceCheck {
                what: "Secret \"d\"".into(),
                outcome: RefOutcome::Forbidden,
            },
        ];
        let v = decide(&link(base()), None, &s);
        assert!(v.allowed());
        assert_eq!(
            v.warnings,
            [
                "ConfigMap \"b\" does not exist in namespace default: the device waits until it does",
                "not checked (the brain may not read them; the limb reports missing ones in the link's status): Secret \"c\", Secret \"d\""
            ]
        );
    }

    #[test]
    fn spec_schema_falls_back_to_what_kubernetes_would_keep() {
        let v = decide(
            &link(base()),
            None,
            &seen(ModelLookup::Served(None), AdaptorLookup::Present),
        );
        assert!(v.allowed() && v.warnings.is_empty(), "{v:?}");
        let v = decide(
            &link(base()),
            None,
            &seen(
                ModelLookup::Served(Some(json!({"type": "object"}))),
                AdaptorLookup::Present,
            ),
        );
        assert_eq!(
            v.denials,
            ["spec.template.spec.gear: unknown field (Kubernetes would silently drop it)"]
        );
    }

    #[test]
    fn metadata_only_updates_are_recognised() {
        let a = json!({"metadata": {"finalizers": []}, "spec": base()});
        let b = json!({"metadata": {"finalizers": ["x"], "labels": {"k": "v"}}, "spec": base(), "status": {}});
        assert!(spec_unchanged(Some(&a), Some(&b)));
        let c = json!({"spec": with(base(), "/adaptor/node", json!("n2"))});
        assert!(!spec_unchanged(Some(&a), Some(&c)));
        assert!(!spec_unchanged(None, Some(&a)));
    }
}
