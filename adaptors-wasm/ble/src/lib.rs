//! The Octopus BLE adaptor: a `BluetoothDevice` is one GATT peripheral, found by
//! `protocol.endpoint` (its grant) on the limb's Bluetooth controller.
//!
//! - The connection stays open between polls; when it drops, the next poll reconnects
//!   (the limb backs off between failed attempts) and the device is Unhealthy meanwhile.
//! - `ReadOnly` (and `ReadWrite`) properties are read every `syncInterval`.
//! - `NotifyOnly` properties are subscribed to; a poll waits for their notifications
//!   between reads, so a notification reaches status within milliseconds.
//! - `ReadWrite` properties write `dataWrite[defaultValue]` when the device is configured
//!   and when that value changes in the spec, and only then; the value is read back.
//! - A missing characteristic, a failed read or a refused write is that property's
//!   `error`; the others keep their values.

pub mod convert;

use std::collections::BTreeMap;

use crds::models::ble::{
    BluetoothDeviceProperty, BluetoothDevicePropertyAccessMode as Mode, BluetoothDeviceSpec,
    BluetoothDeviceStatus, BluetoothDeviceStatusProperty,
};
use octopus_adaptor_sdk::ble::{self, Peripheral};
use octopus_adaptor_sdk::{Context, Device, Error, Info, ModelInfo, Result, Settings};
use octopus_adaptor_sdk::{clock, duration, events, log};
use serde::{Deserialize, Serialize};

const NAME: &str = "adaptors.edge.cattle.io/ble";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
const KIND: &str = "BluetoothDevice";
/// The grant: the limb makes `protocol.endpoint` of a BluetoothDevice its peripheral.
const GRANT: &str = "protocol.endpoint";
/// The longest one poll waits for notifications.
const MAX_WAIT_MS: u64 = 1000;
/// Notifications taken per call.
const BATCH: u32 = 256;

/// One property as configured.
#[derive(Clone, Debug, PartialEq)]
struct Plan {
    property: BluetoothDeviceProperty,
    /// The characteristic as the limb reports UUIDs.
    uuid: String,
    /// For ReadWrite: the bytes to write.
    write: Option<Vec<u8>>,
}

/// What survives a hot swap: the status properties, by name.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(default)]
    properties: BTreeMap<String, BluetoothDeviceStatusProperty>,
}

pub struct Ble {
    name: String,
    peripheral: Peripheral,
    plans: Vec<Plan>,
    interval_ms: u64,
    timeout_ms: u32,
    next_read_ms: u64,
    /// Properties whose value must be written at the next chance.
    pending_writes: Vec<String>,
    /// Whether the current connection has been set up (subscriptions, pending writes).
    session: bool,
    /// Why the last write of a ReadWrite property failed; reads of it keep saying so
    /// until a write succeeds or the spec changes.
    write_errors: BTreeMap<String, String>,
    status: BTreeMap<String, BluetoothDeviceStatusProperty>,
}

fn plan(spec: &BluetoothDeviceSpec) -> Result<(Vec<Plan>, u64, u32)> {
    let params = spec.parameters.clone().unwrap_or_default();
    let interval_ms = duration::parse_ms(params.sync_interval())
        .map_err(|e| Error::InvalidSpec(format!("parameters.syncInterval: {e}")))?;
    let timeout_ms = duration::parse_ms(params.timeout())
        .map_err(|e| Error::InvalidSpec(format!("parameters.timeout: {e}")))?;
    if spec.protocol.endpoint.trim().is_empty() {
        return Err(Error::InvalidSpec("protocol.endpoint is empty".into()));
    }
    let mut plans = Vec::with_capacity(spec.properties.len());
    for (i, p) in spec.properties.iter().enumerate() {
        let uuid = ble::canonical_uuid(&p.visitor.characteristic_uuid).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "properties[{i}].visitor.characteristicUUID: {:?} is not a UUID",
                p.visitor.characteristic_uuid
            ))
        })?;
        let write = if p.access_mode() == Mode::ReadWrite {
            let key = p.visitor.default_value.as_deref().ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "properties[{i}].visitor.defaultValue: a ReadWrite property names the dataWrite entry to write"
                ))
            })?;
            let bytes = p.visitor.data_write.get(key).ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "properties[{i}].visitor.defaultValue: {key:?} is not a key of dataWrite"
                ))
            })?;
            Some(bytes.0.clone())
        } else {
            None
        };
        plans.push(Plan {
            property: p.clone(),
            uuid,
            write,
        });
    }
    Ok((
        plans,
        interval_ms.max(1),
        u32::try_from(timeout_ms).unwrap_or(u32::MAX).max(1),
    ))
}

