//! The Octopus dummy adaptor as a WebAssembly component.
//!
//! It reproduces Rancher Octopus's `adaptors.edge.cattle.io/dummy`: a
//! `DummySpecialDevice` (a fan whose rotating speed follows its gear) and a
//! `DummyProtocolDevice` (a device with typed properties whose values change on every
//! poll). Everything is simulated and deterministic: the pseudo-random generator is
//! seeded from the DeviceLink's uid and travels with `snapshot`/`restore`.

mod sim;
mod spec;

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use exports::octopus::adaptor::driver::{
    AdaptorError, AdaptorInfo, DeviceConfig, DeviceSettings, Guest,
};
use octopus::adaptor::clock;
use octopus::adaptor::events::{self, EventType};
use octopus::adaptor::log::{self, Level};
use octopus::adaptor::types::{Model, ModelInfo};

use sim::{Observed, Rng};
use spec::{DeviceSpec, Kind, Spec, SpecError};

wit_bindgen::generate!({
    path: "../../wit",
    world: "adaptor",
});

const NAME: &str = "adaptors.edge.cattle.io/dummy";

#[cfg(not(any(feature = "v2", feature = "broken-restore", feature = "broken-poll")))]
const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "v2")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+v2");
#[cfg(feature = "broken-restore")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+broken-restore");
#[cfg(feature = "broken-poll")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+broken-poll");

/// Tag of the `snapshot` format; `restore` accepts nothing else.
const SNAPSHOT_FORMAT: &str = "dummy/1";

/// Why a call failed; converted into the contract's `adaptor-error` at the boundary.
#[derive(Debug)]
enum Error {
    InvalidSpec(String),
    IncompatibleState(String),
    NotConfigured,
}

impl From<SpecError> for Error {
    fn from(err: SpecError) -> Self {
        Error::InvalidSpec(err.0)
    }
}

impl From<Error> for AdaptorError {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidSpec(msg) => AdaptorError::InvalidSpec(msg),
            Error::IncompatibleState(msg) => AdaptorError::IncompatibleState(msg),
            Error::NotConfigured => {
                AdaptorError::Internal("the device is not configured yet".to_owned())
            }
        }
    }
}

/// State that survives `reconfigure` and travels through `snapshot`/`restore`.
#[derive(Debug, Default)]
struct State {
    polls: u64,
    rng: Option<Rng>,
    rotating_speed: u32,
    properties: BTreeMap<String, Observed>,
}

impl State {
    fn to_snapshot(&self) -> Value {
        let properties: Map<String, Value> = self
            .properties
            .iter()
            .map(|(name, observed)| (name.clone(), observed.to_json()))
            .collect();
        json!({
            "format": SNAPSHOT_FORMAT,
            "version": VERSION,
            "polls": self.polls,
            "rotatingSpeed": self.rotating_speed,
            "rng": self.rng.map(Rng::state),
            "properties": properties,
        })
    }

    fn from_snapshot(bytes: &[u8]) -> Result<State, Error> {
        let incompatible = |why: &str| {
            Error::IncompatibleState(format!("not a {SNAPSHOT_FORMAT} snapshot: {why}"))
        };
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| incompatible(&format!("invalid JSON ({e})")))?;
        match value.get("format").and_then(Value::as_str) {
            Some(SNAPSHOT_FORMAT) => {}
            Some(other) => return Err(incompatible(&format!("format is {other:?}"))),
            None => return Err(incompatible("no format field")),
        }
        let polls = value
            .get("polls")
            .and_then(Value::as_u64)
            .ok_or_else(|| incompatible("polls is missing or not a count"))?;
        let rotating_speed = match value.get("rotatingSpeed") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| incompatible("rotatingSpeed is not a speed"))?,
        };
        let rng = match value.get("rng") {
            None | Some(Value::Null) => None,
            Some(v) => Some(Rng::from_state(
                v.as_u64()
                    .ok_or_else(|| incompatible("rng is not a 64-bit state"))?,
            )),
        };
        let properties = match value.get("properties") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(v) => v
                .as_object()
                .ok_or_else(|| incompatible("properties is not an object"))?
                .iter()
                .map(|(name, observed)| {
                    Observed::from_json(observed)
                        .map(|o| (name.clone(), o))
                        .ok_or_else(|| incompatible(&format!("property {name:?} is malformed")))
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(State {
            polls,
            rng,
            rotating_speed,
            properties,
        })
    }
}

