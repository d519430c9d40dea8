//! DeviceLinks on this node, on kube-runtime's controller: the finalizer (kube's
//! helper), AdaptorExisted, the device instance (DeviceCreated), and the fleet's
//! supervisor per link (DeviceConnected).
//!
//! The controller reconciles a link when its watch, an adaptor change, a deleted
//! instance or a changed Secret or ConfigMap it references says so, and again every
//! resync. References are re-read on each reconcile; where the limb may only `get`
//! them (`limb.referenceVerbs: [get]`), the resync is what notices a change.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::conditions::{ConditionStatus, ConditionType};
use crds::v1alpha1::{DeviceLink, LIMB_FINALIZER, NODE_LABEL, node_label_value};
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PartialObjectMeta, Patch,
    PatchParams,
};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::{ADAPTOR_ANNOTATION, MANAGER, NODE_ANNOTATION, Registry, Settings, references};
use crate::adaptors::Adaptor;
use crate::fleet::{self, Block, Choice, Fleet, Observed, Offer};
use crate::status::{DeviceReport, Event, EventType};
use crate::supervisor::Context;

/// Why the manager should look at something again, besides the link's own watch.
#[derive(Debug)]
pub enum Trigger {
    Link(String),
    /// An adaptor was loaded, changed, refused or removed.
    Adaptor(String),
}

/// The link `namespace/name` from the store, without scanning it.
pub fn lookup(links: &Store<DeviceLink>, key: &str) -> Option<Arc<DeviceLink>> {
    let (ns, name) = key.split_once('/')?;
    links.get(&ObjectRef::new(name).within(ns))
}

/// The controller's input: the links labelled for this node.
pub type LinkEvents = BoxStream<'static, Result<DeviceLink, watcher::Error>>;

/// Watches the links labelled for this node into a store, which every cluster task
/// reads; the events drive the controller ([`run`]).
pub fn link_store(client: &Client, s: &Settings) -> (Store<DeviceLink>, LinkEvents) {
    let api: Api<DeviceLink> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let cfg =
        watcher::Config::default().labels(&format!("{NODE_LABEL}={}", node_label_value(&s.node)));
    // No backoff here: the controller's trigger backoff ([`run`]) covers this watch.
    let events = watcher(api, cfg).reflect(writer).touched_objects().boxed();
    (store, events)
}

/// Reconciles whose API calls run at once. Connecting 1,000 links is two API writes
/// each (finalizer, instance); one at a time that took minutes on a loaded API server.
const CONCURRENT_RECONCILES: u16 = 32;

/// First retry of a failed reconcile; doubles per failure up to the resync interval.
const RETRY_BASE: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("cannot find the model {0:?} in the API: {1}")]
    Discovery(String, String),
}

type ReconcileError = finalizer::Error<Error>;

/// What every reconcile shares.
struct Shared {
    client: Client,
    ctx: Arc<Context>,
    registry: Arc<Registry>,
    settings: Settings,
    links: Store<DeviceLink>,
    fleet: Mutex<Fleet>,
    /// API resources of the models seen so far, and whether their instances on this
    /// node are watched (to re-create deletions).
    resources: Mutex<HashMap<GroupVersionKind, ApiResource>>,
    /// Links whose last reconcile failed, with how many times in a row: retried with
    /// backoff instead of waiting for the next resync.
    failing: Mutex<HashMap<String, u32>>,
    /// A fingerprint of the instance last applied per link, and when. Every status write
    /// to a link brings a reconcile; re-applying an unchanged instance each time doubled
    /// the API writes while links connect. Forgotten when an instance is deleted, and
    /// older than a resync it is applied again (undoing edits made by hand).
    applied: Arc<Mutex<HashMap<String, (u64, Instant)>>>,
    /// Namespaces whose Secrets and ConfigMaps are watched for the links that read them.
    watched: Mutex<HashSet<String>>,
    trigger: mpsc::UnboundedSender<Trigger>,
}

