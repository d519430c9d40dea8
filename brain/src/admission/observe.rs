//! What an admission decision needs from the cluster: the model's CRD and the adaptor's
//! ConfigMap from watch caches (an admission must answer in milliseconds, and listing
//! every CRD per request would not), and referenced objects by a bounded `get`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crds::v1alpha1::{DeviceLink, TypeMeta};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::decide::{AdaptorLookup, ModelLookup, Observed, RefOutcome, ReferenceCheck};

/// The label on every adaptor ConfigMap (see the limb's `adaptors::package`).
pub const COMPONENT_LABEL: &str = "adaptors.edge.cattle.io/component";
/// The annotation naming the adaptor on an adaptor's manifest ConfigMap.
pub const NAME_ANNOTATION: &str = "adaptors.edge.cattle.io/name";
/// The models the adaptor serves, `apiVersion/Kind` comma-separated (`octopus push`).
pub const MODELS_ANNOTATION: &str = "adaptors.edge.cattle.io/models";

/// Bound on each API call made while the API server waits for our answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Observer {
    client: Client,
    crds: Store<CustomResourceDefinition>,
    adaptors: Store<ConfigMap>,
    adaptor_namespace: String,
}

impl Observer {
    /// Starts the two watch caches; they live as long as the returned tasks.
    pub fn start(
        client: Client,
        adaptor_namespace: String,
    ) -> (Arc<Self>, Vec<tokio::task::JoinHandle<()>>) {
        let (crds, crd_writer) = reflector::store();
        let crd_stream = watcher(
            Api::<CustomResourceDefinition>::all(client.clone()),
            watcher::Config::default(),
        )
        .backoff(octopus_backoff::WatchBackoff::default())
        .reflect(crd_writer)
        .applied_objects();
        let (adaptors, cm_writer) = reflector::store();
        let cm_stream = watcher(
            Api::<ConfigMap>::namespaced(client.clone(), &adaptor_namespace),
            watcher::Config::default().labels(&format!("{COMPONENT_LABEL}=true")),
        )
        .backoff(octopus_backoff::WatchBackoff::default())
        .reflect(cm_writer)
        .applied_objects();
        let tasks = vec![
            tokio::spawn(drain(crd_stream, "customresourcedefinitions")),
            tokio::spawn(drain(cm_stream, "adaptor configmaps")),
        ];
        let observer = Arc::new(Self {
            client,
            crds,
            adaptors,
            adaptor_namespace,
        });
        (observer, tasks)
    }

    pub async fn observe(&self, link: &DeviceLink) -> Observed {
        let (model, adaptor, references) =
            tokio::join!(self.model(link), self.adaptor(link), self.references(link));
        Observed {
            model,
            adaptor,
            references,
        }
    }

    async fn model(&self, link: &DeviceLink) -> ModelLookup {
        let model = &link.spec.model;
        if self.crds.wait_until_ready().now_or_never_ready() {
            let cached: Vec<_> = self.crds.state();
            let found = model_lookup(cached.iter().map(AsRef::as_ref), model);
            if found != ModelLookup::Missing {
                return found;
            }
        }
        // Not in the cache (not ready yet, or a CRD installed a moment ago): one
        // consistent read before saying it does not exist.
        let api = Api::<CustomResourceDefinition>::all(self.client.clone());
        match tokio::time::timeout(CALL_TIMEOUT, api.list(&ListParams::default())).await {
            Ok(Ok(list)) => model_lookup(list.items.iter(), model),
            Ok(Err(e)) => ModelLookup::Unknown(format!("cannot list CRDs: {e}")),
            Err(_) => ModelLookup::Unknown("listing CRDs timed out".to_owned()),
        }
    }

