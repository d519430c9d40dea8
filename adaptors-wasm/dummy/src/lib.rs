//! The Octopus dummy adaptor as a WebAssembly component.
//!
//! It reproduces Rancher Octopus's `adaptors.edge.cattle.io/dummy`: a
//! `DummySpecialDevice` (a fan whose rotating speed follows its gear) and a
//! `DummyProtocolDevice` (a device with typed properties whose values change on every
//! poll). Everything is simulated and deterministic: the pseudo-random generator is
//! seeded from the DeviceLink's uid and travels with `snapshot`/`restore`.
//!
//! Built on the SDK (`octopus-adaptor-sdk`): it parses the spec, keeps the device and
//! the state restored before `configure`, and encodes status and snapshots.

mod sim;
mod spec;

use std::collections::BTreeMap;

use octopus_adaptor_sdk::{Context, Device, Error, Info, ModelInfo, Result, Settings};
use octopus_adaptor_sdk::{clock, events, log};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use sim::{Observed, Rng};
use spec::{DeviceSpec, Kind, Spec};

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

/// What `snapshot` returns and `restore` takes: `{"format": "dummy/1", "polls",
/// "properties", "rng", "rotatingSpeed", "version"}` (fields in that order, as earlier
/// versions wrote them).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(default)]
    format: Option<String>,
    polls: u64,
    #[serde(default)]
    properties: Option<BTreeMap<String, Observed>>,
    #[serde(default)]
    rng: Option<u64>,
    #[serde(default)]
    rotating_speed: Option<u32>,
    /// Written for the reader's information; never read.
    #[serde(skip_deserializing, serialize_with = "this_version")]
    version: (),
}

fn this_version<S: Serializer>(_: &(), serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(VERSION)
}

/// What `poll` reports: `{gear, polls, rotatingSpeed, variant}` for a
/// `DummySpecialDevice`, `{polls, properties, variant}` for a `DummyProtocolDevice`
/// (keys sorted, as earlier versions wrote them). Octopus's documents, plus `polls`
/// and each property's `updatedAt`.
/// the guest's own count, carried by snapshots, which is what shows a hot swap kept
/// the device's state (docs/from-octopus.md). `variant` is written by test builds only.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(skip_serializing_if = "Option::is_none")]
    gear: Option<&'static str>,
    polls: u64,
    /// Octopus's typed status properties (`sim::status_property`).
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotating_speed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'static str>,
}

/// One configured device: who it is, its spec and the simulation's state.
#[derive(Debug)]
pub struct Dummy {
    /// `namespace/name`, for log lines.
    name: String,
    uid: String,
    spec: Spec,
    /// `reference/item` of every resolved reference, named (never their values) in the
    /// `Configured` event so an operator can see what the device was given; not in the
    /// status, which is Octopus's document.
    references: Vec<String>,
    polls: u64,
    rng: Rng,
    rotating_speed: u32,
    properties: BTreeMap<String, Observed>,
}

impl Dummy {
    /// Takes a new spec and identity, keeping the simulation's state.
    fn apply(&mut self, spec: Spec, ctx: &Context) {
        self.name = ctx.device_name();
        self.uid.clone_from(&ctx.device.uid);
        self.spec = spec;
        self.references = references(ctx);
    }

    fn settings(&self) -> Settings {
        Settings::poll_every_ms(self.spec.poll_interval_ms)
    }
}

fn parse(spec: &Value, ctx: &Context) -> Result<Spec> {
    let kind = Kind::from_model(&ctx.model.api_version, &ctx.model.kind)?;
    spec::from_value(kind, spec)
}

fn references(ctx: &Context) -> Vec<String> {
    ctx.references
        .iter()
        .map(|r| format!("{}/{}", r.reference, r.item))
        .collect()
}

impl Device for Dummy {
    /// Read as JSON first: the model decides which spec it is.
    type Spec = Value;
    type Status = Status;
    type State = Snapshot;

    fn describe() -> Info {
        Kind::ALL
            .into_iter()
            .fold(Info::new(NAME, VERSION), |info, kind| {
                info.model(
                    ModelInfo::new(Kind::API_VERSION, kind.name()).declared(kind.declaration()),
                )
            })
    }