impl Ble {
    fn settings(&self) -> Settings {
        if self
            .plans
            .iter()
            .any(|p| p.property.access_mode() == Mode::NotifyOnly)
        {
            // Polls come back to back and wait for notifications inside.
            Settings::poll_every_ms(0)
        } else {
            Settings::poll_every_ms(self.interval_ms)
        }
    }

    fn set(&mut self, plan: &Plan, value: std::result::Result<String, String>) {
        let entry = self
            .status
            .entry(plan.property.name.clone())
            .or_insert_with(|| BluetoothDeviceStatusProperty {
                name: Some(plan.property.name.clone()),
                access_mode: Some(plan.property.access_mode()),
                ..Default::default()
            });
        entry.access_mode = Some(plan.property.access_mode());
        match value {
            Ok(v) => {
                entry.value = Some(v);
                entry.updated_at = Some(clock::now_rfc3339());
                entry.error = self.write_errors.get(&plan.property.name).cloned();
            }
            Err(e) => entry.error = Some(e),
        }
    }

    /// The bytes as status shows them: converted if the property has a converter, else
    /// as text (Octopus showed a notification's bytes as a string).
    fn show(plan: &Plan, data: &[u8]) -> std::result::Result<String, String> {
        match &plan.property.visitor.data_converter {
            Some(c) => convert::convert(c, data),
            None => Ok(String::from_utf8_lossy(data).into_owned()),
        }
    }

    /// Connects if needed; on a new connection subscribes and writes what is pending.
    fn ensure_session(&mut self) -> Result<()> {
        if self.session && self.peripheral.is_connected() {
            return Ok(());
        }
        self.session = false;
        let found = self
            .peripheral
            .connect(self.timeout_ms)
            .map_err(|e| Error::Unreachable(format!("{}: {e}", self.peripheral.address())))?;
        let plans = self.plans.clone();
        for plan in &plans {
            if !found.iter().any(|c| c.uuid == plan.uuid) {
                self.set(
                    plan,
                    Err(format!(
                        "the peripheral has no characteristic {}",
                        plan.uuid
                    )),
                );
                continue;
            }
            if plan.property.access_mode() == Mode::NotifyOnly
                && let Err(e) = self.peripheral.subscribe(&plan.uuid, self.timeout_ms)
            {
                self.set(plan, Err(format!("subscribe: {e}")));
            }
        }
        self.session = true;
        Ok(())
    }

