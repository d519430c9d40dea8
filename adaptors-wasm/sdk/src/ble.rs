//! Bluetooth LE GATT through the limb's controller (contract 0.1.2). The adaptor finds
//! its peripheral by grant name (a `BluetoothDevice`'s is `protocol.endpoint`); the limb
//! resolves it to the address or name the link wrote, and the adaptor can reach no
//! other. Native builds have no limb: every call is `not-permitted`.

use crate::error::CapabilityError;

#[cfg(target_arch = "wasm32")]
use crate::bindings::octopus::adaptor::ble as wit;

/// A characteristic discovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Characteristic {
    /// The service's UUID, 128-bit lowercase with dashes.
    pub service: String,
    /// The characteristic's UUID, 128-bit lowercase with dashes.
    pub uuid: String,
    pub read: bool,
    pub write: bool,
    pub write_without_response: bool,
    pub notify: bool,
    pub indicate: bool,
}

/// A value the peripheral pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub uuid: String,
    pub value: Vec<u8>,
    pub indication: bool,
}

/// The granted peripheral; its connection stays open between calls. Dropping it
/// disconnects.
pub struct Peripheral {
    #[cfg(target_arch = "wasm32")]
    inner: wit::Peripheral,
    #[cfg(not(target_arch = "wasm32"))]
    inner: std::convert::Infallible,
}

impl std::fmt::Debug for Peripheral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Peripheral")
    }
}

/// Finds the peripheral the grant names, scanning for at most `timeout_ms`.
pub fn find(grant: &str, timeout_ms: u32) -> Result<Peripheral, CapabilityError> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(Peripheral {
            inner: wit::find(grant, timeout_ms)?,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (grant, timeout_ms);
        Err(CapabilityError::no_limb())
    }
}

/// The canonical form the limb reports UUIDs in: `2a19` becomes
/// `00002a19-0000-1000-8000-00805f9b34fb`; `None` if `text` is not a UUID.
pub fn canonical_uuid(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let full = match hex.len() {
        4 => format!("0000{hex}00001000800000805f9b34fb"),
        8 => format!("{hex}00001000800000805f9b34fb"),
        32 => hex,
        _ => return None,
    };
    Some(format!(
        "{}-{}-{}-{}-{}",
        &full[0..8],
        &full[8..12],
        &full[12..16],
        &full[16..20],
        &full[20..32]
    ))
}

impl Peripheral {
    /// The address the peripheral was found at.
    pub fn address(&self) -> String {
        #[cfg(target_arch = "wasm32")]
        {
            self.inner.address()
        }
        #[cfg(not(target_arch = "wasm32"))]
        match self.inner {}
    }

    /// Connects if needed and lists the characteristics; `limit-reached` when the
    /// controller holds all the connections it can.
    pub fn connect(&self, timeout_ms: u32) -> Result<Vec<Characteristic>, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self
                .inner
                .connect(timeout_ms)?
                .into_iter()
                .map(|c| {
                    let bits = c.properties.bits();
                    let has = |f: wit::CharacteristicProperties| bits & f.bits() != 0;
                    Characteristic {
                        service: c.service,
                        uuid: c.uuid,
                        read: has(wit::CharacteristicProperties::READ),
                        write: has(wit::CharacteristicProperties::WRITE),
                        write_without_response: has(
                            wit::CharacteristicProperties::WRITE_WITHOUT_RESPONSE,
                        ),
                        notify: has(wit::CharacteristicProperties::NOTIFY),
                        indicate: has(wit::CharacteristicProperties::INDICATE),
                    }
                })
                .collect())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = timeout_ms;
            match self.inner {}
        }
    }

    pub fn is_connected(&self) -> bool {
        #[cfg(target_arch = "wasm32")]
        {
            self.inner.is_connected()
        }
        #[cfg(not(target_arch = "wasm32"))]
        match self.inner {}
    }

    pub fn read(&self, uuid: &str, timeout_ms: u32) -> Result<Vec<u8>, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self.inner.read(uuid, timeout_ms)?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (uuid, timeout_ms);
            match self.inner {}
        }
    }

    pub fn write(
        &self,
        uuid: &str,
        data: &[u8],
        with_response: bool,
        timeout_ms: u32,
    ) -> Result<(), CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self.inner.write(uuid, data, with_response, timeout_ms)?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (uuid, data, with_response, timeout_ms);
            match self.inner {}
        }
    }

    pub fn subscribe(&self, uuid: &str, timeout_ms: u32) -> Result<(), CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self.inner.subscribe(uuid, timeout_ms)?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (uuid, timeout_ms);
            match self.inner {}
        }
    }

    /// Pushed values since the last call, waiting at most `timeout_ms` (0: not at all).
    pub fn notifications(
        &self,
        max: u32,
        timeout_ms: u32,
    ) -> Result<Vec<Notification>, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self
                .inner
                .notifications(max, timeout_ms)?
                .into_iter()
                .map(|n| Notification {
                    uuid: n.uuid,
                    value: n.value,
                    indication: n.indication,
                })
                .collect())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (max, timeout_ms);
            match self.inner {}
        }
    }

    pub fn disconnect(&self) {
        #[cfg(target_arch = "wasm32")]
        self.inner.disconnect();
        #[cfg(not(target_arch = "wasm32"))]
        match self.inner {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_written_as_the_limb_reports_them() {
        assert_eq!(
            canonical_uuid("2A19").as_deref(),
            Some("00002a19-0000-1000-8000-00805f9b34fb")
        );
        assert_eq!(
            canonical_uuid("226c000064764566756266734470666d").as_deref(),
            Some("226c0000-6476-4566-7562-66734470666d")
        );
        assert_eq!(canonical_uuid("2A1"), None);
        assert_eq!(canonical_uuid("zz19"), None);
        assert!(find("protocol.endpoint", 10).is_err());
    }
}
