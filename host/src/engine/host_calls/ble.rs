//! `octopus:adaptor/ble` for the guest: WIT types in, [`capabilities::ble`] out.
//!
//! [`capabilities::ble`]: crate::capabilities::ble

use tokio::time::Instant;
use tracing::Instrument;
use wasmtime::component::Resource;

use super::Wit;
use crate::bindings::CapabilityError;
use crate::bindings::octopus::adaptor::ble as wit;
use crate::capabilities::CapabilityError as CapError;
use crate::capabilities::ble::{BleError, Peripheral, att, props};
use crate::engine::StoreState;

/// Most notifications handed to the guest in one call.
const MAX_NOTIFICATIONS: u32 = 1024;

fn uuid(text: &str) -> Result<u128, CapError> {
    att::parse_uuid(text).ok_or_else(|| {
        CapError::InvalidArgument(format!("{text:?} is not a 16-, 32- or 128-bit UUID"))
    })
}

fn properties(bits: u8) -> wit::CharacteristicProperties {
    let mut p = wit::CharacteristicProperties::empty();
    for (bit, flag) in [
        (0x01, wit::CharacteristicProperties::BROADCAST),
        (props::READ, wit::CharacteristicProperties::READ),
        (
            props::WRITE_WITHOUT_RESPONSE,
            wit::CharacteristicProperties::WRITE_WITHOUT_RESPONSE,
        ),
        (props::WRITE, wit::CharacteristicProperties::WRITE),
        (props::NOTIFY, wit::CharacteristicProperties::NOTIFY),
        (props::INDICATE, wit::CharacteristicProperties::INDICATE),
        (
            0x40,
            wit::CharacteristicProperties::AUTHENTICATED_SIGNED_WRITES,
        ),
        (0x80, wit::CharacteristicProperties::EXTENDED_PROPERTIES),
    ] {
        if bits & bit != 0 {
            p |= flag;
        }
    }
    p
}

impl StoreState {
    fn ble_deadline(&self, timeout_ms: u32) -> Instant {
        Instant::now() + self.caps.timeout(timeout_ms)
    }

    /// What `read`, `write` and `subscribe` share: the UUID parsed (a bad one is the
    /// guest's `invalid-argument`, before any radio traffic), a deadline from the guest's
    /// timeout, the operation in its span, and the outcome counted.
    async fn on_characteristic<T>(
        &mut self,
        p: &Resource<Peripheral>,
        uuid_text: &str,
        timeout_ms: u32,
        span: tracing::Span,
        op: impl AsyncFnOnce(&mut Peripheral, u128, Instant) -> Result<T, BleError>,
    ) -> wasmtime::Result<Result<T, CapabilityError>> {
        let uuid = match uuid(uuid_text) {
            Ok(u) => u,
            Err(e) => return Ok(Err(e.into())),
        };
        let deadline = self.ble_deadline(timeout_ms);
        let peripheral = self.table.get_mut(p)?;
        let done = op(peripheral, uuid, deadline)
            .instrument(span)
            .await
            .map_err(CapError::from);
        self.count("ble", &done);
        Ok(done.wit())
    }
}

impl wit::Host for StoreState {
    async fn find(
        &mut self,
        grant: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Resource<Peripheral>, CapabilityError>> {
        let span = tracing::debug_span!("limb.ble.find", device = %self.device, %grant);
        let timeout = self.caps.timeout(timeout_ms);
        let opened = self.caps.open_ble(&grant, timeout).instrument(span).await;
        self.count("ble", &opened);
        self.push_handle(opened)
    }
}

impl wit::HostPeripheral for StoreState {
    async fn address(&mut self, p: Resource<Peripheral>) -> wasmtime::Result<String> {
        Ok(self.table.get(&p)?.address())
    }

    async fn connect(
        &mut self,
        p: Resource<Peripheral>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<wit::Characteristic>, CapabilityError>> {
        let deadline = self.ble_deadline(timeout_ms);
        let span = tracing::debug_span!("limb.ble.connect", device = %self.device);
        let peripheral = self.table.get_mut(&p)?;
        let found = peripheral
            .connect(deadline)
            .instrument(span)
            .await
            .map_err(CapError::from);
        self.count("ble", &found);
        Ok(found
            .map(|chars| {
                chars
                    .into_iter()
                    .map(|c| wit::Characteristic {
                        service: att::format_uuid(c.service),
                        uuid: att::format_uuid(c.uuid),
                        properties: properties(c.properties),
                    })
                    .collect()
            })
            .wit())
    }

    async fn is_connected(&mut self, p: Resource<Peripheral>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&p)?.is_connected())
    }

    async fn read(
        &mut self,
        p: Resource<Peripheral>,
        uuid: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, CapabilityError>> {
        let span = tracing::debug_span!("limb.ble.read", device = %self.device, %uuid);
        self.on_characteristic(&p, &uuid, timeout_ms, span, async |c, u, d| {
            c.read(u, d).await
        })
        .await
    }

    async fn write(
        &mut self,
        p: Resource<Peripheral>,
        uuid: String,
        data: Vec<u8>,
        with_response: bool,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<(), CapabilityError>> {
        let span = tracing::debug_span!("limb.ble.write", device = %self.device, %uuid);
        self.on_characteristic(&p, &uuid, timeout_ms, span, async |c, u, d| {
            c.write(u, &data, with_response, d).await
        })
        .await
    }

    async fn subscribe(
        &mut self,
        p: Resource<Peripheral>,
        uuid: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<(), CapabilityError>> {
        let span = tracing::debug_span!("limb.ble.subscribe", device = %self.device, %uuid);
        self.on_characteristic(&p, &uuid, timeout_ms, span, async |c, u, d| {
            c.subscribe(u, d).await
        })
        .await
    }

    async fn notifications(
        &mut self,
        p: Resource<Peripheral>,
        max: u32,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<wit::Notification>, CapabilityError>> {
        let max = max.min(MAX_NOTIFICATIONS) as usize;
        // 0 means "do not wait" here, not "the cap".
        let deadline = if timeout_ms == 0 {
            Instant::now()
        } else {
            self.ble_deadline(timeout_ms)
        };
        let got = self
            .table
            .get_mut(&p)?
            .notifications(max, deadline)
            .await
            .map_err(CapError::from);
        Ok(got
            .map(|list| {
                list.into_iter()
                    .map(|n| wit::Notification {
                        uuid: att::format_uuid(n.uuid),
                        value: n.value,
                        indication: n.indication,
                    })
                    .collect()
            })
            .wit())
    }

    async fn disconnect(&mut self, p: Resource<Peripheral>) -> wasmtime::Result<()> {
        let span = tracing::debug_span!("limb.ble.disconnect", device = %self.device);
        self.table.get_mut(&p)?.disconnect().instrument(span).await;
        Ok(())
    }

    async fn drop(&mut self, p: Resource<Peripheral>) -> wasmtime::Result<()> {
        self.table.delete(p)?;
        self.caps.release();
        Ok(())
    }
}