    fn write_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending_writes);
        for name in pending {
            let Some(plan) = self.plans.iter().find(|p| p.property.name == name).cloned() else {
                continue;
            };
            let Some(bytes) = &plan.write else {
                continue;
            };
            match self
                .peripheral
                .write(&plan.uuid, bytes, true, self.timeout_ms)
            {
                Ok(()) => {
                    log::info(&format!(
                        "{}: wrote {:?} to {}",
                        self.name, plan.property.visitor.default_value, name
                    ));
                    let back = self
                        .peripheral
                        .read(&plan.uuid, self.timeout_ms)
                        .map_err(|e| format!("read back: {e}"))
                        .and_then(|d| Self::show(&plan, &d));
                    self.set(&plan, back);
                }
                Err(e) => {
                    self.write_errors
                        .insert(name.clone(), format!("write: {e}"));
                    self.set(&plan, Err(format!("write: {e}")));
                    // A refusal is not retried until the spec changes; a lost connection is.
                    if !self.peripheral.is_connected() {
                        self.pending_writes.push(name);
                    }
                }
            }
        }
    }

    fn read_all(&mut self) {
        let plans = self.plans.clone();
        for plan in &plans {
            if plan.property.access_mode() == Mode::NotifyOnly {
                continue;
            }
            let got = self
                .peripheral
                .read(&plan.uuid, self.timeout_ms)
                .map_err(|e| format!("read: {e}"))
                .and_then(|d| Self::show(plan, &d));
            self.set(plan, got);
        }
    }

    fn take_notifications(&mut self, wait_ms: u32) {
        let Ok(list) = self.peripheral.notifications(BATCH, wait_ms) else {
            return;
        };
        for n in list {
            let Some(plan) = self
                .plans
                .iter()
                .find(|p| p.uuid == n.uuid && p.property.access_mode() == Mode::NotifyOnly)
                .cloned()
            else {
                continue;
            };
            let shown = Self::show(&plan, &n.value);
            self.set(&plan, shown);
        }
    }

    fn status(&self) -> BluetoothDeviceStatus {
        BluetoothDeviceStatus {
            properties: self
                .plans
                .iter()
                .filter_map(|p| self.status.get(&p.property.name).cloned())
                .collect(),
        }
    }
}

impl Device for Ble {
    type Spec = BluetoothDeviceSpec;
    type Status = BluetoothDeviceStatus;
    type State = Snapshot;

    fn describe() -> Info {
        // No resource field: the limb itself grants a BluetoothDevice's endpoint.
        Info::new(NAME, VERSION).model(ModelInfo::new(API_VERSION, KIND).declared(include_str!(
            "../../../crds/generated/models/bluetoothdevices.json"
        )))
    }

    fn configure(spec: BluetoothDeviceSpec, ctx: &Context) -> Result<(Self, Settings)> {
        let (plans, interval_ms, timeout_ms) = plan(&spec)?;
        let peripheral = ble::find(GRANT, timeout_ms).map_err(|e| {
            Error::from(e).context(&format!("finding {:?}", spec.protocol.endpoint))
        })?;
        let pending_writes = plans
            .iter()
            .filter(|p| p.write.is_some())
            .map(|p| p.property.name.clone())
            .collect();
        let device = Ble {
            name: ctx.device_name(),
            peripheral,
            plans,
            interval_ms,
            timeout_ms,
            next_read_ms: 0,
            pending_writes,
            session: false,
            write_errors: BTreeMap::new(),
            status: BTreeMap::new(),
        };
        let summary = format!(
            "{} ({}) for {}",
            spec.protocol.endpoint,
            device.peripheral.address(),
            device.name
        );
        log::info(&format!("configured {summary}"));
        events::normal("Configured", &summary);
        let settings = device.settings();
        Ok((device, settings))
    }

    /// Keeps the connection when only properties change; writes only values that changed.
    fn reconfigure(&mut self, spec: BluetoothDeviceSpec, ctx: &Context) -> Result<Settings> {
        let (plans, interval_ms, timeout_ms) = plan(&spec)?;
        for p in &plans {
            let old = self
                .plans
                .iter()
                .find(|o| o.property.name == p.property.name);
            if p.write.is_some() && old.map(|o| (&o.write, &o.uuid)) != Some((&p.write, &p.uuid)) {
                self.pending_writes.push(p.property.name.clone());
                self.write_errors.remove(&p.property.name);
            }
        }
        let resubscribe = plans.iter().any(|p| {
            p.property.access_mode() == Mode::NotifyOnly
                && !self
                    .plans
                    .iter()
                    .any(|o| o.uuid == p.uuid && o.property.access_mode() == Mode::NotifyOnly)
        });
        self.status
            .retain(|name, _| plans.iter().any(|p| &p.property.name == name));
        self.plans = plans;
        self.interval_ms = interval_ms;
        self.timeout_ms = timeout_ms;
        self.next_read_ms = 0;
        self.name = ctx.device_name();
        if resubscribe {
            self.session = false;
        }
        Ok(self.settings())
    }

