//! What one adaptor store holds: WASI (nothing granted), the resource table, the
//! memory limiter, the device's capabilities, and what the guest pushed during a call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::output::GuestOutput;
use super::{Runtime, Settings};
use crate::bindings::CapabilityError;
use crate::capabilities::{self, Capabilities};
use crate::metrics::{InstanceMeters, Metrics};
use crate::status::Event;

/// Names the device in logs and spans: `namespace/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceTag(pub Arc<str>);

impl std::fmt::Display for DeviceTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Status and events the guest pushed during the current call.
#[derive(Debug, Default)]
pub struct Outbox {
    pub status: Option<String>,
    pub events: Vec<Event>,
    pub dropped_events: u64,
}

/// Refuses memory and table growth past the store's limits, and remembers that it did
/// so the supervisor can say "memory limit" instead of a bare trap.
#[derive(Debug)]
pub struct Limiter {
    memory_limit: usize,
    table_limit: usize,
    pub refused: Option<String>,
    /// Linear memory granted so far, for the per-device memory metric.
    pub memory: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            let why = format!(
                "memory limit of {} MiB reached (had {} KiB, asked for {} KiB)",
                self.memory_limit >> 20,
                current >> 10,
                desired >> 10
            );
            self.refused = Some(why.clone());
            return Err(wasmtime::format_err!("{why}"));
        }
        self.memory = self.memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_limit {
            let why = format!("table limit of {} elements reached", self.table_limit);
            self.refused = Some(why.clone());
            return Err(wasmtime::format_err!("{why}"));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// The data of one adaptor store.
pub struct StoreState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) caps: Capabilities,
    pub(crate) device: DeviceTag,
    pub(crate) outbox: Outbox,
    pub(crate) log_budget: capabilities::log::Budget,
    pub(crate) started: Instant,
    deadline: Option<Instant>,
    /// This instance's metric series, if the store reports to a metrics sink.
    meters: Option<InstanceMeters>,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crate::bindings::octopus::adaptor::types::Host for StoreState {}

/// Most resources (WASI streams and capability handles together) one store may hold.
const MAX_TABLE_ENTRIES: usize = 256;

impl StoreState {
    /// A store for `device`: WASI with nothing preopened, no environment, no network,
    /// stdout and stderr captured into tracing.
    pub fn new_store(
        runtime: &Runtime,
        device: DeviceTag,
        adaptor: &str,
        caps: Capabilities,
        metrics: Option<Arc<Metrics>>,
    ) -> Store<StoreState> {
        let (stdout, stderr) = GuestOutput::pair(device.clone());
        let meters = metrics.map(|m| InstanceMeters::new(m, adaptor.into(), device.0.clone()));
        let wasi = WasiCtx::builder().stdout(stdout).stderr(stderr).build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_TABLE_ENTRIES);
        let Settings { memory_limit, .. } = *runtime.settings();
        let state = StoreState {
            wasi,
            table,
            limiter: Limiter {
                memory_limit,
                table_limit: 100_000,
                refused: None,
                memory: 0,
            },
            caps,
            device,
            outbox: Outbox::default(),
            log_budget: capabilities::log::Budget::new(200),
            started: Instant::now(),
            deadline: None,
            meters,
        };
        let mut store = Store::new(runtime.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // Yield to the executor every tick so a busy guest never starves other
        // devices, and interrupt it once the call's deadline has passed.
        store.epoch_deadline_callback(|ctx| {
            let expired = ctx.data().deadline.is_some_and(|d| Instant::now() >= d);
            Ok(if expired {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Starts the clock for one guest call.
    pub fn arm(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.deadline = Some(deadline);
        self.caps.set_call_deadline(Some((deadline, timeout)));
        self.limiter.refused = None;
    }

    /// Stops the clock after a guest call.
    pub fn disarm(&mut self) {
        self.deadline = None;
        self.caps.set_call_deadline(None);
    }

    pub fn device(&self) -> &DeviceTag {
        &self.device
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Takes what the guest pushed since the last call.
    pub fn take_outbox(&mut self) -> Outbox {
        std::mem::take(&mut self.outbox)
    }

    /// Records one finished guest call in the metrics, if this store reports to them.
    pub fn record_call(&mut self, call: &'static str, outcome: &'static str, seconds: f64) {
        let memory = self.limiter.memory;
        if let Some(m) = &mut self.meters {
            m.call(call, outcome, seconds, memory);
        }
    }

    /// Why the limiter refused growth during the last call, if it did.
    pub fn limit_refusal(&self) -> Option<&str> {
        self.limiter.refused.as_deref()
    }

    /// Counts a capability open by outcome.
    pub(crate) fn count<T>(&self, capability: &'static str, result: &Result<T, CapabilityError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(CapabilityError::NotPermitted(m)) => {
                tracing::warn!(device = %self.device, capability, reason = %m, "capability refused");
                "not-permitted"
            }
            Err(CapabilityError::LimitReached(_)) => "limit-reached",
            Err(CapabilityError::Timeout) => "timeout",
            Err(_) => "error",
        };
        if let Some(m) = &self.meters {
            m.capability_call(capability, outcome);
        }
    }

    /// Puts a newly opened handle in the table; a full table frees the slot and traps,
    /// because the guest is holding far more than any adaptor needs.
    pub(crate) fn push_handle<T: Send + 'static>(
        &mut self,
        opened: Result<T, CapabilityError>,
    ) -> wasmtime::Result<Result<Resource<T>, CapabilityError>> {
        match opened {
            Ok(handle) => match self.table.push(handle) {
                Ok(r) => Ok(Ok(r)),
                Err(e) => {
                    self.caps.release();
                    Err(e.into())
                }
            },
            Err(e) => Ok(Err(e)),
        }
    }
}