    async fn adaptor(&self, link: &DeviceLink) -> AdaptorLookup {
        let name = &link.spec.adaptor.name;
        if self.adaptors.wait_until_ready().now_or_never_ready()
            && let Some(found) = adaptor_lookup(
                self.adaptors
                    .state()
                    .iter()
                    .map(|cm| (&cm.metadata.labels, &cm.metadata.annotations)),
                name,
            )
        {
            return found;
        }
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), &self.adaptor_namespace);
        let lp = ListParams::default().labels(&format!("{COMPONENT_LABEL}=true"));
        match tokio::time::timeout(CALL_TIMEOUT, api.list_metadata(&lp)).await {
            Ok(Ok(list)) => {
                let found = adaptor_lookup(
                    list.items
                        .iter()
                        .map(|m| (&m.metadata.labels, &m.metadata.annotations)),
                    name,
                );
                found.unwrap_or_else(|| AdaptorLookup::Missing {
                    namespace: self.adaptor_namespace.clone(),
                })
            }
            Ok(Err(e)) => AdaptorLookup::Unknown(format!("cannot list adaptor ConfigMaps: {e}")),
            Err(_) => AdaptorLookup::Unknown("listing adaptor ConfigMaps timed out".to_owned()),
        }
    }

    async fn references(&self, link: &DeviceLink) -> Vec<ReferenceCheck> {
        let ns = link.namespace_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let mut out = Vec::new();
        for r in &link.spec.references {
            if let Some(s) = &r.secret {
                let outcome = outcome(secrets.get_metadata_opt(&s.name)).await;
                out.push(ReferenceCheck {
                    what: format!("Secret {:?}", s.name),
                    outcome,
                });
            }
            if let Some(c) = &r.config_map {
                let outcome = outcome(config_maps.get_metadata_opt(&c.name)).await;
                out.push(ReferenceCheck {
                    what: format!("ConfigMap {:?}", c.name),
                    outcome,
                });
            }
        }
        out
    }
}

async fn outcome<T>(
    get: impl std::future::Future<Output = Result<Option<T>, kube::Error>>,
) -> RefOutcome {
    match tokio::time::timeout(CALL_TIMEOUT, get).await {
        Ok(Ok(Some(_))) => RefOutcome::Exists,
        Ok(Ok(None)) => RefOutcome::Missing,
        Ok(Err(kube::Error::Api(e))) if e.code == 403 => RefOutcome::Forbidden,
        Ok(Err(e)) => RefOutcome::Failed(e.to_string()),
        Err(_) => RefOutcome::Failed("timed out".to_owned()),
    }
}

async fn drain<S, T>(stream: S, what: &'static str)
where
    S: futures::Stream<Item = Result<T, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            tracing::warn!(error = %e, what, "admission watch failed; retrying");
        }
    }
}

/// Readiness without waiting: an admission never blocks on a cache that is still filling.
trait NowOrNever {
    fn now_or_never_ready(self) -> bool;
}

impl<F: std::future::Future<Output = Result<(), reflector::store::WriterDropped>>> NowOrNever
    for F
{
    fn now_or_never_ready(self) -> bool {
        matches!(futures::FutureExt::now_or_never(self), Some(Ok(())))
    }
}

/// What the model's CRD ([`crate::models::model_crd`]) says about the requested version.
pub fn model_lookup<'a>(
    crds: impl Iterator<Item = &'a CustomResourceDefinition>,
    model: &TypeMeta,
) -> ModelLookup {
    let (_, version) = model.group_version();
    let Some(crd) = crate::models::model_crd(crds, model) else {
        return ModelLookup::Missing;
    };
    let served = crate::models::served_versions(crd);
    let Some(v) = crd
        .spec
        .versions
        .iter()
        .find(|v| v.served && v.name == version)
    else {
        return ModelLookup::NotServed {
            crd: crd.metadata.name.clone().unwrap_or_default(),
            served,
        };
    };
    let schema = v
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok());
    ModelLookup::Served(schema)
}

fn is_manifest_of(
    labels: &Option<BTreeMap<String, String>>,
    annotations: &Option<BTreeMap<String, String>>,
    adaptor: &str,
) -> bool {
    labels
        .as_ref()
        .and_then(|l| l.get(COMPONENT_LABEL))
        .is_some_and(|v| v == "true")
        && annotations
            .as_ref()
            .and_then(|a| a.get(NAME_ANNOTATION))
            .is_some_and(|n| n == adaptor)
}

