//! `adaptors.edge.cattle.io/counter`: the smallest complete adaptor. Each poll adds
//! `step` to a count that survives hot swaps. Copy this crate to start your own.

use octopus_adaptor_sdk::{Context, Device, Info, ModelInfo, Result, Settings, spec};
use serde::{Deserialize, Serialize};

const NAME: &str = "adaptors.edge.cattle.io/counter";
/// `+rust` tells the builds of the other languages apart in `describe` and status.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+rust");
const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
const KIND: &str = "CounterDevice";

/// The DeviceLink's `template.spec`. Other fields are ignored; the SDK turns a wrong
/// type into `invalid-spec` naming the field.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default = "default_step")]
    step: i64,
    /// Signed so that a negative value gets the range message, not a type error.
    #[serde(default = "default_interval")]
    sync_interval_ms: i64,
}

fn default_step() -> i64 {
    1
}

fn default_interval() -> i64 {
    1000
}

/// What `poll` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    count: i64,
    language: &'static str,
}

/// What a hot swap carries over; the same shape in every language's build.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    count: i64,
}

/// One configured counter.
#[derive(Debug)]
pub struct Counter {
    step: i64,
    count: i64,
}

impl Device for Counter {
    type Spec = Spec;
    type Status = Status;
    type State = State;

    fn describe() -> Info {
        Info::new(NAME, VERSION).model(
            ModelInfo::new(API_VERSION, KIND)
                .declared(include_str!("../models/counterdevices.json")),
        )
    }

    fn configure(spec: Spec, _ctx: &Context) -> Result<(Self, Settings)> {
        let interval = spec::at_least("syncIntervalMs", spec.sync_interval_ms, 10)?;
        let counter = Counter {
            step: spec.step,
            count: 0,
        };
        Ok((counter, Settings::poll_every_ms(interval.unsigned_abs())))
    }

    // `reconfigure` keeps the SDK's default: configure afresh and carry the count over.

    fn poll(&mut self) -> Result<Status> {
        self.count = self.count.saturating_add(self.step);
        Ok(Status {
            count: self.count,
            language: "rust",
        })
    }

    fn snapshot(&self) -> State {
        State { count: self.count }
    }

    fn restore(&mut self, state: State) {
        self.count = state.count;
    }
}

octopus_adaptor_sdk::export_adaptor!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use octopus_adaptor_sdk::{DeviceConfig, Error, Instance};

    fn configured(spec: &str) -> Instance<Counter> {
        let mut instance = Instance::new();
        instance
            .configure(DeviceConfig::for_tests::<Counter>(spec))
            .unwrap();
        instance
    }

    #[test]
    fn counts_by_step() {
        let mut instance = configured(r#"{"step": 3, "other": true}"#);
        instance.poll().unwrap();
        assert_eq!(instance.poll().unwrap(), r#"{"count":6,"language":"rust"}"#);
        assert_eq!(instance.snapshot().unwrap(), br#"{"count":6}"#);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let mut instance = Instance::<Counter>::new();
        for (spec, message) in [
            (r#"{"step": "x"}"#, r#"step must be an integer, got "x""#),
            (
                r#"{"syncIntervalMs": 5}"#,
                "syncIntervalMs must be >= 10, got 5",
            ),
        ] {
            assert_eq!(
                instance.configure(DeviceConfig::for_tests::<Counter>(spec)),
                Err(Error::InvalidSpec(message.into()))
            );
        }
    }

    #[test]
    fn restores_a_count() {
        let mut instance = Instance::<Counter>::new();
        instance.restore(br#"{"count": 41}"#, "0.1.0+go").unwrap();
        instance
            .configure(DeviceConfig::for_tests::<Counter>("{}"))
            .unwrap();
        assert_eq!(
            instance.poll().unwrap(),
            r#"{"count":42,"language":"rust"}"#
        );
        assert!(matches!(
            instance.restore(br#"{"polls": 1}"#, "x"),
            Err(Error::IncompatibleState(_))
        ));
    }
}
