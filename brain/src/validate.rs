//! `brain validate`: the admission webhook's decision, offline. The same
//! [`decide::decide`] runs on each DeviceLink of the files, against the model CRDs this
//! build ships (the schemas the webhook finds in a cluster where they are installed)
//! and any CRDs the files themselves carry. What only a cluster can answer (whether the
//! adaptor is installed and which models it serves, whether referenced Secrets and
//! ConfigMaps exist) is left unchecked and says so in a warning.

use crds::v1alpha1::DeviceLink;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::admission::decide::{self, AdaptorLookup, Observed, Verdict};
use crate::admission::observe::model_lookup;

/// Why no adaptor was looked up.
pub const OFFLINE_ADAPTOR: &str =
    "offline: which adaptors are installed is known only in a cluster";

/// One DeviceLink's verdict.
#[derive(Debug)]
pub struct Checked {
    /// `namespace/name`.
    pub key: String,
    pub verdict: Verdict,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Parse(#[from] crds::parse::Error),
}

/// The CRDs in a multi-document YAML text (other documents skipped; a document that is
/// not valid YAML is the DeviceLink parser's to report).
pub fn crds_in(text: &str) -> Vec<CustomResourceDefinition> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| <serde_json::Value as serde::Deserialize>::deserialize(doc).ok())
        .filter(|v| v.get("kind").and_then(|k| k.as_str()) == Some("CustomResourceDefinition"))
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}

/// What the webhook would observe offline: the model among `crds`, no adaptor or
/// reference lookups.
pub fn observed(link: &DeviceLink, crds: &[CustomResourceDefinition]) -> Observed {
    Observed {
        model: model_lookup(crds.iter(), &link.spec.model),
        adaptor: AdaptorLookup::Unknown(OFFLINE_ADAPTOR.to_owned()),
        references: Vec::new(),
    }
}

/// The verdict of every DeviceLink in `text`, as the webhook would give it on create.
/// `extra` are CRDs beyond the shipped models (from other files).
pub fn text(text: &str, extra: &[CustomResourceDefinition]) -> Result<Vec<Checked>, Error> {
    let links = crds::parse::device_links(text)?;
    let mut crds = crds::models::crds();
    crds.extend(extra.iter().cloned());
    crds.extend(crds_in(text));
    Ok(links
        .iter()
        .map(|link| Checked {
            key: link.key(),
            verdict: decide::decide(link, None, &observed(link, &crds)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = r#"
apiVersion: edge.cattle.io/v1alpha1
kind: DeviceLink
metadata: {name: fan, namespace: default}
spec:
  adaptor: {node: edge-1, name: adaptors.edge.cattle.io/dummy}
  model: {apiVersion: devices.edge.cattle.io/v1alpha1, kind: DummySpecialDevice}
  template:
    spec: {protocol: {location: lab}, on: true, gear: slow}
"#;

    #[test]
    fn the_webhook_s_denials_offline_with_a_suggestion() {
        let ok = text(LINK, &[]).unwrap();
        assert_eq!(ok.len(), 1);
        assert!(ok[0].verdict.allowed(), "{:?}", ok[0].verdict);
        assert_eq!(
            ok[0].verdict.warnings,
            vec![format!(
                "adaptor \"adaptors.edge.cattle.io/dummy\" not checked: {OFFLINE_ADAPTOR}"
            )]
        );

        let typo = text(&LINK.replace("gear: slow", "gaer: slow"), &[]).unwrap();
        assert_eq!(
            typo[0].verdict.denials,
            vec![
                "spec.template.spec.gaer: unknown field (Kubernetes would silently drop it); did you mean `gear`?",
            ]
        );
        assert!(typo[0].verdict.warnings.is_empty(), "a denial alone");

        let unserved = text(
            &LINK.replace("cattle.io/v1alpha1, kind", "cattle.io/v2, kind"),
            &[],
        )
        .unwrap();
        assert_eq!(
            unserved[0].verdict.denials,
            vec![
                "spec.model.apiVersion: CRD dummyspecialdevices.devices.edge.cattle.io does not serve \"v2\" (served: v1alpha1)"
            ]
        );
    }

    #[test]
    fn a_model_from_another_file_or_unknown_is_a_warning() {
        let other = LINK.replace("DummySpecialDevice", "ThingDevice");
        let missing = text(&other, &[]).unwrap();
        assert!(missing[0].verdict.allowed());
        assert!(
            missing[0].verdict.warnings[0].contains("is not installed"),
            "{:?}",
            missing[0].verdict
        );
        let crd = crds::models::crds()
            .into_iter()
            .find(|c| c.spec.names.kind == "DummySpecialDevice")
            .map(|mut c| {
                c.spec.names.kind = "ThingDevice".into();
                c.spec.names.plural = "thingdevices".into();
                c.metadata.name = Some("thingdevices.devices.edge.cattle.io".into());
                c
            })
            .unwrap();
        let checked = text(&other.replace("gear: slow", "gear: turbo"), &[crd]).unwrap();
        assert!(!checked[0].verdict.allowed(), "held to the CRD given");
    }
}
