//! The guest's imports: each WIT interface implemented for [`StoreState`] by converting
//! WIT types to the capability modules' own types and back. This is the only place that
//! knows both the bindings and the capabilities; the capabilities know neither the
//! engine nor the WIT.
//!
//! [`StoreState`]: super::StoreState

mod ble;
mod clock;
pub mod events;
mod gpio;
pub mod log;
mod serial;
mod socket;

use crate::bindings::{self, ResourceField, ResourceKind};
use crate::capabilities::{self, DeclaredResource};
use crds::GrantKind;

impl From<capabilities::CapabilityError> for bindings::CapabilityError {
    fn from(e: capabilities::CapabilityError) -> Self {
        use capabilities::CapabilityError as C;
        match e {
            C::NotPermitted(m) => Self::NotPermitted(m),
            C::Timeout => Self::Timeout,
            C::LimitReached(m) => Self::LimitReached(m),
            C::Closed => Self::Closed,
            C::Io(m) => Self::Io(m),
            C::InvalidArgument(m) => Self::InvalidArgument(m),
        }
    }
}

/// A capability result as the guest receives it.
trait Wit<T> {
    fn wit(self) -> Result<T, bindings::CapabilityError>;
}

impl<T> Wit<T> for Result<T, capabilities::CapabilityError> {
    fn wit(self) -> Result<T, bindings::CapabilityError> {
        self.map_err(Into::into)
    }
}

/// The resource fields an adaptor declares in `describe` resolve to grants.
impl DeclaredResource for ResourceField {
    fn path(&self) -> &str {
        &self.path
    }

    fn kind(&self) -> GrantKind {
        match self.kind {
            ResourceKind::Tcp => GrantKind::Tcp,
            ResourceKind::Udp => GrantKind::Udp,
            ResourceKind::Serial => GrantKind::Serial,
            ResourceKind::Gpio => GrantKind::Gpio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_error_keeps_its_kind_and_message() {
        use capabilities::CapabilityError as C;
        for (from, want) in [
            (C::NotPermitted("a".into()), "not permitted: a"),
            (C::Timeout, "timed out"),
            (C::LimitReached("b".into()), "limit reached: b"),
            (C::Closed, "closed"),
            (C::Io("c".into()), "i/o error: c"),
            (C::InvalidArgument("d".into()), "invalid argument: d"),
        ] {
            assert_eq!(from.to_string(), want);
            let wit: bindings::CapabilityError = from.into();
            assert_eq!(bindings::Explain(&wit).to_string(), want);
        }
    }
}
