//! Serial buses shared by the devices on them.
//!
//! An RS-485 line usually carries several slaves, each a device with its own DeviceLink.
//! The limb opens each path once; every device that opens it holds the same [`Bus`], and
//! each capability call on it is one turn under a FIFO lock, so transactions never
//! interleave and a silent slave delays the others by at most its own timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use super::{Backend, Parity, SerialIo, Settings};
use crate::capabilities::{CapabilityError, io_error, with_timeout, write_all};

/// Silence that ends a reply when the guest does not say.
const DEFAULT_IDLE: Duration = Duration::from_millis(20);

/// One open serial line and the settings it was opened with.
pub struct Bus {
    path: String,
    settings: Settings,
    /// Tokio's mutex queues waiters in arrival order: that is what makes turns fair.
    io: Mutex<Box<dyn SerialIo>>,
    /// The port failed (unplugged adapter, pty gone): the next open makes a new bus
    /// instead of handing out this one.
    broken: AtomicBool,
}

/// The lines open on this node, by path. Entries are weak: a line closes when the last
/// device holding it lets go.
#[derive(Default)]
pub struct Buses {
    open: Mutex<HashMap<String, Weak<Bus>>>,
}

impl Buses {
    /// The bus at `path`, opened with `settings` if no device holds it yet. A device
    /// asking for other line settings than the bus already has is refused: silently
    /// reconfiguring the line would break every other device on it.
    pub async fn open(
        &self,
        backend: &dyn Backend,
        path: &str,
        settings: Settings,
        timeout: Duration,
    ) -> Result<Arc<Bus>, CapabilityError> {
        let mut open = self.open.lock().await;
        open.retain(|_, bus| bus.strong_count() > 0);
        if let Some(bus) = open
            .get(path)
            .and_then(Weak::upgrade)
            .filter(|b| !b.broken.load(Ordering::Relaxed))
        {
            if bus.settings != settings {
                return Err(CapabilityError::InvalidArgument(format!(
                    "{path} is already open at {} by another device on this bus; this device asks for {}",
                    describe(&bus.settings),
                    describe(&settings)
                )));
            }
            return Ok(bus);
        }
        let io = with_timeout(timeout, backend.open(path.to_owned(), settings)).await?;
        let bus = Arc::new(Bus {
            path: path.to_owned(),
            settings,
            io: Mutex::new(io),
            broken: AtomicBool::new(false),
        });
        open.insert(path.to_owned(), Arc::downgrade(&bus));
        Ok(bus)
    }

    /// Lines currently open.
    pub async fn open_lines(&self) -> usize {
        let open = self.open.lock().await;
        open.values().filter(|b| b.strong_count() > 0).count()
    }
}

impl Bus {
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Waits for this device's turn on the line.
    pub async fn turn(&self) -> MutexGuard<'_, Box<dyn SerialIo>> {
        self.io.lock().await
    }

    /// Passes `result` through, marking the bus broken if the port itself failed (a
    /// timeout is the slave's silence, not the port's failure).
    pub fn check<T>(&self, result: Result<T, CapabilityError>) -> Result<T, CapabilityError> {
        let failed = matches!(
            result,
            Err(CapabilityError::Closed | CapabilityError::Io(_))
        );
        if failed && !self.broken.swap(true, Ordering::Relaxed) {
            tracing::warn!(path = %self.path, "serial port failed; the next open reopens it");
        }
        result
    }

    /// One request and its reply in a single turn: stale input is dropped, the request
    /// written, and the reply read until `reply_len` bytes, a silence of `idle`, or
    /// `max_reply` bytes. The exchange gets `timeout` from the start of its turn, so
    /// waiting behind a silent neighbour does not eat this device's reply window; `latest`
    /// bounds the wait and the exchange together.
    pub async fn transact(
        &self,
        request: &[u8],
        timeout: Duration,
        latest: Instant,
        reply_len: usize,
        idle: Duration,
        max_reply: usize,
    ) -> Result<Vec<u8>, CapabilityError> {
        let result = self
            .exchange(request, timeout, latest, reply_len, idle, max_reply)
            .await;
        self.check(result)
    }

    async fn exchange(
        &self,
        request: &[u8],
        timeout: Duration,
        latest: Instant,
        reply_len: usize,
        idle: Duration,
        max_reply: usize,
    ) -> Result<Vec<u8>, CapabilityError> {
        let mut io = tokio::time::timeout_at(latest, self.turn())
            .await
            .map_err(|_| CapabilityError::Timeout)?;
        let deadline = (Instant::now() + timeout).min(latest);
        // Junk from an earlier garbled exchange must not be taken for this reply.
        io.clear_input().map_err(io_error)?;
        write_all(&mut *io, request, timeout).await?;
        let idle = if idle.is_zero() { DEFAULT_IDLE } else { idle };
        let want = if reply_len == 0 {
            max_reply
        } else {
            reply_len.min(max_reply)
        };
        let mut reply = Vec::with_capacity(want);
        let mut buf = vec![0; want.max(1)];
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Before the first byte the device has until the deadline; after it, a
            // silence of `idle` ends the frame.
            let wait = if reply.is_empty() {
                deadline - now
            } else {
                idle.min(deadline - now)
            };
            let room = want - reply.len();
            match tokio::time::timeout(wait, io.read(&mut buf[..room])).await {
                Ok(Ok(0)) => return Err(CapabilityError::Closed),
                Ok(Ok(n)) => {
                    reply.extend_from_slice(&buf[..n]);
                    if reply.len() >= want {
                        break;
                    }
                }
                Ok(Err(e)) => return Err(io_error(e)),
                Err(_) => break,
            }
        }
        if reply.is_empty() {
            return Err(CapabilityError::Timeout);
        }
        Ok(reply)
    }
}

