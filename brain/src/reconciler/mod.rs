//! The DeviceLink reconciler: observe the link's node and model, decide (pure, in
//! [`decide()`]), apply the result with optimistic concurrency.

pub mod decide;
mod superseded;

use std::sync::Arc;
use std::time::Duration;

use crds::v1alpha1::{DeviceLink, LIMB_FINALIZER, NODE_LABEL};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

pub use decide::{ModelState, NodeAddresses, NodeState, Observed, decide};

use crate::metrics::Metrics;

/// The field manager of everything the brain writes.
pub const MANAGER: &str = "octopus-brain";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot serialise the status: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(e)) if e.code == 409 => "conflict",
            Self::Kube(_) => "api",
            Self::Serialize(_) => "serialize",
        }
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Re-validation interval when nothing happens (a safety net, not the mechanism).
    pub resync: Duration,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            resync: Duration::from_secs(300),
        }
    }
}

/// The nodes and CRDs the controller watches anyway, kept so that validating a link
/// costs no API read when the answer is yes.
pub struct Caches {
    nodes: Store<Node>,
    crds: Store<CustomResourceDefinition>,
}

/// What each reconcile gets: the context and the watched caches.
struct Shared {
    ctx: Arc<Context>,
    caches: Caches,
    superseded: superseded::Superseded,
}

/// Observes what the link depends on. A node or model found in the watch caches is
/// taken as is (a later change of it triggers the link again); anything the caches do
/// not show as healthy is confirmed by a consistent read, because the watch cache of an
/// API server that just restarted can be empty, and a model that looks missing would flip
/// ModelExisted for nothing. Validating 1,000 new links is then 1,000 reads fewer of every
/// CRD in the cluster, which made the brain the bottleneck of the connect rate.
async fn observe(ctx: &Context, caches: &Caches, link: &DeviceLink) -> Result<Observed, Error> {
    let cached_node = caches
        .nodes
        .get(&ObjectRef::new(&link.spec.adaptor.node))
        .map(|n| node_state(Some(&n)));
    let node = match cached_node {
        Some(state @ NodeState::Present(_)) => state,
        _ => {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            node_state(nodes.get_opt(&link.spec.adaptor.node).await?.as_ref())
        }
    };
    let cached_crds = caches.crds.state();
    let model = match model_state(cached_crds.iter().map(|c| &**c), &link.spec.model) {
        ModelState::Served => ModelState::Served,
        _ => {
            // The CRD is found by its group and kind, never by guessing the plural.
            let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
            let list = crds.list(&ListParams::default()).await?;
            model_state(&list.items, &link.spec.model)
        }
    };
    Ok(Observed { node, model })
}

fn node_state(node: Option<&Node>) -> NodeState {
    match node {
        None => NodeState::Missing,
        Some(n) if n.metadata.deletion_timestamp.is_some() => NodeState::Deleting,
        Some(n) => NodeState::Present(addresses(n)),
    }
}

fn addresses(node: &Node) -> NodeAddresses {
    let mut a = NodeAddresses::default();
    for addr in node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
    {
        let slot = match addr.type_.as_str() {
            "Hostname" => &mut a.host_name,
            "InternalIP" => &mut a.internal_ip,
            "InternalDNS" => &mut a.internal_dns,
            "ExternalIP" => &mut a.external_ip,
            "ExternalDNS" => &mut a.external_dns,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(addr.address.clone());
        }
    }
    a
}

/// Finds the model's CRD among `crds` by group and kind.
pub fn model_state<'a>(
    crds: impl IntoIterator<Item = &'a CustomResourceDefinition>,
    model: &crds::v1alpha1::TypeMeta,
) -> ModelState {
    let (_, version) = model.group_version();
    let Some(crd) = crate::models::model_crd(crds, model) else {
        return ModelState::Missing;
    };
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
    if !established {
        return ModelState::Missing;
    }
    let served = crate::models::served_versions(crd);
    if served.iter().any(|v| v == version) {
        ModelState::Served
    } else {
        ModelState::VersionNotServed { served }
    }
}