/// Runs the controller until `shutdown` turns true, then stops every device (their
/// instances stay: a restarted limb picks them up).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    ctx: Arc<Context>,
    registry: Arc<Registry>,
    settings: Settings,
    (links, events): (Store<DeviceLink>, LinkEvents),
    trigger: mpsc::UnboundedSender<Trigger>,
    triggers: mpsc::UnboundedReceiver<Trigger>,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        client,
        fleet: Mutex::new(Fleet::new(ctx.clone())),
        ctx,
        registry,
        settings,
        links: links.clone(),
        resources: Mutex::default(),
        failing: Mutex::default(),
        applied: Arc::default(),
        watched: Mutex::default(),
        trigger,
    });
    let by_adaptor = links.clone();
    let wakes = futures::stream::unfold(triggers, |mut rx| async move {
        rx.recv().await.map(|t| (t, rx))
    })
    .flat_map(move |t| {
        let refs: Vec<ObjectRef<DeviceLink>> = match t {
            Trigger::Link(key) => key
                .split_once('/')
                .map(|(ns, name)| ObjectRef::new(name).within(ns))
                .into_iter()
                .collect(),
            Trigger::Adaptor(name) => by_adaptor
                .state()
                .iter()
                .filter(|l| l.spec.adaptor.name == name)
                .map(|l| ObjectRef::from_obj(&**l))
                .collect(),
        };
        futures::stream::iter(refs)
    });
    let sweeper = tokio::spawn(sweep(shared.clone(), shutdown.clone()));
    let mut stop = shutdown.clone();
    let on_result = shared.clone();
    Controller::for_stream(events, links)
        .with_config(controller::Config::default().concurrency(CONCURRENT_RECONCILES))
        .reconcile_on(wakes)
        // kube's default backoff grows to minutes: after an API server outage the links'
        // watch (and so deletions) would wait up to that long.
        .trigger_backoff(super::WatchBackoff::default())
        .graceful_shutdown_on(async move {
            let _ = stop.changed().await;
        })
        .run(reconcile, error_policy, shared.clone())
        .for_each(|res| {
            match res {
                // Gone from the API, or relabelled to another node: no reconcile runs
                // for an object the store does not hold, so the fleet hears it here.
                Err(controller::Error::ObjectNotFound(obj)) => {
                    let key = format!("{}/{}", obj.namespace.clone().unwrap_or_default(), obj.name);
                    on_result.gone(&key);
                }
                Err(controller::Error::QueueError(e)) => {
                    tracing::warn!(error = %e, "DeviceLink watch failed; retrying");
                }
                Err(e) => tracing::debug!(error = %e, "controller event"),
                Ok(_) => {}
            }
            std::future::ready(())
        })
        .await;
    let _ = shutdown.changed().await;
    sweeper.abort();
    let mut fleet = std::mem::replace(&mut *lock(&shared.fleet), Fleet::new(shared.ctx.clone()));
    fleet.stop_all().await;
}

/// Every resync, stops devices whose link the store no longer holds: a watch that
/// re-lists after an outage reports no deletions for what went meanwhile.
async fn sweep(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(shared.settings.resync);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let stale: Vec<String> = lock(&shared.fleet)
            .keys()
            .filter(|k| lookup(&shared.links, k).is_none())
            .cloned()
            .collect();
        for key in stale {
            shared.gone(&key);
        }
    }
}

async fn reconcile(link: Arc<DeviceLink>, shared: Arc<Shared>) -> Result<Action, ReconcileError> {
    let key = link.key();
    let span = tracing::info_span!("limb.reconcile", link = %key);
    async {
        let has_finalizer = link.finalizers().iter().any(|f| f == LIMB_FINALIZER);
        if link.metadata.deletion_timestamp.is_some() && !has_finalizer {
            // Being deleted, and the brain released it (its node is gone): nothing to
            // clean up here.
            shared.gone(&key);
            return Ok(Action::await_change());
        }
        let api: Api<DeviceLink> =
            Api::namespaced(shared.client.clone(), link.namespace_or_default());
        let action = finalizer(&api, LIMB_FINALIZER, link, |event| async {
            match event {
                finalizer::Event::Apply(link) => {
                    let observed = shared.observe(&key, link).await?;
                    shared.apply(&key, observed);
                    Ok(Action::requeue(shared.settings.resync))
                }
                finalizer::Event::Cleanup(link) => {
                    shared.clean_up(&link).await?;
                    shared.gone(&key);
                    Ok(Action::await_change())
                }
            }
        })
        .await?;
        lock(&shared.failing).remove(&key);
        Ok(action)
    }
    .instrument(span)
    .await
}

