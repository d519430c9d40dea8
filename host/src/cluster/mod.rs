//! Cluster mode: the limb on one node of a Kubernetes cluster.
//!
//! Four tasks share the supervisors' status board:
//! - [`source`] watches adaptor ConfigMaps in the limb's namespace, loads and hot-swaps;
//! - [`manager`] runs kube-runtime's controller over the DeviceLinks labelled for this
//!   node: their finalizer and device instances, and a supervisor per link (through the
//!   [`fleet`](crate::fleet));
//! - [`relay`] writes what the supervisors report to the API: limb-owned conditions on
//!   the link and the adaptor's status on the device instance, coalesced, latest wins;
//! - [`events`] turns the devices' events into Kubernetes Events on their links.
//!
//! Devices keep running while the API server is away; writes catch up when it returns.

pub mod events;
pub mod manager;
pub mod references;
pub mod relay;
pub mod source;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::Client;
use tokio::sync::{mpsc, watch};

use crate::adaptors::{Adaptor, CompileCache};
use crate::supervisor::Context;

/// The field manager of everything the limb writes.
pub const MANAGER: &str = "octopus-limb";
/// Annotations the limb puts on device instances: Octopus's names, which its readers use.
pub const NODE_ANNOTATION: &str = "edge.cattle.io/node-name";
pub const ADAPTOR_ANNOTATION: &str = "edge.cattle.io/adaptor-name";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the API server")]
    Client(#[source] kube::Error),
}

/// Adaptors loaded from ConfigMaps, by adaptor name; why a name was refused, if it was.
#[derive(Default)]
pub struct Registry {
    loaded: RwLock<HashMap<String, Arc<Adaptor>>>,
    refused: RwLock<HashMap<String, String>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<Adaptor>> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn refusal(&self, name: &str) -> Option<String> {
        self.refused
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn set(&self, adaptor: Arc<Adaptor>) {
        let name = adaptor.info.name.clone();
        self.refused
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        self.loaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, adaptor);
    }

    fn refuse(&self, name: &str, why: String) {
        self.refused
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), why);
    }

    fn remove(&self, name: &str) {
        self.loaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.refused
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

/// Backoff of the limb's watches: 250 ms doubling to 5 s, with jitter, so a limb
/// notices changes within seconds of an API server coming back (kube's default waits
/// up to 30 s).
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: std::time::Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            next: std::time::Duration::from_millis(250),
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;
    fn next(&mut self) -> Option<Self::Item> {
        let now = self.next;
        self.next = (self.next * 2).min(std::time::Duration::from_secs(5));
        Some(now.mul_f64(0.5 + 0.5 * fastrand::f64()))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Settings of cluster mode.
#[derive(Clone, Debug)]
pub struct Settings {
    pub node: String,
    pub namespace: String,
    pub flush: std::time::Duration,
    pub resync: std::time::Duration,
    /// The node's default floor on instance-status writes (`None`: off).
    pub status_write_interval: Option<std::time::Duration>,
}

/// Runs until `shutdown` turns true.
pub async fn run(
    ctx: Arc<Context>,
    cache: Arc<CompileCache>,
    settings: Settings,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let client = Client::try_default().await.map_err(Error::Client)?;
    let registry = Arc::new(Registry::default());
    let (trigger, triggers) = mpsc::unbounded_channel();
    let (links, link_events) = manager::link_store(&client, &settings);
    let source = tokio::spawn(source::run(
        client.clone(),
        ctx.clone(),
        cache,
        registry.clone(),
        settings.namespace.clone(),
        trigger.clone(),
        shutdown.clone(),
    ));
    let events = tokio::spawn(events::run(
        client.clone(),
        ctx.board.clone(),
        ctx.metrics.clone(),
        links.clone(),
        shutdown.clone(),
    ));
    let relay = tokio::spawn(relay::run(
        client.clone(),
        ctx.board.clone(),
        ctx.metrics.clone(),
        links.clone(),
        settings.flush,
        settings.status_write_interval,
        shutdown.clone(),
    ));
    manager::run(
        client,
        ctx,
        registry,
        settings,
        (links, link_events),
        trigger,
        triggers,
        shutdown,
    )
    .await;
    let _ = source.await;
    let _ = relay.await;
    let _ = events.await;
    Ok(())
}
