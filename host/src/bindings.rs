//! The one `bindgen!` for the adaptor world: host traits for our imports, typed calls
//! for the `driver` export, and the host types behind each capability resource.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "adaptor",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "octopus:adaptor/serial.port": crate::capabilities::serial::Port,
        "octopus:adaptor/socket.tcp-stream": crate::capabilities::socket::TcpStream,
        "octopus:adaptor/socket.udp-socket": crate::capabilities::socket::UdpSocket,
        "octopus:adaptor/gpio.line": crate::capabilities::gpio::Line,
        "octopus:adaptor/ble.peripheral": crate::capabilities::ble::Peripheral,
    },
});

pub use octopus::adaptor::types::{
    AdaptorError, AdaptorInfo, CapabilityError, DeviceConfig, DeviceIdentity, DeviceSettings,
    Model, ModelInfo, ReferenceValue, ResourceField, ResourceKind,
};

/// A readable message for WIT errors (the generated `Display` is `Debug`-like).
pub struct Explain<'a, T>(pub &'a T);

impl std::fmt::Display for Explain<'_, AdaptorError> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            AdaptorError::InvalidSpec(m) => write!(f, "invalid spec: {m}"),
            AdaptorError::NotPermitted(m) => write!(f, "not permitted: {m}"),
            AdaptorError::Unreachable(m) => write!(f, "device unreachable: {m}"),
            AdaptorError::Protocol(m) => write!(f, "protocol error: {m}"),
            AdaptorError::IncompatibleState(m) => write!(f, "incompatible state: {m}"),
            AdaptorError::Internal(m) => write!(f, "adaptor error: {m}"),
        }
    }
}

impl std::fmt::Display for Explain<'_, CapabilityError> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            CapabilityError::NotPermitted(m) => write!(f, "not permitted: {m}"),
            CapabilityError::Timeout => f.write_str("timed out"),
            CapabilityError::LimitReached(m) => write!(f, "limit reached: {m}"),
            CapabilityError::Closed => f.write_str("closed"),
            CapabilityError::Io(m) => write!(f, "i/o error: {m}"),
            CapabilityError::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
        }
    }
}
