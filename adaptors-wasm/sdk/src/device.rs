//! The trait an adaptor implements. One value of it is one configured device; the SDK
//! owns it between calls, so the adaptor holds no globals of its own.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::info::{Context, Info, Settings};

/// A device driven by the adaptor. The SDK parses the spec into [`Device::Spec`], calls
/// these methods in the contract's order and converts results and errors at the
/// boundary. Export it with [`crate::export_adaptor!`].
pub trait Device: Sized + 'static {
    /// The DeviceLink's `template.spec`, parsed with serde. Wrong fields become
    /// `invalid-spec` naming the field; check ranges in `configure` with
    /// [`crate::spec::in_range`].
    type Spec: DeserializeOwned + 'static;
    /// What `poll` reports; must serialise to a JSON object.
    type Status: Serialize;
    /// What survives a hot swap (and a `reconfigure` by rebuild): a struct, a JSON
    /// object on the wire.
    /// Decoding failures in `restore` are `incompatible-state` naming the field.
    type State: Serialize + DeserializeOwned + 'static;

    /// Name, version and models. Must not touch capabilities.
    fn describe() -> Info;

    /// Builds the device from a spec. Connect lazily in `poll` where possible, so that
    /// an unreachable device is a retried poll error rather than a failed configure.
    fn configure(spec: Self::Spec, ctx: &Context) -> Result<(Self, Settings)>;

    /// Applies a changed spec. The default rebuilds the device with `configure` and
    /// carries the state over through `snapshot`/`restore`; override it to keep
    /// connections whose settings did not change. On error the device is unchanged.
    fn reconfigure(&mut self, spec: Self::Spec, ctx: &Context) -> Result<Settings> {
        let (mut fresh, settings) = Self::configure(spec, ctx)?;
        fresh.restore(self.snapshot());
        self.shutdown();
        *self = fresh;
        Ok(settings)
    }

    /// Reads the device.
    fn poll(&mut self) -> Result<Self::Status>;

    /// The state to hand over.
    fn snapshot(&self) -> Self::State;

    /// Takes over state from a previous instance. Called right after `configure` (the
    /// contract's `restore` comes first; the SDK holds the state until then).
    fn restore(&mut self, state: Self::State);

    /// What `snapshot` hands over when no device was configured and no state was
    /// restored (an instance whose spec was refused, caught in a hot swap). `None`, the
    /// default, makes that snapshot an `internal` error.
    fn unconfigured_state() -> Option<Self::State> {
        None
    }

    /// Refuses state the device cannot take over even though it decoded, e.g. from a
    /// `from_version` with other semantics. Runs inside the contract's `restore`, so an
    /// error keeps the old version serving.
    fn check_state(state: &Self::State, from_version: &str) -> Result<()> {
        let _ = (state, from_version);
        Ok(())
    }

    /// Releases connections; the instance is dropped afterwards.
    fn shutdown(&mut self) {}
}
