//! The layer under [`Device`]: the whole component instance, as the contract calls it.
//! For adaptors whose state does not fit one device value: state restored before
//! `configure` that `configure` itself needs (pending writes, subscriptions), a
//! connection handed from the old spec to the new one, a device kept installed when
//! `configure` fails, or a status written by hand. They keep their own instance and
//! still get the bindings, the export, the model check and the error mapping.

use crate::device::Device;
use crate::error::Result;
use crate::info::{Info, Settings};
use crate::runtime::{DeviceConfig, Instance};

/// One component instance. [`crate::export_instance!`] exports a type implementing it;
/// [`Instance`] implements it for any [`Device`].
pub trait Adaptor: 'static {
    /// The instance before any call. A constant, so that the component keeps it in a
    /// plain static rather than one initialised on first use.
    const NEW: Self;

    /// Name, version and models. Must not touch capabilities.
    fn describe() -> Info;

    /// The contract's `configure`.
    fn configure(&mut self, config: DeviceConfig) -> Result<Settings>;

    /// The contract's `reconfigure`.
    fn reconfigure(&mut self, config: DeviceConfig) -> Result<Settings>;

    /// The contract's `poll`: the status, a JSON object.
    fn poll(&mut self) -> Result<String>;

    /// The contract's `snapshot`.
    fn snapshot(&self) -> Result<Vec<u8>>;

    /// The contract's `restore`.
    fn restore(&mut self, state: &[u8], from_version: &str) -> Result<()>;

    /// The contract's `shutdown`.
    fn shutdown(&mut self);
}

impl<D: Device> Adaptor for Instance<D> {
    const NEW: Self = Instance::new();

    fn describe() -> Info {
        D::describe()
    }

    fn configure(&mut self, config: DeviceConfig) -> Result<Settings> {
        Instance::configure(self, config)
    }

    fn reconfigure(&mut self, config: DeviceConfig) -> Result<Settings> {
        Instance::reconfigure(self, config)
    }

    fn poll(&mut self) -> Result<String> {
        Instance::poll(self)
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        Instance::snapshot(self)
    }

    fn restore(&mut self, state: &[u8], from_version: &str) -> Result<()> {
        Instance::restore(self, state, from_version)
    }

    fn shutdown(&mut self) {
        Instance::shutdown(self);
    }
}
