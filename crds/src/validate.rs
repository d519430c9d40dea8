//! Structural checks on a DeviceLink that need no cluster: used by the brain before it
//! admits a link and by the limb before it drives one.

use crate::v1alpha1::{DEVICES_GROUP, DeviceLink};

/// Every problem found, each naming the field.
pub fn device_link(link: &DeviceLink) -> Vec<String> {
    let mut problems = Vec::new();
    let spec = &link.spec;
    if link.name().is_empty() {
        problems.push("metadata.name: required".to_owned());
    }
    if spec.adaptor.node.is_empty() {
        problems.push("spec.adaptor.node: required".to_owned());
    }
    if spec.adaptor.name.is_empty() {
        problems.push("spec.adaptor.name: required".to_owned());
    }
    if spec.model.kind.is_empty() {
        problems.push("spec.model.kind: required".to_owned());
    }
    match spec.model.api_version.split_once('/') {
        Some((group, version)) if !group.is_empty() && !version.is_empty() => {
            if group != DEVICES_GROUP {
                problems.push(format!(
                    "spec.model.apiVersion: group {group:?} is not {DEVICES_GROUP:?}"
                ));
            }
        }
        _ => problems.push(format!(
            "spec.model.apiVersion: {:?} is not group/version",
            spec.model.api_version
        )),
    }
    if !spec.template.spec.is_object() {
        problems.push("spec.template.spec: must be an object".to_owned());
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, g) in spec.grants.iter().enumerate() {
        if g.name.is_empty() {
            problems.push(format!("spec.grants[{i}].name: required"));
        } else if !names.insert(&g.name) {
            problems.push(format!("spec.grants[{i}].name: {:?} is used twice", g.name));
        }
        if g.target.is_empty() {
            problems.push(format!("spec.grants[{i}].target: required"));
        }
    }
    for (i, r) in spec.references.iter().enumerate() {
        let sources = usize::from(r.secret.is_some())
            + usize::from(r.config_map.is_some())
            + usize::from(r.downward_api.is_some());
        if sources != 1 {
            problems.push(format!(
                "spec.references[{i}] ({:?}): exactly one of secret, configMap, downwardAPI",
                r.name
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(yaml: &str) -> DeviceLink {
        crate::parse::device_links(yaml).unwrap().remove(0)
    }

    #[test]
    fn a_complete_link_has_no_problems() {
        let l = link(
            "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nmetadata: {name: a}\nspec:\n  adaptor: {node: n, name: x}\n  model: {apiVersion: devices.edge.cattle.io/v1alpha1, kind: K}\n  template: {spec: {}}\n",
        );
        assert!(device_link(&l).is_empty());
    }

    #[test]
    fn every_problem_is_named() {
        let l = link(
            "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nmetadata: {name: a}\nspec:\n  adaptor: {node: '', name: x}\n  model: {apiVersion: v1, kind: K}\n  template: {spec: 3}\n  grants: [{name: g, kind: tcp, target: ''}, {name: g, kind: tcp, target: 'x:1'}]\n  references: [{name: r}]\n",
        );
        let p = device_link(&l);
        for needle in [
            "spec.adaptor.node",
            "spec.model.apiVersion",
            "spec.template.spec",
            "spec.grants[0].target",
            "spec.grants[1].name",
            "spec.references[0]",
        ] {
            assert!(
                p.iter().any(|m| m.starts_with(needle)),
                "{needle} missing from {p:?}"
            );
        }
    }
}
