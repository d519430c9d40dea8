//! Extensions: features the limb gives every device from its DeviceLink, whatever
//! language its adaptor is written in. Today there is one, Octopus's MQTT extension:
//! a device whose `template.spec.extension.mqtt` is set has its status document
//! published to the broker on every change ([`mqtt`]), with no MQTT code in the adaptor.
//!
//! Supervisors tell the [`Extensions`] registry who a device is and what its spec asks
//! for ([`Extensions::configure`]), hand it each accepted status document
//! ([`Extensions::publish`], which never waits), and remove the device when it stops.
//! Problems of an extension become events on the device, never device failures.
//!
//! Bounded per device: a document waits in a one-slot mailbox where a newer one
//! replaces it (counted as `mqtt_extension_publishes{outcome="superseded"}` and
//! `output_coalesced{output="mqtt"}`), and the connection holds a few more at most
//! (see [`mqtt`]).

pub mod mqtt;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crds::models::extension::MqttOptions;
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;

use crate::bindings::ReferenceValue;
use crate::capabilities::Policy;
use crate::metrics::Metrics;
use crate::status::{EventType, StatusBoard};

pub use mqtt::Identity;

/// What the extension tasks need from the limb: where to record events and metrics,
/// and the node policy their connections must pass.
#[derive(Clone)]
pub struct Env {
    pub board: Arc<StatusBoard>,
    pub metrics: Arc<Metrics>,
    pub policy: Arc<Policy>,
    /// `output_coalesced{output="mqtt"}`, looked up once.
    coalesced: Counter,
}

/// The extensions of every device on this limb.
pub struct Extensions {
    env: Env,
    devices: Mutex<HashMap<String, Device>>,
}

/// One device's extensions and the inputs they were made from.
#[derive(Default)]
struct Device {
    inputs: Option<Inputs>,
    mqtt: Option<mqtt::Publisher>,
}

#[derive(Clone, Debug, PartialEq)]
struct Inputs {
    identity: Identity,
    /// `extension.mqtt` as written.
    mqtt: Option<Value>,
    references: Vec<(String, String, Vec<u8>)>,
}

impl Extensions {
    pub fn new(board: Arc<StatusBoard>, metrics: Arc<Metrics>, policy: Arc<Policy>) -> Self {
        Self {
            env: Env {
                board,
                coalesced: metrics.output_coalesced("mqtt"),
                metrics,
                policy,
            },
            devices: Mutex::default(),
        }
    }

    /// Applies a device's (changed) spec: starts, reconfigures or stops its extensions.
    /// `spec` is the link's `template.spec`. Nothing happens when nothing they use
    /// changed, so a resync keeps the broker connection and a spec that is wrong is
    /// reported once.
    pub fn configure(
        &self,
        key: &str,
        identity: Identity,
        spec: &Value,
        references: &[ReferenceValue],
    ) {
        let inputs = Inputs {
            identity,
            mqtt: mqtt_options(spec).cloned(),
            references: references
                .iter()
                .map(|r| (r.reference.clone(), r.item.clone(), r.value.clone()))
                .collect(),
        };
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        let device = devices.entry(key.to_owned()).or_default();
        if device.inputs.as_ref() == Some(&inputs) {
            return;
        }
        let resolved = inputs
            .mqtt
            .as_ref()
            .map(|raw| {
                serde_json::from_value::<MqttOptions>(raw.clone())
                    .map_err(|e| mqtt::Error::Spec(e.to_string()))
                    .and_then(|o| mqtt::Config::resolve(&inputs.identity, &o, references))
            })
            .transpose();
        device.inputs = Some(inputs);
        match resolved {
            Ok(Some(config)) => match &device.mqtt {
                Some(publisher) => publisher.reconfigure(config),
                None => {
                    device.mqtt = Some(mqtt::Publisher::spawn(
                        key.to_owned(),
                        config,
                        self.env.clone(),
                    ));
                }
            },
            Ok(None) => device.mqtt = None,
            Err(e) => {
                device.mqtt = None;
                let event = crate::status::Event::new(
                    EventType::Warning,
                    "MqttExtensionInvalid",
                    &format!("{e}; the status is not published"),
                );
                self.env.board.modify(key, |r| r.record(event));
            }
        }
    }

    /// Hands an accepted status document to the device's extensions; never waits.
    pub fn publish(&self, key: &str, doc: &str) {
        let devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        let Some(publisher) = devices.get(key).and_then(|d| d.mqtt.as_ref()) else {
            return;
        };
        if publisher.mailbox.offer(doc) == mqtt::Offer::Superseded {
            self.env.metrics.mqtt_publish("superseded");
            self.env.coalesced.inc();
        }
    }

    /// Stops a device's extensions (its broker connection is closed).
    pub fn remove(&self, key: &str) {
        self.devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Devices with a running MQTT publisher.
    pub fn mqtt_devices(&self) -> usize {
        self.devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|d| d.mqtt.is_some())
            .count()
    }
}

/// The MQTT extension's options in a link's `template.spec`, if it has one: only such
/// a link gets a publisher.
pub fn mqtt_options(spec: &Value) -> Option<&Value> {
    spec.get("extension")
        .and_then(|e| e.get("mqtt"))
        .filter(|v| !v.is_null())
}
