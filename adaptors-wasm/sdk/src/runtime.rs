//! Drives a [`Device`] the way the limb calls the contract: holds restored state until
//! the device exists, checks the model, parses the spec and encodes status and state.
//! [`crate::export_adaptor!`] puts one [`Instance`] in the component; native tests can
//! use one directly.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::info::{Context, DeviceIdentity, Model, Reference, Settings};

/// What the contract's `configure`/`reconfigure` receive, as plain Rust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    pub model: Model,
    pub device: DeviceIdentity,
    /// `template.spec` as JSON.
    pub spec: String,
    pub references: Vec<Reference>,
}

impl DeviceConfig {
    /// A config for the first model `D` describes, for tests.
    pub fn for_tests<D: Device>(spec: &str) -> Self {
        let model = D::describe()
            .models
            .into_iter()
            .next()
            .map(|m| m.model)
            .unwrap_or_else(|| Model::new("", ""));
        DeviceConfig {
            model,
            device: DeviceIdentity {
                namespace: "default".into(),
                name: "test".into(),
                uid: "00000000-0000-0000-0000-000000000000".into(),
            },
            spec: spec.to_owned(),
            references: Vec::new(),
        }
    }

    fn split<D: Device>(self) -> Result<(D::Spec, Context)> {
        D::describe().check_model(&self.model)?;
        let spec = crate::spec::parse(&self.spec)?;
        Ok((
            spec,
            Context {
                model: self.model,
                device: self.device,
                references: self.references,
            },
        ))
    }
}

/// One adaptor instance: at most one configured device, plus state restored before
/// `configure` (the contract's order on a hot swap).
pub struct Instance<D: Device> {
    device: Option<D>,
    pending: Option<D::State>,
}

impl<D: Device> Default for Instance<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Device> Instance<D> {
    pub const fn new() -> Self {
        Instance {
            device: None,
            pending: None,
        }
    }

    /// The configured device, if any.
    pub fn device(&self) -> Option<&D> {
        self.device.as_ref()
    }

    /// Configures from scratch. A device that was already configured hands its state
    /// over and is shut down first; on error the instance is left unconfigured but
    /// keeps that state for the next attempt.
    pub fn configure(&mut self, config: DeviceConfig) -> Result<Settings> {
        if let Some(mut old) = self.device.take() {
            self.pending = Some(old.snapshot());
            old.shutdown();
        }
        let (spec, ctx) = config.split::<D>()?;
        let (mut device, settings) = D::configure(spec, &ctx)?;
        if let Some(state) = self.pending.take() {
            device.restore(state);
        }
        self.device = Some(device);
        Ok(settings)
    }

    /// Applies a changed spec; an unconfigured instance is configured instead. On
    /// error the device keeps its previous spec.
    pub fn reconfigure(&mut self, config: DeviceConfig) -> Result<Settings> {
        let Some(device) = self.device.as_mut() else {
            return self.configure(config);
        };
        let (spec, ctx) = config.split::<D>()?;
        device.reconfigure(spec, &ctx)
    }

    /// Polls and encodes the status.
    pub fn poll(&mut self) -> Result<String> {
        let device = self.device.as_mut().ok_or_else(not_configured)?;
        crate::status::to_json(&device.poll()?)
    }

    /// Encodes the device's state, or the restored state it has not taken yet, or
    /// [`Device::unconfigured_state`].
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        match (&self.device, &self.pending) {
            (Some(device), _) => crate::state::encode(&device.snapshot()),
            (None, Some(state)) => crate::state::encode(state),
            (None, None) => match D::unconfigured_state() {
                Some(state) => crate::state::encode(&state),
                None => Err(not_configured()),
            },
        }
    }

    /// Decodes and checks state from `from_version`; a configured device takes it at
    /// once, otherwise it waits for `configure`.
    pub fn restore(&mut self, bytes: &[u8], from_version: &str) -> Result<()> {
        let state: D::State = crate::state::decode(bytes)?;
        D::check_state(&state, from_version)?;
        match self.device.as_mut() {
            Some(device) => device.restore(state),
            None => self.pending = Some(state),
        }
        crate::log::info(&format!("took over the state of version {from_version}"));
        Ok(())
    }

    /// Shuts the device down and forgets everything.
    pub fn shutdown(&mut self) {
        if let Some(mut device) = self.device.take() {
            device.shutdown();
        }
        self.pending = None;
    }
}