/// The configured device: who it is and its current spec.
#[derive(Debug)]
struct Device {
    name: String,
    uid: String,
    spec: Spec,
    /// `reference/item` of every resolved reference, reported (never their values) so an
    /// operator can see what the device was given.
    references: Vec<String>,
}

/// Everything one instance (one device) holds.
#[derive(Debug, Default)]
struct Instance {
    state: State,
    device: Option<Device>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apply {
    Configure,
    Reconfigure,
}

impl Instance {
    fn apply(&mut self, config: &DeviceConfig, how: Apply) -> Result<DeviceSettings, Error> {
        let kind = Kind::from_model(&config.model.api_version, &config.model.kind)?;
        let spec = spec::parse(kind, &config.spec)?;
        let device = Device {
            name: format!("{}/{}", config.device.namespace, config.device.name),
            uid: config.device.uid.clone(),
            spec,
            references: config
                .references
                .iter()
                .map(|r| format!("{}/{}", r.reference, r.item))
                .collect(),
        };
        self.state
            .rng
            .get_or_insert_with(|| Rng::from_seed(&device.uid));
        let settings = DeviceSettings {
            poll_interval_ms: Some(device.spec.poll_interval_ms),
        };
        let summary = summary(&device);
        let first = how == Apply::Configure || self.device.is_none();
        self.device = Some(device);
        if first {
            log::log(Level::Info, &format!("configured {summary}"));
            events::record_event(EventType::Normal, "Configured", &summary);
        } else {
            log::log(Level::Info, &format!("reconfigured {summary}"));
        }
        Ok(settings)
    }

    fn poll(&mut self) -> Result<String, Error> {
        let device = self.device.as_ref().ok_or(Error::NotConfigured)?;
        let state = &mut self.state;
        state.polls += 1;
        let rng = state.rng.get_or_insert_with(|| Rng::from_seed(&device.uid));
        let mut status = match &device.spec.device {
            DeviceSpec::Special(spec) => {
                state.rotating_speed = sim::step_special(state.rotating_speed, spec, rng);
                json!({
                    "gear": spec.gear.as_str(),
                    "rotatingSpeed": state.rotating_speed,
                })
            }
            DeviceSpec::Protocol(spec) => {
                let now = sim::rfc3339(clock::now_ms());
                sim::step_protocol(&mut state.properties, spec, rng, &now);
                let properties: Map<String, Value> = state
                    .properties
                    .iter()
                    .map(|(name, observed)| (name.clone(), observed.to_json()))
                    .collect();
                json!({ "properties": properties })
            }
        };
        if let Value::Object(fields) = &mut status {
            fields.insert("polls".to_owned(), json!(state.polls));
            if !device.references.is_empty() {
                fields.insert("references".to_owned(), json!(device.references));
            }
            if cfg!(feature = "v2") {
                fields.insert("variant".to_owned(), json!("v2"));
            }
        }
        Ok(status.to_string())
    }
}

/// One line describing a configured device, for the log and the `Configured` event.
fn summary(device: &Device) -> String {
    let interval = device.spec.poll_interval_ms;
    let detail = match &device.spec.device {
        DeviceSpec::Special(spec) => format!(
            "at {}, {}, gear {}",
            spec.location,
            if spec.on { "on" } else { "off" },
            spec.gear.as_str()
        ),
        DeviceSpec::Protocol(spec) => {
            format!("at {}, {} properties", spec.ip, spec.properties.len())
        }
    };
    format!(
        "{} {} {detail}; polling every {interval} ms",
        device.spec.device.kind().name(),
        device.name
    )
}

thread_local! {
    static INSTANCE: RefCell<Instance> = RefCell::new(Instance::default());
}

fn with_instance<R>(f: impl FnOnce(&mut Instance) -> R) -> R {
    INSTANCE.with_borrow_mut(f)
}

struct Dummy;

impl Guest for Dummy {
    fn describe() -> AdaptorInfo {
        AdaptorInfo {
            name: NAME.to_owned(),
            version: VERSION.to_owned(),
            models: Kind::ALL
                .into_iter()
                .map(|kind| ModelInfo {
                    model: Model {
                        api_version: Kind::API_VERSION.to_owned(),
                        kind: kind.name().to_owned(),
                    },
                    resource_fields: Vec::new(),
                })
                .collect(),
        }
    }

