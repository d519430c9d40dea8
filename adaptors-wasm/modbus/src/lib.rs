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

use octopus_adaptor_sdk::{
    Adaptor, DeviceConfig, Error, Info, ModelInfo, ResourceKind, Result, Settings, clock, events,
    log,
};

use engine::{BusError, Engine, Failure};
use spec::Link;
use state::Memory;
use transport::{RTU_GRANT, TCP_GRANT, Transport};

use octopus_adaptor_sdk::{duration, time};

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
/// because `restore` fills it before `configure` creates the device, and `configure`
/// writes with it; so this is an [`Adaptor`] (the whole instance), not a `Device`.
/// Public only so that native builds, which export nothing, do not call it unused.
pub struct Instance {
    memory: Memory,
    device: Option<Device>,
    /// This poll's `updatedAt`, kept to reuse its allocation.
    now: String,
}

impl Instance {
    fn apply(&mut self, config: &DeviceConfig, first: bool) -> Result<Settings> {
        Self::describe().check_model(&config.model)?;
        let spec = spec::parse(&config.spec)?;
        let settings = Settings::poll_every_ms(spec.poll_interval_ms);
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
                log::warn(&format!("{}: {message}", device.name));
                return Err(Error::NotPermitted(message));
            }
            Some(Failure::Unreachable(message)) => {
                log::warn(&format!(
                    "{} is unreachable, polls will retry: {message}",
                    device.name
                ));
                device.unreachable = true;
            }
            None => {}
        }
        if first {
            log::info(&format!("configured {line}"));
            events::normal("Configured", &line);
        } else {
            log::info(&format!("reconfigured {line}"));
        }
        self.device = Some(device);
        Ok(settings)
    }
}

impl Adaptor for Instance {
    const NEW: Self = Instance {
        memory: Memory {
            written: std::collections::BTreeMap::new(),
            readings: std::collections::BTreeMap::new(),
        },
        device: None,
        now: String::new(),
    };

    fn describe() -> Info {
        Info::new(NAME, VERSION).model(
            ModelInfo::new(API_VERSION, KIND)
                .resource(TCP_GRANT, ResourceKind::Tcp)
                .resource(RTU_GRANT, ResourceKind::Serial)
                .declared(include_str!(
                    "../../../crds/generated/models/modbusdevices.json"
                )),
        )
    }

    fn configure(&mut self, config: DeviceConfig) -> Result<Settings> {
        self.apply(&config, true)
    }

    fn reconfigure(&mut self, config: DeviceConfig) -> Result<Settings> {
        let first = self.device.is_none();
        self.apply(&config, first)
    }

    fn poll(&mut self) -> Result<String> {
        let device = self
            .device
            .as_mut()
            .ok_or_else(|| Error::Internal("the device is not configured yet".to_owned()))?;
        self.now.clear();
        time::write_rfc3339(&mut self.now, clock::now_ms());
        let outcome = device
            .engine
            .poll(&mut self.memory, &mut device.transport, &self.now);
        let status = outcome.status;
        let Some(failure) = outcome.failure else {
            if device.unreachable {
                device.unreachable = false;
                log::info(&format!("{} is reachable again", device.name));
            }
            return Ok(status);
        };
        // The error alone would leave the status stale; push the per-property errors.
        octopus_adaptor_sdk::bindings::octopus::adaptor::events::report_status(&status);
        let (error, message) = match failure {
            Failure::Unreachable(m) => (Error::Unreachable(m.clone()), m),
            Failure::Denied(m) => (Error::NotPermitted(m.clone()), m),
        };
        if !device.unreachable {
            device.unreachable = true;
            log::warn(&format!("{} is unreachable: {message}", device.name));
        }
        Err(error)
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        Ok(self.memory.to_snapshot(VERSION).to_string().into_bytes())
    }

    fn restore(&mut self, state: &[u8], from_version: &str) -> Result<()> {
        self.memory = Memory::from_snapshot(state).map_err(Error::IncompatibleState)?;
        if let Some(device) = &self.device {
            self.memory.retain_for(&device.engine.spec().properties);
        }
        log::info(&format!("restored state of version {from_version}"));
        Ok(())
    }

    fn shutdown(&mut self) {
        if let Some(mut device) = self.device.take() {
            device.transport.close();
            log::info(&format!("shut down {}", device.name));
        }
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

// Expands to nothing natively (unit tests, the fuzz targets in `fuzz/`), where the crate
// also links as a cdylib whose linker version script cannot hold WIT export names.
octopus_adaptor_sdk::export_instance!(Instance);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_declares_both_endpoints_as_grants() {
        let info = Instance::describe();
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
        let mut instance = Instance::NEW;
        assert!(matches!(instance.poll(), Err(Error::Internal(_))));
    }
}