    fn poll(&mut self) -> Result<BluetoothDeviceStatus> {
        self.ensure_session()?;
        self.write_pending();
        self.take_notifications(0);
        let now = clock::monotonic_ms();
        if now >= self.next_read_ms {
            self.read_all();
            self.next_read_ms = clock::monotonic_ms() + self.interval_ms;
        } else if self
            .plans
            .iter()
            .any(|p| p.property.access_mode() == Mode::NotifyOnly)
        {
            let wait = (self.next_read_ms - now).min(MAX_WAIT_MS);
            self.take_notifications(u32::try_from(wait).unwrap_or(1).max(1));
        }
        if !self.peripheral.is_connected() {
            self.session = false;
            return Err(Error::Unreachable(format!(
                "{} went away",
                self.peripheral.address()
            )));
        }
        Ok(self.status())
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            properties: self.status.clone(),
        }
    }

    fn restore(&mut self, state: Snapshot) {
        self.status = state.properties;
    }

    fn shutdown(&mut self) {
        self.peripheral.disconnect();
    }
}

octopus_adaptor_sdk::export_adaptor!(Ble);

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> BluetoothDeviceSpec {
        serde_json::from_value(serde_json::to_value(serde_yaml_like(yaml)).unwrap()).unwrap()
    }

    // The guest has no YAML parser; the tests write JSON.
    fn serde_yaml_like(json: &str) -> serde_json::Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_plan_takes_octopus_defaults_and_checks_read_write_properties() {
        let s = spec(
            r#"{"protocol": {"endpoint": "C0:98:E5:49:00:01"}, "properties": [
                {"name": "level", "accessMode": "ReadOnly", "visitor": {"characteristicUUID": "2A19"}},
                {"name": "switch", "accessMode": "ReadWrite", "visitor": {"characteristicUUID": "2A56",
                  "defaultValue": "ON", "dataWrite": {"ON": "AQ==", "OFF": [0]}}},
                {"name": "temp", "visitor": {"characteristicUUID": "226c000064764566756266734470666d"}}]}"#,
        );
        let (plans, interval, timeout) = plan(&s).unwrap();
        assert_eq!((interval, timeout), (15_000, 30_000));
        assert_eq!(plans[0].uuid, "00002a19-0000-1000-8000-00805f9b34fb");
        assert_eq!(plans[1].write, Some(vec![1]));
        assert_eq!(plans[2].property.access_mode(), Mode::NotifyOnly);

        let mut bad = s.clone();
        bad.properties[1].visitor.default_value = Some("MAYBE".into());
        assert!(
            plan(&bad)
                .unwrap_err()
                .message()
                .contains("not a key of dataWrite")
        );
        let mut bad = s.clone();
        bad.properties[0].visitor.characteristic_uuid = "xyz".into();
        assert!(
            plan(&bad)
                .unwrap_err()
                .message()
                .contains("characteristicUUID")
        );
        let mut bad = s;
        bad.protocol.endpoint = " ".into();
        assert!(plan(&bad).is_err());
    }

    #[test]
    fn the_status_is_octopus_s() {
        let status = BluetoothDeviceStatus {
            properties: vec![BluetoothDeviceStatusProperty {
                name: Some("level".into()),
                value: Some("87.000000".into()),
                access_mode: Some(Mode::ReadOnly),
                updated_at: Some("2026-12-07T15:00:00Z".into()),
                error: None,
            }],
        };
        let doc = serde_json::to_value(&status).unwrap();
        assert_eq!(crds::octopus::check(KIND, &doc), Vec::<String>::new());
    }
}
