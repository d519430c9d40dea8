//! One supervisor task per device: instantiate, configure, poll on the interval the
//! adaptor asked for, publish status, restart after traps with backoff, quarantine
//! after repeated traps, apply spec changes, and hot-swap to new adaptor versions.
//!
//! Devices share nothing but the engine, so one device's trouble (a busy loop, a trap,
//! a slow host call) delays no other device's poll.
//!
//! The parts: [`lifecycle`] decides (pure: backoff, quarantine, probation, rollback),
//! `task` carries the decisions out and reports them, `driver` says what the task
//! needs of an adaptor instance ([`Connect`], [`Driver`]), and [`Instance`] is the wasm
//! implementation of it. The supervisor uses `adaptors` and `engine`; neither knows of
//! it.

mod driver;
mod inbox;
mod instance;
pub mod lifecycle;
mod restart;
mod schedule;
mod task;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crds::DeviceLink;
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use driver::{CallError, Connect, Driver, STOPPED, Version};
pub use instance::{Instance, Wasm};
pub use restart::{Decision, RestartPolicy};

use crate::adaptors::Adaptor;
use crate::bindings::ReferenceValue;
use crate::capabilities::{Backends, Limits, Policy};
use crate::engine::{DeviceTag, Runtime, Stop};
use crate::extension::Extensions;
use crate::metrics::Metrics;
use crate::status::StatusBoard;

/// Everything supervisors share.
pub struct Context {
    pub runtime: Arc<Runtime>,
    pub board: Arc<StatusBoard>,
    pub metrics: Arc<Metrics>,
    pub policy: Arc<Policy>,
    pub limits: Limits,
    pub backends: Backends,
    pub restart: RestartPolicy,
    /// Largest status document accepted from an adaptor.
    pub max_status_bytes: usize,
    /// Host-side extensions (the MQTT status publisher) of every device.
    pub extensions: Arc<Extensions>,
    /// Hot swaps that may run at once. A new version offered to every device at once
    /// would otherwise queue thousands of instantiations ahead of the polls: at 10,000
    /// devices the polls then waited for seconds (docs/benchmarks/density-swap-10k.md).
    /// A device waiting for its turn keeps polling on the old version.
    pub swap_permits: Arc<tokio::sync::Semaphore>,
}

/// Hot swaps in flight at once: a swap is a few hundred microseconds of CPU, so two per
/// core keep the cores busy while a due poll waits behind at most that many.
pub const SWAPS_AT_ONCE: usize = 4;

impl Context {
    /// A context with its own status board, metrics and extensions, taking status
    /// documents of up to 1 MiB.
    pub fn new(
        runtime: Runtime,
        policy: Policy,
        limits: Limits,
        backends: Backends,
        restart: RestartPolicy,
    ) -> Context {
        let board = Arc::new(StatusBoard::default());
        let metrics = Arc::new(Metrics::default());
        let policy = Arc::new(policy);
        Context {
            runtime: Arc::new(runtime),
            extensions: Arc::new(Extensions::new(
                board.clone(),
                metrics.clone(),
                policy.clone(),
            )),
            board,
            metrics,
            policy,
            limits,
            backends,
            restart,
            max_status_bytes: 1 << 20,
            swap_permits: Arc::new(tokio::sync::Semaphore::new(SWAPS_AT_ONCE)),
        }
    }
}

/// What a supervisor can be told; `V` is the adaptor version type (a loaded wasm
/// [`Adaptor`] outside tests).
pub enum Command<V = Adaptor> {
    /// The DeviceLink or the values its references resolve to changed.
    Update(Arc<DeviceLink>, Vec<ReferenceValue>),
    /// A new version of the device's adaptor is loaded.
    Swap(Arc<V>),
}

/// The owner's side of a running supervisor.
pub struct Handle<V = Adaptor> {
    tx: inbox::Sender<Command<V>>,
    task: JoinHandle<()>,
    stop: Arc<Stop>,
    key: String,
    ctx: Arc<Context>,
    pub adaptor_name: String,
}

impl<V> Handle<V> {
    pub fn send(&self, cmd: Command<V>) {
        self.tx.send(cmd);
    }

    /// Stops the device and waits until it has: a running call is interrupted at once,
    /// then the adaptor's `shutdown` runs under its own deadline.
    pub async fn stop(self) {
        let task = self.retire_inner();
        let _ = task.await;
    }

    /// Stops the device without waiting for it: what a fleet does when a link goes, so
    /// that no change waits behind one device's `shutdown`. The device's outputs
    /// (extensions, metrics) are gone when this returns.
    pub fn retire(self) {
        drop(self.retire_inner());
    }

    fn retire_inner(self) -> JoinHandle<()> {
        self.stop.set();
        drop(self.tx);
        self.ctx.extensions.remove(&self.key);
        self.ctx.metrics.forget_device(&self.key);
        self.task
    }
}

/// Stops every device at once and waits for all: a slow `shutdown` delays no other.
pub async fn stop_all<V: Version>(handles: impl IntoIterator<Item = Handle<V>>) {
    let stopping: Vec<_> = handles
        .into_iter()
        .map(|h| tokio::spawn(h.stop()))
        .collect();
    for s in stopping {
        let _ = s.await;
    }
}

/// Starts supervising `link` with `adaptor`.
pub fn spawn(
    ctx: Arc<Context>,
    link: Arc<DeviceLink>,
    adaptor: Arc<Adaptor>,
    references: Vec<ReferenceValue>,
) -> Handle {
    let tag = DeviceTag(link.key().as_str().into());
    let wasm_ctx = ctx.clone();
    spawn_with(ctx, link, adaptor, references, move |stop| Wasm {
        ctx: wasm_ctx,
        tag,
        stop,
    })
}

/// Starts supervising `link` with `version`, through the driver `connect` makes from
/// the device's stop switch.
pub fn spawn_with<C: Connect>(
    ctx: Arc<Context>,
    link: Arc<DeviceLink>,
    version: Arc<C::Version>,
    references: Vec<ReferenceValue>,
    connect: impl FnOnce(Arc<Stop>) -> C,
) -> Handle<C::Version> {
    let (tx, rx) = inbox::inbox();
    let key = link.key();
    let adaptor_name = version.info().name.clone();
    let stop = Arc::new(Stop::default());
    let span = tracing::info_span!("limb.device", device = %key);
    let sup = task::Supervisor::new(
        ctx.clone(),
        key.clone(),
        stop.clone(),
        connect(stop.clone()),
        link,
        version,
        references,
    );
    let task = tokio::spawn(Box::new(sup).run(rx).instrument(span));
    Handle {
        tx,
        task,
        stop,
        key,
        ctx,
        adaptor_name,
    }
}
