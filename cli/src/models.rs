//! The models a component declares (contract 0.1.3): `octopus crd` prints their CRDs,
//! and `octopus push` installs them beside the adaptor, after comparing them with what
//! is installed and checking every DeviceLink of the adaptor against the new schema.
//!
//! Owns the CRD side of a push; the CRD itself is made by `crds::declared`, the same code
//! the tests hold to `crds/generated/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use limb::adaptors::Adaptor;
use serde::Serialize;
use serde_json::Value;

use crate::cluster::{self, failed};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{0} declares no model schema (it exports no octopus:adaptor/models, so it was built against contract 0.1.2 or older, or for the plain `adaptor` world); its model CRD must be written by hand"
    )]
    NoDeclaration(String),
    #[error("cannot make the CRD: {0}")]
    Crd(#[from] crds::declared::Error),
    #[error("cannot render the CRD: {0}")]
    Render(#[from] serde_yaml::Error),
    #[error(transparent)]
    Cluster(#[from] cluster::Error),
}

/// The CRDs of every model `adaptor` declares.
pub fn crds(adaptor: &Adaptor) -> Result<Vec<CustomResourceDefinition>, Error> {
    if adaptor.declared.is_empty() {
        return Err(Error::NoDeclaration(adaptor.to_string()));
    }
    adaptor
        .declared
        .iter()
        .map(|d| crds::declared::crd(d).map_err(Error::from))
        .collect()
}

/// The CRDs as YAML documents, written as `crdgen` writes `crds/generated/`.
pub fn render(crds: &[CustomResourceDefinition]) -> Result<String, Error> {
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&crds::generated::quote_yaml11_booleans(
            &serde_yaml::to_string(crd)?,
        ));
    }
    Ok(out)
}

/// What pushing one model CRD changes.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelChange {
    /// The CRD's name, e.g. `counterdevices.devices.edge.cattle.io`.
    pub crd: String,
    /// `created`, `updated`, `unchanged` (or, in a dry run, what it would be).
    pub action: &'static str,
    /// Each difference from the installed schema (`spec.step: renamed to spec.increment`).
    pub changes: Vec<String>,
    /// Whether any change may reject a spec or status the installed schema accepted.
    pub breaking: bool,
    /// Links of this adaptor and model whose spec the new schema rejects, with why:
    /// the limb keeps them on the running version until they are fixed (or `--force`).
    pub held: Vec<String>,
}

impl ModelChange {
    /// The lines a person reads, indented under the push.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!("  {:<9} CRD {}\n", self.action, self.crd);
        for c in &self.changes {
            let _ = writeln!(s, "            {c}");
        }
        for h in &self.held {
            let _ = writeln!(s, "  held      {h}");
        }
        s
    }
}

fn schema_of(crd: &CustomResourceDefinition, field: &str) -> Value {
    serde_json::to_value(crd)
        .ok()
        .and_then(|v| {
            v["spec"]["versions"]
                .as_array()?
                .iter()
                .find(|v| v["storage"] == true)
                .map(|v| v["schema"]["openAPIV3Schema"]["properties"][field].clone())
        })
        .unwrap_or(Value::Null)
}

/// Compares `new` with `installed` and names every link of `adaptor` on that model whose
/// spec `new` rejects.
pub fn judge(
    new: &CustomResourceDefinition,
    installed: Option<&CustomResourceDefinition>,
    links: &[crds::DeviceLink],
    adaptor: &str,
) -> ModelChange {
    let mut changes = Vec::new();
    let mut breaking = false;
    if let Some(old) = installed {
        for field in ["spec", "status"] {
            for c in crds::compat::compare(&schema_of(old, field), &schema_of(new, field), field) {
                breaking |= c.breaking();
                changes.push(format!(
                    "{c}{}",
                    if c.breaking() { " (breaking)" } else { "" }
                ));
            }
        }
    }
    let spec = schema_of(new, "spec");
    let kind = &new.spec.names.kind;
    let held = links
        .iter()
        .filter(|l| l.spec.adaptor.name == adaptor && l.spec.model.kind == *kind)
        .filter_map(|l| {
            let problems =
                crds::structural::validate(&spec, &l.spec.template.spec, "spec.template.spec");
            let first = problems.first()?;
            Some(format!(
                "DeviceLink {}/{}: {first}",
                l.namespace().unwrap_or_default(),
                l.name_any()
            ))
        })
        .collect();
    let action = match installed {
        None => "created",
        Some(old) if schema_of(old, "spec") == spec && changes.is_empty() => "unchanged",
        Some(_) => "updated",
    };
    ModelChange {
        crd: new.name_any(),
        action,
        changes,
        breaking,
        held,
    }
}

