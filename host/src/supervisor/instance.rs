//! One adaptor instance driving one device, with every guest call under a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::Context;
use super::driver::{CallError, Connect, Driver, STOPPED};
use crate::adaptors::{Adaptor, describe_trap};
use crate::bindings::{self, AdaptorError, DeviceConfig, DeviceSettings};
use crate::capabilities::{Capabilities, Grants};
use crate::engine::{CpuAccount, DeviceTag, Outbox, Scheduler, Stop, StoreState};

/// Extra time past the epoch deadline before the call's future is abandoned; only a
/// host import that ignores its own timeout could need it.
const GRACE: Duration = Duration::from_secs(2);

/// An adaptor error whose message is over [`crate::bounds::MAX_EVENT_MESSAGE`] is
/// replaced by one that says so: the message would be repeated into conditions, events
/// and every status output.
fn bounded(err: AdaptorError) -> AdaptorError {
    use AdaptorError as E;
    let message = match &err {
        E::InvalidSpec(m)
        | E::NotPermitted(m)
        | E::Unreachable(m)
        | E::Protocol(m)
        | E::IncompatibleState(m)
        | E::Internal(m) => m,
    };
    match crate::bounds::check(
        "the adaptor's error message",
        message,
        crate::bounds::MAX_EVENT_MESSAGE,
    ) {
        Ok(()) => err,
        Err(too_long) => E::Internal(too_long.to_string()),
    }
}

/// The wasm implementation of [`Connect`] for one device: instances share the
/// runtime, and every call ends when the device's `stop` is set.
pub struct Wasm {
    pub ctx: Arc<Context>,
    pub tag: DeviceTag,
    pub stop: Arc<Stop>,
}

impl Connect for Wasm {
    type Version = Adaptor;
    type Driver = Instance;

    async fn connect(
        &self,
        version: Arc<Adaptor>,
        grants: Arc<Grants>,
    ) -> Result<Instance, CallError> {
        Instance::stoppable(
            &self.ctx,
            version,
            self.tag.clone(),
            grants,
            self.stop.clone(),
        )
        .await
    }
}

impl Driver for Instance {
    type Version = Adaptor;

    fn version(&self) -> &Arc<Adaptor> {
        &self.adaptor
    }
    async fn configure(&mut self, config: &DeviceConfig) -> Result<DeviceSettings, CallError> {
        Instance::configure(self, config).await
    }
    async fn reconfigure(&mut self, config: &DeviceConfig) -> Result<DeviceSettings, CallError> {
        Instance::reconfigure(self, config).await
    }
    async fn poll(&mut self) -> Result<String, CallError> {
        Instance::poll(self).await
    }
    async fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        Instance::snapshot(self).await
    }
    async fn restore(&mut self, state: &[u8], from_version: &str) -> Result<(), CallError> {
        Instance::restore(self, state, from_version).await
    }
    async fn shutdown(self) {
        Instance::shutdown(self).await;
    }
    fn take_outbox(&mut self) -> Outbox {
        Instance::take_outbox(self)
    }
}

pub struct Instance {
    store: Store<StoreState>,
    bindings: bindings::Adaptor,
    pub adaptor: Arc<Adaptor>,
    timeout: Duration,
    shutdown_timeout: Duration,
    runtime: Arc<crate::engine::Runtime>,
    cpu: CpuAccount,
    stop: Arc<Stop>,
}

/// How a guarded call ended, before it is mapped to a [`CallError`].
enum Ended<T> {
    Returned(wasmtime::Result<Result<T, AdaptorError>>),
    /// Past the deadline and the grace period: the future was abandoned.
    Abandoned,
    /// The device kept spending its whole CPU budget.
    Exhausted(crate::engine::Exhausted),
    /// The device was removed.
    Stopped,
}

/// Runs `call` charged to `cpu`, under `timeout` plus grace, until a short grace (250 ms) after `stop` is set.
async fn run_guarded<T>(
    scheduler: &Scheduler,
    cpu: &mut CpuAccount,
    stop: Option<&Stop>,
    timeout: Duration,
    call: impl Future<Output = wasmtime::Result<Result<T, AdaptorError>>>,
) -> Ended<T> {
    let metered = crate::engine::budget::metered(scheduler, cpu, call);
    let guarded = async {
        match tokio::time::timeout(timeout + GRACE, metered).await {
            Ok(Ok(out)) => Ended::Returned(out),
            Ok(Err(exhausted)) => Ended::Exhausted(exhausted),
            Err(_) => Ended::Abandoned,
        }
    };
    match stop {
        Some(stop) => tokio::select! {
            biased;
            () = stop.wait_past_grace() => Ended::Stopped,
            ended = guarded => ended,
        },
        None => guarded.await,
    }
}

