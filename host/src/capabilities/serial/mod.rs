//! `octopus:adaptor/serial`: serial ports at granted device paths, each a [`bus::Bus`]
//! shared by every device that opens it.

pub mod bus;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crds::GrantKind;

use super::socket::{BoxFuture, Duplex};
use super::{Capabilities, CapabilityError};

/// Parity of a serial line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// Line settings applied when a port is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub baud_rate: u32,
    /// 5 to 8.
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2.
    pub stop_bits: u8,
}

/// An open port: a byte stream that can also drop its input buffer.
pub trait SerialIo: Duplex {
    fn clear_input(&mut self) -> io::Result<()>;
}

/// Opens ports. Real: termios through tokio-serial; fake: in-memory in unit tests.
pub trait Backend: Send + Sync {
    fn open(
        &self,
        path: String,
        settings: Settings,
    ) -> BoxFuture<'_, io::Result<Box<dyn SerialIo>>>;
}

pub struct RealBackend;

impl SerialIo for tokio_serial::SerialStream {
    fn clear_input(&mut self) -> io::Result<()> {
        tokio_serial::SerialPort::clear(self, tokio_serial::ClearBuffer::Input)
            .map_err(io::Error::other)
    }
}

impl Backend for RealBackend {
    fn open(&self, path: String, s: Settings) -> BoxFuture<'_, io::Result<Box<dyn SerialIo>>> {
        Box::pin(async move {
            let data_bits = match s.data_bits {
                5 => tokio_serial::DataBits::Five,
                6 => tokio_serial::DataBits::Six,
                7 => tokio_serial::DataBits::Seven,
                8 => tokio_serial::DataBits::Eight,
                n => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{n} data bits"),
                    ));
                }
            };
            let stop_bits = match s.stop_bits {
                1 => tokio_serial::StopBits::One,
                2 => tokio_serial::StopBits::Two,
                n => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{n} stop bits"),
                    ));
                }
            };
            let parity = match s.parity {
                Parity::None => tokio_serial::Parity::None,
                Parity::Even => tokio_serial::Parity::Even,
                Parity::Odd => tokio_serial::Parity::Odd,
            };
            let builder = tokio_serial::new(path, s.baud_rate)
                .data_bits(data_bits)
                .stop_bits(stop_bits)
                .parity(parity);
            let port = tokio_serial::SerialStream::open(&builder).map_err(io::Error::other)?;
            Ok(Box::new(port) as Box<dyn SerialIo>)
        })
    }
}

/// The host side of a guest's serial `port`: this device's handle on a shared bus.
pub struct Port {
    bus: Arc<bus::Bus>,
}

impl Capabilities {
    pub async fn open_serial(
        &mut self,
        grant: &str,
        settings: Settings,
    ) -> Result<Port, CapabilityError> {
        let g = self.authorize(grant, GrantKind::Serial)?;
        let timeout = self.timeout(0);
        let backends = self.backends();
        match backends
            .buses
            .open(&*backends.serial, &g.target, settings, timeout)
            .await
        {
            Ok(bus) => Ok(Port { bus }),
            Err(e) => {
                self.release();
                Err(e)
            }
        }
    }
}

/// One request and its reply on a shared line, as the guest asks for it.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// Written after any stale input has been discarded.
    pub request: Vec<u8>,
    /// How long to wait for the first byte of the reply; 0 means the cap.
    pub timeout_ms: u32,
    /// The reply is complete once this many bytes have arrived...
    pub reply_len: u32,
    /// ...or once the line has been silent this long after the first byte.
    pub idle_ms: u32,
}

impl Port {
    /// The shared line, held across a turn without borrowing the handle table.
    pub fn bus(&self) -> Arc<bus::Bus> {
        self.bus.clone()
    }
}

impl Capabilities {
    /// Writes the request and reads its reply in one turn on the line.
    pub async fn serial_transact(
        &self,
        bus: &bus::Bus,
        exchange: &Exchange,
    ) -> Result<Vec<u8>, CapabilityError> {
        self.read_size(exchange.reply_len)?;
        let max_reply = self.max_read();
        let timeout = self.timeout(exchange.timeout_ms);
        // What is left of the guest call bounds the wait for the turn as well.
        let latest = tokio::time::Instant::now() + self.timeout(0);
        let idle = Duration::from_millis(u64::from(exchange.idle_ms)).min(timeout);
        bus.transact(
            &exchange.request,
            timeout,
            latest,
            exchange.reply_len as usize,
            idle,
            max_reply,
        )
        .await
    }

    /// Writes all of `data` in one turn on the line.
    pub async fn serial_write(
        &self,
        bus: &bus::Bus,
        data: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, CapabilityError> {
        let timeout = self.timeout(timeout_ms);
        let mut io = bus.turn().await;
        bus.check(super::write_all(&mut *io, data, timeout).await)
    }

    /// Reads at most `max` bytes in one turn on the line.
    pub async fn serial_read(
        &self,
        bus: &bus::Bus,
        max: u32,
        timeout_ms: u32,
    ) -> Result<Vec<u8>, CapabilityError> {
        let (max, timeout) = self.read_limits(max, timeout_ms)?;
        let mut io = bus.turn().await;
        bus.check(super::read_some(&mut *io, max, timeout).await)
    }

    /// Drops whatever input is waiting on the line.
    pub async fn serial_clear_input(&self, bus: &bus::Bus) -> Result<(), CapabilityError> {
        let mut io = bus.turn().await;
        io.clear_input().map_err(super::io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{Backends, Policy, fixtures};
    use std::sync::Arc;

    struct Loopback;
    struct Mem(tokio::io::DuplexStream);
    impl tokio::io::AsyncRead for Mem {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }
    impl tokio::io::AsyncWrite for Mem {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }
    impl SerialIo for Mem {
        fn clear_input(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Backend for Loopback {
        fn open(&self, _: String, _: Settings) -> BoxFuture<'_, io::Result<Box<dyn SerialIo>>> {
            Box::pin(async {
                let (a, _b) = tokio::io::duplex(64);
                Ok(Box::new(Mem(a)) as Box<dyn SerialIo>)
            })
        }
    }

    fn settings() -> Settings {
        Settings {
            baud_rate: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        }
    }

    fn caps(policy: &str) -> Capabilities {
        let mut backends = Backends::real(true);
        backends.serial = Arc::new(Loopback);
        fixtures::caps(
            &[fixtures::grant("bus", GrantKind::Serial, "/dev/ttyFAKE0")],
            Policy::from_yaml(policy).unwrap(),
            1,
            backends,
        )
    }

    #[tokio::test]
    async fn granted_port_opens_and_ungranted_does_not() {
        let mut c = caps("serial: ['/dev/ttyFAKE*']");
        assert!(c.open_serial("bus", settings()).await.is_ok());
        let err = c.open_serial("/dev/ttyS0", settings()).await.err().unwrap();
        assert!(matches!(err, CapabilityError::NotPermitted(_)));
    }

    #[tokio::test]
    async fn policy_refuses_granted_but_disallowed_path() {
        let mut c = caps("serial: ['/dev/ttyUSB*']");
        let err = c.open_serial("bus", settings()).await.err().unwrap();
        assert!(
            matches!(&err, CapabilityError::NotPermitted(m) if m.contains("/dev/ttyFAKE0")),
            "{err}"
        );
        assert_eq!(c.open_handles(), 0);
    }
}