    fn configure(spec: Value, ctx: &Context) -> Result<(Self, Settings)> {
        let dummy = Dummy {
            name: ctx.device_name(),
            uid: ctx.device.uid.clone(),
            spec: parse(&spec, ctx)?,
            references: references(ctx),
            polls: 0,
            rng: Rng::from_seed(&ctx.device.uid),
            rotating_speed: 0,
            properties: BTreeMap::new(),
        };
        let summary = summary(&dummy);
        log::info(&format!("configured {summary}"));
        events::normal("Configured", &summary);
        let settings = dummy.settings();
        Ok((dummy, settings))
    }

    fn reconfigure(&mut self, spec: Value, ctx: &Context) -> Result<Settings> {
        let spec = parse(&spec, ctx)?;
        self.apply(spec, ctx);
        log::info(&format!("reconfigured {}", summary(self)));
        Ok(self.settings())
    }

    fn poll(&mut self) -> Result<Status> {
        if cfg!(feature = "broken-poll") {
            #[allow(clippy::panic, reason = "a test variant that traps on purpose")]
            {
                panic!("broken-poll variant: trapping on purpose");
            }
        }
        self.polls += 1;
        let mut status = Status {
            gear: None,
            polls: self.polls,
            properties: None,
            rotating_speed: None,
            variant: cfg!(feature = "v2").then_some("v2"),
        };
        match &self.spec.device {
            DeviceSpec::Special(spec) => {
                self.rotating_speed = sim::step_special(self.rotating_speed, spec, &mut self.rng);
                status.gear = Some(spec.gear.as_str());
                status.rotating_speed = Some(self.rotating_speed);
            }
            DeviceSpec::Protocol(spec) => {
                let now = sim::rfc3339(clock::now_ms());
                sim::step_protocol(&mut self.properties, spec, &mut self.rng, &now);
                status.properties = Some(
                    self.properties
                        .iter()
                        .map(|(name, observed)| (name.clone(), sim::status_property(observed)))
                        .collect(),
                );
            }
        }
        Ok(status)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: Some(SNAPSHOT_FORMAT.to_owned()),
            polls: self.polls,
            properties: Some(self.properties.clone()),
            rng: Some(self.rng.state()),
            rotating_speed: Some(self.rotating_speed),
            version: (),
        }
    }

    fn restore(&mut self, state: Snapshot) {
        self.polls = state.polls;
        self.rotating_speed = state.rotating_speed.unwrap_or(0);
        self.rng = state
            .rng
            .map_or_else(|| Rng::from_seed(&self.uid), Rng::from_state);
        self.properties = state.properties.unwrap_or_default();
    }

    /// As before the SDK: an instance that was never configured hands over a fresh state.
    fn unconfigured_state() -> Option<Snapshot> {
        Some(Snapshot {
            format: Some(SNAPSHOT_FORMAT.to_owned()),
            polls: 0,
            properties: Some(BTreeMap::new()),
            rng: None,
            rotating_speed: Some(0),
            version: (),
        })
    }

    fn check_state(state: &Snapshot, from_version: &str) -> Result<()> {
        if cfg!(feature = "broken-restore") {
            return Err(Error::IncompatibleState(format!(
                "broken-restore variant refuses state from {from_version}"
            )));
        }
        let incompatible = |why: &str| {
            Error::IncompatibleState(format!("not a {SNAPSHOT_FORMAT} snapshot: {why}"))
        };
        match state.format.as_deref() {
            Some(SNAPSHOT_FORMAT) => Ok(()),
            Some(other) => Err(incompatible(&format!("format is {other:?}"))),
            None => Err(incompatible("no format field")),
        }
    }

    fn shutdown(&mut self) {
        log::info(&format!("shut down {}", self.name));
    }
}

