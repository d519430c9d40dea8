//! The Octopus Modbus adaptor as a WebAssembly component.
//!
//! It serves `ModbusDevice` (`devices.edge.cattle.io/v1alpha1`) for
//! `adaptors.edge.cattle.io/modbus`: a Modbus TCP or RTU slave whose coils and
//! registers are the device's properties. Every poll writes the values that changed,
//! reads all properties in as few requests as possible and reports them as
//! `{"properties": [{name, type, value, operatedValue, updatedAt, error}]}`.
//!
//! `configure` connects and performs pending writes right away so that a new setpoint
//! does not wait a poll interval. An unreachable device is not a configuration error:
//! `configure` still succeeds, and polls retry and report the problem (the status is
//! pushed through `events.report-status` and the poll fails with `unreachable`). A
//! refused grant, which retrying cannot fix, fails `configure` with `not-permitted`.
//!
//! Module map: `spec` parses and validates, `value` converts typed values, `codec` is
//! the wire format, `plan` batches reads, `engine` runs a poll against a `Bus`,
//! `transport` is that bus over the host's sockets and serial ports, `state` is what
//! survives polls and hot swaps.

mod codec;
mod engine;
mod plan;
mod spec;
mod state;
mod transport;
mod value;

/// The parsers and codecs, public only for the fuzz targets in `fuzz/`; not an API.
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz {
    pub mod codec {
        pub use crate::codec::*;
    }
    pub mod value {
        pub use crate::value::*;
    }
    pub mod spec {
        pub use crate::spec::*;
    }
}

use std::cell::RefCell;

use exports::octopus::adaptor::driver::{
    AdaptorError, AdaptorInfo, DeviceConfig, DeviceSettings, Guest,
};
use octopus::adaptor::clock;
use octopus::adaptor::events::{self, EventType};
use octopus::adaptor::log::{self, Level};
use octopus::adaptor::types::{Model, ModelInfo, ResourceField, ResourceKind};

use engine::{BusError, Engine, Failure};
use spec::Link;
use state::Memory;
use transport::{RTU_GRANT, TCP_GRANT, Transport};

use octopus_adaptor_sdk::{duration, time};

wit_bindgen::generate!({
    path: "../../wit",
    world: "adaptor",
});

const NAME: &str = "adaptors.edge.cattle.io/modbus";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
const KIND: &str = "ModbusDevice";

/// The configured device.
struct Device {
    /// `namespace/name`, for log lines.
    name: String,
    engine: Engine,
    transport: Transport,
    /// Whether the last attempt found the device unreachable; logs only transitions.
    unreachable: bool,
}

/// Everything one instance (one device) holds. `memory` is separate from the device
/// because `restore` fills it before `configure` creates the device.
#[derive(Default)]
struct Instance {
    memory: Memory,
    device: Option<Device>,
    /// This poll's `updatedAt`, kept to reuse its allocation.
    now: String,
}

impl Instance {
    fn apply(
        &mut self,
        config: &DeviceConfig,
        first: bool,
    ) -> Result<DeviceSettings, AdaptorError> {
        if config.model.api_version != API_VERSION || config.model.kind != KIND {
            return Err(AdaptorError::InvalidSpec(format!(
                "unsupported model {}/{}: this adaptor serves {API_VERSION}/{KIND}",
                config.model.api_version, config.model.kind
            )));
        }
        let spec = spec::parse(&config.spec).map_err(|e| AdaptorError::InvalidSpec(e.0))?;
        let settings = DeviceSettings {
            poll_interval_ms: Some(spec.poll_interval_ms),
        };
        let name = format!("{}/{}", config.device.namespace, config.device.name);
        let (transport, unreachable) = match self.device.take() {
            Some(old) => {
                let mut transport = old.transport;
                transport.update(&spec);
                (transport, old.unreachable)
            }
            None => (Transport::new(&spec), false),
        };
        self.memory.retain_for(&spec.properties);
        let engine = Engine::new(spec);
        let line = summary(&name, &engine);
        let mut device = Device {
            name,
            engine,
            transport,
            unreachable,
        };
        let failure = match device.transport.connect() {
            Ok(()) => device
                .engine
                .write_pending(&mut self.memory, &mut device.transport),
            Err(BusError::Denied(message)) => Some(Failure::Denied(message)),
            Err(other) => Some(Failure::Unreachable(other.to_string())),
        };
        match failure {
            Some(Failure::Denied(message)) => {
                log::log(Level::Warn, &format!("{}: {message}", device.name));
                return Err(AdaptorError::NotPermitted(message));
            }
            Some(Failure::Unreachable(message)) => {
                log::log(
                    Level::Warn,
                    &format!(
                        "{} is unreachable, polls will retry: {message}",
                        device.name
                    ),
                );
                device.unreachable = true;
            }
            None => {}
        }
        if first {
            log::log(Level::Info, &format!("configured {line}"));
            events::record_event(EventType::Normal, "Configured", &line);
        } else {
            log::log(Level::Info, &format!("reconfigured {line}"));
        }
        self.device = Some(device);
        Ok(settings)
    }

