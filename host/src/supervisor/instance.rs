//! One adaptor instance driving one device, with every guest call under a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::Context;
use crate::adaptors::Adaptor;
use crate::bindings::{self, AdaptorError, DeviceConfig, DeviceSettings};
use crate::capabilities::{Capabilities, Grants};
use crate::engine::{DeviceTag, StoreState};

/// Extra time past the epoch deadline before the call's future is abandoned; only a
/// host import that ignores its own timeout could need it.
const GRACE: Duration = Duration::from_secs(2);

/// Why a guest call did not produce a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The adaptor returned an error; the instance is still usable.
    #[error("{}", bindings::Explain(.0))]
    Adaptor(AdaptorError),
    /// The instance trapped (or was interrupted); it must be dropped.
    #[error("trapped: {0}")]
    Trap(String),
}

impl CallError {
    /// Whether the instance is dead after this error.
    pub fn is_trap(&self) -> bool {
        matches!(self, Self::Trap(_))
    }
}

/// Words a trap the way an operator needs to read it.
pub fn describe_trap(err: &wasmtime::Error, state: &StoreState) -> String {
    if let Some(why) = state.limit_refusal() {
        return why.to_owned();
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            "deadline exceeded: the call ran past its time limit".into()
        }
        Some(wasmtime::Trap::StackOverflow) => "stack overflow".into(),
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "the adaptor panicked (wasm `unreachable` executed); see its stderr in the limb log"
                .into()
        }
        Some(t) => format!("wasm trap: {t}"),
        None => crate::capabilities::log::truncate(&format!("{err:#}"), 512).into_owned(),
    }
}

pub struct Instance {
    store: Store<StoreState>,
    bindings: bindings::Adaptor,
    pub adaptor: Arc<Adaptor>,
    timeout: Duration,
}

/// Runs one export under the store's deadline and maps every way it can fail.
macro_rules! guarded {
    ($self:ident, $name:literal, |$driver:ident, $store:ident| $call:expr) => {{
        let started = Instant::now();
        let timeout = $self.timeout;
        $self.store.data_mut().arm(timeout);
        let $driver = $self.bindings.octopus_adaptor_driver();
        let $store = &mut $self.store;
        let out = tokio::time::timeout(timeout + GRACE, $call).await;
        $self.store.data_mut().disarm();
        $self.finish($name, started, out)
    }};
}

impl Instance {
    /// Instantiates `adaptor` in a fresh store holding `grants`.
    pub async fn new(
        ctx: &Context,
        adaptor: Arc<Adaptor>,
        device: DeviceTag,
        grants: Arc<Grants>,
    ) -> Result<Self, CallError> {
        let caps = Capabilities::new(
            grants,
            ctx.policy.clone(),
            ctx.limits.clone(),
            ctx.backends.clone(),
        );
        let mut store = StoreState::new_store(
            &ctx.runtime,
            device,
            &adaptor.info.name,
            caps,
            Some(ctx.metrics.clone()),
        );
        let timeout = ctx.runtime.settings().call_timeout;
        store.data_mut().arm(timeout);
        let out =
            tokio::time::timeout(timeout + GRACE, adaptor.pre.instantiate_async(&mut store)).await;
        store.data_mut().disarm();
        match out {
            Ok(Ok(bindings)) => Ok(Self {
                store,
                bindings,
                adaptor,
                timeout,
            }),
            Ok(Err(e)) => Err(CallError::Trap(format!(
                "instantiation failed: {}",
                describe_trap(&e, store.data())
            ))),
            Err(_) => Err(CallError::Trap(format!(
                "instantiation did not finish within {timeout:?}"
            ))),
        }
    }

    fn finish<T>(
        &mut self,
        call: &'static str,
        started: Instant,
        out: Result<wasmtime::Result<Result<T, AdaptorError>>, tokio::time::error::Elapsed>,
    ) -> Result<T, CallError> {
        let (result, outcome) = match out {
            Ok(Ok(Ok(v))) => (Ok(v), "ok"),
            Ok(Ok(Err(e))) => (Err(CallError::Adaptor(e)), "error"),
            Ok(Err(trap)) => (
                Err(CallError::Trap(describe_trap(&trap, self.store.data()))),
                "trap",
            ),
            Err(_) => (
                Err(CallError::Trap(format!(
                    "{call} did not return within {:?}",
                    self.timeout + GRACE
                ))),
                "trap",
            ),
        };
        self.store
            .data_mut()
            .record_call(call, outcome, started.elapsed().as_secs_f64());
        result
    }

    pub async fn configure(&mut self, config: &DeviceConfig) -> Result<DeviceSettings, CallError> {
        guarded!(self, "configure", |d, s| d.call_configure(s, config))
    }

    pub async fn reconfigure(
        &mut self,
        config: &DeviceConfig,
    ) -> Result<DeviceSettings, CallError> {
        guarded!(self, "reconfigure", |d, s| d.call_reconfigure(s, config))
    }

    pub async fn poll(&mut self) -> Result<String, CallError> {
        guarded!(self, "poll", |d, s| d.call_poll(s))
    }

    pub async fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        guarded!(self, "snapshot", |d, s| d.call_snapshot(s))
    }

    pub async fn restore(&mut self, state: &[u8], from_version: &str) -> Result<(), CallError> {
        guarded!(self, "restore", |d, s| d.call_restore(
            s,
            state,
            from_version
        ))
    }

    /// Asks the adaptor to disconnect; failures only get logged, the instance is
    /// dropped either way.
    pub async fn shutdown(mut self) {
        let r: Result<(), CallError> = guarded!(self, "shutdown", |d, s| async {
            d.call_shutdown(s).await.map(Ok::<(), AdaptorError>)
        });
        if let Err(e) = r {
            tracing::debug!(device = %self.store.data().device(), error = %e, "shutdown failed");
        }
    }

    /// Takes what the guest pushed during the last call.
    pub fn take_outbox(&mut self) -> crate::engine::Outbox {
        self.store.data_mut().take_outbox()
    }

    pub fn open_handles(&self) -> usize {
        self.store.data().capabilities().open_handles()
    }
}
