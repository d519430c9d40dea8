//! The wasmtime engine shared by every adaptor in the process: epoch interruption for
//! per-call deadlines, memory limits per store, and the pooling allocator when the
//! machine's address space allows it. Guest code runs as Cranelift's native code where
//! Cranelift has a backend for the host (x86_64, aarch64, ...) and in wasmtime's Pulley
//! interpreter elsewhere (32-bit ARM): [`execution_mode`] says which.

pub mod budget;
pub mod host_calls;
mod output;
mod state;
mod stop;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use budget::{CpuAccount, CpuSettings, Exhausted, Scheduler};
pub use state::{DeviceTag, Outbox, StoreState};
pub use stop::Stop;

use crate::bindings::Adaptor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(String),
    #[error("cannot link the host interfaces: {0}")]
    Link(String),
}

/// How an engine runs guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutionMode {
    /// Cranelift's native code for this CPU architecture.
    Cranelift { arch: &'static str },
    /// wasmtime's Pulley interpreter, for a host Cranelift has no backend for; `bits`
    /// is the pointer width of its bytecode (the host's).
    Pulley { bits: u32 },
}

impl ExecutionMode {
    /// A short name of what a compiled artifact is: native code for one CPU
    /// architecture, or Pulley bytecode. (Pulley's pointer width, like the CPU flags, is
    /// covered by the engine's compatibility hash, which knows the engine's real target
    /// even for an engine that compiles for another host.)
    pub fn tag(self) -> &'static str {
        match self {
            Self::Cranelift { arch } => arch,
            Self::Pulley { .. } => "pulley",
        }
    }
}

impl fmt::Display for ExecutionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cranelift { arch } => write!(f, "cranelift ({arch})"),
            Self::Pulley { bits } => write!(f, "pulley{bits} interpreter"),
        }
    }
}

/// How `engine` runs guest code. Engines here always compile for the host they run on,
/// so the architecture is this process's.
pub fn execution_mode_of(engine: &Engine) -> ExecutionMode {
    mode_for(engine.is_pulley(), std::env::consts::ARCH, usize::BITS)
}

fn mode_for(pulley: bool, arch: &'static str, bits: u32) -> ExecutionMode {
    if pulley {
        ExecutionMode::Pulley { bits }
    } else {
        ExecutionMode::Cranelift { arch }
    }
}

/// How this build of the limb runs guest code on this host (what [`Runtime::new`]'s
/// engine uses): asked of an engine with the limb's configuration, since wasmtime picks
/// Pulley by itself where Cranelift has no backend. `None` if no engine can be made here.
pub fn execution_mode() -> Option<ExecutionMode> {
    static MODE: OnceLock<Option<ExecutionMode>> = OnceLock::new();
    *MODE.get_or_init(|| {
        Engine::new(&base_config(None))
            .ok()
            .map(|e| execution_mode_of(&e))
    })
}

/// How to allocate instance memory.
///
/// On demand is the default: a device's instance lives for hours, so the pool's faster
/// instantiation buys nothing measurable (hot swap and cold start of 1,000 devices took
/// the same time either way), while each pooled instance holds about 7 KiB more: its
/// tables take a page each in the pool instead of a few hundred bytes of heap
/// (docs/benchmarks/density.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooling {
    /// Use the pooling allocator if the engine can reserve it, else allocate on demand.
    Auto,
    On,
    Off,
}

/// Engine settings, from the binary's configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Longest a single adaptor call may run before it is interrupted.
    pub call_timeout: Duration,
    /// Linear memory one adaptor instance may grow to.
    pub memory_limit: usize,
    /// Granularity of deadlines and of yielding to other devices.
    pub epoch_tick: Duration,
    pub pooling: Pooling,
    /// Instances the pool is sized for (devices plus swaps in flight).
    pub max_instances: u32,
    /// How the CPU is shared between devices.
    pub cpu: CpuSettings,
    /// Longest an adaptor's `shutdown` may run; it has its own deadline so a device
    /// being removed never holds up anything else for long.
    pub shutdown_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            memory_limit: 64 << 20,
            // Short, so a spinning guest's first step (before it is known to be long
            // and queued for a lane) costs its neighbours little.
            epoch_tick: Duration::from_millis(2),
            pooling: Pooling::Off,
            max_instances: 1024,
            cpu: CpuSettings::default(),
            shutdown_timeout: Duration::from_secs(1),
        }
    }
}

/// The process-wide engine, its linker, and the ticker thread that drives deadlines.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StoreState>,
    settings: Settings,
    scheduler: Scheduler,
    pooling: bool,
    stop: Arc<AtomicBool>,
}

