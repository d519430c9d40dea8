//! DeviceLinks on this node: finalizer, AdaptorExisted, the device instance
//! (DeviceCreated), and a supervisor per link (DeviceConnected).

use std::collections::HashMap;
use std::sync::Arc;

use crds::conditions::{ConditionStatus, ConditionType};
use crds::v1alpha1::{DeviceLink, LIMB_FINALIZER, NODE_LABEL, node_label_value};
use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
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
    resources: HashMap<GroupVersionKind, ApiResource>,
    /// Model kinds whose instances on this node are watched (to re-create deletions).
    watched: HashMap<GroupVersionKind, ()>,
    trigger: mpsc::UnboundedSender<Trigger>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("cannot find the model {0:?} in the API: {1}")]
    Discovery(String, String),
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
            resources: HashMap::new(),
            watched: HashMap::new(),
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
            let keys: Vec<String> = tokio::select! {
                t = rx.recv() => match t {
                    Some(Trigger::Link(k)) => vec![k],
                    Some(Trigger::Adaptor(name)) => self.keys_using(&name),
                    None => break,
                },
                _ = resync.tick() => self.all_keys(),
                _ = shutdown.changed() => break,
            };
            tracing::debug!(?keys, "reconciling");
            for key in keys {
                let span = tracing::info_span!("limb.reconcile", link = %key);
                if let Err(e) = self.reconcile(&key).instrument(span).await {
                    tracing::warn!(link = %key, error = %e, "reconcile failed; retrying on the next resync");
                }
            }
            self.ctx.metrics.set_devices(self.running.len());
        }
        // Devices keep their instances on shutdown: a restarted limb picks them up.
        for (_, r) in self.running.drain() {
            r.handle.stop().await;
        }
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
            r.handle.stop().await;
        }
    }

    async fn reconcile(&mut self, key: &str) -> Result<(), Error> {
        let Some(link) = self.find(key) else {
            // Gone from the API (or relabelled to another node).
            self.stop(key).await;
            self.ctx.board.remove(key);
            return Ok(());
        };
        let api: Api<DeviceLink> =
            Api::namespaced(self.client.clone(), link.namespace_or_default());
        let finalizers = link.metadata.finalizers.clone().unwrap_or_default();
        if link.metadata.deletion_timestamp.is_some() {
            self.stop(key).await;
            self.ctx.board.remove(key);
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
            return Ok(());
        }
        if !finalizers.iter().any(|f| f == LIMB_FINALIZER) {
            let mut with = finalizers.clone();
            with.push(LIMB_FINALIZER.to_owned());
            let patch = json!({"metadata": {"finalizers": with, "resourceVersion": link.resource_version()}});
            api.patch(link.name(), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            return Ok(()); // the watch brings the updated link back
        }

        let brain_ok = [ConditionType::NodeExisted, ConditionType::ModelExisted]
            .iter()
            .all(|t| {
                link.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == *t && c.status == ConditionStatus::True)
                })
            });
        let stamp = now();
        let init = || {
            DeviceReport::new(
                link.namespace_or_default(),
                link.name(),
                &link.spec.model.kind,
                &link.spec.adaptor.name,
            )
        };
        let seed = |r: &mut DeviceReport| {
            r.conditions.succeed(ConditionType::NodeExisted, &stamp);
            r.conditions.succeed(ConditionType::ModelExisted, &stamp);
        };
        if !brain_ok {
            // Not validated (yet, or any more): nothing runs until the brain says so.
            self.stop(key).await;
            return Ok(());
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
            self.stop(key).await;
            let msg = problem.unwrap_or_default();
            self.ctx.board.update(key, init, |r| {
                seed(r);
                r.phase = Phase::Pending;
                r.last_error = Some(msg.clone());
                r.conditions
                    .fail(ConditionType::AdaptorExisted, &msg, &stamp);
            });
            return Ok(());
        };

        // DeviceCreated: the instance, kept in sync with the template.
        match self.ensure_instance(&link).await {
            Ok(()) => {}
            Err(Error::Kube(kube::Error::Api(rejected))) if matches!(rejected.code, 400 | 422) => {
                // The API refused the instance (a spec the model's schema rejects, say):
                // that is the link's problem, and the condition says so.
                self.stop(key).await;
                let msg = format!(
                    "unable to create device from template: {}",
                    rejected.message
                );
                self.ctx.board.update(key, init, |r| {
                    seed(r);
                    r.conditions.succeed(ConditionType::AdaptorExisted, &stamp);
                    r.conditions
                        .fail(ConditionType::DeviceCreated, &msg, &stamp);
                    r.last_error = Some(msg.clone());
                });
                return Ok(());
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
                self.stop(key).await;
                let msg = format!("unable to fetch the reference parameters: {e}");
                self.ctx.board.update(key, init, |r| {
                    seed(r);
                    r.conditions.succeed(ConditionType::AdaptorExisted, &stamp);
                    r.conditions.succeed(ConditionType::DeviceCreated, &stamp);
                    r.conditions
                        .fail(ConditionType::DeviceConnected, &msg, &stamp);
                    r.phase = Phase::Pending;
                    r.last_error = Some(msg.clone());
                });
                return Ok(());
            }
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
                self.ctx.board.update(key, init, seed);
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
        Ok(())
    }

    async fn resource(&mut self, link: &DeviceLink) -> Result<ApiResource, Error> {
        let (group, version) = link.spec.model.group_version();
        let gvk = GroupVersionKind::gvk(group, version, &link.spec.model.kind);
        if let Some(ar) = self.resources.get(&gvk) {
            return Ok(ar.clone());
        }
        let (ar, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| Error::Discovery(link.spec.model.kind.clone(), e.to_string()))?;
        self.resources.insert(gvk.clone(), ar.clone());
        if self.watched.insert(gvk, ()).is_none() {
            self.watch_instances(ar.clone());
        }
        Ok(ar)
    }

    /// Watches this node's instances of one model, so a deleted instance is re-created
    /// at once instead of at the next resync.
    fn watch_instances(&self, ar: ApiResource) {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let cfg = watcher::Config::default().labels(&format!(
            "{NODE_LABEL}={}",
            node_label_value(&self.settings.node)
        ));
        let trigger = self.trigger.clone();
        tokio::spawn(async move {
            let mut stream = watcher(api, cfg)
                .backoff(super::WatchBackoff::default())
                .boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Delete(obj)) = ev {
                    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
                    if trigger.send(Trigger::Link(key)).is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// Creates or updates the device instance with server-side apply.
    async fn ensure_instance(&mut self, link: &DeviceLink) -> Result<(), Error> {
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
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), link.namespace_or_default(), &ar);
        api.patch(
            link.name(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await?;
        Ok(())
    }
}

/// The API resource of a link's model, for the relay.
pub fn model_resource(link: &DeviceLink) -> GroupVersionKind {
    let (group, version) = link.spec.model.group_version();
    GroupVersionKind::gvk(group, version, &link.spec.model.kind)
}
