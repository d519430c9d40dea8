//! Capability grants: the explicit list a DeviceLink may carry in `spec.grants`.
//!
//! An adaptor opens a serial port, socket or GPIO line by *grant name*; the host
//! resolves the name to the target written here (or to the value of a spec field the
//! adaptor declared as a resource field) and checks it against the node's policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a grant gives access to.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GrantKind {
    /// A TCP endpoint, `host:port`.
    Tcp,
    /// A UDP endpoint, `host:port`.
    Udp,
    /// A serial device path.
    Serial,
    /// A GPIO line, `chip:line`.
    Gpio,
    /// A Bluetooth LE peripheral, by address (`C0:98:E5:49:00:01`) or local name.
    Ble,
}

impl GrantKind {
    /// The lowercase name used in YAML and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Serial => "serial",
            Self::Gpio => "gpio",
            Self::Ble => "ble",
        }
    }
}

impl std::fmt::Display for GrantKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One explicit grant: `{name: plc, kind: tcp, target: "127.0.0.1:502"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Grant {
    /// The name the adaptor opens it by.
    pub name: String,
    pub kind: GrantKind,
    /// The endpoint, device path or `chip:line`.
    pub target: String,
}