impl Runtime {
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let (engine, pooling) = match settings.pooling {
            Pooling::Off => (
                Engine::new(&base_config(None)).map_err(|e| Error::Engine(e.to_string()))?,
                false,
            ),
            Pooling::On => (
                Engine::new(&base_config(Some(&settings)))
                    .map_err(|e| Error::Engine(e.to_string()))?,
                true,
            ),
            Pooling::Auto if pool_reservation(&settings) > POOL_RESERVATION_BUDGET => {
                tracing::warn!(
                    max_instances = settings.max_instances,
                    "a pool this large would reserve most of the address space, allocating instances on demand"
                );
                (
                    Engine::new(&base_config(None)).map_err(|e| Error::Engine(e.to_string()))?,
                    false,
                )
            }
            Pooling::Auto => match Engine::new(&base_config(Some(&settings))) {
                Ok(e) => (e, true),
                Err(err) => {
                    tracing::warn!(error = %err, "pooling allocator unavailable, allocating instances on demand");
                    (
                        Engine::new(&base_config(None))
                            .map_err(|e| Error::Engine(e.to_string()))?,
                        false,
                    )
                }
            },
        };
        let mut linker = Linker::<StoreState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Error::Link(e.to_string()))?;
        Adaptor::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(|e| Error::Link(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), settings.epoch_tick, stop.clone());
        let execution = execution_mode_of(&engine);
        tracing::info!(%execution, pooling, memory_limit = settings.memory_limit, call_timeout = ?settings.call_timeout, "engine ready");
        warn_if_mappings_run_out(settings.max_instances);
        Ok(Self {
            engine,
            linker,
            scheduler: Scheduler::new(settings.cpu.clone()),
            settings,
            pooling,
            stop,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<StoreState> {
        &self.linker
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The CPU sharing every guest call goes through.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Address space the pooling allocator may reserve in `Auto` mode. Each memory slot
/// reserves the default 4 GiB plus its guard, so a pool sized for 10,000 devices (40,000
/// memories) would take more than the 128 TiB a process has, and the pool's reservation
/// then starves `malloc`; above this budget `Auto` allocates on demand instead.
const POOL_RESERVATION_BUDGET: u64 = 48 << 40;

/// Virtual memory the pool of `settings` reserves for linear memories (approximately).
fn pool_reservation(settings: &Settings) -> u64 {
    const SLOT: u64 = (4 << 30) + (32 << 20);
    u64::from(settings.max_instances.max(1)).saturating_mul(4 * SLOT)
}

/// Memory mappings one instance takes (linear memory and its guard, tables, the async
/// stack and its guard, instance data), measured: the 10,000-device density bench ran out
/// at about 9,500 instances under Linux's default limit of 65,530.
const MAPPINGS_PER_INSTANCE: u64 = 7;

/// Says at start, not at the 9,000th device, when the kernel's `vm.max_map_count` cannot
/// hold `max_instances` instances: past it, instantiation fails with "Cannot allocate
/// memory" however much memory is free.
fn warn_if_mappings_run_out(max_instances: u32) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/vm/max_map_count") else {
        return;
    };
    let Ok(limit) = text.trim().parse::<u64>() else {
        return;
    };
    let needed = mappings_needed(max_instances);
    if needed > limit {
        tracing::warn!(
            max_instances,
            vm_max_map_count = limit,
            needed,
            "the kernel allows too few memory mappings for this many adaptor instances; raise vm.max_map_count (sysctl) to at least {needed}"
        );
    }
}

/// Mappings `max_instances` instances need, with room for the limb itself.
fn mappings_needed(max_instances: u32) -> u64 {
    u64::from(max_instances) * MAPPINGS_PER_INSTANCE + 4096
}

fn base_config(pool: Option<&Settings>) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    // We do not use component-model async; turning it off makes every call cheaper.
    c.concurrency_support(false);
    // One compile runs on one thread: in parallel, a big component's functions fill
    // every core's queue and a small adaptor dropped at the same time waits for all of
    // them (measured: a dummy adaptor finished with a 6 s compile instead of in 0.5 s);
    // the compile pool bounds how many run at once.
    c.parallel_compilation(false);
    if let Some(s) = pool {
        let n = s.max_instances.max(1);
        let mut p = PoolingAllocationConfig::default();
        // Guests built with language runtimes use many core instances per component
        // (Python ~14, QuickJS ~11), so size core capacity generously.
        p.total_component_instances(n)
            .total_core_instances(n.saturating_mul(16))
            .total_memories(n.saturating_mul(4))
            .total_tables(n.saturating_mul(16))
            .total_stacks(n)
            .max_memory_size(s.memory_limit);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    }
    c
}

fn spawn_ticker(engine: Engine, tick: Duration, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("limb-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch ticker; adaptor calls will not be interrupted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_modes_name_the_architecture_or_the_interpreter() {
        let cases = [
            (false, "x86_64", 64, "cranelift (x86_64)", "x86_64"),
            (false, "aarch64", 64, "cranelift (aarch64)", "aarch64"),
            (true, "arm", 32, "pulley32 interpreter", "pulley"),
            (true, "x86_64", 64, "pulley64 interpreter", "pulley"),
        ];
        for (pulley, arch, bits, shown, tag) in cases {
            let m = mode_for(pulley, arch, bits);
            assert_eq!(m.to_string(), shown);
            assert_eq!(m.tag(), tag);
        }
    }

    #[test]
    fn the_limb_reports_the_mode_of_the_engine_it_makes() {
        let runtime = Runtime::new(Settings::default()).unwrap();
        assert_eq!(execution_mode(), Some(execution_mode_of(runtime.engine())));
        // wasmtime interprets only where Cranelift has no backend for the host.
        let interpreted = !matches!(
            std::env::consts::ARCH,
            "x86_64" | "aarch64" | "s390x" | "riscv64"
        );
        assert_eq!(runtime.engine().is_pulley(), interpreted);
    }
}
