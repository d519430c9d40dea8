//! `octopus push`: a component, checked as the limb checks it, written as the
//! ConfigMap(s) the limb reads (the format of `limb::adaptors::package`), or with
//! `--dry-run` printed for `kubectl apply -f -`, which needs no cluster.
//!
//! Owns the order of the writes and the checks made before them; must not know the
//! format itself (that is the limb's, so a limb reads exactly what was pushed).
//!
//! Order matters because the limb reassembles the parts when the manifest changes and
//! verifies the digest afterwards: the extra parts are written first, the manifest (part
//! 0, holding the digest and the part count) last, and only then are the parts the new
//! payload no longer needs deleted. A limb that looks in between sees either the old
//! manifest with a torn payload (refused by the digest, the old version keeps serving)
//! or the new one, complete.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use limb::adaptors::package::{self, Part};
use serde::Serialize;

use crate::cluster::{self, failed};
use crate::config::{Format, PushArgs};
use crate::inspect::Inspection;
use crate::models;
use crate::output::{bytes, percent, plural, short_digest};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "octopus-cli";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the limb would refuse {file}: {}; fix the component, or push it anyway with --force", reasons.join("; "))]
    Refused { file: String, reasons: Vec<String> },
    #[error(
        "--name is {given}, but the component describes itself as {described}; the limb refuses a ConfigMap whose name annotation differs from the component's own name, so DeviceLinks naming either would find nothing; use --name {described} (or leave --name out), or --force to push a ConfigMap the limb will refuse"
    )]
    NameMismatch { given: String, described: String },
    #[error(
        "the component could not describe itself, so its name is unknown; pass --name with --force"
    )]
    NameRequired,
    #[error(
        "ConfigMap {namespace}/{configmap} holds {holds}, not {adaptor}; choose another --configmap, or --force to replace it"
    )]
    Occupied {
        namespace: String,
        configmap: String,
        holds: String,
        adaptor: String,
    },
    #[error(
        "namespace {0} does not exist; is Octopus installed there? (--namespace, OCTOPUS_NAMESPACE)"
    )]
    NoNamespace(String),
    #[error("cannot render the ConfigMaps as JSON")]
    Render(#[source] serde_yaml::Error),
    #[error(transparent)]
    Models(#[from] models::Error),
    #[error(transparent)]
    Cluster(#[from] cluster::Error),
}

/// A component ready to push: checked, named, with the models it serves.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub file: String,
    pub adaptor: String,
    /// From `describe()`; absent when a refused component was forced.
    pub version: Option<String>,
    /// `apiVersion/Kind`, as the models annotation holds them.
    pub models: Vec<String>,
    pub configmap: String,
    pub component: Vec<u8>,
    /// Checks `--force` overrode.
    pub overridden: Vec<String>,
    /// The CRDs of the models the component declares (none before contract 0.1.3).
    pub crds: Vec<CustomResourceDefinition>,
    /// `--force`: the limb lets this version take over every link, even those whose
    /// spec its schema rejects.
    pub force: bool,
}

/// Applies the checks `push` makes before touching anything.
pub fn prepare(inspection: Inspection, args: &PushArgs) -> Result<Prepared, Error> {
    let Inspection {
        report,
        component,
        adaptor,
    } = inspection;
    let mut overridden = Vec::new();
    if !report.accepted {
        let why = Error::Refused {
            file: report.file.clone(),
            reasons: report.reasons.clone(),
        };
        if !args.force {
            return Err(why);
        }
        overridden.push(format!(
            "the limb will refuse this component: {}",
            report.reasons.join("; ")
        ));
    }
    let described = adaptor.as_ref().map(|a| a.info.name.clone());
    let name = match (&args.name, described) {
        (Some(given), Some(described)) if *given != described => {
            let why = Error::NameMismatch {
                given: given.clone(),
                described,
            };
            if !args.force {
                return Err(why);
            }
            overridden.push(why.to_string());
            given.clone()
        }
        (Some(given), _) => given.clone(),
        (None, Some(described)) => described,
        (None, None) => return Err(Error::NameRequired),
    };
    let crds = match adaptor.as_deref().map(models::crds) {
        Some(Ok(crds)) => crds,
        Some(Err(models::Error::NoDeclaration(_))) | None => Vec::new(),
        Some(Err(e)) => {
            if !args.force {
                return Err(e.into());
            }
            overridden.push(e.to_string());
            Vec::new()
        }
    };
    let models = adaptor
        .as_ref()
        .map(|a| {
            a.models()
                .map(|m| format!("{}/{}", m.api_version, m.kind))
                .collect()
        })
        .unwrap_or_default();
    Ok(Prepared {
        file: report.file,
        configmap: args
            .configmap
            .clone()
            .unwrap_or_else(|| package::configmap_name(&name)),
        adaptor: name,
        version: adaptor.map(|a| a.info.version.clone()),
        models,
        component,
        overridden,
        crds,
        force: args.force,
    })
}

/// What to write and delete, decided from the component and the parts already there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub configmap: String,
    pub digest: String,
    pub gzip: bool,
    /// Bytes of the component.
    pub size: usize,
    /// In package order: the manifest (part 0) first.
    pub parts: Vec<Part>,
    /// Existing `<configmap>-part-<i>` the new payload does not need, sorted.
    pub stale: Vec<String>,
}