/// One line describing a configured device, for the log and the `Configured` event.
fn summary(device: &Dummy) -> String {
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
    let references = if device.references.is_empty() {
        String::new()
    } else {
        format!("; references {}", device.references.join(", "))
    };
    format!(
        "{} {} {detail}; polling every {interval} ms{references}",
        device.spec.device.kind().name(),
        device.name
    )
}

octopus_adaptor_sdk::export_adaptor!(Dummy);

#[cfg(test)]
mod tests {
    use super::*;
    use octopus_adaptor_sdk::{DeviceConfig, Instance};

    fn special_instance(spec: &str) -> Instance<Dummy> {
        let mut instance = Instance::new();
        let mut config = DeviceConfig::for_tests::<Dummy>(spec);
        config.device.name = "fan".into();
        config.device.uid = "uid-1".into();
        instance.configure(config).unwrap();
        instance
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

        let bytes = old.snapshot().unwrap();
        let mut new = special_instance(spec);
        new.restore(&bytes, VERSION).unwrap();
        assert_eq!(new.device().unwrap().rng, old.device().unwrap().rng);
        assert_eq!(new.poll().unwrap(), old.poll().unwrap());
        let status: Value = serde_json::from_str(&new.poll().unwrap()).unwrap();
        assert_eq!(status["polls"], 4);
    }

