//! What one adaptor store holds: WASI (nothing granted), the resource table, the
//! memory limiter, the device's capabilities, and what the guest pushed during a call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::output::GuestOutput;
use super::{Runtime, Settings, Stop};
use crate::capabilities::Capabilities;
use crate::capabilities::CapabilityError;
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
///
/// The limits hold for the whole instance, not for each memory or table: a component
/// may hold many core instances with a memory each, and every one of them counts.
#[derive(Debug)]
pub struct Limiter {
    memory_limit: usize,
    table_limit: usize,
    pub refused: Option<String>,
    /// Linear memory of every memory of the instance together.
    pub memory: usize,
    /// Table elements of every table of the instance together.
    pub table_elements: usize,
}

/// Core instances, memories and tables one adaptor instance may create. Language
/// runtimes need several (Python about 14 core instances); nothing needs more.
pub const MAX_CORE_INSTANCES: usize = 64;
pub const MAX_MEMORIES: usize = 16;
pub const MAX_TABLES: usize = 64;
/// Table elements of one adaptor instance, all tables together.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

impl Limiter {
    pub fn new(memory_limit: usize) -> Self {
        Self {
            memory_limit,
            table_limit: MAX_TABLE_ELEMENTS,
            refused: None,
            memory: 0,
            table_elements: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory.saturating_add(desired.saturating_sub(current));
        if total > self.memory_limit {
            let why = format!(
                "memory limit of {} MiB reached (the instance had {} KiB in all its memories, a memory asked to grow from {} KiB to {} KiB)",
                self.memory_limit >> 20,
                self.memory >> 10,
                current >> 10,
                desired >> 10
            );
            self.refused = Some(why.clone());
            return Err(wasmtime::format_err!("{why}"));
        }
        self.memory = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .table_elements
            .saturating_add(desired.saturating_sub(current));
        if total > self.table_limit {
            let why = format!(
                "table limit of {} elements reached (all tables of the instance together)",
                self.table_limit
            );
            self.refused = Some(why.clone());
            return Err(wasmtime::format_err!("{why}"));
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
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
    pub(crate) log_budget: super::host_calls::log::Budget,
    pub(crate) started: Instant,
    deadline: Option<Instant>,
    /// Set when the device is removed: the running call ends at the next tick.
    stop: Arc<Stop>,
    /// While set, `stop` does not interrupt (the adaptor's own `shutdown` call, which
    /// has its own short deadline).
    shielded: bool,
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
        Self::new_stoppable_store(runtime, device, adaptor, caps, metrics, Arc::default())
    }

    /// Like [`StoreState::new_store`]; setting `stop` interrupts the running call.
    pub fn new_stoppable_store(
        runtime: &Runtime,
        device: DeviceTag,
        adaptor: &str,
        caps: Capabilities,
        metrics: Option<Arc<Metrics>>,
        stop: Arc<Stop>,
    ) -> Store<StoreState> {
        let (stdout, stderr) = GuestOutput::pair(device.clone());
        let meters = metrics.map(|m| InstanceMeters::new(m, adaptor.into(), device.0.clone()));
        let wasi = WasiCtx::builder()
            .stdout(stdout)
            .stderr(stderr)
            // A call asking for more traps with the size and the limit; the time any
            // call takes is charged to the device's CPU budget.
            .max_random_size(crate::bounds::MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_TABLE_ENTRIES);
        let Settings { memory_limit, .. } = *runtime.settings();
        let state = StoreState {
            wasi,
            table,
            limiter: Limiter::new(memory_limit),
            caps,
            device,
            outbox: Outbox::default(),
            log_budget: super::host_calls::log::Budget::new(200),
            started: Instant::now(),
            deadline: None,
            stop,
            shielded: false,
            meters,
        };
        let mut store = Store::new(runtime.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // Yield to the executor every tick so a busy guest never starves other
        // devices (and its CPU time is charged), and interrupt it once the call's
        // deadline has passed or its device was removed.
        store.epoch_deadline_callback(|ctx| {
            let data = ctx.data();
            let expired = data.deadline.is_some_and(|d| Instant::now() >= d)
                || (!data.shielded && data.stop.past_grace());
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

    /// Lets the next calls run although the device is being removed.
    pub fn shield(&mut self) {
        self.shielded = true;
    }

    pub fn stop(&self) -> &Arc<Stop> {
        &self.stop
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

    /// Records one finished guest call in the metrics, if this store reports to them:
    /// its outcome and wall time, and the device's CPU time and throttled steps so far.
    pub fn record_call(
        &mut self,
        call: &'static str,
        outcome: &'static str,
        seconds: f64,
        cpu: &super::CpuAccount,
    ) {
        let memory = self.limiter.memory;
        if let Some(m) = &mut self.meters {
            m.call(call, outcome, seconds, memory);
            m.cpu(cpu.used(), cpu.throttled());
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
    ) -> wasmtime::Result<Result<Resource<T>, crate::bindings::CapabilityError>> {
        match opened {
            Ok(handle) => match self.table.push(handle) {
                Ok(r) => Ok(Ok(r)),
                Err(e) => {
                    self.caps.release();
                    Err(e.into())
                }
            },
            Err(e) => Ok(Err(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Config, Engine, Instance, Module, Store};

    use super::Limiter;

    /// A core module with `n` memories of `pages` 64 KiB pages each.
    fn memories(n: usize, pages: u32) -> String {
        let mems: String = (0..n)
            .map(|i| format!("(memory $m{i} {pages})\n"))
            .collect();
        format!("(module {mems})")
    }

    #[test]
    fn the_memory_limit_counts_every_memory_of_the_instance() {
        let engine = Engine::new(Config::new().wasm_multi_memory(true)).unwrap();
        // Eight memories of 8 MiB each, every one under the 32 MiB limit.
        let wasm = wat::parse_str(memories(8, 128)).unwrap();
        let module = Module::new(&engine, wasm).unwrap();
        let mut store = Store::new(&engine, Limiter::new(32 << 20));
        store.limiter(|l| l);
        let err = Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("memory limit of 32 MiB"),
            "{err:#}"
        );
        let refused = store.data().refused.clone().unwrap();
        assert!(refused.contains("all its memories"), "{refused}");
        assert!(store.data().memory <= 32 << 20);

        // Four of them fit exactly.
        let wasm = wat::parse_str(memories(4, 128)).unwrap();
        let module = Module::new(&engine, wasm).unwrap();
        let mut store = Store::new(&engine, Limiter::new(32 << 20));
        store.limiter(|l| l);
        Instance::new(&mut store, &module, &[]).unwrap();
        assert_eq!(store.data().memory, 32 << 20);
    }

    #[test]
    fn the_table_limit_counts_every_table_of_the_instance() {
        let engine = Engine::default();
        let tables: String = (0..4)
            .map(|i| format!("(table $t{i} 40000 funcref)\n"))
            .collect();
        let wasm = wat::parse_str(format!("(module {tables})")).unwrap();
        let module = Module::new(&engine, wasm).unwrap();
        let mut store = Store::new(&engine, Limiter::new(32 << 20));
        store.limiter(|l| l);
        let err = Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(format!("{err:#}").contains("table limit"), "{err:#}");
    }
}
