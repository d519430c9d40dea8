//! A DeviceLink's `references`: Secrets and ConfigMaps in its namespace, and fields of
//! the link itself, resolved to the values the adaptor receives.
//!
//! The limb reads Secrets and ConfigMaps only in the namespaces an operator grants it
//! (`deploy/limb-references.yaml`), never cluster-wide. Where the grant includes `watch`
//! ([`watch`]), a changed Secret reaches the adaptor at once; with `get` alone, at the
//! next resync.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use crds::v1alpha1::{DeviceLink, DeviceLinkReference};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::bindings::ReferenceValue;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Worth retrying: the API server is unreachable or not ready.
    #[error("{0}")]
    Transient(kube::Error),
    #[error("{kind} {namespace}/{name} does not exist")]
    Missing {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error(
        "the limb may not read {kind} {namespace}/{name}; grant it (see deploy/limb-references.yaml)"
    )]
    Forbidden {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{kind} {name} has no key {item:?}")]
    MissingItem {
        kind: &'static str,
        name: String,
        item: String,
    },
    #[error("reference {0:?} names none or several of secret, configMap, downwardAPI")]
    Ambiguous(String),
    #[error("downward API field {0:?} is not supported")]
    Field(String),
}

/// Resolves every reference of `link`, sorted by reference and item so a comparison
/// with the previous resolution tells whether anything changed.
pub async fn resolve(client: &Client, link: &DeviceLink) -> Result<Vec<ReferenceValue>, Error> {
    let ns = link.namespace_or_default();
    let mut out = Vec::new();
    for r in &link.spec.references {
        let values = match r {
            DeviceLinkReference {
                secret: Some(s),
                config_map: None,
                downward_api: None,
                ..
            } => {
                let api: Api<Secret> = Api::namespaced(client.clone(), ns);
                let secret = get(&api, "Secret", ns, &s.name).await?;
                let data: BTreeMap<String, Vec<u8>> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                pick("Secret", &s.name, data, &s.items)?
            }
            DeviceLinkReference {
                secret: None,
                config_map: Some(c),
                downward_api: None,
                ..
            } => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
                let cm = get(&api, "ConfigMap", ns, &c.name).await?;
                let data: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                pick("ConfigMap", &c.name, data, &c.items)?
            }
            DeviceLinkReference {
                secret: None,
                config_map: None,
                downward_api: Some(d),
                ..
            } => d
                .items
                .iter()
                .map(|i| {
                    field(link, &i.field_ref.field_path).map(|v| (i.name.clone(), v.into_bytes()))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(Error::Ambiguous(r.name.clone())),
        };
        out.extend(values.into_iter().map(|(item, value)| ReferenceValue {
            reference: r.name.clone(),
            item,
            value,
        }));
    }
    out.sort_by(|a, b| (&a.reference, &a.item).cmp(&(&b.reference, &b.item)));
    Ok(out)
}

async fn get<K>(api: &Api<K>, kind: &'static str, ns: &str, name: &str) -> Result<K, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get(name).await {
        Ok(o) => Ok(o),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(Error::Missing {
            kind,
            namespace: ns.to_owned(),
            name: name.to_owned(),
        }),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(Error::Forbidden {
            kind,
            namespace: ns.to_owned(),
            name: name.to_owned(),
        }),
        Err(e) => Err(Error::Transient(e)),
    }
}

/// What a reference reads from the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Secret,
    ConfigMap,
}

/// Whether `link` reads `source` `name` (from its own namespace); with no name, any
/// object of that kind.
pub fn reads(link: &DeviceLink, source: Source, name: Option<&str>) -> bool {
    link.spec.references.iter().any(|r| {
        let keys = match source {
            Source::Secret => &r.secret,
            Source::ConfigMap => &r.config_map,
        };
        keys.as_ref()
            .is_some_and(|k| name.is_none_or(|n| k.name == n))
    })
}

/// Whether `link` reads any Secret or ConfigMap.
pub fn reads_any(link: &DeviceLink) -> bool {
    reads(link, Source::Secret, None) || reads(link, Source::ConfigMap, None)
}

/// Watches the Secrets and ConfigMaps of `namespace` (metadata only: the values are read
/// with `get` when a link needs them) and calls `changed` with the name of each one
/// created, edited or deleted, and with no name after each complete list: a link read
/// before the watch listed (the one that started it, or any during a gap in the watch)
/// may have missed a change. Returns when `changed` returns false.
///
/// A grant of `get` alone (`limb.referenceVerbs: [get]`) is refused a watch: the limb says
/// so once, relies on the resync, and asks again after `retry`, so a grant added later
/// takes effect without a restart.
pub async fn watch<F>(client: Client, namespace: String, retry: Duration, changed: F)
where
    F: Fn(Source, Option<&str>) -> bool + Send + Sync,
{
    let secrets = watch_kind::<Secret, _>(&client, &namespace, Source::Secret, retry, &changed);
    let config_maps =
        watch_kind::<ConfigMap, _>(&client, &namespace, Source::ConfigMap, retry, &changed);
    // Either one ending means `changed` said stop.
    futures::future::select(Box::pin(secrets), Box::pin(config_maps)).await;
}

