//! What [`crate::export_adaptor!`] expands to calls: conversions between the generated
//! WIT types and the SDK's, around one [`Instance`] per component. Not an API.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::bindings::exports::octopus::adaptor::driver as wit;
use crate::bindings::octopus::adaptor::types as witty;
use crate::device::Device;
use crate::error::Error;
use crate::info::{DeviceIdentity, Model, Reference, ResourceKind, Settings};
use crate::runtime::{DeviceConfig, Instance};

/// Where the macro keeps the instance: the component is single-threaded, so a
/// thread-local `RefCell` is the whole synchronisation.
pub type Slot<D> = LocalKey<RefCell<Instance<D>>>;

type WitResult<T> = Result<T, wit::AdaptorError>;

/// Runs `f` on the instance. The contract never re-enters a component, so a busy
/// `RefCell` would be a host bug; it is reported, not panicked on.
fn with<D: Device, T>(
    slot: &'static Slot<D>,
    f: impl FnOnce(&mut Instance<D>) -> Result<T, Error>,
) -> WitResult<T> {
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut instance) => f(&mut instance).map_err(Into::into),
        Err(_) => Err(wit::AdaptorError::Internal(
            "the adaptor was re-entered".to_owned(),
        )),
    })
}

pub fn describe<D: Device>() -> wit::AdaptorInfo {
    let info = D::describe();
    witty::AdaptorInfo {
        name: info.name,
        version: info.version,
        models: info
            .models
            .into_iter()
            .map(|m| witty::ModelInfo {
                model: witty::Model {
                    api_version: m.model.api_version,
                    kind: m.model.kind,
                },
                resource_fields: m
                    .resource_fields
                    .into_iter()
                    .map(|f| witty::ResourceField {
                        path: f.path,
                        kind: match f.kind {
                            ResourceKind::Tcp => witty::ResourceKind::Tcp,
                            ResourceKind::Udp => witty::ResourceKind::Udp,
                            ResourceKind::Serial => witty::ResourceKind::Serial,
                            ResourceKind::Gpio => witty::ResourceKind::Gpio,
                        },
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn config(config: wit::DeviceConfig) -> DeviceConfig {
    DeviceConfig {
        model: Model::new(config.model.api_version, config.model.kind),
        device: DeviceIdentity {
            namespace: config.device.namespace,
            name: config.device.name,
            uid: config.device.uid,
        },
        spec: config.spec,
        references: config
            .references
            .into_iter()
            .map(|r| Reference {
                reference: r.reference,
                item: r.item,
                value: r.value,
            })
            .collect(),
    }
}

fn settings(settings: Settings) -> wit::DeviceSettings {
    witty::DeviceSettings {
        poll_interval_ms: settings.poll_interval_ms,
    }
}

pub fn configure<D: Device>(
    slot: &'static Slot<D>,
    c: wit::DeviceConfig,
) -> WitResult<wit::DeviceSettings> {
    with(slot, |i| i.configure(config(c)).map(settings))
}

pub fn reconfigure<D: Device>(
    slot: &'static Slot<D>,
    c: wit::DeviceConfig,
) -> WitResult<wit::DeviceSettings> {
    with(slot, |i| i.reconfigure(config(c)).map(settings))
}

pub fn poll<D: Device>(slot: &'static Slot<D>) -> WitResult<String> {
    with(slot, Instance::poll)
}

pub fn snapshot<D: Device>(slot: &'static Slot<D>) -> WitResult<Vec<u8>> {
    with(slot, |i| i.snapshot())
}

pub fn restore<D: Device>(
    slot: &'static Slot<D>,
    state: Vec<u8>,
    from_version: String,
) -> WitResult<()> {
    with(slot, |i| i.restore(&state, &from_version))
}

pub fn shutdown<D: Device>(slot: &'static Slot<D>) {
    let _ = with(slot, |i| {
        i.shutdown();
        Ok(())
    });
}