/// Writes the decision: finalizers, then status, then the node label, each only if it
/// changes something, each guarded by the resourceVersion that was observed. The label
/// goes last because the limb selects its links by it: labelled after the brain's
/// status, a new link reaches the limb when the brain is done with it. The label write
/// of a new link also adds the limb's finalizer, so the link reaches the limb holding
/// it: one write per link fewer than the limb adding it, and still there before the
/// limb creates the instance (the limb adds it itself to a link labelled by others).
///
/// Returns the versions of the link its own writes replaced.
async fn apply(
    ctx: &Context,
    link: &DeviceLink,
    d: &decide::Decision,
) -> Result<Vec<String>, Error> {
    let ns = link.namespace_or_default();
    let api: Api<DeviceLink> = Api::namespaced(ctx.client.clone(), ns);
    let name = link.name();
    let pp = PatchParams::apply(MANAGER);
    let rv = link.resource_version();
    let mut superseded = Vec::new();
    if let Some(finalizers) = &d.finalizers {
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": rv}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!("removed the limb finalizer: the link's node is gone");
        superseded.extend(rv);
        return Ok(superseded);
    }
    let mut rv = rv;
    if let Some(status) = &d.status {
        let mut value = serde_json::to_value(status)?;
        // A merge patch only removes what it names as null.
        for key in [
            "nodeName",
            "nodeHostName",
            "nodeInternalIP",
            "nodeInternalDNS",
            "nodeExternalIP",
            "nodeExternalDNS",
            "model",
        ] {
            if let Some(obj) = value.as_object_mut() {
                obj.entry(key).or_insert(serde_json::Value::Null);
            }
        }
        let patch = json!({"metadata": {"resourceVersion": rv}, "status": value});
        let updated = api
            .patch_status(
                name,
                &PatchParams {
                    field_manager: pp.field_manager.clone(),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await?;
        superseded.extend(std::mem::replace(&mut rv, updated.resource_version()));
    }
    if let Some(label) = &d.label {
        let mut patch = json!({"metadata": {"labels": {NODE_LABEL: label}, "resourceVersion": rv}});
        if d.add_finalizer {
            // The whole list (a merge patch replaces lists), guarded by the version the
            // list was read from.
            let mut finalizers = link.finalizers().to_vec();
            finalizers.push(LIMB_FINALIZER.to_owned());
            patch["metadata"]["finalizers"] = json!(finalizers);
        }
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        superseded.extend(rv);
    }
    let reference = link.object_ref(&());
    for e in &d.events {
        let ev = KubeEvent {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.into(),
            note: Some(e.note.clone()),
            action: "Validate".into(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&ev, &reference).await {
            tracing::warn!(error = %err, "cannot record event");
        }
    }
    Ok(superseded)
}

async fn reconcile(link: Arc<DeviceLink>, shared: Arc<Shared>) -> Result<Action, Error> {
    let span = tracing::info_span!("brain.reconcile", link = %link.key());
    async move {
        let ctx = &shared.ctx;
        let _timer = ctx.metrics.reconcile_timer();
        let key = link.key();
        if let Some(rv) = link.resource_version()
            && shared.superseded.is_stale(&key, &rv)
        {
            // The cache has not caught up with the brain's own write; its event follows.
            tracing::debug!(resource_version = %rv, "skipped: the brain already wrote past this version");
            ctx.metrics.reconciled("stale");
            return Ok(Action::requeue(ctx.resync));
        }
        let observed = observe(ctx, &shared.caches, &link).await?;
        let d = decide(&link, &observed, &crds::conditions::now());
        if d != decide::Decision::default() {
            tracing::debug!(?observed, "applying");
            let superseded = apply(ctx, &link, &d).await?;
            shared.superseded.record(&key, superseded);
        }
        ctx.metrics.reconciled("ok");
        Ok(Action::requeue(ctx.resync))
    }
    .instrument(span)
    .await
}

fn error_policy(link: Arc<DeviceLink>, err: &Error, shared: Arc<Shared>) -> Action {
    shared.ctx.metrics.reconciled(err.kind());
    if err.kind() == "conflict" {
        tracing::debug!(link = %link.key(), "conflict; retrying with the newer object");
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(link = %link.key(), error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let links: Api<DeviceLink> = Api::all(ctx.client.clone());
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let crd_api: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let controller = Controller::new(links, watcher::Config::default());
    let store = controller.store();
    let by_node = store.clone();
    let by_model = store;
    // Each watch fills its cache before it triggers the links, so a reconcile never
    // reads a cache older than the event that woke it.
    let (node_cache, node_writer) = reflector::store();
    let (crd_cache, crd_writer) = reflector::store();
    let node_events = watcher(nodes, watcher::Config::default())
        .backoff(octopus_backoff::WatchBackoff::default())
        .reflect(node_writer)
        .touched_objects();
    let crd_events = watcher(crd_api, watcher::Config::default())
        .backoff(octopus_backoff::WatchBackoff::default())
        .reflect(crd_writer)
        .touched_objects();
    let shared = Arc::new(Shared {
        ctx,
        caches: Caches {
            nodes: node_cache,
            crds: crd_cache,
        },
        superseded: superseded::Superseded::default(),
    });
    controller
        .watches_stream(node_events, move |node: Node| {
            let name = node.name_any();
            by_node
                .state()
                .into_iter()
                .filter(|l| l.spec.adaptor.node == name)
                .map(|l| ObjectRef::from_obj(&*l))
                .collect::<Vec<_>>()
        })
        .watches_stream(crd_events, move |crd: CustomResourceDefinition| {
            by_model
                .state()
                .into_iter()
                .filter(|l| {
                    l.spec.model.group_version().0 == crd.spec.group
                        && l.spec.model.kind == crd.spec.names.kind
                })
                .map(|l| ObjectRef::from_obj(&*l))
                .collect::<Vec<_>>()
        })
        .trigger_backoff(octopus_backoff::WatchBackoff::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, shared)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}