impl Plan {
    pub fn new(prepared: &Prepared, existing_parts: &[String]) -> Self {
        let mut parts = package::package(
            &prepared.configmap,
            &prepared.adaptor,
            &prepared.models,
            &prepared.component,
        );
        if prepared.force
            && let Some(manifest) = parts.first_mut()
        {
            manifest
                .annotations
                .insert(package::FORCE_ANNOTATION.to_owned(), "true".to_owned());
        }
        let keep: BTreeSet<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        let stale: BTreeSet<String> = existing_parts
            .iter()
            .filter(|n| !keep.contains(n.as_str()) && **n != prepared.configmap)
            .cloned()
            .collect();
        let gzip = parts
            .first()
            .and_then(|p| p.annotations.get(package::ENCODING_ANNOTATION))
            .is_some_and(|e| e == "gzip");
        Self {
            configmap: prepared.configmap.clone(),
            digest: package::digest(&prepared.component),
            gzip,
            size: prepared.component.len(),
            parts,
            stale: stale.into_iter().collect(),
        }
    }

    /// The extra parts first, the manifest last.
    pub fn write_order(&self) -> Vec<&Part> {
        let mut order: Vec<&Part> = self.parts.iter().skip(1).collect();
        order.extend(self.parts.first());
        order
    }

    pub fn stored_bytes(&self) -> usize {
        self.parts.iter().map(|p| p.data.len()).sum()
    }

    pub fn encoding(&self) -> &'static str {
        if self.gzip { "gzip" } else { "identity" }
    }
}

/// One part as the ConfigMap the API server stores (what `package::render` prints).
pub fn to_configmap(part: &Part, namespace: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(part.name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(part.labels.clone()),
            annotations: Some(part.annotations.clone()),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([(
            package::DATA_KEY.to_owned(),
            ByteString(part.data.clone()),
        )])),
        ..ConfigMap::default()
    }
}

/// `--dry-run`: the model CRDs, then the ConfigMaps exactly as `package::render` renders
/// them (with the force annotation when forced), as YAML or as a JSON `v1 List`; both
/// can be piped to `kubectl apply -f -`.
pub fn render(prepared: &Prepared, namespace: &str, format: Format) -> Result<String, Error> {
    let mut yaml = models::render(&prepared.crds)?;
    if prepared.force {
        for part in Plan::new(prepared, &[]).parts {
            yaml.push_str("---\n");
            yaml.push_str(
                &serde_yaml::to_string(&to_configmap(&part, namespace)).map_err(Error::Render)?,
            );
        }
    } else {
        yaml.push_str(&package::render(
            &prepared.configmap,
            namespace,
            &prepared.adaptor,
            &prepared.models,
            &prepared.component,
        ));
    }
    match format {
        Format::Text => Ok(yaml),
        Format::Json => {
            let items = serde_yaml::Deserializer::from_str(&yaml)
                .map(|doc| serde::Deserialize::deserialize(doc).map_err(Error::Render))
                .collect::<Result<Vec<serde_json::Value>, Error>>()?;
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            Ok(format!("{list:#}\n"))
        }
    }
}

/// What `push` did (`-o json` prints this).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub file: String,
    pub adaptor: String,
    pub version: Option<String>,
    pub namespace: String,
    pub config_map: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// The digest the manifest held before, if it existed.
    pub previous_digest: Option<String>,
    /// Bytes of the component.
    pub size: usize,
    /// `gzip` or `identity`.
    pub encoding: &'static str,
    /// Bytes stored across the ConfigMaps.
    pub stored_bytes: usize,
    /// In the order written: extra parts first, the manifest last.
    pub written: Vec<Written>,
    /// Stale parts deleted after the manifest was written.
    pub deleted: Vec<String>,
    /// Checks `--force` overrode.
    pub overridden: Vec<String>,
    /// The model CRDs installed with it, what changed and which links the limb holds.
    pub models: Vec<models::ModelChange>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub name: String,
    pub bytes: usize,
    /// `created` or `updated`.
    pub action: &'static str,
}