    fn poll(&mut self) -> Result<String, AdaptorError> {
        let device = self
            .device
            .as_mut()
            .ok_or_else(|| AdaptorError::Internal("the device is not configured yet".to_owned()))?;
        self.now.clear();
        time::write_rfc3339(&mut self.now, clock::now_ms());
        let outcome = device
            .engine
            .poll(&mut self.memory, &mut device.transport, &self.now);
        let status = outcome.status;
        let Some(failure) = outcome.failure else {
            if device.unreachable {
                device.unreachable = false;
                log::log(Level::Info, &format!("{} is reachable again", device.name));
            }
            return Ok(status);
        };
        // The error alone would leave the status stale; push the per-property errors.
        events::report_status(&status);
        let (error, message) = match failure {
            Failure::Unreachable(m) => (AdaptorError::Unreachable(m.clone()), m),
            Failure::Denied(m) => (AdaptorError::NotPermitted(m.clone()), m),
        };
        if !device.unreachable {
            device.unreachable = true;
            log::log(
                Level::Warn,
                &format!("{} is unreachable: {message}", device.name),
            );
        }
        Err(error)
    }
}

/// One line describing a configured device, for the log and the `Configured` event.
fn summary(name: &str, engine: &Engine) -> String {
    let spec = engine.spec();
    let link = match &spec.link {
        Link::Tcp { endpoint } => format!("Modbus TCP {endpoint}"),
        Link::Rtu { endpoint, line } => format!("Modbus RTU {endpoint} at {} baud", line.baud_rate),
    };
    format!(
        "{KIND} {name}: {link}, slave {}, {} properties read in {} requests; polling every {} ms",
        spec.unit,
        spec.properties.len(),
        engine.batch_count(),
        spec.poll_interval_ms
    )
}

thread_local! {
    static INSTANCE: RefCell<Instance> = RefCell::new(Instance::default());
}

fn with_instance<R>(f: impl FnOnce(&mut Instance) -> R) -> R {
    INSTANCE.with_borrow_mut(f)
}

struct Modbus;

impl Guest for Modbus {
    fn describe() -> AdaptorInfo {
        AdaptorInfo {
            name: NAME.to_owned(),
            version: VERSION.to_owned(),
            models: vec![ModelInfo {
                model: Model {
                    api_version: API_VERSION.to_owned(),
                    kind: KIND.to_owned(),
                },
                resource_fields: vec![
                    ResourceField {
                        path: TCP_GRANT.to_owned(),
                        kind: ResourceKind::Tcp,
                    },
                    ResourceField {
                        path: RTU_GRANT.to_owned(),
                        kind: ResourceKind::Serial,
                    },
                ],
            }],
        }
    }

    fn configure(config: DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
        with_instance(|instance| instance.apply(&config, true))
    }

    fn reconfigure(config: DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
        with_instance(|instance| {
            let first = instance.device.is_none();
            instance.apply(&config, first)
        })
    }

    fn poll() -> Result<String, AdaptorError> {
        with_instance(Instance::poll)
    }

    fn snapshot() -> Result<Vec<u8>, AdaptorError> {
        Ok(with_instance(|instance| {
            instance
                .memory
                .to_snapshot(VERSION)
                .to_string()
                .into_bytes()
        }))
    }

    fn restore(state: Vec<u8>, from_version: String) -> Result<(), AdaptorError> {
        let memory = Memory::from_snapshot(&state).map_err(AdaptorError::IncompatibleState)?;
        with_instance(|instance| {
            instance.memory = memory;
            if let Some(device) = &instance.device {
                instance.memory.retain_for(&device.engine.spec().properties);
            }
        });
        log::log(
            Level::Info,
            &format!("restored state of version {from_version}"),
        );
        Ok(())
    }

    fn shutdown() {
        if let Some(mut device) = with_instance(|instance| instance.device.take()) {
            device.transport.close();
            log::log(Level::Info, &format!("shut down {}", device.name));
        }
    }
}

// Only in the component: natively (unit tests, the fuzz targets in `fuzz/`) the crate
// also links as a cdylib, whose linker version script cannot hold WIT export names.
#[cfg(target_family = "wasm")]
export!(Modbus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_declares_both_endpoints_as_grants() {
        let info = Modbus::describe();
        assert_eq!(info.name, NAME);
        let [model] = info.models.as_slice() else {
            panic!("one model")
        };
        assert_eq!(
            (model.model.api_version.as_str(), model.model.kind.as_str()),
            (API_VERSION, KIND)
        );
        let fields: Vec<(&str, bool)> = model
            .resource_fields
            .iter()
            .map(|f| (f.path.as_str(), matches!(f.kind, ResourceKind::Serial)))
            .collect();
        assert_eq!(
            fields,
            [
                ("protocol.tcp.endpoint", false),
                ("protocol.rtu.endpoint", true)
            ]
        );
    }

    #[test]
    fn poll_before_configure_fails() {
        assert!(matches!(
            Instance::default().poll(),
            Err(AdaptorError::Internal(_))
        ));
    }
}
