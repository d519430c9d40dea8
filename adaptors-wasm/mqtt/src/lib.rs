//! The Octopus MQTT adaptor as a WebAssembly component.
//!
//! It serves `MQTTDevice` (`devices.edge.cattle.io/v1alpha1`) for
//! `adaptors.edge.cattle.io/mqtt`: a device that talks MQTT through a broker. The guest
//! is an MQTT 3.1.1 client (falling back to 3.1) over the host's TCP sockets, with TLS
//! done by the limb (`connect-tls`). Readable properties are subscribed and appear in
//! the status as messages arrive; writable properties are published when their value
//! changes.
//!
//! Data is pushed, not polled: `configure` asks for back-to-back polls, and each poll
//! waits a short window for messages and returns as soon as one changed the status.
//! While the broker is unreachable a poll pushes the status (last values kept) through
//! `events.report-status` and fails with `unreachable` (or `not-permitted` when the
//! broker refuses the client); reconnection backs off from 1 s to 30 s.
//!
//! Module map: `spec` parses and resolves references, `topic` renders templates,
//! `jsonpath` reads and writes AttributedMessage documents, `value` converts typed
//! values, `codec` is the wire format, `engine` is the session over a `Net`,
//! `transport` is that `Net` over the host's sockets, `state` survives hot swaps.

mod codec;
mod engine;
mod jsonpath;
mod spec;
mod state;
mod topic;
mod transport;
mod value;

/// The parsers and codecs, public only for the fuzz targets in `fuzz/`; not an API.
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz {
    pub mod codec {
        pub use crate::codec::*;
    }
    pub mod topic {
        pub use crate::topic::*;
    }
    pub mod jsonpath {
        pub use crate::jsonpath::*;
    }
    pub mod spec {
        pub use crate::spec::*;
    }
    pub mod value {
        pub use crate::value::*;
    }
}

use octopus_adaptor_sdk::{
    Adaptor, DeviceConfig, Error, Info, ModelInfo, ResourceKind, Result, Settings, events, log,
};

use engine::{Engine, Failure, Identity};
use spec::{Pattern, Reference};
use state::Memory;
use transport::{GRANT, Transport};

use octopus_adaptor_sdk::{duration, time};

const NAME: &str = "adaptors.edge.cattle.io/mqtt";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
const KIND: &str = "MQTTDevice";

struct Device {
    /// `namespace/name`, for log lines.
    name: String,
    engine: Engine,
    transport: Transport,
    /// Whether the last poll failed; logs and events only transitions.
    failing: bool,
}

/// The component instance. `memory` outlives the device (`restore` fills it before
/// `configure`, which subscribes and publishes with it), the session moves from the old
/// spec to the new one, and a refused device stays installed: an [`Adaptor`], not a
/// `Device`. Public only so that native builds, which export nothing, do not call it
/// unused.
pub struct Instance {
    memory: Memory,
    device: Option<Device>,
}

fn adaptor_error(failure: Failure) -> Error {
    match failure {
        Failure::Unreachable(m) => Error::Unreachable(m),
        Failure::Denied(m) | Failure::Refused(m) => Error::NotPermitted(m),
        Failure::Protocol(m) => Error::Protocol(m),
    }
}

impl Instance {
    fn apply(&mut self, config: &DeviceConfig, first: bool) -> Result<Settings> {
        Self::describe().check_model(&config.model)?;
        let references: Vec<Reference> = config
            .references
            .iter()
            .map(|r| Reference {
                name: r.reference.clone(),
                item: r.item.clone(),
                value: r.value.clone(),
            })
            .collect();
        let spec = spec::parse(&config.spec, &references)?;
        let identity = Identity {
            namespace: config.device.namespace.clone(),
            name: config.device.name.clone(),
            uid: config.device.uid.clone(),
        };
        let mut engine = Engine::new(spec, &identity)?;
        let name = format!("{}/{}", config.device.namespace, config.device.name);
        let (mut transport, failing) = match self.device.take() {
            Some(mut old) => {
                engine.take_over(old.engine, &mut old.transport);
                (old.transport, old.failing)
            }
            None => (Transport::default(), false),
        };
        engine.retain(&mut self.memory);
        let line = summary(&name, &engine);
        let mut denied = None;
        if let Err(failure) = engine.connect(&mut self.memory, &mut transport) {
            match failure {
                // Retrying cannot help until the link (grant, certificates) changes.
                Failure::Denied(message) => {
                    log::warn(&format!("{name}: {message}"));
                    denied = Some(message);
                }
                other => log::warn(&format!(
                    "{name}: not connected, polls will retry: {}",
                    other.message()
                )),
            }
        }
        if first {
            log::info(&format!("configured {line}"));
            events::normal("Configured", &line);
        } else {
            log::info(&format!("reconfigured {line}"));
        }
        // Installed even when refused: after a failed reconfigure the host keeps polling
        // this instance, and the polls report the refusal.
        self.device = Some(Device {
            name,
            engine,
            transport,
            failing: failing || denied.is_some(),
        });
        if let Some(message) = denied {
            return Err(Error::NotPermitted(message));
        }
        // Pushed data: poll back to back; each poll waits for messages itself.
        Ok(Settings::poll_every_ms(0))
    }
}

