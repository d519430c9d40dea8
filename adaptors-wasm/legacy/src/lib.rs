//! A minimal dummy-like adaptor built against `octopus:adaptor@0.0.9`, an older
//! contract version than the limb's, for the version-mismatch tests. Its WIT (`wit/`)
//! is the limb's with only the package version changed.

use std::cell::Cell;

use exports::octopus::adaptor::driver::{
    AdaptorError, AdaptorInfo, DeviceConfig, DeviceSettings, Guest,
};
use octopus::adaptor::types::{Model, ModelInfo};

wit_bindgen::generate!({
    path: "wit",
    world: "adaptor",
});

const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
const KIND: &str = "LegacyDevice";

thread_local! {
    static CONFIGURED: Cell<bool> = const { Cell::new(false) };
    static POLLS: Cell<u64> = const { Cell::new(0) };
}

struct Legacy;

impl Guest for Legacy {
    fn describe() -> AdaptorInfo {
        AdaptorInfo {
            name: "adaptors.edge.cattle.io/legacy".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            models: vec![ModelInfo {
                model: Model {
                    api_version: API_VERSION.to_owned(),
                    kind: KIND.to_owned(),
                },
                resource_fields: Vec::new(),
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
        match serde_json::from_str::<serde_json::Value>(&config.spec) {
            Ok(spec) if spec.is_object() => {}
            _ => {
                return Err(AdaptorError::InvalidSpec(
                    "spec must be a JSON object".to_owned(),
                ));
            }
        }
        CONFIGURED.set(true);
        Ok(DeviceSettings {
            poll_interval_ms: Some(2_000),
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
        Ok(serde_json::json!({ "polls": polls }).to_string())
    }

    fn snapshot() -> Result<Vec<u8>, AdaptorError> {
        Ok(serde_json::json!({ "polls": POLLS.get() })
            .to_string()
            .into_bytes())
    }

    fn restore(state: Vec<u8>, _from_version: String) -> Result<(), AdaptorError> {
        let polls = serde_json::from_slice::<serde_json::Value>(&state)
            .ok()
            .and_then(|v| v.get("polls").and_then(serde_json::Value::as_u64))
            .ok_or_else(|| AdaptorError::IncompatibleState("expected {\"polls\": N}".to_owned()))?;
        POLLS.set(polls);
        Ok(())
    }

    fn shutdown() {
        CONFIGURED.set(false);
    }
}

export!(Legacy);
