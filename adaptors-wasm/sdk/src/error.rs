//! Typed errors. [`Error`] has one variant per case of the contract's `adaptor-error`,
//! because the limb decides from the case alone whether to retry (`unreachable`), wait
//! for a new spec (`invalid-spec`) or keep the old version serving (`incompatible-state`).

use std::fmt;

/// Why an adaptor call failed; maps 1:1 to the WIT `adaptor-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The spec is wrong; retrying will not help until it changes.
    InvalidSpec(String),
    /// A capability was refused (not granted, or denied by the node's policy).
    NotPermitted(String),
    /// The device did not answer or could not be reached; the limb retries.
    Unreachable(String),
    /// The device answered with something the adaptor cannot use.
    Protocol(String),
    /// `restore` got state it cannot take over.
    IncompatibleState(String),
    /// Anything else; a bug or an unexpected condition.
    Internal(String),
}

impl Error {
    /// The WIT case name, e.g. `invalid-spec`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid-spec",
            Error::NotPermitted(_) => "not-permitted",
            Error::Unreachable(_) => "unreachable",
            Error::Protocol(_) => "protocol",
            Error::IncompatibleState(_) => "incompatible-state",
            Error::Internal(_) => "internal",
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidSpec(m)
            | Error::NotPermitted(m)
            | Error::Unreachable(m)
            | Error::Protocol(m)
            | Error::IncompatibleState(m)
            | Error::Internal(m) => m,
        }
    }

    /// Prefixes the message with what was being done (`"connect endpoint: timeout"`),
    /// keeping the case, so a capability error says which step failed.
    #[must_use]
    pub fn context(self, what: &str) -> Error {
        let wrap = |m: String| format!("{what}: {m}");
        match self {
            Error::InvalidSpec(m) => Error::InvalidSpec(wrap(m)),
            Error::NotPermitted(m) => Error::NotPermitted(wrap(m)),
            Error::Unreachable(m) => Error::Unreachable(wrap(m)),
            Error::Protocol(m) => Error::Protocol(wrap(m)),
            Error::IncompatibleState(m) => Error::IncompatibleState(wrap(m)),
            Error::Internal(m) => Error::Internal(wrap(m)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for Error {}

/// Short for `Result<T, octopus_adaptor_sdk::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a capability call (socket, serial, GPIO) failed; mirrors the WIT
/// `capability-error` so adaptors can match on it without the generated bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityError {
    /// The grant does not exist for this device or the node's policy refuses it.
    NotPermitted(String),
    /// The call did not finish within its timeout.
    Timeout,
    /// The per-device cap on open handles is reached.
    LimitReached(String),
    /// The peer closed the connection or the device went away.
    Closed,
    /// An I/O error from the operating system or the device.
    Io(String),
    /// An argument is out of range.
    InvalidArgument(String),
}

impl CapabilityError {
    /// What every capability call returns in a native build, which has no limb.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn no_limb() -> Self {
        CapabilityError::NotPermitted(
            "no limb: capabilities exist only inside the component".into(),
        )
    }
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapabilityError::NotPermitted(m) => write!(f, "not-permitted: {m}"),
            CapabilityError::Timeout => f.write_str("timeout"),
            CapabilityError::LimitReached(m) => write!(f, "limit-reached: {m}"),
            CapabilityError::Closed => f.write_str("closed"),
            CapabilityError::Io(m) => write!(f, "io: {m}"),
            CapabilityError::InvalidArgument(m) => write!(f, "invalid-argument: {m}"),
        }
    }
}

impl std::error::Error for CapabilityError {}

/// A refusal stays `not-permitted` (retrying cannot fix it); every other capability
/// failure means the device could not be reached as asked, which the limb retries.
impl From<CapabilityError> for Error {
    fn from(err: CapabilityError) -> Self {
        match err {
            CapabilityError::NotPermitted(m) => Error::NotPermitted(m),
            other => Error::Unreachable(other.to_string()),
        }
    }
}

impl From<crate::bindings::octopus::adaptor::types::CapabilityError> for CapabilityError {
    fn from(err: crate::bindings::octopus::adaptor::types::CapabilityError) -> Self {
        use crate::bindings::octopus::adaptor::types::CapabilityError as Wit;
        match err {
            Wit::NotPermitted(m) => CapabilityError::NotPermitted(m),
            Wit::Timeout => CapabilityError::Timeout,
            Wit::LimitReached(m) => CapabilityError::LimitReached(m),
            Wit::Closed => CapabilityError::Closed,
            Wit::Io(m) => CapabilityError::Io(m),
            Wit::InvalidArgument(m) => CapabilityError::InvalidArgument(m),
        }
    }
}

impl From<Error> for crate::bindings::octopus::adaptor::types::AdaptorError {
    fn from(err: Error) -> Self {
        use crate::bindings::octopus::adaptor::types::AdaptorError as Wit;
        match err {
            Error::InvalidSpec(m) => Wit::InvalidSpec(m),
            Error::NotPermitted(m) => Wit::NotPermitted(m),
            Error::Unreachable(m) => Wit::Unreachable(m),
            Error::Protocol(m) => Wit::Protocol(m),
            Error::IncompatibleState(m) => Wit::IncompatibleState(m),
            Error::Internal(m) => Wit::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_errors_map_to_adaptor_errors() {
        assert_eq!(
            Error::from(CapabilityError::NotPermitted("no grant".into())),
            Error::NotPermitted("no grant".into())
        );
        assert_eq!(
            Error::from(CapabilityError::Timeout),
            Error::Unreachable("timeout".into())
        );
        assert_eq!(
            Error::from(CapabilityError::Io("refused".into())).context("connect endpoint"),
            Error::Unreachable("connect endpoint: io: refused".into())
        );
    }

    #[test]
    fn display_names_the_case() {
        let err = Error::InvalidSpec("count must be 1..=16, got 40".into());
        assert_eq!(
            err.to_string(),
            "invalid-spec: count must be 1..=16, got 40"
        );
        assert_eq!(err.kind(), "invalid-spec");
    }
}