/// Writes the ConfigMaps in order and deletes stale parts, printing progress to stderr.
pub async fn apply(
    client: Client,
    namespace: &str,
    prepared: &Prepared,
    force: bool,
) -> Result<Report, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let target = format!("{namespace}/{}", prepared.configmap);
    let existing = match api.get_opt(&prepared.configmap).await {
        Ok(cm) => cm,
        Err(e) => {
            return Err(missing_namespace(
                failed(format!("cannot read ConfigMap {target}"))(e),
                namespace,
            ));
        }
    };
    let mut overridden = prepared.overridden.clone();
    let holds = existing.as_ref().map(|cm| {
        cm.annotations()
            .get(package::NAME_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| "something else (it is not an adaptor's ConfigMap)".to_owned())
    });
    if let Some(holds) = holds.filter(|h| *h != prepared.adaptor) {
        let why = Error::Occupied {
            namespace: namespace.to_owned(),
            configmap: prepared.configmap.clone(),
            holds,
            adaptor: prepared.adaptor.clone(),
        };
        if !force {
            return Err(why);
        }
        overridden.push(why.to_string());
    }
    let previous_digest = existing
        .as_ref()
        .and_then(|cm| cm.annotations().get(package::DIGEST_ANNOTATION).cloned());
    let existing_parts: Vec<String> = api
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            package::PART_OF_LABEL,
            prepared.configmap
        )))
        .await
        .map_err(failed(format!("cannot list the parts of {target}")))?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let plan = Plan::new(prepared, &existing_parts);
    eprintln!(
        "pushing {} {} ({}) to {target}",
        prepared.adaptor,
        prepared.version.as_deref().unwrap_or("(unknown version)"),
        short_digest(&plan.digest)
    );
    for why in &overridden {
        eprintln!("  warning: {why} (--force)");
    }
    eprintln!(
        "  component {} -> {} {} ({}%), {}",
        bytes(plan.size),
        plan.encoding(),
        bytes(plan.stored_bytes()),
        percent(plan.stored_bytes(), plan.size),
        plural(plan.parts.len(), "ConfigMap", "ConfigMaps")
    );
    // The models first: a limb that loads the new version finds its model served.
    let models = models::push(
        client,
        &prepared.crds,
        &prepared.adaptor,
        FIELD_MANAGER,
        true,
    )
    .await?;
    for m in &models {
        eprint!("{}", m.text());
    }
    if models.iter().any(|m| !m.held.is_empty()) {
        if force {
            eprintln!("  --force: the new version takes over the held links too");
        } else {
            eprintln!(
                "  the limb keeps held links on the running version until their spec is fixed (or push with --force)"
            );
        }
    }
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut written = Vec::new();
    for part in plan.write_order() {
        let existed = if part.name == plan.configmap {
            existing.is_some()
        } else {
            existing_parts.contains(&part.name)
        };
        api.patch(
            &part.name,
            &pp,
            &Patch::Apply(&to_configmap(part, namespace)),
        )
        .await
        .map_err(|e| {
            missing_namespace(
                failed(format!("cannot write ConfigMap {namespace}/{}", part.name))(e),
                namespace,
            )
        })?;
        let action = if existed { "updated" } else { "created" };
        let role = if part.name == plan.configmap {
            ", manifest"
        } else {
            ""
        };
        eprintln!(
            "  {action:<9} {} ({}{role})",
            part.name,
            bytes(part.data.len())
        );
        written.push(Written {
            name: part.name.clone(),
            bytes: part.data.len(),
            action,
        });
    }
    let mut deleted = Vec::new();
    for name in &plan.stale {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(failed(format!(
                    "{} is pushed, but its stale part {namespace}/{name} cannot be deleted",
                    prepared.adaptor
                ))(e)
                .into());
            }
        }
        eprintln!(
            "  {:<9} {name} (stale: the payload now needs {})",
            "deleted",
            plural(plan.parts.len(), "part", "parts")
        );
        deleted.push(name.clone());
    }
    Ok(Report {
        file: prepared.file.clone(),
        adaptor: prepared.adaptor.clone(),
        version: prepared.version.clone(),
        namespace: namespace.to_owned(),
        config_map: plan.configmap.clone(),
        digest: plan.digest.clone(),
        previous_digest,
        size: plan.size,
        encoding: plan.encoding(),
        stored_bytes: plan.stored_bytes(),
        written,
        deleted,
        overridden,
        models,
    })
}