    /// Status and snapshots are byte for byte what the hand-written adaptor (before the
    /// SDK) wrote for the same device, and its snapshots restore here.
    #[test]
    fn documents_are_those_of_earlier_versions() {
        let mut instance = Instance::<Dummy>::new();
        let mut config = DeviceConfig::for_tests::<Dummy>(
            r#"{"protocol":{"location":"lab"},"on":true,"gear":"fast"}"#,
        );
        config.device.name = "fan".into();
        config.device.uid = "uid-1".into();
        config.references.push(octopus_adaptor_sdk::Reference {
            reference: "secret".into(),
            item: "key".into(),
            value: b"hidden".to_vec(),
        });
        instance.configure(config).unwrap();
        assert_eq!(
            instance.poll().unwrap(),
            r#"{"gear":"fast","polls":1,"rotatingSpeed":200}"#
        );
        assert_eq!(
            instance.poll().unwrap(),
            r#"{"gear":"fast","polls":2,"rotatingSpeed":207}"#
        );
        let snapshot = r#"{"format":"dummy/1","polls":2,"properties":{},"rng":700619024167953982,"rotatingSpeed":207,"version":"0.1.0"}"#;
        assert_eq!(instance.snapshot().unwrap(), snapshot.as_bytes());

        let protocol = spec::parse(
            Kind::Protocol,
            r#"{"protocol":{"ip":"x"},"properties":{"s":{"type":"string"},"f":{"type":"float"},"i":{"type":"int"},"a":{"type":"array","arrayProperties":{"type":"boolean"}},"o":{"type":"object","objectProperties":{"n":{"type":"int"}}},"e":{"type":"object"}}}"#,
        )
        .unwrap();
        let DeviceSpec::Protocol(properties) = &protocol.device else {
            panic!("wrong kind")
        };
        let mut rng = Rng::from_seed("uid-2");
        let mut observed = BTreeMap::new();
        sim::step_protocol(
            &mut observed,
            properties,
            &mut rng,
            "2024-05-01T10:00:00.000Z",
        );
        let dummy = Dummy {
            name: "default/device".into(),
            uid: "uid-2".into(),
            spec: protocol,
            references: Vec::new(),
            polls: 7,
            rng,
            rotating_speed: 0,
            properties: observed,
        };
        let written = r#"{"format":"dummy/1","polls":7,"properties":{"a":{"type":"array","updatedAt":"2024-05-01T10:00:00.000Z","value":[true,true]},"e":{"type":"object","updatedAt":"2024-05-01T10:00:00.000Z","value":{"intValue":320,"stringValue":"T6RAUP4I"}},"f":{"type":"float","updatedAt":"2024-05-01T10:00:00.000Z","value":7.24},"i":{"type":"int","updatedAt":"2024-05-01T10:00:00.000Z","value":745},"o":{"type":"object","updatedAt":"2024-05-01T10:00:00.000Z","value":{"n":751}},"s":{"type":"string","updatedAt":"2024-05-01T10:00:00.000Z","value":"xUuHV4L9Rj"}},"rng":1615671245494300691,"rotatingSpeed":0,"version":"0.1.0"}"#;
        let bytes = octopus_adaptor_sdk::state::encode(&dummy.snapshot()).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), written);
        let mut instance = Instance::<Dummy>::new();
        instance.restore(written.as_bytes(), "0.1.0").unwrap();
        let mut config = DeviceConfig::for_tests::<Dummy>(
            r#"{"protocol":{"ip":"x"},"properties":{"s":{"type":"string","readOnly":true},"f":{"type":"float","readOnly":true},"i":{"type":"int","readOnly":true},"a":{"type":"array","readOnly":true,"arrayProperties":{"type":"boolean"}},"o":{"type":"object","readOnly":true,"objectProperties":{"n":{"type":"int"}}},"e":{"type":"object","readOnly":true}}}"#,
        );
        config.model.kind = "DummyProtocolDevice".into();
        config.device.uid = "uid-2".into();
        instance.configure(config).unwrap();
        assert_eq!(
            instance.poll().unwrap(),
            r#"{"polls":8,"properties":{"a":{"arrayValue":[{"booleanValue":true,"type":"boolean"},{"booleanValue":true,"type":"boolean"}],"type":"array","updatedAt":"2024-05-01T10:00:00.000Z"},"e":{"objectValue":{"intValue":{"intValue":320,"type":"int"},"stringValue":{"stringValue":"T6RAUP4I","type":"string"}},"type":"object","updatedAt":"2024-05-01T10:00:00.000Z"},"f":{"floatValue":"7240m","type":"float","updatedAt":"2024-05-01T10:00:00.000Z"},"i":{"intValue":745,"type":"int","updatedAt":"2024-05-01T10:00:00.000Z"},"o":{"objectValue":{"n":{"intValue":751,"type":"int"}},"type":"object","updatedAt":"2024-05-01T10:00:00.000Z"},"s":{"stringValue":"xUuHV4L9Rj","type":"string","updatedAt":"2024-05-01T10:00:00.000Z"}}}"#,
            "read-only values kept from the snapshot, typed as Octopus's status"
        );
        for (kind, doc) in [
            ("DummyProtocolDevice", instance.poll().unwrap()),
            (
                "DummySpecialDevice",
                special_instance(r#"{"protocol":{"location":"lab"},"on":true}"#)
                    .poll()
                    .unwrap(),
            ),
        ] {
            let doc: Value = serde_json::from_str(&doc).unwrap();
            assert_eq!(
                crds::octopus::check(kind, &doc),
                Vec::<String>::new(),
                "{doc}"
            );
        }

        assert_eq!(
            Instance::<Dummy>::new().snapshot().unwrap(),
            br#"{"format":"dummy/1","polls":0,"properties":{},"rng":null,"rotatingSpeed":0,"version":"0.1.0"}"#,
            "never configured"
        );

        let mut restored = Instance::<Dummy>::new();
        restored.restore(written.as_bytes(), "0.1.0").unwrap();
        let mut config = DeviceConfig::for_tests::<Dummy>(r#"{"protocol":{"ip":"x"}}"#);
        config.model.kind = "DummyProtocolDevice".into();
        config.device.uid = "uid-2".into();
        restored.configure(config).unwrap();
        let device = restored.device().unwrap();
        assert_eq!((device.polls, device.rng), (7, dummy.rng));
    }

    #[test]
    fn restore_refuses_foreign_state() {
        for bytes in [
            &b"garbage"[..],
            br#"{"polls":3}"#,
            br#"{"format":"dummy/2","polls":1}"#,
        ] {
            assert!(matches!(
                Instance::<Dummy>::new().restore(bytes, "0.0.1"),
                Err(Error::IncompatibleState(_))
            ));
        }
    }

    #[test]
    fn poll_before_configure_fails() {
        assert!(matches!(
            Instance::<Dummy>::new().poll(),
            Err(Error::Internal(_))
        ));
    }
}
