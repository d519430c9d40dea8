//! The Octopus GPIO adaptor: a `GPIODevice` is lines of one chip, each a named input or
//! output, reached only through the limb's `gpio` capability.
//!
//! - Outputs are driven to the spec's `value` when the device is configured and when
//!   the spec changes, and to `shutdownValue` (default inactive) at shutdown.
//! - Inputs are read every `syncInterval`. Inputs with `edges` are also waited on: a
//!   poll returns as soon as an edge comes, so status follows the edge, not the interval.
//! - A hot swap hands lines over inside the limb (the new instance shares the old one's
//!   request), so outputs keep their level; the old instance's shutdown levels are
//!   refused by the limb once the new instance holds the line.

mod plan;
mod reading;

use std::collections::BTreeMap;
use std::time::Duration;

use crds::models::gpio::{GPIODeviceSpec, GPIODeviceStatus};
use octopus_adaptor_sdk::gpio::{self, Line};
use octopus_adaptor_sdk::{
    Context, Device, Error, Info, ModelInfo, ResourceKind, Result, Settings,
};
use octopus_adaptor_sdk::{clock, events, log};
use serde::{Deserialize, Serialize};

use plan::Plan;
use reading::Reading;

const NAME: &str = "adaptors.edge.cattle.io/gpio";
#[cfg(not(feature = "v2"))]
const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "v2")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+v2");
const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
const KIND: &str = "GPIODevice";
/// Every property's line, joined to the chip: the limb grants `chip:line` per property,
/// named `properties[i].line`.
const LINES: &str = "chip:properties[*].line";
/// Tag of the `snapshot` format.
const SNAPSHOT_FORMAT: &str = "gpio/1";

/// The longest one poll waits for edges: levels are read at least this often.
const MAX_WAIT_MS: u64 = 1000;
/// With several edge-detecting inputs, each is waited on for this long in turn.
const SLICE_MS: u64 = 10;
/// Edge events taken from a line per wait.
const EDGE_BATCH: u32 = 256;

/// What survives a hot swap: each property's reading, by name.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    format: String,
    #[serde(default)]
    properties: BTreeMap<String, Reading>,
}

struct Pin {
    plan: Plan,
    line: Line,
    reading: Reading,
}

pub struct Gpio {
    name: String,
    interval_ms: u64,
    pins: Vec<Pin>,
}

impl Gpio {
    fn settings(&self) -> Settings {
        if self.pins.iter().any(|p| p.plan.edges()) {
            // Polls come back to back and wait for edges inside.
            Settings::poll_every_ms(0)
        } else {
            Settings::poll_every_ms(self.interval_ms)
        }
    }

    /// Waits for edges on the edge-detecting inputs, at most the wait of one poll.
    fn wait_for_edges(&mut self) -> Result<()> {
        let wait = self.interval_ms.min(MAX_WAIT_MS);
        let watched: Vec<usize> = (0..self.pins.len())
            .filter(|&i| self.pins[i].plan.edges())
            .collect();
        let started = clock::monotonic_ms();
        // One line: one wait, woken by its edge. Several: short waits in turn, so that
        // an edge on any of them is seen within a slice per line.
        let slice = if watched.len() == 1 { wait } else { SLICE_MS };
        let rounds = wait / slice.max(1) + 1;
        for _ in 0..rounds {
            let mut seen = false;
            for &i in &watched {
                let pin = &mut self.pins[i];
                let timeout = if seen { 1 } else { slice };
                let events = pin
                    .line
                    .wait_edges(EDGE_BATCH, Duration::from_millis(timeout))
                    .map_err(|e| Error::Unreachable(format!("{}: {e}", pin.plan.name)))?;
                seen |= !events.is_empty();
                pin.reading.edges(&events);
            }
            if seen || clock::monotonic_ms().saturating_sub(started) >= wait {
                break;
            }
        }
        Ok(())
    }

    fn status(&self) -> GPIODeviceStatus {
        GPIODeviceStatus {
            properties: self
                .pins
                .iter()
                .map(|p| p.reading.status(&p.plan.name, p.plan.edges()))
                .collect(),
        }
    }
}

/// Requests a line and drives an output to its level.
fn request(plan: Plan, reading: Reading) -> Result<Pin> {
    let line = gpio::request(&plan.grant, plan.settings)
        .map_err(|e| Error::from(e).context(&format!("line {:?}", plan.name)))?;
    if let Some(level) = plan.drive {
        line.set(level)
            .map_err(|e| Error::from(e).context(&format!("driving {:?}", plan.name)))?;
    }
    Ok(Pin {
        plan,
        line,
        reading,
    })
}

impl Device for Gpio {
    type Spec = GPIODeviceSpec;
    type Status = GPIODeviceStatus;
    type State = Snapshot;

    fn describe() -> Info {
        Info::new(NAME, VERSION).model(
            ModelInfo::new(API_VERSION, KIND)
                .resource(LINES, ResourceKind::Gpio)
                .declared(include_str!(
                    "../../../crds/generated/models/gpiodevices.json"
                )),
        )
    }

    fn configure(spec: GPIODeviceSpec, ctx: &Context) -> Result<(Self, Settings)> {
        let (plans, interval_ms) = plan::plan(&spec)?;
        let pins = plans
            .into_iter()
            .map(|p| request(p, Reading::default()))
            .collect::<Result<Vec<_>>>()?;
        let device = Gpio {
            name: ctx.device_name(),
            interval_ms,
            pins,
        };
        let summary = format!(
            "{} lines of {} for {}",
            device.pins.len(),
            spec.chip,
            device.name
        );
        log::info(&format!("configured {summary}"));
        events::normal("Configured", &summary);
        let settings = device.settings();
        Ok((device, settings))
    }