impl Adaptor for Instance {
    const NEW: Self = Instance {
        memory: Memory {
            readings: std::collections::BTreeMap::new(),
            published: std::collections::BTreeMap::new(),
        },
        device: None,
    };

    fn describe() -> Info {
        // The field holds a URL (`tcp://host:port`); the limb takes the `host:port` out
        // of it.
        Info::new(NAME, VERSION).model(
            ModelInfo::new(API_VERSION, KIND)
                .resource(GRANT, ResourceKind::Tcp)
                .declared(include_str!(
                    "../../../crds/generated/models/mqttdevices.json"
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
        let Some(device) = self.device.as_mut() else {
            // Polls come back to back: do not spin.
            std::thread::sleep(std::time::Duration::from_millis(engine::NAP_MS));
            return Err(Error::Internal(
                "the device is not configured yet".to_owned(),
            ));
        };
        let outcome = device.engine.poll(&mut self.memory, &mut device.transport);
        let status = outcome.status.to_string();
        let Some(failure) = outcome.failure else {
            if device.failing {
                device.failing = false;
                let message = format!("{} is connected to the broker again", device.name);
                log::info(&message);
                events::normal("Connected", &message);
            }
            return Ok(status);
        };
        // The error alone would leave the status stale.
        octopus_adaptor_sdk::bindings::octopus::adaptor::events::report_status(&status);
        if !device.failing {
            device.failing = true;
            let message = format!("{}: {}", device.name, failure.message());
            log::warn(&message);
            events::warning("Disconnected", &message);
        }
        Err(adaptor_error(failure))
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        Ok(self.memory.to_snapshot(VERSION).to_string().into_bytes())
    }

    fn restore(&mut self, state: &[u8], from_version: &str) -> Result<()> {
        self.memory = Memory::from_snapshot(state).map_err(Error::IncompatibleState)?;
        if let Some(device) = &self.device {
            device.engine.retain(&mut self.memory);
        }
        log::info(&format!("restored state of version {from_version}"));
        Ok(())
    }

    fn shutdown(&mut self) {
        if let Some(mut device) = self.device.take() {
            device.engine.disconnect(&mut device.transport);
            log::info(&format!("shut down {}", device.name));
        }
    }
}

fn summary(name: &str, engine: &Engine) -> String {
    let spec = engine.spec();
    let pattern = match spec.pattern {
        Pattern::AttributedMessage => "AttributedMessage",
        Pattern::AttributedTopic => "AttributedTopic",
    };
    format!(
        "{KIND} {name}: {pattern} on {} ({}), {} properties in {} subscriptions",
        spec.connection.server,
        spec.message.topic,
        spec.properties.len(),
        engine.subscription_count()
    )
}

// Expands to nothing natively (unit tests, the fuzz targets in `fuzz/`), where the crate
// also links as a cdylib whose linker version script cannot hold WIT export names.
octopus_adaptor_sdk::export_instance!(Instance);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_declares_the_server_as_a_tcp_grant() {
        let info = Instance::describe();
        assert_eq!(info.name, NAME);
        let [model] = info.models.as_slice() else {
            panic!("one model")
        };
        assert_eq!(model.model.kind, KIND);
        let [field] = model.resource_fields.as_slice() else {
            panic!("one field")
        };
        assert_eq!(field.path, "protocol.client.server");
        assert!(matches!(field.kind, ResourceKind::Tcp));
    }

    #[test]
    fn poll_before_configure_fails() {
        let mut instance = Instance::NEW;
        assert!(matches!(instance.poll(), Err(Error::Internal(_))));
    }
}