type Meta<'a> = (
    &'a Option<BTreeMap<String, String>>,
    &'a Option<BTreeMap<String, String>>,
);

/// The adaptor's manifest among ConfigMaps (labels, annotations), with the models it
/// serves when its package says (packages from `octopus push` do).
pub fn adaptor_lookup<'a>(
    mut config_maps: impl Iterator<Item = Meta<'a>>,
    adaptor: &str,
) -> Option<AdaptorLookup> {
    let (_, annotations) = config_maps.find(|(l, a)| is_manifest_of(l, a, adaptor))?;
    let models = annotations.as_ref().and_then(|a| a.get(MODELS_ANNOTATION));
    Some(match models {
        Some(list) => AdaptorLookup::Serves(
            list.split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        None => AdaptorLookup::Present,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(served: &[(&str, bool)]) -> CustomResourceDefinition {
        let versions: Vec<_> = served
            .iter()
            .map(|(name, s)| json!({"name": name, "served": s, "storage": *s,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "things.devices.edge.cattle.io"},
            "spec": {"group": "devices.edge.cattle.io", "scope": "Namespaced",
                "names": {"kind": "Thing", "plural": "things"}, "versions": versions}
        }))
        .unwrap()
    }

    fn model(v: &str, kind: &str) -> TypeMeta {
        TypeMeta {
            api_version: v.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn model_lookup_table() {
        let c = [crd(&[("v1alpha1", true), ("v1", false)])];
        assert!(matches!(
            model_lookup(c.iter(), &model("devices.edge.cattle.io/v1alpha1", "Thing")),
            ModelLookup::Served(Some(s)) if s["properties"]["spec"]["type"] == "object"
        ));
        assert_eq!(
            model_lookup(c.iter(), &model("devices.edge.cattle.io/v1", "Thing")),
            ModelLookup::NotServed {
                crd: "things.devices.edge.cattle.io".into(),
                served: vec!["v1alpha1".into()]
            }
        );
        assert_eq!(
            model_lookup(c.iter(), &model("devices.edge.cattle.io/v1alpha1", "Other")),
            ModelLookup::Missing
        );
        assert_eq!(
            model_lookup(c.iter(), &model("other.io/v1alpha1", "Thing")),
            ModelLookup::Missing
        );
    }

    #[test]
    fn an_adaptor_is_its_labelled_manifest_with_the_models_it_declares() {
        use serde_json::Value;
        let cm = |labels: Value, annotations: Value| -> ConfigMap {
            serde_json::from_value(
                json!({"metadata": {"name": "x", "labels": labels, "annotations": annotations}}),
            )
            .unwrap()
        };
        let lookup = |cms: &[&ConfigMap], name: &str| {
            adaptor_lookup(
                cms.iter()
                    .map(|c| (&c.metadata.labels, &c.metadata.annotations)),
                name,
            )
        };
        let dummy = "adaptors.edge.cattle.io/dummy";
        let old = cm(
            json!({COMPONENT_LABEL: "true"}),
            json!({NAME_ANNOTATION: dummy}),
        );
        let new = cm(
            json!({COMPONENT_LABEL: "true"}),
            json!({NAME_ANNOTATION: dummy, MODELS_ANNOTATION: "a/v1/A, a/v1/B"}),
        );
        let unlabelled = cm(json!({}), json!({NAME_ANNOTATION: dummy}));
        let part = cm(json!({COMPONENT_LABEL: "true"}), json!({}));
        assert_eq!(lookup(&[&old], dummy), Some(AdaptorLookup::Present));
        assert_eq!(
            lookup(&[&new], dummy),
            Some(AdaptorLookup::Serves(vec![
                "a/v1/A".into(),
                "a/v1/B".into()
            ]))
        );
        assert_eq!(lookup(&[&old], "adaptors.edge.cattle.io/modbus"), None);
        assert_eq!(lookup(&[&unlabelled, &part], dummy), None);
    }
}
