//! A GPIO adaptor built against `octopus:adaptor@0.1.0`, the contract before the GPIO
//! additions of 0.1.1. Its WIT (`wit/`) is a frozen copy of that version: the limb's
//! tests load it to prove that components built against an older 0.1.x keep loading
//! and keep working (they are linked by semver and see only what they were built
//! against).
//!
//! Model `CompatDevice`: each poll drives the line granted by `gpio.output` to the
//! opposite of its last level, then reads the line granted by `gpio.input`; status
//! `{"polls", "wrote", "read"}`.

use std::cell::Cell;

use exports::octopus::adaptor::driver::{
    AdaptorError, AdaptorInfo, DeviceConfig, DeviceSettings, Guest,
};
use octopus::adaptor::gpio::{self, Direction};
use octopus::adaptor::types::{CapabilityError, Model, ModelInfo, ResourceField, ResourceKind};

wit_bindgen::generate!({
    path: "wit",
    world: "adaptor",
});

const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
const KIND: &str = "CompatDevice";
const OUTPUT: &str = "gpio.output";
const INPUT: &str = "gpio.input";

thread_local! {
    static CONFIGURED: Cell<bool> = const { Cell::new(false) };
    static POLLS: Cell<u64> = const { Cell::new(0) };
}

struct Compat;

fn field(path: &str) -> ResourceField {
    ResourceField {
        path: path.to_owned(),
        kind: ResourceKind::Gpio,
    }
}

fn explain(e: &CapabilityError) -> String {
    match e {
        CapabilityError::NotPermitted(m) => format!("not permitted: {m}"),
        CapabilityError::Timeout => "timed out".to_owned(),
        CapabilityError::LimitReached(m) => format!("limit reached: {m}"),
        CapabilityError::Closed => "closed".to_owned(),
        CapabilityError::Io(m) => format!("i/o error: {m}"),
        CapabilityError::InvalidArgument(m) => format!("invalid argument: {m}"),
    }
}

/// Drives the output, then reads the input with the output still held.
fn exchange(level: bool) -> Result<bool, CapabilityError> {
    let output = gpio::open(OUTPUT, Direction::Output)?;
    output.set(level)?;
    let input = gpio::open(INPUT, Direction::Input)?;
    input.get()
}

impl Guest for Compat {
    fn describe() -> AdaptorInfo {
        AdaptorInfo {
            name: "adaptors.edge.cattle.io/compat".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            models: vec![ModelInfo {
                model: Model {
                    api_version: API_VERSION.to_owned(),
                    kind: KIND.to_owned(),
                },
                resource_fields: vec![field(OUTPUT), field(INPUT)],
            }],
        }
    }

    fn configure(config: DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
        if config.model.api_version != API_VERSION || config.model.kind != KIND {
            return Err(AdaptorError::InvalidSpec(format!(
                "unsupported model {}/{}",
                config.model.api_version, config.model.kind
            )));
        }
        CONFIGURED.set(true);
        Ok(DeviceSettings {
            poll_interval_ms: Some(100),
        })
    }

    fn reconfigure(config: DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
        Self::configure(config)
    }

    fn poll() -> Result<String, AdaptorError> {
        if !CONFIGURED.get() {
            return Err(AdaptorError::Internal("not configured".to_owned()));
        }
        let polls = POLLS.get() + 1;
        POLLS.set(polls);
        let wrote = polls % 2 == 1;
        let read = exchange(wrote).map_err(|e| AdaptorError::Unreachable(explain(&e)))?;
        Ok(serde_json::json!({ "polls": polls, "wrote": wrote, "read": read }).to_string())
    }

    fn snapshot() -> Result<Vec<u8>, AdaptorError> {
        Ok(POLLS.get().to_string().into_bytes())
    }

    fn restore(state: Vec<u8>, _from_version: String) -> Result<(), AdaptorError> {
        let polls = std::str::from_utf8(&state)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| AdaptorError::IncompatibleState("expected a poll count".to_owned()))?;
        POLLS.set(polls);
        Ok(())
    }

    fn shutdown() {
        CONFIGURED.set(false);
    }
}

export!(Compat);