fn not_configured() -> Error {
    Error::Internal("the device is not configured".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::{Info, ModelInfo};
    use serde::{Deserialize, Serialize};

    /// A counter like the template's, with a shutdown flag to observe the lifecycle.
    #[derive(Debug)]
    struct Counter {
        step: i64,
        count: i64,
        shut: bool,
    }

    #[derive(Deserialize)]
    struct Spec {
        #[serde(default = "one")]
        step: i64,
    }

    fn one() -> i64 {
        1
    }

    #[derive(Serialize)]
    struct Status {
        count: i64,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct State {
        count: i64,
    }

    impl Device for Counter {
        type Spec = Spec;
        type Status = Status;
        type State = State;

        fn describe() -> Info {
            Info::new("adaptors.edge.cattle.io/counter", "0.1.0+test").model(ModelInfo::new(
                "devices.edge.cattle.io/v1alpha1",
                "CounterDevice",
            ))
        }

        fn configure(spec: Spec, _ctx: &Context) -> Result<(Self, Settings)> {
            let step = crate::spec::in_range("step", spec.step, -100..=100)?;
            Ok((
                Counter {
                    step,
                    count: 0,
                    shut: false,
                },
                Settings::poll_every_ms(1000),
            ))
        }

        fn poll(&mut self) -> Result<Status> {
            self.count += self.step;
            Ok(Status { count: self.count })
        }

        fn snapshot(&self) -> State {
            State { count: self.count }
        }

        fn restore(&mut self, state: State) {
            self.count = state.count;
        }

        fn check_state(state: &State, _from: &str) -> Result<()> {
            if state.count == i64::MIN {
                return Err(Error::IncompatibleState("count is out of range".into()));
            }
            Ok(())
        }

        fn shutdown(&mut self) {
            self.shut = true;
        }
    }

    fn config(spec: &str) -> DeviceConfig {
        DeviceConfig::for_tests::<Counter>(spec)
    }

    #[test]
    fn polls_and_snapshots() {
        let mut instance = Instance::<Counter>::new();
        assert_eq!(
            instance.configure(config(r#"{"step": 2}"#)),
            Ok(Settings::poll_every_ms(1000))
        );
        assert_eq!(instance.poll().unwrap(), r#"{"count":2}"#);
        assert_eq!(instance.poll().unwrap(), r#"{"count":4}"#);
        assert_eq!(instance.snapshot().unwrap(), br#"{"count":4}"#);
    }

    #[test]
    fn restore_before_configure_is_kept_until_configure() {
        let mut old = Instance::<Counter>::new();
        old.configure(config("{}")).unwrap();
        old.poll().unwrap();
        let bytes = old.snapshot().unwrap();

        let mut new = Instance::<Counter>::new();
        new.restore(&bytes, "0.1.0+other").unwrap();
        assert_eq!(
            new.snapshot().unwrap(),
            bytes,
            "pending state is snapshotable"
        );
        new.configure(config(r#"{"step": 10}"#)).unwrap();
        assert_eq!(new.poll().unwrap(), r#"{"count":11}"#);
    }

    #[test]
    fn restore_refuses_other_shapes() {
        let mut instance = Instance::<Counter>::new();
        assert_eq!(
            instance.restore(br#"{"polls": 3}"#, "x"),
            Err(Error::IncompatibleState("count is required".into()))
        );
        let min = format!(r#"{{"count": {}}}"#, i64::MIN);
        assert_eq!(
            instance.restore(min.as_bytes(), "x"),
            Err(Error::IncompatibleState("count is out of range".into()))
        );
        assert!(instance.snapshot().is_err(), "nothing was taken");
    }

    #[test]
    fn spec_and_model_errors() {
        let mut instance = Instance::<Counter>::new();
        assert_eq!(
            instance.configure(config(r#"{"step": 1000}"#)),
            Err(Error::InvalidSpec(
                "step must be -100..=100, got 1000".into()
            ))
        );
        assert_eq!(
            instance.configure(config(r#"{"step": "x"}"#)),
            Err(Error::InvalidSpec(
                r#"step must be an integer, got "x""#.into()
            ))
        );
        let mut other = config("{}");
        other.model.kind = "ModbusDevice".into();
        assert_eq!(
            instance.configure(other),
            Err(Error::InvalidSpec(
                "unsupported model devices.edge.cattle.io/v1alpha1/ModbusDevice: \
                 adaptors.edge.cattle.io/counter serves devices.edge.cattle.io/v1alpha1/CounterDevice"
                    .into()
            ))
        );
        assert_eq!(
            instance.poll(),
            Err(Error::Internal("the device is not configured".into()))
        );
    }

    #[test]
    fn reconfigure_keeps_state_and_survives_bad_specs() {
        let mut instance = Instance::<Counter>::new();
        instance.configure(config("{}")).unwrap();
        instance.poll().unwrap();
        instance.reconfigure(config(r#"{"step": 5}"#)).unwrap();
        assert_eq!(instance.poll().unwrap(), r#"{"count":6}"#);
        assert!(instance.reconfigure(config(r#"{"step": 500}"#)).is_err());
        assert_eq!(instance.poll().unwrap(), r#"{"count":11}"#, "old spec kept");
    }

    #[test]
    fn shutdown_reaches_the_device() {
        let mut instance = Instance::<Counter>::new();
        instance.configure(config("{}")).unwrap();
        instance.configure(config("{}")).unwrap();
        assert!(!instance.device().unwrap().shut);
        instance.shutdown();
        assert!(instance.device().is_none());
        assert!(instance.snapshot().is_err());
    }
}
