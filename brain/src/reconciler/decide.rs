//! The pure half of the DeviceLink reconciler: from the link and what was observed of
//! its node and model, the status, label and finalizer it should have. Table-tested.

use crds::conditions::{ConditionStatus, ConditionType, Conditions};
use crds::v1alpha1::{DeviceLink, DeviceLinkStatus, LIMB_FINALIZER, NODE_LABEL, node_label_value};

/// A node's addresses, as the status copies them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeAddresses {
    pub host_name: Option<String>,
    pub internal_ip: Option<String>,
    pub internal_dns: Option<String>,
    pub external_ip: Option<String>,
    pub external_dns: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeState {
    Missing,
    Deleting,
    Present(NodeAddresses),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelState {
    /// No established CRD has this group and kind.
    Missing,
    /// The CRD exists but does not serve the requested version.
    VersionNotServed {
        served: Vec<String>,
    },
    Served,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub node: NodeState,
    pub model: ModelState,
}

/// An event to record on the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// What the link should look like.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The new status, when it differs from the current one.
    pub status: Option<DeviceLinkStatus>,
    /// The node label's desired value (`None`: no label), when it differs.
    pub label: Option<Option<String>>,
    /// The finalizers to keep, when the limb's must go.
    pub finalizers: Option<Vec<String>>,
    /// The label write also adds the limb's finalizer: the link reaches its limb (which
    /// selects links by the label) already holding it, so the limb's own finalizer
    /// write is saved, and the finalizer is still there before the instance is.
    pub add_finalizer: bool,
    pub events: Vec<Event>,
}

/// Decides the link's status, node label and finalizers.
pub fn decide(link: &DeviceLink, observed: &Observed, now: &str) -> Decision {
    let mut d = Decision::default();
    let finalizers = link.metadata.finalizers.clone().unwrap_or_default();
    if link.metadata.deletion_timestamp.is_some() {
        // Octopus's rule: a link whose node is gone cannot be finalised by its limb, so
        // the brain lets it go instead of leaving the deletion hanging. The same goes for
        // a link no limb has taken up yet (the finalizer is the brain's own, added with
        // the label): nothing was created for it that the owner reference does not
        // already take away.
        let node_gone = !matches!(observed.node, NodeState::Present(_));
        if (node_gone || !taken_up_by_limb(link)) && finalizers.iter().any(|f| f == LIMB_FINALIZER)
        {
            d.finalizers = Some(
                finalizers
                    .into_iter()
                    .filter(|f| f != LIMB_FINALIZER)
                    .collect(),
            );
        }
        return d;
    }

    let current = link.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let mut conditions = Conditions(status.conditions.clone());
    let before: Vec<(ConditionType, ConditionStatus)> =
        conditions.0.iter().map(|c| (c.type_, c.status)).collect();
    let spec = &link.spec;

    match &observed.node {
        NodeState::Present(addrs) => {
            conditions.succeed(ConditionType::NodeExisted, now);
            status.node_name = Some(spec.adaptor.node.clone());
            status.node_host_name = addrs.host_name.clone();
            status.node_internal_ip = addrs.internal_ip.clone();
            status.node_internal_dns = addrs.internal_dns.clone();
            status.node_external_ip = addrs.external_ip.clone();
            status.node_external_dns = addrs.external_dns.clone();
        }
        NodeState::Missing | NodeState::Deleting => {
            conditions.fail(
                ConditionType::NodeExisted,
                "adaptor node isn't existed",
                now,
            );
            status.node_name = None;
            status.node_host_name = None;
            status.node_internal_ip = None;
            status.node_internal_dns = None;
            status.node_external_ip = None;
            status.node_external_dns = None;
        }
    }
    if matches!(observed.node, NodeState::Present(_)) {
        match &observed.model {
            ModelState::Served => {
                conditions.succeed(ConditionType::ModelExisted, now);
                status.model = Some(spec.model.clone());
            }
            ModelState::Missing => {
                conditions.fail(ConditionType::ModelExisted, "model isn't existed", now);
                status.model = None;
            }
            ModelState::VersionNotServed { served } => {
                let msg = format!(
                    "model version isn't served: {} serves {}",
                    spec.model.kind,
                    if served.is_empty() {
                        "no version".to_owned()
                    } else {
                        served.join(", ")
                    }
                );
                conditions.fail(ConditionType::ModelExisted, &msg, now);
                status.model = None;
            }
        }
    }
    // A changed node or model invalidates whatever the limb observed before.
    if status.adaptor_name.is_some()
        && (current.node_name.as_deref() != Some(spec.adaptor.node.as_str())
            || current.model.as_ref() != Some(&spec.model))
        && conditions
            .get(ConditionType::ModelExisted)
            .map(|c| c.status)
            == Some(ConditionStatus::True)
    {
        conditions.to_check(ConditionType::AdaptorExisted, now);
    }
    status.conditions = conditions.0;
    status.observed_generation = link.metadata.generation;

    let after: Vec<(ConditionType, ConditionStatus)> = status
        .conditions
        .iter()
        .map(|c| (c.type_, c.status))
        .collect();
    for t in [ConditionType::NodeExisted, ConditionType::ModelExisted] {
        let was = before.iter().find(|(x, _)| *x == t).map(|(_, s)| *s);
        let now_s = after.iter().find(|(x, _)| *x == t).map(|(_, s)| *s);
        // A link found valid the first time is no news (its conditions say so, and a
        // thousand new links would mean two thousand event writes); a failure is, and
        // so is the recovery from one.
        if was != now_s
            && let Some(s) = now_s
            && s != ConditionStatus::Unknown
            && !(was.is_none() && s == ConditionStatus::True)
        {
            let c = status.conditions.iter().find(|c| c.type_ == t);
            let message = c.map(|c| c.message.clone()).unwrap_or_default();
            d.events.push(Event {
                warning: s == ConditionStatus::False,
                reason: if s == ConditionStatus::True {
                    if t == ConditionType::NodeExisted {
                        "NodeFound"
                    } else {
                        "ModelFound"
                    }
                } else if t == ConditionType::NodeExisted {
                    "NodeNotFound"
                } else {
                    "ModelNotFound"
                },
                note: if message.is_empty() {
                    match t {
                        ConditionType::NodeExisted => format!("node {} found", spec.adaptor.node),
                        _ => format!("model {}/{} found", spec.model.api_version, spec.model.kind),
                    }
                } else {
                    message
                },
            });
        }
    }
    if status != current {
        d.status = Some(status);
    }

    let want_label = matches!(observed.node, NodeState::Present(_))
        .then(|| node_label_value(&spec.adaptor.node));
    let have_label = link
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(NODE_LABEL))
        .cloned();
    if want_label != have_label {
        d.add_finalizer = want_label.is_some() && !finalizers.iter().any(|f| f == LIMB_FINALIZER);
        d.label = Some(want_label);
    }
    d
}

