//! Serial ports through the limb, opened by grant name. Devices on one RS-485 bus share
//! the port; [`Port::transact`] is one turn on it, so no other device's traffic can
//! interleave with a request and its reply. Native builds have no limb.

use crate::error::CapabilityError;

#[cfg(target_arch = "wasm32")]
use crate::bindings::octopus::adaptor::serial as wit;

/// Parity bit setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// Line settings; devices sharing a bus must ask for the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub baud_rate: u32,
    /// 5 to 8.
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2.
    pub stop_bits: u8,
}

impl Default for Settings {
    /// 9600 8N1, the usual factory setting.
    fn default() -> Self {
        Settings {
            baud_rate: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        }
    }
}

/// One request and its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Written after stale input has been discarded.
    pub request: Vec<u8>,
    /// How long to wait for the first byte of the reply.
    pub timeout_ms: u32,
    /// The reply is complete once this many bytes arrived...
    pub reply_len: u32,
    /// ...or once the line was silent this long after the first byte; 0 means 20 ms.
    pub idle_ms: u32,
}

/// An open serial port. Dropping it closes this handle.
pub struct Port {
    #[cfg(target_arch = "wasm32")]
    inner: wit::Port,
    #[cfg(not(target_arch = "wasm32"))]
    inner: std::convert::Infallible,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("serial::Port")
    }
}

/// Opens the serial port the grant names.
pub fn open(grant: &str, settings: Settings) -> Result<Port, CapabilityError> {
    #[cfg(target_arch = "wasm32")]
    {
        let settings = wit::Settings {
            baud_rate: settings.baud_rate,
            data_bits: settings.data_bits,
            parity: match settings.parity {
                Parity::None => wit::Parity::None,
                Parity::Even => wit::Parity::Even,
                Parity::Odd => wit::Parity::Odd,
            },
            stop_bits: settings.stop_bits,
        };
        Ok(Port {
            inner: wit::open(grant, settings)?,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (grant, settings);
        Err(CapabilityError::no_limb())
    }
}

impl Port {
    /// Writes the request and reads its reply as one turn on the bus; `timeout` if no
    /// byte arrived.
    pub fn transact(&self, exchange: &Exchange) -> Result<Vec<u8>, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            let exchange = wit::Exchange {
                request: exchange.request.clone(),
                timeout_ms: exchange.timeout_ms,
                reply_len: exchange.reply_len,
                idle_ms: exchange.idle_ms,
            };
            Ok(self.inner.transact(&exchange)?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = exchange;
            match self.inner {}
        }
    }

    /// Writes all of `data`.
    pub fn write(&self, data: &[u8], timeout_ms: u32) -> Result<(), CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            self.inner.write(data, timeout_ms)?;
            Ok(())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (data, timeout_ms);
            match self.inner {}
        }
    }

    /// Reads up to `max` bytes, waiting at most `timeout_ms` for the first.
    pub fn read(&self, max: u32, timeout_ms: u32) -> Result<Vec<u8>, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self.inner.read(max, timeout_ms)?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (max, timeout_ms);
            match self.inner {}
        }
    }

    /// Discards buffered input, e.g. after a garbled frame.
    pub fn clear_input(&self) -> Result<(), CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self.inner.clear_input()?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            match self.inner {}
        }
    }
}
