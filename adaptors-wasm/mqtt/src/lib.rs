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

use std::cell::RefCell;

use exports::octopus::adaptor::driver::{
    AdaptorError, AdaptorInfo, DeviceConfig, DeviceSettings, Guest,
};
use octopus::adaptor::events::{self, EventType};
use octopus::adaptor::log::{self, Level};
use octopus::adaptor::types::{Model, ModelInfo, ResourceField, ResourceKind};

use engine::{Engine, Failure, Identity};
use spec::{Pattern, Reference};
use state::Memory;
use transport::{GRANT, Transport};

use octopus_adaptor_sdk::{duration, time};

wit_bindgen::generate!({
    path: "../../wit",
    world: "adaptor",
});

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

#[derive(Default)]
struct Instance {
    memory: Memory,
    device: Option<Device>,
}

fn adaptor_error(failure: Failure) -> AdaptorError {
    match failure {
        Failure::Unreachable(m) => AdaptorError::Unreachable(m),
        Failure::Denied(m) | Failure::Refused(m) => AdaptorError::NotPermitted(m),
        Failure::Protocol(m) => AdaptorError::Protocol(m),
    }
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
        let references: Vec<Reference> = config
            .references
            .iter()
            .map(|r| Reference {
                name: r.reference.clone(),
                item: r.item.clone(),
                value: r.value.clone(),
            })
            .collect();
        let spec =
            spec::parse(&config.spec, &references).map_err(|e| AdaptorError::InvalidSpec(e.0))?;
        let identity = Identity {
            namespace: config.device.namespace.clone(),
            name: config.device.name.clone(),
            uid: config.device.uid.clone(),
        };
        let mut engine =
            Engine::new(spec, &identity).map_err(|e| AdaptorError::InvalidSpec(e.0))?;
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
                    log::log(Level::Warn, &format!("{name}: {message}"));
                    denied = Some(message);
                }
                other => log::log(
                    Level::Warn,
                    &format!(
                        "{name}: not connected, polls will retry: {}",
                        other.message()
                    ),
                ),
            }
        }
        if first {
            log::log(Level::Info, &format!("configured {line}"));
            events::record_event(EventType::Normal, "Configured", &line);
        } else {
            log::log(Level::Info, &format!("reconfigured {line}"));
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
            return Err(AdaptorError::NotPermitted(message));
        }
        // Pushed data: poll back to back; each poll waits for messages itself.
        Ok(DeviceSettings {
            poll_interval_ms: Some(0),
        })
    }

    fn poll(&mut self) -> Result<String, AdaptorError> {
        let Some(device) = self.device.as_mut() else {
            // Polls come back to back: do not spin.
            std::thread::sleep(std::time::Duration::from_millis(engine::NAP_MS));
            return Err(AdaptorError::Internal(
                "the device is not configured yet".to_owned(),
            ));
        };
        let outcome = device.engine.poll(&mut self.memory, &mut device.transport);
        let status = outcome.status.to_string();
        let Some(failure) = outcome.failure else {
            if device.failing {
                device.failing = false;
                let message = format!("{} is connected to the broker again", device.name);
                log::log(Level::Info, &message);
                events::record_event(EventType::Normal, "Connected", &message);
            }
            return Ok(status);
        };
        // The error alone would leave the status stale.
        events::report_status(&status);
        if !device.failing {
            device.failing = true;
            let message = format!("{}: {}", device.name, failure.message());
            log::log(Level::Warn, &message);
            events::record_event(EventType::Warning, "Disconnected", &message);
        }
        Err(adaptor_error(failure))
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

thread_local! {
    static INSTANCE: RefCell<Instance> = RefCell::new(Instance::default());
}

fn with_instance<R>(f: impl FnOnce(&mut Instance) -> R) -> R {
    INSTANCE.with_borrow_mut(f)
}

struct Mqtt;

impl Guest for Mqtt {
    fn describe() -> AdaptorInfo {
        AdaptorInfo {
            name: NAME.to_owned(),
            version: VERSION.to_owned(),
            models: vec![ModelInfo {
                model: Model {
                    api_version: API_VERSION.to_owned(),
                    kind: KIND.to_owned(),
                },
                // The field holds a URL (`tcp://host:port`); the limb takes the
                // `host:port` out of it.
                resource_fields: vec![ResourceField {
                    path: GRANT.to_owned(),
                    kind: ResourceKind::Tcp,
                }],
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
                device.engine.retain(&mut instance.memory);
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
            device.engine.disconnect(&mut device.transport);
            log::log(Level::Info, &format!("shut down {}", device.name));
        }
    }
}

// Only in the component: natively (unit tests, the fuzz targets in `fuzz/`) the crate
// also links as a cdylib, whose linker version script cannot hold WIT export names.
#[cfg(target_family = "wasm")]
export!(Mqtt);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_declares_the_server_as_a_tcp_grant() {
        let info = Mqtt::describe();
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
        assert!(matches!(
            Instance::default().poll(),
            Err(AdaptorError::Internal(_))
        ));
    }
}