/// Compares every CRD with the installed one and the adaptor's links; with `write`,
/// installs them (server-side apply, `field_manager`). A cluster without the
/// DeviceLink CRD has no links to hold.
pub async fn push(
    client: Client,
    crds: &[CustomResourceDefinition],
    adaptor: &str,
    field_manager: &str,
    write: bool,
) -> Result<Vec<ModelChange>, Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let links: Vec<crds::DeviceLink> = Api::<crds::DeviceLink>::all(client)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let pp = PatchParams::apply(field_manager).force();
    let mut out = Vec::with_capacity(crds.len());
    for crd in crds {
        let name = crd.name_any();
        let installed = api
            .get_opt(&name)
            .await
            .map_err(failed(format!("cannot read CRD {name}")))?;
        let change = judge(crd, installed.as_ref(), &links, adaptor);
        if write && change.action != "unchanged" {
            api.patch(&name, &pp, &Patch::Apply(crd))
                .await
                .map_err(failed(format!("cannot write CRD {name}")))?;
        }
        out.push(change);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(spec: Value) -> CustomResourceDefinition {
        crds::declared::crd(&crds::declared::DeclaredModel {
            api_version: "devices.edge.cattle.io/v1alpha1".into(),
            kind: "CounterDevice".into(),
            description: String::new(),
            spec,
            status: None,
            short_names: vec![],
            categories: vec![],
            printer_columns: vec![],
        })
        .unwrap()
    }

    fn link(spec: &str) -> crds::DeviceLink {
        let yaml = format!(
            "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nmetadata: {{name: c1, namespace: default}}\nspec:\n  adaptor: {{node: n, name: adaptors.edge.cattle.io/counter}}\n  model: {{apiVersion: devices.edge.cattle.io/v1alpha1, kind: CounterDevice}}\n  template: {{spec: {spec}}}\n"
        );
        crds::parse::device_links(&yaml).unwrap().remove(0)
    }

    #[test]
    fn a_rename_is_breaking_and_holds_the_links_that_use_the_old_name() {
        let v1 = declared(
            serde_json::json!({"type": "object", "properties": {"step": {"type": "integer"}}}),
        );
        let v2 = declared(
            serde_json::json!({"type": "object", "properties": {"increment": {"type": "integer"}}}),
        );
        let links = [link("{step: 2}"), link("{increment: 2}")];
        let c = judge(&v2, Some(&v1), &links, "adaptors.edge.cattle.io/counter");
        assert_eq!(c.action, "updated");
        assert!(c.breaking);
        assert_eq!(
            c.changes,
            ["spec.step: renamed to spec.increment (breaking)"]
        );
        assert_eq!(c.held.len(), 1, "{:?}", c.held);
        assert!(
            c.held[0].contains("default/c1: spec.template.spec.step"),
            "{:?}",
            c.held
        );
        let same = judge(&v1, Some(&v1), &[], "adaptors.edge.cattle.io/counter");
        assert_eq!((same.action, same.breaking), ("unchanged", false));
        let other = judge(&v2, Some(&v1), &links, "adaptors.edge.cattle.io/other");
        assert!(other.held.is_empty());
        let fresh = judge(&v1, None, &links, "adaptors.edge.cattle.io/counter");
        assert_eq!(fresh.action, "created");
    }
}
