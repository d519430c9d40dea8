//! DeviceLinks on this node: finalizer, AdaptorExisted, the device instance
//! (DeviceCreated), and a supervisor per link (DeviceConnected).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crds::conditions::{ConditionStatus, ConditionType};
use crds::v1alpha1::{DeviceLink, LIMB_FINALIZER, NODE_LABEL, node_label_value};
use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PartialObjectMeta, Patch,
    PatchParams,
};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::{ADAPTOR_ANNOTATION, MANAGER, NODE_ANNOTATION, Registry, Settings, references};
use crate::bindings::ReferenceValue;
use crate::status::{DeviceReport, Phase, now};
use crate::supervisor::{self, Command, Context, Handle};

/// Why the manager should look at something again.
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

/// Watches the links labelled for this node into a store, triggering on every change.
pub fn link_store(
    client: &Client,
    s: &Settings,
    trigger: mpsc::UnboundedSender<Trigger>,
    mut shutdown: watch::Receiver<bool>,
) -> Store<DeviceLink> {
    let api: Api<DeviceLink> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let cfg =
        watcher::Config::default().labels(&format!("{NODE_LABEL}={}", node_label_value(&s.node)));
    let mut stream = watcher(api, cfg)
        .backoff(super::WatchBackoff::default())
        .reflect(writer)
        .boxed();
    let reader = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    // The store holds the initial list only once it is complete.
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => {}
                    Some(Ok(watcher::Event::InitDone)) => {
                        for link in reader.state() {
                            let _ = trigger.send(Trigger::Link(link.key()));
                        }
                    }
                    Some(Ok(watcher::Event::Apply(link) | watcher::Event::Delete(link))) => {
                        let _ = trigger.send(Trigger::Link(link.key()));
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "DeviceLink watch failed; retrying"),
                    None => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    });
    store
}

struct Running {
    handle: Handle,
    link: Arc<DeviceLink>,
    digest: String,
    references: Vec<ReferenceValue>,
}

pub struct Manager {
    client: Client,
    ctx: Arc<Context>,
    registry: Arc<Registry>,
    settings: Settings,
    links: Store<DeviceLink>,
    running: HashMap<String, Running>,
    /// API resources of the models seen so far, and whether their instances on this
    /// node are watched (to re-create deletions). Shared by concurrent reconciles.
    resources: std::sync::Mutex<HashMap<GroupVersionKind, ApiResource>>,
    /// Links whose last reconcile failed, with how many times in a row: retried with
    /// backoff instead of waiting for the next resync.
    failing: HashMap<String, u32>,
    /// A fingerprint of the instance last applied per link. Every status write to a
    /// link brings a reconcile; re-applying an unchanged instance each time doubled the
    /// API writes while links connect. Forgotten when an instance is deleted and on
    /// every resync, which re-applies everything (undoing edits made by hand).
    applied: Arc<std::sync::Mutex<HashMap<String, u64>>>,
    trigger: mpsc::UnboundedSender<Trigger>,
}

/// Reconciles whose API calls run at once. Connecting 1,000 links is two API writes
/// each (finalizer, instance); one at a time that took minutes on a loaded API server.
const CONCURRENT_RECONCILES: usize = 32;

/// A batch is observed and applied this many links at a time, so the first devices of
/// a burst of new links start (and report) while the rest are still being observed.
/// Applying each link the moment it was observed, with no chunks, was tried: on the same
/// loaded machine 1,000 links connected in 10.5-11.3 s against 10.1-10.9 s with chunks
/// (docs/benchmarks/cluster.md), so the chunks stayed.
const APPLY_EVERY: usize = 64;

/// First retry of a failed reconcile; doubles per failure up to the resync interval.
const RETRY_BASE: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("cannot find the model {0:?} in the API: {1}")]
    Discovery(String, String),
}