    /// Keeps every line whose grant and settings did not change; see [`Gpio::assemble`].
    fn reconfigure(&mut self, spec: GPIODeviceSpec, ctx: &Context) -> Result<Settings> {
        let (plans, interval_ms) = plan::plan(&spec)?;
        let mut old: Vec<Option<Pin>> = std::mem::take(&mut self.pins)
            .into_iter()
            .map(Some)
            .collect();
        let mut pins = Vec::with_capacity(plans.len());
        if let Err(e) = Self::assemble(plans, &mut old, &mut pins) {
            // The lines kept and requested so far, and the old ones not reached, stay in
            // service; the error says which line failed.
            self.pins = pins.into_iter().chain(old.into_iter().flatten()).collect();
            return Err(e);
        }
        drop(old);
        self.pins = pins;
        self.interval_ms = interval_ms;
        self.name = ctx.device_name();
        Ok(self.settings())
    }

    fn poll(&mut self) -> Result<GPIODeviceStatus> {
        if self.pins.iter().any(|p| p.plan.edges()) {
            self.wait_for_edges()?;
        }
        let now = clock::now_rfc3339;
        for pin in &mut self.pins {
            let level = pin
                .line
                .get()
                .map_err(|e| Error::Unreachable(format!("{}: {e}", pin.plan.name)))?;
            pin.reading.level(level, now);
        }
        Ok(self.status())
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT.to_owned(),
            properties: self
                .pins
                .iter()
                .map(|p| (p.plan.name.clone(), p.reading.clone()))
                .collect(),
        }
    }

    fn restore(&mut self, mut state: Snapshot) {
        for pin in &mut self.pins {
            if let Some(reading) = state.properties.remove(&pin.plan.name) {
                pin.reading = reading;
            }
        }
    }

    fn unconfigured_state() -> Option<Snapshot> {
        Some(Snapshot {
            format: SNAPSHOT_FORMAT.to_owned(),
            properties: BTreeMap::new(),
        })
    }

    fn check_state(state: &Snapshot, _from_version: &str) -> Result<()> {
        if state.format == SNAPSHOT_FORMAT {
            Ok(())
        } else {
            Err(Error::IncompatibleState(format!(
                "not a {SNAPSHOT_FORMAT} snapshot: format is {:?}",
                state.format
            )))
        }
    }

    /// Leaves each output at its shutdown level. After a hot swap the limb refuses these
    /// writes (the new instance holds the lines), which is what keeps outputs steady.
    fn shutdown(&mut self) {
        for pin in &self.pins {
            if pin.plan.drive.is_some()
                && let Err(e) = pin.line.set(pin.plan.shutdown)
            {
                log::debug(&format!("{} keeps its level: {e}", pin.plan.name));
            }
        }
        self.pins.clear();
        log::info(&format!("shut down {}", self.name));
    }
}

impl Gpio {
    /// Moves each plan's line into `pins`: kept from `old` when its grant and settings
    /// did not change (an output then gets its new level on the same request), else
    /// requested anew after the old one is released.
    fn assemble(plans: Vec<Plan>, old: &mut [Option<Pin>], pins: &mut Vec<Pin>) -> Result<()> {
        for plan in plans {
            let kept = old.iter_mut().find(|slot| {
                slot.as_ref()
                    .is_some_and(|p| p.plan.grant == plan.grant && p.plan.settings == plan.settings)
            });
            let pin = match kept.and_then(Option::take) {
                Some(pin) => {
                    if let Some(level) = plan.drive
                        && pin.plan.drive != Some(level)
                    {
                        pin.line.set(level).map_err(|e| {
                            Error::from(e).context(&format!("driving {:?}", plan.name))
                        })?;
                    }
                    let reading = pin.reading;
                    Pin {
                        plan,
                        line: pin.line,
                        reading,
                    }
                }
                None => {
                    // Released first: the same line with other settings is a new request.
                    let reading = old
                        .iter_mut()
                        .find(|s| s.as_ref().is_some_and(|p| p.plan.name == plan.name))
                        .and_then(Option::take)
                        .map(|p| p.reading)
                        .unwrap_or_default();
                    request(plan, reading)?
                }
            };
            pins.push(pin);
        }
        Ok(())
    }
}

octopus_adaptor_sdk::export_adaptor!(Gpio);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_serves_gpio_devices_and_declares_every_line_as_a_gpio_resource() {
        let info = Gpio::describe();
        assert_eq!(info.name, NAME);
        let model = &info.models[0];
        assert_eq!(
            (model.model.api_version.as_str(), model.model.kind.as_str()),
            (API_VERSION, KIND)
        );
        assert_eq!(model.resource_fields[0].path, LINES);
        assert_eq!(model.resource_fields[0].kind, ResourceKind::Gpio);
    }

    #[test]
    fn snapshots_of_another_format_are_refused() {
        let other = Snapshot {
            format: "dummy/1".into(),
            properties: BTreeMap::new(),
        };
        assert!(Gpio::check_state(&other, "0.0.1").is_err());
        assert!(Gpio::check_state(&Gpio::unconfigured_state().unwrap(), VERSION).is_ok());
    }
}