    fn configure(config: DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
        with_instance(|instance| instance.apply(&config, Apply::Configure)).map_err(Into::into)
    }

    fn reconfigure(config: DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
        with_instance(|instance| instance.apply(&config, Apply::Reconfigure)).map_err(Into::into)
    }

    fn poll() -> Result<String, AdaptorError> {
        if cfg!(feature = "broken-poll") {
            #[allow(clippy::panic, reason = "a test variant that traps on purpose")]
            {
                panic!("broken-poll variant: trapping on purpose");
            }
        }
        with_instance(Instance::poll).map_err(Into::into)
    }

    fn snapshot() -> Result<Vec<u8>, AdaptorError> {
        Ok(with_instance(|instance| {
            instance.state.to_snapshot().to_string().into_bytes()
        }))
    }

    fn restore(state: Vec<u8>, from_version: String) -> Result<(), AdaptorError> {
        if cfg!(feature = "broken-restore") {
            return Err(AdaptorError::IncompatibleState(format!(
                "broken-restore variant refuses state from {from_version}"
            )));
        }
        let state = State::from_snapshot(&state)?;
        log::log(
            Level::Info,
            &format!(
                "restored state of version {from_version} after {} polls",
                state.polls
            ),
        );
        with_instance(|instance| instance.state = state);
        Ok(())
    }

    fn shutdown() {
        if let Some(device) = with_instance(|instance| instance.device.take()) {
            log::log(Level::Info, &format!("shut down {}", device.name));
        }
    }
}

export!(Dummy);

#[cfg(test)]
mod tests {
    use super::*;

    fn special_instance(spec: &str) -> Instance {
        Instance {
            state: State::default(),
            device: Some(Device {
                name: "default/fan".into(),
                uid: "uid-1".into(),
                spec: spec::parse(Kind::Special, spec).unwrap(),
                references: Vec::new(),
            }),
        }
    }

    #[test]
    fn polls_count_and_survive_snapshot_and_restore() {
        let spec = r#"{"protocol":{"location":"lab"},"on":true,"gear":"fast"}"#;
        let mut old = special_instance(spec);
        let status: Value = serde_json::from_str(&old.poll().unwrap()).unwrap();
        assert_eq!(status["polls"], 1);
        assert_eq!(status["gear"], "fast");
        assert_eq!(status["rotatingSpeed"], 200);
        old.poll().unwrap();

        let bytes = old.state.to_snapshot().to_string().into_bytes();
        let mut new = special_instance(spec);
        new.state = State::from_snapshot(&bytes).unwrap();
        assert_eq!(new.state.rng, old.state.rng);
        assert_eq!(new.poll().unwrap(), old.poll().unwrap());
        let status: Value = serde_json::from_str(&new.poll().unwrap()).unwrap();
        assert_eq!(status["polls"], 4);
    }

    #[test]
    fn restore_refuses_foreign_state() {
        for bytes in [
            &b"garbage"[..],
            br#"{"polls":3}"#,
            br#"{"format":"dummy/2","polls":1}"#,
        ] {
            assert!(matches!(
                State::from_snapshot(bytes),
                Err(Error::IncompatibleState(_))
            ));
        }
    }

    #[test]
    fn poll_before_configure_fails() {
        assert!(matches!(
            Instance::default().poll(),
            Err(Error::NotConfigured)
        ));
    }
}
