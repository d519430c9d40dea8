//! What [`crate::export_adaptor!`] expands to calls: conversions between the generated
//! WIT types and the SDK's, around one [`Adaptor`] per component. Not an API.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::adaptor::Adaptor;
use crate::bindings::exports::octopus::adaptor::driver as wit;
use crate::bindings::exports::octopus::adaptor::models;
use crate::bindings::octopus::adaptor::types as witty;
use crate::error::Error;
use crate::info::{DeviceIdentity, Model, ResourceKind, Settings};
use crate::runtime::DeviceConfig;

/// Where the macro keeps the instance: the component is single-threaded, so a
/// thread-local `RefCell` is the whole synchronisation.
pub type Slot<A> = LocalKey<RefCell<A>>;

type WitResult<T> = Result<T, wit::AdaptorError>;

/// Runs `f` on the instance. The contract never re-enters a component, so a busy
/// `RefCell` would be a host bug; it is reported, not panicked on.
fn with<A: Adaptor, T>(
    slot: &'static Slot<A>,
    f: impl FnOnce(&mut A) -> Result<T, Error>,
) -> WitResult<T> {
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut instance) => f(&mut instance).map_err(Into::into),
        Err(_) => Err(wit::AdaptorError::Internal(
            "the adaptor was re-entered".to_owned(),
        )),
    })
}

pub fn describe<A: Adaptor>() -> wit::AdaptorInfo {
    let info = A::describe();
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

/// The declared schemas; a declaration that does not parse is logged and left out, so
/// its model is served unchecked rather than the adaptor refused.
pub fn describe_models<A: Adaptor>() -> Vec<models::ModelSchema> {
    let info = A::describe();
    let mut out = Vec::new();
    for m in &info.models {
        let Some(json) = m.declaration else { continue };
        match crate::declare::parse(&m.model, json) {
            Ok(d) => out.push(models::ModelSchema {
                model: witty::Model {
                    api_version: d.model.api_version,
                    kind: d.model.kind,
                },
                description: d.description,
                spec: d.spec,
                status: d.status,
                short_names: d.short_names,
                categories: d.categories,
                printer_columns: d
                    .columns
                    .into_iter()
                    .map(|c| models::PrinterColumn {
                        name: c.name,
                        json_path: c.json_path,
                        type_: c.type_,
                        format: c.format,
                        description: c.description,
                        priority: c.priority,
                    })
                    .collect(),
            }),
            Err(e) => crate::log::log(crate::log::Level::Error, &e.to_string()),
        }
    }
    out
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
        references: config.references,
    }
}

fn settings(settings: Settings) -> wit::DeviceSettings {
    witty::DeviceSettings {
        poll_interval_ms: settings.poll_interval_ms,
    }
}

pub fn configure<A: Adaptor>(
    slot: &'static Slot<A>,
    c: wit::DeviceConfig,
) -> WitResult<wit::DeviceSettings> {
    with(slot, |i| i.configure(config(c)).map(settings))
}

pub fn reconfigure<A: Adaptor>(
    slot: &'static Slot<A>,
    c: wit::DeviceConfig,
) -> WitResult<wit::DeviceSettings> {
    with(slot, |i| i.reconfigure(config(c)).map(settings))
}

pub fn poll<A: Adaptor>(slot: &'static Slot<A>) -> WitResult<String> {
    with(slot, A::poll)
}

pub fn snapshot<A: Adaptor>(slot: &'static Slot<A>) -> WitResult<Vec<u8>> {
    with(slot, |i| i.snapshot())
}

pub fn restore<A: Adaptor>(
    slot: &'static Slot<A>,
    state: Vec<u8>,
    from_version: String,
) -> WitResult<()> {
    with(slot, |i| i.restore(&state, &from_version))
}

pub fn shutdown<A: Adaptor>(slot: &'static Slot<A>) {
    let _ = with(slot, |i| {
        i.shutdown();
        Ok(())
    });
}