/// Runs one export under the store's deadline, the device's CPU budget and its stop
/// switch, and maps every way it can fail. The second form names the deadline and the
/// stop switch (`shutdown` has its own deadline and is not stopped).
macro_rules! guarded {
    ($self:ident, $name:literal, |$driver:ident, $store:ident| $call:expr) => {
        guarded!(
            $self,
            $name,
            $self.timeout,
            Some(&$self.stop),
            |$driver, $store| $call
        )
    };
    ($self:ident, $name:literal, $timeout:expr, $stop:expr, |$driver:ident, $store:ident| $call:expr) => {{
        let started = Instant::now();
        let timeout = $timeout;
        $self.store.data_mut().arm(timeout);
        let $driver = $self.bindings.octopus_adaptor_driver();
        let $store = &mut $self.store;
        let out = run_guarded(
            $self.runtime.scheduler(),
            &mut $self.cpu,
            $stop,
            timeout,
            $call,
        )
        .await;
        $self.store.data_mut().disarm();
        $self.finish($name, started, timeout, out)
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
        Self::stoppable(ctx, adaptor, device, grants, Arc::default()).await
    }

    /// Like [`Instance::new`]; setting `stop` ends any call of this instance after a short grace (250 ms).
    pub async fn stoppable(
        ctx: &Context,
        adaptor: Arc<Adaptor>,
        device: DeviceTag,
        grants: Arc<Grants>,
        stop: Arc<Stop>,
    ) -> Result<Self, CallError> {
        let caps = Capabilities::new(
            grants,
            ctx.policy.clone(),
            ctx.limits.clone(),
            ctx.backends.clone(),
        )
        .for_device(device.0.clone());
        let mut store = StoreState::new_stoppable_store(
            &ctx.runtime,
            device,
            &adaptor.info.name,
            caps,
            Some(ctx.metrics.clone()),
            stop.clone(),
        );
        let settings = ctx.runtime.settings();
        let (timeout, shutdown_timeout) = (settings.call_timeout, settings.shutdown_timeout);
        let mut cpu = ctx.runtime.scheduler().account(Instant::now());
        store.data_mut().arm(timeout);
        let out = run_guarded(
            ctx.runtime.scheduler(),
            &mut cpu,
            Some(&stop),
            timeout,
            async { adaptor.pre.instantiate_async(&mut store).await.map(Ok) },
        )
        .await;
        store.data_mut().disarm();
        match out {
            Ended::Returned(Ok(Ok(bindings))) => Ok(Self {
                store,
                bindings,
                adaptor,
                timeout,
                shutdown_timeout,
                runtime: ctx.runtime.clone(),
                cpu,
                stop,
            }),
            Ended::Returned(Ok(Err(never))) => Err(CallError::Adaptor(never)),
            Ended::Returned(Err(e)) => Err(CallError::Trap(format!(
                "instantiation failed: {}",
                describe_trap(&e, store.data())
            ))),
            Ended::Abandoned => Err(CallError::Trap(format!(
                "instantiation did not finish within {timeout:?}"
            ))),
            Ended::Exhausted(e) => Err(CallError::CpuExhausted(format!("in instantiation: {e}"))),
            Ended::Stopped => Err(CallError::Trap(STOPPED.into())),
        }
    }

    fn finish<T>(
        &mut self,
        call: &'static str,
        started: Instant,
        timeout: Duration,
        out: Ended<T>,
    ) -> Result<T, CallError> {
        let (result, outcome) = match out {
            Ended::Returned(Ok(Ok(v))) => (Ok(v), "ok"),
            Ended::Returned(Ok(Err(e))) => (Err(CallError::Adaptor(bounded(e))), "error"),
            Ended::Returned(Err(trap)) => (
                Err(CallError::Trap(describe_trap(&trap, self.store.data()))),
                "trap",
            ),
            Ended::Abandoned => (
                Err(CallError::Trap(format!(
                    "{call} did not return within {:?}",
                    timeout + GRACE
                ))),
                "trap",
            ),
            Ended::Exhausted(e) => (Err(CallError::CpuExhausted(e.to_string())), "trap"),
            Ended::Stopped => (Err(CallError::Trap(STOPPED.into())), "stopped"),
        };
        self.store.data_mut().record_call(
            call,
            outcome,
            started.elapsed().as_secs_f64(),
            &self.cpu,
        );
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

    /// The adaptor's state for a new version; larger than
    /// [`crate::bounds::MAX_SNAPSHOT`] is refused (the limb would hold it during the swap).
    pub async fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        let state = guarded!(self, "snapshot", |d, s| d.call_snapshot(s))?;
        crate::bounds::check_len("the snapshot", state.len(), crate::bounds::MAX_SNAPSHOT)
            .map_err(|e| CallError::Adaptor(AdaptorError::Internal(e.to_string())))?;
        Ok(state)
    }

    pub async fn restore(&mut self, state: &[u8], from_version: &str) -> Result<(), CallError> {
        guarded!(self, "restore", |d, s| d.call_restore(
            s,
            state,
            from_version
        ))
    }

    /// Asks the adaptor to disconnect, under its own short deadline (`shutdown_timeout`)
    /// and not interrupted by the stop switch; failures only get logged, the instance is
    /// dropped either way.
    pub async fn shutdown(mut self) {
        self.store.data_mut().shield();
        let r: Result<(), CallError> = guarded!(
            self,
            "shutdown",
            self.shutdown_timeout,
            None,
            |d, s| async { d.call_shutdown(s).await.map(Ok::<(), AdaptorError>) }
        );
        if let Err(e) = r {
            let error = crate::bounds::escape(&e.to_string()).into_owned();
            tracing::info!(device = %self.store.data().device(), %error, "shutdown did not finish cleanly");
        }
    }

    /// Takes what the guest pushed during the last call.
    pub fn take_outbox(&mut self) -> Outbox {
        self.store.data_mut().take_outbox()
    }

    pub fn open_handles(&self) -> usize {
        self.store.data().capabilities().open_handles()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_over_long_error_message_is_replaced_by_one_that_says_so() {
        let short = AdaptorError::Unreachable("no answer".into());
        assert_eq!(
            bindings::Explain(&bounded(short)).to_string(),
            bindings::Explain(&AdaptorError::Unreachable("no answer".into())).to_string()
        );
        let long = AdaptorError::Protocol("x".repeat(5 << 20));
        let AdaptorError::Internal(m) = bounded(long) else {
            panic!("replaced")
        };
        assert_eq!(
            m,
            "the adaptor's error message is 5242880 bytes long, over the limit of 1024"
        );
    }
}
