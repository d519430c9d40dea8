//! What the supervisor needs of a running adaptor, as traits: start an instance of a
//! version ([`Connect`]), then call it ([`Driver`]). The wasm [`super::Instance`] is the
//! real implementation; the supervisor's tests drive a scripted fake, so its loop runs
//! without wasmtime.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

use crate::adaptors::Adaptor;
use crate::bindings::{self, AdaptorError, AdaptorInfo, DeviceConfig, DeviceSettings};
use crate::capabilities::Grants;
use crate::engine::Outbox;

/// Why a call ended when its device was removed (a [`CallError::Trap`]).
pub const STOPPED: &str = "stopped: the device was removed";

/// Why a guest call did not produce a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The adaptor returned an error; the instance is still usable.
    #[error("{}", bindings::Explain(.0))]
    Adaptor(AdaptorError),
    /// The instance trapped (or was interrupted); it must be dropped.
    #[error("trapped: {0}")]
    Trap(String),
    /// The device kept spending its whole CPU budget; the instance was stopped and
    /// must be dropped, like after a trap.
    #[error("stopped: {0}")]
    CpuExhausted(String),
}

impl CallError {
    /// Whether the instance is dead after this error.
    pub fn is_trap(&self) -> bool {
        matches!(self, Self::Trap(_) | Self::CpuExhausted(_))
    }
}

/// One loaded version of an adaptor: what the supervisor reads of it. `Display` names
/// it in events (`name version (digest)`).
pub trait Version: Display + Send + Sync + 'static {
    fn info(&self) -> &AdaptorInfo;
    /// sha256 of the component, hex: what tells two versions apart.
    fn digest(&self) -> &str;
    /// The digest as shown to people.
    fn short_digest(&self) -> &str;
    /// What is wrong with `status` by the schema this version declares for the model;
    /// empty when it declares none.
    fn status_problems(&self, _api_version: &str, _kind: &str, _status: &Value) -> Vec<String> {
        Vec::new()
    }
}

impl Version for Adaptor {
    fn info(&self) -> &AdaptorInfo {
        &self.info
    }
    fn digest(&self) -> &str {
        &self.digest
    }
    fn short_digest(&self) -> &str {
        Adaptor::short_digest(self)
    }
    fn status_problems(&self, api_version: &str, kind: &str, status: &Value) -> Vec<String> {
        let Some(schema) = self
            .declared(api_version, kind)
            .and_then(|d| d.status.as_ref())
        else {
            return Vec::new();
        };
        crds::structural::validate_values(schema, status, "status")
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

/// Starts instances for one device. Every call of what it starts ends at once, as a
/// trap, when the device is removed.
pub trait Connect: Send + Sync + 'static {
    type Version: Version;
    type Driver: Driver<Version = Self::Version>;

    /// Instantiates `version` holding `grants`.
    fn connect(
        &self,
        version: Arc<Self::Version>,
        grants: Arc<Grants>,
    ) -> impl Future<Output = Result<Self::Driver, CallError>> + Send;
}

/// One instance of an adaptor driving one device: the adaptor's exports, each under
/// the host's deadline. An instance is dead after a call ends in a trap.
pub trait Driver: Send + 'static {
    type Version: Version;

    /// The version this instance runs.
    fn version(&self) -> &Arc<Self::Version>;

    fn configure(
        &mut self,
        config: &DeviceConfig,
    ) -> impl Future<Output = Result<DeviceSettings, CallError>> + Send;

    fn reconfigure(
        &mut self,
        config: &DeviceConfig,
    ) -> impl Future<Output = Result<DeviceSettings, CallError>> + Send;

    /// The device's status document.
    fn poll(&mut self) -> impl Future<Output = Result<String, CallError>> + Send;

    /// The adaptor's state, for a new version or a new instance.
    fn snapshot(&mut self) -> impl Future<Output = Result<Vec<u8>, CallError>> + Send;

    fn restore(
        &mut self,
        state: &[u8],
        from_version: &str,
    ) -> impl Future<Output = Result<(), CallError>> + Send;

    /// Asks the adaptor to disconnect; the instance is dropped either way.
    fn shutdown(self) -> impl Future<Output = ()> + Send;

    /// Takes what the guest pushed (status, events) during the last call.
    fn take_outbox(&mut self) -> Outbox;
}
