//! The session's [`Link`] over a plain blocking TCP socket, for the examples.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use adaptor_opcua::fuzz::session::{Link, LinkError};

/// A connected socket and the time it was opened (the link's clock).
pub struct Tcp(pub TcpStream, pub Instant);

impl Link for Tcp {
    fn send(&mut self, bytes: &[u8], _: u32) -> Result<(), LinkError> {
        self.0
            .write_all(bytes)
            .map_err(|e| LinkError::Io(e.to_string()))
    }
    fn receive(&mut self, timeout_ms: u32) -> Result<Vec<u8>, LinkError> {
        let wait = Duration::from_millis(u64::from(timeout_ms.max(1)));
        self.0.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0; 65_536];
        match self.0.read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(LinkError::Timeout)
            }
            Err(e) => Err(LinkError::Io(e.to_string())),
        }
    }
    fn now_ms(&self) -> u64 {
        u64::try_from(self.1.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