/// What the API side of a reconcile found, applied to the running devices afterwards.
/// Observing runs concurrently across links; applying is sequential and does no I/O
/// except stopping supervisors.
enum Outcome {
    /// The link is gone, being deleted or moved away: nothing runs and nothing is shown.
    Gone,
    /// Not validated by the brain (yet, or any more): nothing runs.
    NotValidated,
    /// A stage failed: nothing runs and the condition says why.
    Blocked {
        stage: ConditionType,
        message: String,
    },
    /// Everything is in place: run (or update) the device.
    Run {
        link: Arc<DeviceLink>,
        adaptor: Arc<crate::adaptors::Adaptor>,
        references: Vec<ReferenceValue>,
    },
}

impl Manager {
    pub fn new(
        client: Client,
        ctx: Arc<Context>,
        registry: Arc<Registry>,
        settings: Settings,
        links: Store<DeviceLink>,
        trigger: mpsc::UnboundedSender<Trigger>,
    ) -> Self {
        Self {
            client,
            ctx,
            registry,
            settings,
            links,
            running: HashMap::new(),
            resources: std::sync::Mutex::new(HashMap::new()),
            failing: HashMap::new(),
            applied: Arc::default(),
            trigger,
        }
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Trigger>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut resync = tokio::time::interval(self.settings.resync);
        loop {
            let mut keys: Vec<String> = tokio::select! {
                t = rx.recv() => match t {
                    Some(t) => self.keys_for(t),
                    None => break,
                },
                _ = resync.tick() => {
                    lock(&self.applied).clear();
                    self.all_keys()
                }
                _ = shutdown.changed() => break,
            };
            // Everything already queued joins this batch (a burst of new links).
            while let Ok(t) = rx.try_recv() {
                keys.extend(self.keys_for(t));
            }
            keys.sort();
            keys.dedup();
            tracing::debug!(links = keys.len(), "reconciling");
            for chunk in keys.chunks(APPLY_EVERY) {
                let this = &self;
                let outcomes: Vec<(String, Result<Outcome, Error>)> =
                    futures::stream::iter(chunk.iter().cloned())
                        .map(|key| async move {
                            let span = tracing::info_span!("limb.reconcile", link = %key);
                            let outcome = this.observe(&key).instrument(span).await;
                            (key, outcome)
                        })
                        .buffer_unordered(CONCURRENT_RECONCILES)
                        .collect()
                        .await;
                for (key, outcome) in outcomes {
                    match outcome {
                        Ok(outcome) => {
                            self.failing.remove(&key);
                            self.apply(&key, outcome).await;
                        }
                        Err(e) => self.retry_later(key, &e),
                    }
                }
                self.ctx.metrics.set_devices(self.running.len());
            }
        }
        // Devices keep their instances on shutdown: a restarted limb picks them up.
        crate::supervisor::stop_all(self.running.drain().map(|(_, r)| r.handle)).await;
    }

    fn keys_for(&self, t: Trigger) -> Vec<String> {
        match t {
            Trigger::Link(k) => vec![k],
            Trigger::Adaptor(name) => self.keys_using(&name),
        }
    }