/// Whether the limb has written to the link: any of its conditions (its first status
/// write carries `AdaptorExisted`), or the adaptor it found.
fn taken_up_by_limb(link: &DeviceLink) -> bool {
    link.status.as_ref().is_some_and(|s| {
        s.adaptor_name.is_some()
            || s.conditions.iter().any(|c| {
                matches!(
                    c.type_,
                    ConditionType::AdaptorExisted
                        | ConditionType::DeviceCreated
                        | ConditionType::DeviceConnected
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::conditions::ConditionStatus::*;
    use crds::conditions::ConditionType::*;

    fn link(extra: &str) -> DeviceLink {
        let yaml = format!(
            "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nmetadata: {{name: l, namespace: default, generation: 3{extra}}}\nspec:\n  adaptor: {{node: edge, name: adaptors.edge.cattle.io/dummy}}\n  model: {{apiVersion: devices.edge.cattle.io/v1alpha1, kind: DummySpecialDevice}}\n  template: {{spec: {{}}}}\n"
        );
        crds::parse::device_links(&yaml).unwrap().remove(0)
    }

    fn present() -> NodeState {
        NodeState::Present(NodeAddresses {
            internal_ip: Some("10.0.0.5".into()),
            host_name: Some("edge".into()),
            ..Default::default()
        })
    }

    fn summary(d: &Decision) -> Vec<(ConditionType, ConditionStatus, String)> {
        d.status
            .as_ref()
            .map(|s| {
                s.conditions
                    .iter()
                    .map(|c| (c.type_, c.status, c.reason.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn s(
        v: &[(ConditionType, ConditionStatus, &str)],
    ) -> Vec<(ConditionType, ConditionStatus, String)> {
        v.iter()
            .map(|(a, b, c)| (*a, *b, (*c).to_owned()))
            .collect()
    }

    #[test]
    fn decide_table() {
        let cases = [
            (
                "node and model present: both found, adaptor next",
                Observed {
                    node: present(),
                    model: ModelState::Served,
                },
                s(&[
                    (NodeExisted, True, "Found"),
                    (ModelExisted, True, "Found"),
                    (AdaptorExisted, Unknown, "Confirming"),
                ]),
            ),
            (
                "node missing",
                Observed {
                    node: NodeState::Missing,
                    model: ModelState::Served,
                },
                s(&[(NodeExisted, False, "NotFound")]),
            ),
            (
                "node deleting",
                Observed {
                    node: NodeState::Deleting,
                    model: ModelState::Served,
                },
                s(&[(NodeExisted, False, "NotFound")]),
            ),
            (
                "model missing",
                Observed {
                    node: present(),
                    model: ModelState::Missing,
                },
                s(&[
                    (NodeExisted, True, "Found"),
                    (ModelExisted, False, "NotFound"),
                ]),
            ),
            (
                "version not served",
                Observed {
                    node: present(),
                    model: ModelState::VersionNotServed {
                        served: vec!["v1beta1".into()],
                    },
                },
                s(&[
                    (NodeExisted, True, "Found"),
                    (ModelExisted, False, "NotFound"),
                ]),
            ),
        ];
        for (name, obs, want) in cases {
            let d = decide(&link(""), &obs, "t1");
            assert_eq!(summary(&d), want, "{name}");
            assert_eq!(
                d.status.as_ref().unwrap().observed_generation,
                Some(3),
                "{name}"
            );
        }
    }

    #[test]
    fn found_node_copies_addresses_and_labels_the_link() {
        let d = decide(
            &link(""),
            &Observed {
                node: present(),
                model: ModelState::Served,
            },
            "t1",
        );
        let st = d.status.unwrap();
        assert_eq!(st.node_internal_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(st.node_name.as_deref(), Some("edge"));
        assert_eq!(st.model.unwrap().kind, "DummySpecialDevice");
        assert_eq!(d.label, Some(Some("edge".into())));
        assert!(d.add_finalizer, "the label brings the limb's finalizer");
        let held = decide(
            &link(", finalizers: [edge.cattle.io/octopus-limb]"),
            &Observed {
                node: present(),
                model: ModelState::Served,
            },
            "t1",
        );
        assert!(!held.add_finalizer, "already there");
        assert!(
            d.events.is_empty(),
            "a first success is no news: {:?}",
            d.events
        );
    }

    #[test]
    fn missing_node_removes_the_label_and_says_why() {
        let d = decide(
            &link(", labels: {edge.cattle.io/node: edge}"),
            &Observed {
                node: NodeState::Missing,
                model: ModelState::Served,
            },
            "t1",
        );
        assert_eq!(d.label, Some(None));
        assert!(!d.add_finalizer, "no limb will take it up");
        let c = &d.status.unwrap().conditions[0];
        assert_eq!(c.message, "adaptor node isn't existed");
        assert!(d.events[0].warning);
    }

    #[test]
    fn version_not_served_names_what_is() {
        let d = decide(
            &link(""),
            &Observed {
                node: present(),
                model: ModelState::VersionNotServed {
                    served: vec!["v1beta1".into()],
                },
            },
            "t1",
        );
        let st = d.status.unwrap();
        assert!(
            st.conditions[1].message.contains("serves v1beta1"),
            "{}",
            st.conditions[1].message
        );
    }

    #[test]
    fn revalidation_keeps_the_limbs_conditions_and_changes_nothing() {
        let mut l = link(", labels: {edge.cattle.io/node: edge}");
        let first = decide(
            &l,
            &Observed {
                node: present(),
                model: ModelState::Served,
            },
            "t1",
        )
        .status
        .unwrap();
        let mut c = Conditions(first.conditions.clone());
        c.succeed(AdaptorExisted, "t2");
        c.succeed(DeviceCreated, "t2");
        c.succeed(DeviceConnected, "t2");
        let mut st = first;
        st.conditions = c.0;
        st.adaptor_name = Some("adaptors.edge.cattle.io/dummy".into());
        l.status = Some(st);
        let d = decide(
            &l,
            &Observed {
                node: present(),
                model: ModelState::Served,
            },
            "t3",
        );
        assert_eq!(d, Decision::default(), "nothing to write");
    }

    #[test]
    fn a_deleted_link_whose_node_is_gone_loses_the_limb_finalizer() {
        let l = link(
            ", deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [edge.cattle.io/octopus-limb, other]",
        );
        let d = decide(
            &l,
            &Observed {
                node: NodeState::Missing,
                model: ModelState::Served,
            },
            "t1",
        );
        assert_eq!(d.finalizers, Some(vec!["other".to_owned()]));
        assert!(d.status.is_none());
        let d = decide(
            &l,
            &Observed {
                node: NodeState::Deleting,
                model: ModelState::Served,
            },
            "t1",
        );
        assert_eq!(d.finalizers, Some(vec!["other".to_owned()]));
        let d = decide(
            &l,
            &Observed {
                node: present(),
                model: ModelState::Served,
            },
            "t1",
        );
        assert_eq!(
            d.finalizers,
            Some(vec!["other".to_owned()]),
            "no limb took it up: the brain's own finalizer goes"
        );
        let mut taken = l.clone();
        let mut c = Conditions::default();
        c.succeed(NodeExisted, "t0");
        c.succeed(ModelExisted, "t0");
        c.fail(AdaptorExisted, "not loaded", "t0");
        taken.status = Some(DeviceLinkStatus {
            conditions: c.0,
            ..Default::default()
        });
        let d = decide(
            &taken,
            &Observed {
                node: present(),
                model: ModelState::Served,
            },
            "t1",
        );
        assert_eq!(d.finalizers, None, "a live limb removes its own finalizer");
    }

    #[test]
    fn node_coming_back_flips_the_condition() {
        let mut l = link("");
        l.status = decide(
            &l,
            &Observed {
                node: NodeState::Missing,
                model: ModelState::Served,
            },
            "t1",
        )
        .status;
        let d = decide(
            &l,
            &Observed {
                node: present(),
                model: ModelState::Served,
            },
            "t2",
        );
        assert_eq!(summary(&d)[0], (NodeExisted, True, "Found".to_owned()));
        assert_eq!(d.events[0].reason, "NodeFound");
    }
}