async fn watch_kind<K, F>(
    client: &Client,
    namespace: &str,
    source: Source,
    retry: Duration,
    changed: &F,
) where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + Debug
        + Send
        + 'static,
    F: Fn(Source, Option<&str>) -> bool,
{
    let api: Api<PartialObjectMeta<K>> = Api::namespaced(client.clone(), namespace);
    let mut said = false;
    loop {
        let mut events = watcher(api.clone(), watcher::Config::default())
            .backoff(super::WatchBackoff::default())
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => {
                    if !changed(source, Some(&o.name_any())) {
                        return;
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if !changed(source, None) {
                        return;
                    }
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Err(e) if forbidden(&e) => {
                    if !said {
                        tracing::info!(
                            %namespace,
                            kind = ?source,
                            "may not watch references here (grant list and watch, see \
                             deploy/limb-references.yaml); changes apply at the resync"
                        );
                        said = true;
                    }
                    break;
                }
                Err(e) => {
                    tracing::debug!(%namespace, kind = ?source, error = %e, "reference watch")
                }
            }
        }
        tokio::time::sleep(retry).await;
    }
}

fn forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 403,
        watcher::Error::WatchError(s) => s.code == 403,
        _ => false,
    }
}

/// All keys, or exactly the listed ones (a missing listed key is an error, as in Octopus).
fn pick(
    kind: &'static str,
    name: &str,
    mut data: BTreeMap<String, Vec<u8>>,
    items: &[String],
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    if items.is_empty() {
        return Ok(data.into_iter().collect());
    }
    items
        .iter()
        .map(|i| {
            data.remove(i)
                .map(|v| (i.clone(), v))
                .ok_or_else(|| Error::MissingItem {
                    kind,
                    name: name.to_owned(),
                    item: i.clone(),
                })
        })
        .collect()
}

/// The downward-API fields Octopus supported.
fn field(link: &DeviceLink, path: &str) -> Result<String, Error> {
    let m = &link.metadata;
    let st = link.status.clone().unwrap_or_default();
    let in_map = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|l| l.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    let value = match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "status.nodeHostName" => st.node_host_name,
        "status.nodeInternalIP" => st.node_internal_ip,
        "status.nodeInternalDNS" => st.node_internal_dns,
        "status.nodeExternalIP" => st.node_external_ip,
        "status.nodeExternalDNS" => st.node_external_dns,
        _ => in_map(&m.labels, "metadata.labels['")
            .or_else(|| in_map(&m.annotations, "metadata.annotations['")),
    };
    value.ok_or_else(|| Error::Field(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_items_must_exist_and_all_keys_are_the_default() {
        let data = BTreeMap::from([
            ("user".to_owned(), b"a".to_vec()),
            ("pass".to_owned(), b"b".to_vec()),
        ]);
        assert_eq!(pick("Secret", "s", data.clone(), &[]).unwrap().len(), 2);
        assert_eq!(
            pick("Secret", "s", data.clone(), &["pass".into()]).unwrap(),
            vec![("pass".to_owned(), b"b".to_vec())]
        );
        let err = pick("Secret", "s", data, &["token".into()]).unwrap_err();
        assert!(err.to_string().contains("no key \"token\""), "{err}");
    }

    #[test]
    fn which_changes_concern_a_link() {
        let yaml = "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nmetadata: {name: l, namespace: ns}\nspec:\n  adaptor: {node: n, name: x}\n  model: {apiVersion: a/v1, kind: K}\n  references: [{name: c, secret: {name: creds}}]\n  template: {spec: {}}\n";
        let link = crds::parse::device_links(yaml).unwrap().remove(0);
        let cases = [
            (Source::Secret, Some("creds"), true),
            (Source::Secret, Some("other"), false),
            (Source::Secret, None, true),
            (Source::ConfigMap, Some("creds"), false),
            (Source::ConfigMap, None, false),
        ];
        for (source, name, want) in cases {
            assert_eq!(reads(&link, source, name), want, "{source:?} {name:?}");
        }
        assert!(reads_any(&link));
    }

    #[test]
    fn downward_api_fields() {
        let yaml = "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nmetadata: {name: l, namespace: ns, labels: {room: lab}}\nspec:\n  adaptor: {node: n, name: x}\n  model: {apiVersion: a/v1, kind: K}\n  template: {spec: {}}\nstatus: {nodeInternalIP: 10.0.0.1}\n";
        let link = crds::parse::device_links(yaml).unwrap().remove(0);
        assert_eq!(field(&link, "metadata.name").unwrap(), "l");
        assert_eq!(field(&link, "metadata.labels['room']").unwrap(), "lab");
        assert_eq!(field(&link, "status.nodeInternalIP").unwrap(), "10.0.0.1");
        assert!(field(&link, "spec.adaptor.node").is_err());
    }
}
