//! The three watches that fill the dashboard's [`Store`]: DeviceLinks, the instances of
//! every model they name, and the events about them.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use crds::v1alpha1::DeviceLink;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{mpsc, watch};

use super::store::{EventView, Store};

/// Models whose instances are watched, at most: one watch each.
const MODELS: usize = 64;

/// Follows links, instances and events into `store` until `stop` turns true.
pub async fn run(client: Client, store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    let (models_tx, models_rx) = mpsc::channel::<GroupVersionKind>(MODELS);
    // Events are kept only for known links, so their watch starts once the links are
    // listed (an event listed before its link would be dropped until a relist).
    let (listed_tx, listed_rx) = watch::channel(false);
    let links = links(client.clone(), store.clone(), models_tx, listed_tx);
    let instances = instances(client.clone(), store.clone(), models_rx);
    let events = events(client, store, listed_rx);
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        () = links => {}
        () = instances => {}
        () = events => {}
    }
}

fn backed_off<K, S>(stream: S) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    stream.backoff(octopus_backoff::WatchBackoff::default())
}

async fn links(
    client: Client,
    store: Arc<Store>,
    models: mpsc::Sender<GroupVersionKind>,
    listed_tx: watch::Sender<bool>,
) {
    let api: Api<DeviceLink> = Api::all(client);
    let mut stream = backed_off(watcher(api, watcher::Config::default())).boxed();
    let mut seen_models: HashSet<(String, String)> = HashSet::new();
    let mut listed = BTreeSet::new();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "dashboard: devicelinks watch");
                continue;
            }
        };
        let link = match event {
            watcher::Event::Init => {
                listed.clear();
                continue;
            }
            watcher::Event::InitDone => {
                store.keep_links(&std::mem::take(&mut listed));
                listed_tx.send_replace(true);
                continue;
            }
            watcher::Event::Delete(link) => {
                store.unlink(link.namespace().as_deref(), &link.name_any());
                continue;
            }
            watcher::Event::InitApply(link) => {
                listed.insert(super::store::key_of(
                    link.namespace().as_deref(),
                    &link.name_any(),
                ));
                link
            }
            watcher::Event::Apply(link) => link,
        };
        store.link(&link);
        let model = (
            link.spec.model.api_version.clone(),
            link.spec.model.kind.clone(),
        );
        if seen_models.len() < MODELS && seen_models.insert(model) {
            let (group, version) = link.spec.model.group_version();
            let gvk = GroupVersionKind::gvk(group, version, &link.spec.model.kind);
            if models.try_send(gvk).is_err() {
                tracing::warn!("dashboard: too many models to watch instances of");
            }
        }
    }
}

/// Watches the instances of each model sent on `models` (once each).
async fn instances(
    client: Client,
    store: Arc<Store>,
    mut models: mpsc::Receiver<GroupVersionKind>,
) {
    let mut watches = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            gvk = models.recv() => match gvk {
                Some(gvk) => watches.push(instances_of(client.clone(), store.clone(), gvk)),
                None => return,
            },
            Some(()) = watches.next(), if !watches.is_empty() => {}
        }
    }
}

async fn instances_of(client: Client, store: Arc<Store>, gvk: GroupVersionKind) {
    // The model's CRD may come after its first link: discovery is retried, boundedly
    // often (a minute apart after the first tries).
    let mut delay = std::time::Duration::from_secs(1);
    let ar = loop {
        match kube::discovery::pinned_kind(&client, &gvk).await {
            Ok((ar, _)) => break ar,
            Err(e) => {
                tracing::debug!(kind = %gvk.kind, error = %e, "dashboard: model not served yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(60));
            }
        }
    };
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let mut stream = backed_off(watcher(api, watcher::Config::default())).boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let status = o.data.get("status").cloned().unwrap_or_default();
                store.instance(o.namespace().as_deref(), &o.name_any(), status);
            }
            Ok(watcher::Event::Delete(o)) => {
                store.instance(
                    o.namespace().as_deref(),
                    &o.name_any(),
                    serde_json::Value::Null,
                );
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => tracing::debug!(kind = %gvk.kind, error = %e, "dashboard: instance watch"),
        }
    }
}

async fn events(client: Client, store: Arc<Store>, mut listed: watch::Receiver<bool>) {
    if listed.wait_for(|l| *l).await.is_err() {
        return;
    }
    // Core events: the limb's events.k8s.io events read back, with the regarding object
    // selectable by kind.
    let api: Api<Event> = Api::all(client);
    let cfg = watcher::Config::default().fields("involvedObject.kind=DeviceLink");
    let mut stream = backed_off(watcher(api, cfg)).boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(e) | watcher::Event::InitApply(e)) => {
                let about = &e.involved_object;
                let Some(name) = about.name.clone() else {
                    continue;
                };
                let namespace = about.namespace.clone();
                store.event(namespace.as_deref(), &name, view(&e));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "dashboard: events watch"),
        }
    }
}

fn view(e: &Event) -> EventView {
    let time = e
        .event_time
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0.to_string()))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0.to_string()))
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
        })
        .unwrap_or_default();
    EventView {
        uid: e.metadata.uid.clone().unwrap_or_default(),
        time,
        type_: e.type_.clone().unwrap_or_default(),
        reason: e.reason.clone().unwrap_or_default(),
        message: e.message.clone().unwrap_or_default(),
    }
}