/// A 404 on a namespaced write usually means the namespace is missing.
fn missing_namespace(e: cluster::Error, namespace: &str) -> Error {
    match &e {
        cluster::Error::Api {
            code: 404, message, ..
        } if message.contains("namespaces") && message.contains(namespace) => {
            Error::NoNamespace(namespace.to_owned())
        }
        _ => Error::Cluster(e),
    }
}

impl Report {
    /// The one-line summary for people (progress went to stderr).
    pub fn text(&self) -> String {
        let was = match &self.previous_digest {
            Some(d) if *d == self.digest => " (unchanged)".to_owned(),
            Some(d) => format!(" (was {})", short_digest(d)),
            None => String::new(),
        };
        format!(
            "pushed {} {} as {}/{}: {}{was}\n",
            self.adaptor,
            self.version.as_deref().unwrap_or("(unknown version)"),
            self.namespace,
            self.config_map,
            self.digest,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize) -> Vec<u8> {
        let mut x: u32 = 7;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn prepared(component: Vec<u8>) -> Prepared {
        Prepared {
            file: "a.wasm".into(),
            adaptor: "adaptors.edge.cattle.io/big".into(),
            version: Some("1.0.0".into()),
            models: vec!["devices.edge.cattle.io/v1alpha1/BigDevice".into()],
            configmap: "adaptor-big".into(),
            component,
            overridden: vec![],
            crds: vec![],
            force: false,
        }
    }

    #[test]
    fn parts_are_written_before_the_manifest() {
        let plan = Plan::new(&prepared(noise(2 << 20)), &[]);
        let order: Vec<&str> = plan.write_order().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            order,
            ["adaptor-big-part-1", "adaptor-big-part-2", "adaptor-big"]
        );
        assert!(!plan.gzip);
        assert_eq!(plan.stored_bytes(), 2 << 20);
        assert!(plan.stale.is_empty());
    }

    #[test]
    fn parts_the_smaller_payload_no_longer_needs_are_stale() {
        let existing = [
            "adaptor-big-part-2".to_owned(),
            "adaptor-big-part-1".to_owned(),
            "adaptor-big".to_owned(),
        ];
        let plan = Plan::new(&prepared(noise(1 << 20)), &existing);
        assert_eq!(plan.parts.len(), 2);
        assert_eq!(plan.stale, ["adaptor-big-part-2"]);
        let plan = Plan::new(&prepared(vec![0u8; 3 << 20]), &existing);
        assert_eq!((plan.parts.len(), plan.gzip), (1, true));
        assert_eq!(plan.stale, ["adaptor-big-part-1", "adaptor-big-part-2"]);
        assert_eq!(plan.write_order().len(), 1);
    }

    #[test]
    fn configmaps_are_exactly_what_the_limb_format_renders() {
        let p = prepared(noise(1 << 20));
        let rendered: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(
            &render(&p, "octopus-system", Format::Text).unwrap(),
        )
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
        let plan = Plan::new(&p, &[]);
        let ours: Vec<serde_json::Value> = plan
            .parts
            .iter()
            .map(|part| serde_json::to_value(to_configmap(part, "octopus-system")).unwrap())
            .collect();
        assert_eq!(ours, rendered);
        assert_eq!(
            ours[0]["metadata"]["annotations"][package::MODELS_ANNOTATION],
            "devices.edge.cattle.io/v1alpha1/BigDevice"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&p, "octopus-system", Format::Json).unwrap()).unwrap();
        assert_eq!(json["kind"], "List");
        assert_eq!(json["items"], serde_json::Value::Array(rendered));
    }

    #[test]
    fn json_field_names_are_stable() {
        let r = Report {
            file: "a.wasm".into(),
            adaptor: "adaptors.edge.cattle.io/a".into(),
            version: None,
            namespace: "octopus-system".into(),
            config_map: "adaptor-a".into(),
            digest: "sha256:00".into(),
            previous_digest: None,
            size: 1,
            encoding: "identity",
            stored_bytes: 1,
            written: vec![Written {
                name: "adaptor-a".into(),
                bytes: 1,
                action: "created",
            }],
            deleted: vec![],
            overridden: vec![],
            models: vec![],
        };
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "adaptor",
                "configMap",
                "deleted",
                "digest",
                "encoding",
                "file",
                "models",
                "namespace",
                "overridden",
                "previousDigest",
                "size",
                "storedBytes",
                "version",
                "written"
            ]
        );
        assert_eq!(v["written"][0]["action"], "created");
    }
}