fn parity_letter(p: Parity) -> char {
    match p {
        Parity::None => 'N',
        Parity::Even => 'E',
        Parity::Odd => 'O',
    }
}

/// `19200 8E1`, the way line settings are written on the devices themselves.
fn describe(s: &Settings) -> String {
    format!(
        "{} {}{}{}",
        s.baud_rate,
        s.data_bits,
        parity_letter(s.parity),
        s.stop_bits
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::socket::BoxFuture;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

    /// A port whose other end a test task plays the device on.
    struct Mem(DuplexStream);
    impl AsyncRead for Mem {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }
    impl AsyncWrite for Mem {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }
    impl SerialIo for Mem {
        fn clear_input(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Hands out one prepared port, then refuses: a second open would be a bug.
    struct OnePort(std::sync::Mutex<Option<DuplexStream>>);
    impl Backend for OnePort {
        fn open(&self, _: String, _: Settings) -> BoxFuture<'_, io::Result<Box<dyn SerialIo>>> {
            let port = self.0.lock().ok().and_then(|mut p| p.take());
            Box::pin(async move {
                port.map(|p| Box::new(Mem(p)) as Box<dyn SerialIo>)
                    .ok_or_else(|| io::Error::other("opened twice"))
            })
        }
    }

    fn line(baud_rate: u32, parity: Parity) -> Settings {
        Settings {
            baud_rate,
            data_bits: 8,
            parity,
            stop_bits: 1,
        }
    }

    fn pair() -> (OnePort, DuplexStream) {
        let (a, b) = tokio::io::duplex(256);
        (OnePort(std::sync::Mutex::new(Some(a))), b)
    }

    const T: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn devices_on_one_path_share_one_bus_and_must_agree_on_the_line() {
        let (backend, _device) = pair();
        let buses = Buses::default();
        let a = buses
            .open(&backend, "/dev/ttyRS485", line(19200, Parity::Even), T)
            .await
            .unwrap();
        let b = buses
            .open(&backend, "/dev/ttyRS485", line(19200, Parity::Even), T)
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let err = buses
            .open(&backend, "/dev/ttyRS485", line(9600, Parity::None), T)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, CapabilityError::InvalidArgument(m) if m.contains("19200 8E1") && m.contains("9600 8N1")),
            "{err}"
        );
        drop((a, b));
        assert_eq!(buses.open_lines().await, 0);
    }

    #[tokio::test]
    async fn a_reply_ends_at_its_length_or_after_silence() {
        let (backend, mut device) = pair();
        let bus = Buses::default()
            .open(&backend, "/dev/ttyX", line(9600, Parity::None), T)
            .await
            .unwrap();
        let echo = tokio::spawn(async move {
            let mut req = [0u8; 2];
            // Full-length reply, sent in two pieces.
            device.read_exact(&mut req).await.unwrap();
            device.write_all(&[1, 2]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            device.write_all(&[3, 4, 9]).await.unwrap();
            // A short (exception-like) reply: only silence ends it.
            device.read_exact(&mut req).await.unwrap();
            device.write_all(&[7]).await.unwrap();
            device
        });
        let full = bus
            .transact(
                &[0xa, 0xb],
                T,
                Instant::now() + T,
                4,
                Duration::from_millis(50),
                64,
            )
            .await
            .unwrap();
        assert_eq!(full, vec![1, 2, 3, 4]);
        let short = bus
            .transact(
                &[0xa, 0xb],
                T,
                Instant::now() + T,
                4,
                Duration::from_millis(20),
                64,
            )
            .await
            .unwrap();
        // The leftover 9 of the first reply would be dropped by a real port's
        // clear-input; the fake keeps it, so it leads this reply.
        assert_eq!(short, vec![9, 7]);
        echo.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_device_times_out_without_holding_the_bus() {
        let (backend, _device) = pair();
        let bus = Buses::default()
            .open(&backend, "/dev/ttyX", line(9600, Parity::None), T)
            .await
            .unwrap();
        let started = Instant::now();
        let err = bus
            .transact(
                &[1],
                Duration::from_millis(50),
                Instant::now() + T,
                4,
                Duration::ZERO,
                64,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CapabilityError::Timeout));
        assert!(started.elapsed() < Duration::from_millis(250));
        // The turn was given back: the next one starts at once.
        let _turn = tokio::time::timeout(Duration::from_millis(50), bus.turn())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn turns_are_taken_in_arrival_order() {
        let (backend, _device) = pair();
        let bus = Buses::default()
            .open(&backend, "/dev/ttyX", line(9600, Parity::None), T)
            .await
            .unwrap();
        let first = bus.turn().await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..4 {
            let (bus, order) = (bus.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _t = bus.turn().await;
                order.lock().unwrap().push(i);
            }));
            // Let each waiter queue before the next.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(first);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn waiting_for_the_turn_does_not_shorten_the_reply_window() {
        let (backend, mut device) = pair();
        let bus = Buses::default()
            .open(&backend, "/dev/ttyX", line(9600, Parity::None), T)
            .await
            .unwrap();
        let held = bus.turn().await;
        let waiting = {
            let bus = bus.clone();
            tokio::spawn(async move {
                let t = Duration::from_millis(100);
                bus.transact(&[1], t, Instant::now() + T * 3, 2, Duration::ZERO, 64)
                    .await
            })
        };
        // The neighbour holds the bus for longer than this device's own timeout...
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(held);
        // ...and the device then answers within that timeout of its turn.
        let mut req = [0u8; 1];
        device.read_exact(&mut req).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        device.write_all(&[5, 6]).await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), vec![5, 6]);
    }

    /// Hands out a fresh in-memory port on every open, keeping the device ends.
    #[derive(Default)]
    struct Ports(std::sync::Mutex<Vec<DuplexStream>>);
    impl Backend for Ports {
        fn open(&self, _: String, _: Settings) -> BoxFuture<'_, io::Result<Box<dyn SerialIo>>> {
            let (a, b) = tokio::io::duplex(256);
            if let Ok(mut devices) = self.0.lock() {
                devices.push(b);
            }
            Box::pin(async move { Ok(Box::new(Mem(a)) as Box<dyn SerialIo>) })
        }
    }

    #[tokio::test]
    async fn a_failed_port_is_reopened_even_while_others_hold_it() {
        let backend = Ports::default();
        let buses = Buses::default();
        let settings = line(9600, Parity::None);
        let a = buses
            .open(&backend, "/dev/ttyUSB0", settings, T)
            .await
            .unwrap();
        let b = buses
            .open(&backend, "/dev/ttyUSB0", settings, T)
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // The adapter is unplugged: its far end goes away.
        backend.0.lock().unwrap().clear();
        let err = a
            .transact(&[1], T, Instant::now() + T, 2, Duration::ZERO, 64)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CapabilityError::Closed | CapabilityError::Io(_)),
            "{err}"
        );
        // `b` still holds the dead bus, but a new open gets a new port.
        let c = buses
            .open(&backend, "/dev/ttyUSB0", settings, T)
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&b, &c));
        assert_eq!(backend.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_turn_that_never_comes_ends_at_the_latest_instant() {
        let (backend, _device) = pair();
        let bus = Buses::default()
            .open(&backend, "/dev/ttyX", line(9600, Parity::None), T)
            .await
            .unwrap();
        let _held = bus.turn().await;
        let latest = Instant::now() + Duration::from_millis(50);
        let err = bus
            .transact(&[1], T, latest, 2, Duration::ZERO, 64)
            .await
            .unwrap_err();
        assert!(matches!(err, CapabilityError::Timeout));
    }
}