/// Retries a failed reconcile with backoff: a conflict (someone else wrote the link
/// first) or an API hiccup is retried in a fraction of a second, a lasting outage no
/// more often than the resync.
fn error_policy(link: Arc<DeviceLink>, e: &ReconcileError, shared: Arc<Shared>) -> Action {
    let key = link.key();
    if is_not_found(e) {
        lock(&shared.failing).remove(&key);
        tracing::debug!(link = %key, error = %e, "link gone during its reconcile");
        return Action::await_change();
    }
    let mut failing = lock(&shared.failing);
    let failures = failing.entry(key.clone()).or_insert(0);
    *failures = failures.saturating_add(1);
    // No jitter: the controller's queue already spreads the retries of many links.
    let delay =
        octopus_backoff::Backoff::new(RETRY_BASE, shared.settings.resync).delay(*failures, 1.0);
    tracing::warn!(link = %key, error = %e, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

impl Shared {
    fn apply(&self, key: &str, observed: Observed<Adaptor>) {
        let refusal = match &observed {
            Observed::Blocked { block, .. } => {
                let before = self.ctx.board.get(key);
                refusal_is_new(before.as_ref(), block).then(|| block.clone())
            }
            _ => None,
        };
        let found = match &observed {
            Observed::Wanted { .. } => adaptor_found(self.ctx.board.get(key).as_ref()),
            _ => false,
        };
        let mut fleet = lock(&self.fleet);
        fleet.apply(key, observed);
        self.ctx.metrics.set_devices(fleet.len());
        if let Some(block) = refusal {
            self.ctx.board.modify(key, |r| {
                r.record(Event::new(
                    EventType::Warning,
                    refusal_reason(&block),
                    &block.message,
                ));
            });
        }
        if found {
            self.ctx.board.modify(key, |r| {
                let message = format!("adaptor {} is loaded on this node", r.adaptor);
                r.record(Event::new(EventType::Normal, "AdaptorFound", &message));
            });
        }
    }

    fn gone(&self, key: &str) {
        lock(&self.applied).remove(key);
        self.apply(key, Observed::Gone);
    }

    /// Deletes the device instance of a link being deleted. The owner reference lets
    /// the garbage collector do this too; doing it here means deletion also completes
    /// on clusters without one.
    async fn clean_up(&self, link: &DeviceLink) -> Result<(), Error> {
        if let Ok(ar) = self.resource(link).await {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), link.namespace_or_default(), &ar);
            match api.delete(link.name(), &DeleteParams::background()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The API side of a reconcile of a link that holds the finalizer: the brain's
    /// verdict, the adaptor, the instance and the references.
    async fn observe(&self, key: &str, link: Arc<DeviceLink>) -> Result<Observed<Adaptor>, Error> {
        let brain_ok = [ConditionType::NodeExisted, ConditionType::ModelExisted]
            .iter()
            .all(|t| {
                link.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == *t && c.status == ConditionStatus::True)
                })
            });
        if !brain_ok {
            return Ok(Observed::Held);
        }

        // AdaptorExisted: decided by the fleet; checked here first so that a link
        // without its adaptor gets no instance.
        let offer = Offer {
            named: self.registry.get(&link.spec.adaptor.name),
            model_known: true,
            refusal: self.registry.refusal(&link.spec.adaptor.name),
            loading: 0,
        };
        let running = lock(&self.fleet).is_running(key);
        // The device runs this very spec: a model that changed under it (a new version's
        // CRD, pushed before that version loads) must not stop it.
        let runs_this_spec = lock(&self.fleet).runs_spec(key, &link);
        match fleet::choose(&link, &offer, running) {
            Choice::Refuse(block) => return Ok(Observed::Blocked { link, block }),
            // A spec the adaptor's declared schema rejects gets no instance either (a
            // running device is the fleet's to judge: it keeps its last good spec).
            Choice::Use(version) if !running => {
                if let Some(block) = fleet::spec_block(&link, &*version) {
                    return Ok(Observed::Blocked { link, block });
                }
            }
            _ => {}
        }

        // DeviceCreated: the instance, kept in sync with the template.
        match self.ensure_instance(&link).await {
            Ok(()) => {}
            Err(Error::Kube(kube::Error::Api(rejected)))
                if instance_refused(&rejected) && runs_this_spec =>
            {
                // The model no longer takes the running spec (a new version renamed a
                // field): the instance stays as last written, and the fleet decides
                // whether the link is held on the version that runs.
                tracing::info!(link = %key, why = %rejected.message, "instance left as it was: its model changed under a running device");
            }
            Err(Error::Kube(kube::Error::Api(rejected))) if instance_refused(&rejected) => {
                // The API refused the instance (a spec the model's schema rejects, say):
                // that is the link's problem, and the condition and a Warning event say
                // so. Unknown fields are not pruned first (as Octopus's update let the
                // API server do): a typo silently dropped is what admission exists to
                // stop, so with the webhook bypassed the link says why it stopped.
                return Ok(Observed::Blocked {
                    link,
                    block: Block {
                        stage: Some(ConditionType::DeviceCreated),
                        message: format!(
                            "unable to create device from template: {}",
                            rejected.message
                        ),
                    },
                });
            }
            // Unreachable, not ready (a restarted API server answers 403 until its RBAC
            // cache fills), or throttling: whatever runs keeps running; retry later.
            Err(e) => return Err(e),
        }

        // References: resolved on every reconcile (a watch or the resync brings one),
        // so a rotated Secret reaches the adaptor without a restart.
        if references::reads_any(&link) {
            self.watch_references(link.namespace_or_default());
        }
        let references = match references::resolve(&self.client, &link).await {
            Ok(r) => r,
            Err(references::Error::Transient(e)) => return Err(Error::Kube(e)),
            Err(e) => {
                return Ok(Observed::Blocked {
                    link,
                    block: Block {
                        stage: Some(ConditionType::DeviceConnected),
                        message: format!("unable to fetch the reference parameters: {e}"),
                    },
                });
            }
        };
        Ok(Observed::Wanted {
            link,
            references,
            offer,
        })
    }

    async fn resource(&self, link: &DeviceLink) -> Result<ApiResource, Error> {
        let (group, version) = link.spec.model.group_version();
        let gvk = GroupVersionKind::gvk(group, version, &link.spec.model.kind);
        if let Some(ar) = self.known_resource(&gvk) {
            return Ok(ar);
        }
        let (ar, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| Error::Discovery(link.spec.model.kind.clone(), e.to_string()))?;
        // Two reconciles may discover the same model at once; the first one in watches.
        let first = lock(&self.resources).insert(gvk, ar.clone()).is_none();
        if first {
            self.watch_instances(ar.clone());
        }
        Ok(ar)
    }

    fn known_resource(&self, gvk: &GroupVersionKind) -> Option<ApiResource> {
        lock(&self.resources).get(gvk).cloned()
    }

    /// Watches this node's instances of one model, so a deleted instance is re-created
    /// at once instead of at the next resync.
    fn watch_instances(&self, ar: ApiResource) {
        // Only deletions matter here, and every status write is an event: metadata only,
        // so the API server sends (and the limb parses) a fraction of each object.
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(self.client.clone(), &ar);
        let cfg = watcher::Config::default().labels(&format!(
            "{NODE_LABEL}={}",
            node_label_value(&self.settings.node)
        ));
        let trigger = self.trigger.clone();
        let applied = self.applied.clone();
        tokio::spawn(async move {
            let mut stream = watcher(api, cfg)
                .backoff(super::WatchBackoff::default())
                .boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Delete(obj)) = ev {
                    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
                    lock(&applied).remove(&key);
                    if trigger.send(Trigger::Link(key)).is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// Watches the Secrets and ConfigMaps of `namespace` (once), and reconciles the links
    /// there that read one that changed.
    fn watch_references(&self, namespace: &str) {
        if !lock(&self.watched).insert(namespace.to_owned()) {
            return;
        }
        let links = self.links.clone();
        let trigger = self.trigger.clone();
        let ns = namespace.to_owned();
        tokio::spawn(references::watch(
            self.client.clone(),
            ns.clone(),
            self.settings.resync,
            move |source, name| {
                for link in links.state() {
                    if link.namespace().as_deref() == Some(ns.as_str())
                        && references::reads(&link, source, name)
                        && trigger.send(Trigger::Link(link.key())).is_err()
                    {
                        return false;
                    }
                }
                true
            },
        ));
    }

    /// Creates or updates the device instance with server-side apply.
    async fn ensure_instance(&self, link: &DeviceLink) -> Result<(), Error> {
        let ar = self.resource(link).await?;
        let mut labels = link
            .spec
            .template
            .metadata
            .as_ref()
            .map(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(NODE_LABEL.to_owned(), node_label_value(&self.settings.node));
        let owner = link.controller_owner_ref(&()).map(|mut o| {
            o.block_owner_deletion = Some(true);
            o
        });
        let obj = json!({
            "apiVersion": link.spec.model.api_version,
            "kind": link.spec.model.kind,
            "metadata": {
                "name": link.name(),
                "namespace": link.namespace_or_default(),
                "labels": labels,
                "annotations": {NODE_ANNOTATION: self.settings.node, ADAPTOR_ANNOTATION: link.spec.adaptor.name},
                "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
            },
            "spec": link.spec.template.spec,
        });
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            obj.to_string().hash(&mut h);
            h.finish()
        };
        let key = link.key();
        let fresh =
            |(f, at): &(u64, Instant)| *f == fingerprint && at.elapsed() < self.settings.resync;
        if lock(&self.applied).get(&key).is_some_and(fresh) {
            return Ok(());
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), link.namespace_or_default(), &ar);
        // Strict: a field the model does not declare is refused, never dropped. API
        // servers before 1.25 refuse it anyway (a 500 naming it); later ones would prune
        // it with only a warning by default (see `instance_refused`).
        api.patch(
            link.name(),
            &PatchParams::apply(MANAGER)
                .force()
                .validation(kube::api::ValidationDirective::Strict),
            &Patch::Apply(&obj),
        )
        .await?;
        lock(&self.applied).insert(key, (fingerprint, Instant::now()));
        Ok(())
    }
}

/// Whether the API server refused the instance itself (its spec), rather than being
/// away or busy. A server-side apply with a field the model's schema does not declare is
/// refused as a bad request (400, strict field validation) or, by API servers before
/// 1.25, as an internal error (500) naming the field; a schema violation is invalid (422).
fn instance_refused(e: &kube::core::Status) -> bool {
    match e.code {
        400 | 422 => true,
        500 => e.message.contains("field not declared in schema"),
        _ => false,
    }
}

/// The Warning event a refusal at `stage` gets on the link: Octopus's event reasons where
/// it had one (`FailedFetched` for references), named after its condition reasons
/// otherwise.
pub fn refusal_reason(block: &Block) -> &'static str {
    match block.stage {
        None => "InvalidDeviceLink",
        Some(ConditionType::NodeExisted) => "NodeNotFound",
        Some(ConditionType::ModelExisted) => "ModelNotFound",
        Some(ConditionType::AdaptorExisted) => "AdaptorNotFound",
        Some(ConditionType::DeviceCreated) => "FailedCreated",
        Some(ConditionType::DeviceConnected) => "FailedFetched",
    }
}

/// Whether a link that waited for its adaptor now has it: the event that answers the
/// `AdaptorNotFound` Warning, so the link's events tell when the adaptor appeared.
pub fn adaptor_found(before: Option<&DeviceReport>) -> bool {
    before.is_some_and(|r| {
        r.conditions
            .get(ConditionType::AdaptorExisted)
            .is_some_and(|c| c.status == ConditionStatus::False)
    })
}

/// Whether a refusal is news: the link did not already show it. A refusal repeated by
/// every resync is one event; the same refusal after the device ran (an adaptor that
/// went away again) is another.
pub fn refusal_is_new(before: Option<&DeviceReport>, block: &Block) -> bool {
    let Some(before) = before else {
        return true;
    };
    match block.stage {
        Some(stage) => !before
            .conditions
            .get(stage)
            .is_some_and(|c| c.status == ConditionStatus::False && c.message == block.message),
        None => {
            before.last_error.as_deref() != Some(&format!("invalid DeviceLink: {}", block.message))
        }
    }
}

/// Deleted meanwhile: the link (or what its reconcile wrote) is gone from the API, which
/// is how every deletion ends, not a failure.
fn is_not_found(e: &ReconcileError) -> bool {
    let api = |k: &kube::Error| matches!(k, kube::Error::Api(a) if a.code == 404);
    match e {
        finalizer::Error::ApplyFailed(Error::Kube(k))
        | finalizer::Error::CleanupFailed(Error::Kube(k))
        | finalizer::Error::AddFinalizer(k)
        | finalizer::Error::RemoveFinalizer(k) => api(k),
        _ => false,
    }
}

/// A poisoned lock only means another reconcile panicked mid-update of a cache; the
/// cache is still usable (at worst an apply is repeated).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The API resource of a link's model, for the relay.
pub fn model_resource(link: &DeviceLink) -> GroupVersionKind {
    let (group, version) = link.spec.model.group_version();
    GroupVersionKind::gvk(group, version, &link.spec.model.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> kube::core::Status {
        serde_json::from_value(
            json!({"code": code, "message": message, "status": "Failure", "reason": ""}),
        )
        .unwrap_or_default()
    }

    #[test]
    fn the_instance_s_own_refusals_are_told_from_outages() {
        for (code, message, refused) in [
            (422, "spec.gear: Unsupported value", true),
            (400, "bad request", true),
            (
                500,
                "failed to create typed patch object: .spec.gaer: field not declared in schema",
                true,
            ),
            (500, "etcdserver: request timed out", false),
            (403, "forbidden", false),
            (409, "conflict", false),
            (429, "too many requests", false),
        ] {
            let s = status(code, message);
            assert_eq!(s.code, code);
            assert_eq!(instance_refused(&s), refused, "{code} {message}");
        }
    }

    #[test]
    fn a_refusal_is_announced_once_and_again_after_the_device_ran() {
        let block = Block {
            stage: Some(ConditionType::AdaptorExisted),
            message: "the adaptor isn't existed: x is not loaded on this node".into(),
        };
        assert!(refusal_is_new(None, &block), "a new link");
        let mut report = DeviceReport::new("default", "fan", "M", "x");
        for earlier in [ConditionType::NodeExisted, ConditionType::ModelExisted] {
            report.conditions.succeed(earlier, "t0");
        }
        report
            .conditions
            .fail(ConditionType::AdaptorExisted, &block.message, "t0");
        assert!(!refusal_is_new(Some(&report), &block), "the same, again");
        let other = Block {
            message: "the adaptor isn't existed: x was refused: bad".into(),
            ..block.clone()
        };
        assert!(refusal_is_new(Some(&report), &other), "a new cause");
        report
            .conditions
            .succeed(ConditionType::AdaptorExisted, "t1");
        assert!(refusal_is_new(Some(&report), &block), "it ran meanwhile");

        let invalid = Block {
            stage: None,
            message: "spec.adaptor.node: required".into(),
        };
        assert!(refusal_is_new(Some(&report), &invalid));
        report.last_error = Some("invalid DeviceLink: spec.adaptor.node: required".into());
        assert!(!refusal_is_new(Some(&report), &invalid));
        assert_eq!(refusal_reason(&invalid), "InvalidDeviceLink");
        assert_eq!(refusal_reason(&block), "AdaptorNotFound");
    }

    #[test]
    fn the_adaptor_is_announced_found_only_to_a_link_that_waited_for_it() {
        let mut report = DeviceReport::new("default", "fan", "M", "x");
        assert!(!adaptor_found(None), "a new link has nothing to answer");
        assert!(!adaptor_found(Some(&report)), "no adaptor condition yet");
        for earlier in [ConditionType::NodeExisted, ConditionType::ModelExisted] {
            report.conditions.succeed(earlier, "t0");
        }
        report
            .conditions
            .fail(ConditionType::AdaptorExisted, "x is not loaded", "t0");
        assert!(adaptor_found(Some(&report)), "it waited");
        report
            .conditions
            .succeed(ConditionType::AdaptorExisted, "t1");
        assert!(!adaptor_found(Some(&report)), "already running: no repeat");
    }
}