    /// Schedules another reconcile of `key` with backoff: a conflict (someone else
    /// wrote the link first) or an API hiccup is retried in a fraction of a second,
    /// a lasting outage no more often than the resync.
    fn retry_later(&mut self, key: String, e: &Error) {
        let failures = self.failing.entry(key.clone()).or_insert(0);
        *failures = failures.saturating_add(1);
        let delay = RETRY_BASE
            .saturating_mul(1 << (*failures - 1).min(8))
            .min(self.settings.resync);
        tracing::warn!(link = %key, error = %e, retry_in = ?delay, "reconcile failed");
        let trigger = self.trigger.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = trigger.send(Trigger::Link(key));
        });
    }

    fn all_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.links.state().iter().map(|l| l.key()).collect();
        keys.extend(self.running.keys().cloned());
        keys.sort();
        keys.dedup();
        keys
    }

    fn keys_using(&self, adaptor: &str) -> Vec<String> {
        self.links
            .state()
            .iter()
            .filter(|l| l.spec.adaptor.name == adaptor)
            .map(|l| l.key())
            .collect()
    }

    fn find(&self, key: &str) -> Option<Arc<DeviceLink>> {
        lookup(&self.links, key)
    }

    async fn stop(&mut self, key: &str) {
        if let Some(r) = self.running.remove(key) {
            r.handle.retire();
        }
    }

    /// The API side of a reconcile: finalizer, deletion, the adaptor, the instance and
    /// the references. Takes `&self` so that many links are observed at once.
    async fn observe(&self, key: &str) -> Result<Outcome, Error> {
        let Some(link) = self.find(key) else {
            // Gone from the API (or relabelled to another node).
            return Ok(Outcome::Gone);
        };
        let api: Api<DeviceLink> =
            Api::namespaced(self.client.clone(), link.namespace_or_default());
        let finalizers = link.metadata.finalizers.clone().unwrap_or_default();
        if link.metadata.deletion_timestamp.is_some() {
            // The owner reference lets the garbage collector do this too; doing it here
            // means deletion also completes on clusters without one.
            if let Ok(ar) = self.resource(&link).await {
                let dapi: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), link.namespace_or_default(), &ar);
                match dapi.delete(link.name(), &DeleteParams::background()).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if finalizers.iter().any(|f| f == LIMB_FINALIZER) {
                let keep: Vec<&String> =
                    finalizers.iter().filter(|f| *f != LIMB_FINALIZER).collect();
                let patch = json!({"metadata": {"finalizers": keep, "resourceVersion": link.resource_version()}});
                api.patch(link.name(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            return Ok(Outcome::Gone);
        }
        let link = if finalizers.iter().any(|f| f == LIMB_FINALIZER) {
            link
        } else {
            let mut with = finalizers;
            with.push(LIMB_FINALIZER.to_owned());
            let patch = json!({"metadata": {"finalizers": with, "resourceVersion": link.resource_version()}});
            // Carry on with the patched link rather than wait for the watch to bring it
            // back: one reconcile fewer per new link.
            Arc::new(
                api.patch(link.name(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await?,
            )
        };

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
            return Ok(Outcome::NotValidated);
        }

        // AdaptorExisted.
        let adaptor = self.registry.get(&link.spec.adaptor.name);
        let problem = match &adaptor {
            None => Some(match self.registry.refusal(&link.spec.adaptor.name) {
                Some(why) => format!(
                    "the adaptor isn't existed: {} was refused: {why}",
                    link.spec.adaptor.name
                ),
                None => format!(
                    "the adaptor isn't existed: {} is not loaded on this node",
                    link.spec.adaptor.name
                ),
            }),
            Some(a)
                if a.model(&link.spec.model.api_version, &link.spec.model.kind)
                    .is_none() =>
            {
                Some(format!(
                    "the adaptor isn't existed: {} does not serve {}",
                    a.info.name, link.spec.model.kind
                ))
            }
            Some(a) => match &link.spec.adaptor.digest {
                Some(pin) if *pin != format!("sha256:{}", a.digest) => Some(format!(
                    "the adaptor isn't existed: loaded digest sha256:{} does not match the pinned {pin}",
                    a.digest
                )),
                _ => None,
            },
        };
        let (Some(adaptor), None) = (adaptor, problem.clone()) else {
            return Ok(Outcome::Blocked {
                stage: ConditionType::AdaptorExisted,
                message: problem.unwrap_or_default(),
            });
        };

        // DeviceCreated: the instance, kept in sync with the template.
        match self.ensure_instance(&link).await {
            Ok(()) => {}
            Err(Error::Kube(kube::Error::Api(rejected))) if matches!(rejected.code, 400 | 422) => {
                // The API refused the instance (a spec the model's schema rejects, say):
                // that is the link's problem, and the condition says so.
                return Ok(Outcome::Blocked {
                    stage: ConditionType::DeviceCreated,
                    message: format!(
                        "unable to create device from template: {}",
                        rejected.message
                    ),
                });
            }
            // Unreachable, not ready (a restarted API server answers 403 until its RBAC
            // cache fills), or throttling: whatever runs keeps running; retry later.
            Err(e) => return Err(e),
        }

        // References: resolved on every reconcile (the resync re-reads them), so a
        // rotated Secret reaches the adaptor without a restart.
        let references = match references::resolve(&self.client, &link).await {
            Ok(r) => r,
            Err(references::Error::Transient(e)) => return Err(Error::Kube(e)),
            Err(e) => {
                return Ok(Outcome::Blocked {
                    stage: ConditionType::DeviceConnected,
                    message: format!("unable to fetch the reference parameters: {e}"),
                });
            }
        };
        Ok(Outcome::Run {
            link,
            adaptor,
            references,
        })
    }

    /// Applies what [`Manager::observe`] found to the running devices and the board.
    async fn apply(&mut self, key: &str, outcome: Outcome) {
        let (link, adaptor, references) = match outcome {
            Outcome::Gone => {
                self.stop(key).await;
                self.ctx.board.remove(key);
                return;
            }
            Outcome::NotValidated => {
                self.stop(key).await;
                return;
            }
            Outcome::Blocked { stage, message } => {
                self.stop(key).await;
                if let Some(link) = self.find(key) {
                    let stamp = now();
                    self.ctx.board.update(
                        key,
                        || report_for(&link),
                        |r| {
                            seed(r, &stamp);
                            for earlier in
                                [ConditionType::AdaptorExisted, ConditionType::DeviceCreated]
                            {
                                if earlier < stage {
                                    r.conditions.succeed(earlier, &stamp);
                                }
                            }
                            r.conditions.fail(stage, &message, &stamp);
                            r.phase = Phase::Pending;
                            r.last_error = Some(message.clone());
                        },
                    );
                }
                return;
            }
            Outcome::Run {
                link,
                adaptor,
                references,
            } => (link, adaptor, references),
        };
        // DeviceConnected: the supervisor.
        match self.running.get_mut(key) {
            Some(r) => {
                if r.link.spec != link.spec
                    || references::fingerprint(&r.references)
                        != references::fingerprint(&references)
                {
                    r.link = link.clone();
                    r.references = references.clone();
                    r.handle.send(Command::Update(link.clone(), references));
                }
                if r.digest != adaptor.digest {
                    r.digest = adaptor.digest.clone();
                    r.handle.send(Command::Swap(adaptor));
                }
            }
            None => {
                let stamp = now();
                self.ctx
                    .board
                    .update(key, || report_for(&link), |r| seed(r, &stamp));
                let handle = supervisor::spawn(
                    self.ctx.clone(),
                    link.clone(),
                    adaptor.clone(),
                    references.clone(),
                );
                self.running.insert(
                    key.to_owned(),
                    Running {
                        handle,
                        link,
                        digest: adaptor.digest.clone(),
                        references,
                    },
                );
            }
        }
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
        if lock(&self.applied).get(&key) == Some(&fingerprint) {
            return Ok(());
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), link.namespace_or_default(), &ar);
        api.patch(
            link.name(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await?;
        lock(&self.applied).insert(key, fingerprint);
        Ok(())
    }
}

/// A poisoned lock only means another reconcile panicked mid-update of a cache; the
/// cache is still usable (at worst an apply is repeated).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The board's first report of a link, before anything ran.
fn report_for(link: &DeviceLink) -> DeviceReport {
    DeviceReport::new(
        link.namespace_or_default(),
        link.name(),
        &link.spec.model.kind,
        &link.spec.adaptor.name,
    )
}

/// The brain's stages, which the manager only acts on once they are `True`.
fn seed(r: &mut DeviceReport, stamp: &str) {
    r.conditions.succeed(ConditionType::NodeExisted, stamp);
    r.conditions.succeed(ConditionType::ModelExisted, stamp);
}

/// The API resource of a link's model, for the relay.
pub fn model_resource(link: &DeviceLink) -> GroupVersionKind {
    let (group, version) = link.spec.model.group_version();
    GroupVersionKind::gvk(group, version, &link.spec.model.kind)
}
