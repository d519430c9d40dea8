//! TCP, TLS and UDP through the limb, opened by grant name (a resource field's path
//! such as `endpoint`, or an explicit grant). The limb resolves the address; the
//! adaptor never names one. Native builds have no limb: every open is `not-permitted`.

use crate::error::CapabilityError;

#[cfg(target_arch = "wasm32")]
use crate::bindings::octopus::adaptor::socket as wit;

/// The largest frame [`TcpStream::receive_frame`] assembles, so a corrupt length field
/// cannot make the adaptor buffer without bound.
pub const MAX_FRAME: usize = 1 << 20;

/// A connected TCP stream (plaintext, or TLS terminated by the limb). Dropping it
/// closes the connection.
pub struct TcpStream {
    #[cfg(target_arch = "wasm32")]
    inner: wit::TcpStream,
    #[cfg(not(target_arch = "wasm32"))]
    inner: std::convert::Infallible,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TcpStream")
    }
}

/// Connects to the TCP endpoint the grant names.
pub fn connect_tcp(grant: &str, timeout_ms: u32) -> Result<TcpStream, CapabilityError> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(TcpStream {
            inner: wit::connect_tcp(grant, timeout_ms)?,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (grant, timeout_ms);
        Err(CapabilityError::no_limb())
    }
}

/// How to secure a TLS connection; PEM bytes typically come from the DeviceLink's
/// references ([`crate::Context::reference`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The name the certificate must carry (and SNI); default: the grant's host.
    pub server_name: Option<String>,
    /// CA certificates to trust; default: the public web roots.
    pub ca_pem: Option<Vec<u8>>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    /// Accepts any certificate. Only for tests and broken devices.
    pub insecure_skip_verify: bool,
}

/// Connects and completes a TLS handshake in the limb; the stream carries plaintext.
/// A certificate that does not verify is `not-permitted` with the reason.
pub fn connect_tls(
    grant: &str,
    options: &TlsOptions,
    timeout_ms: u32,
) -> Result<TcpStream, CapabilityError> {
    #[cfg(target_arch = "wasm32")]
    {
        let options = wit::TlsOptions {
            server_name: options.server_name.clone(),
            ca_pem: options.ca_pem.clone(),
            client_cert_pem: options.client_cert_pem.clone(),
            client_key_pem: options.client_key_pem.clone(),
            insecure_skip_verify: options.insecure_skip_verify,
        };
        Ok(TcpStream {
            inner: wit::connect_tls(grant, &options, timeout_ms)?,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (grant, options, timeout_ms);
        Err(CapabilityError::no_limb())
    }
}

impl TcpStream {
    /// Writes all of `data`.
    pub fn send(&self, data: &[u8], timeout_ms: u32) -> Result<(), CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            let written = self.inner.send(data, timeout_ms)?;
            if usize::try_from(written).ok() == Some(data.len()) {
                Ok(())
            } else {
                Err(CapabilityError::Io(format!(
                    "short write: {written} of {} bytes",
                    data.len()
                )))
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (data, timeout_ms);
            match self.inner {}
        }
    }

    /// Reads up to `max` bytes, waiting at most `timeout_ms`; empty means the peer
    /// closed the stream.
    pub fn receive(&self, max: u32, timeout_ms: u32) -> Result<Vec<u8>, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self.inner.receive(max, timeout_ms)?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (max, timeout_ms);
            match self.inner {}
        }
    }

    /// Reads exactly `len` bytes within `timeout_ms` in total, over as many
    /// `receive` calls as it takes. A close before that is `closed`.
    pub fn receive_exact(&self, len: usize, timeout_ms: u32) -> Result<Vec<u8>, CapabilityError> {
        self.receive_frame(timeout_ms, |_| len)
    }

    /// Reads one frame within `timeout_ms` in total. `frame_len` sees the bytes so far
    /// and says how long the frame is as far as it can tell (e.g. a header's size until
    /// the header has arrived, then header + its length field); reading stops once that
    /// many bytes are in. Never reads past the frame, so the next one stays in the
    /// stream.
    pub fn receive_frame(
        &self,
        timeout_ms: u32,
        frame_len: impl FnMut(&[u8]) -> usize,
    ) -> Result<Vec<u8>, CapabilityError> {
        read_frame(
            |max, timeout| self.receive(max, timeout),
            crate::clock::monotonic_ms,
            timeout_ms,
            frame_len,
        )
    }
}

/// The loop behind [`TcpStream::receive_frame`], with the I/O and the clock passed in
/// so it is tested natively.
fn read_frame(
    mut receive: impl FnMut(u32, u32) -> Result<Vec<u8>, CapabilityError>,
    mut now_ms: impl FnMut() -> u64,
    timeout_ms: u32,
    mut frame_len: impl FnMut(&[u8]) -> usize,
) -> Result<Vec<u8>, CapabilityError> {
    let start = now_ms();
    let mut buf = Vec::new();
    loop {
        let want = frame_len(&buf);
        if want > MAX_FRAME {
            return Err(CapabilityError::InvalidArgument(format!(
                "a frame of {want} bytes is over the {MAX_FRAME}-byte limit"
            )));
        }
        if buf.len() >= want {
            return Ok(buf);
        }
        let elapsed = now_ms().saturating_sub(start);
        let left = u64::from(timeout_ms).saturating_sub(elapsed);
        if left == 0 {
            return Err(CapabilityError::Timeout);
        }
        let max = u32::try_from(want - buf.len()).unwrap_or(u32::MAX);
        let chunk = receive(max, u32::try_from(left).unwrap_or(u32::MAX))?;
        if chunk.is_empty() {
            return Err(CapabilityError::Closed);
        }
        buf.extend_from_slice(&chunk);
    }
}

/// A UDP socket connected to the granted peer. Dropping it closes the socket.
pub struct UdpSocket {
    #[cfg(target_arch = "wasm32")]
    inner: wit::UdpSocket,
    #[cfg(not(target_arch = "wasm32"))]
    inner: std::convert::Infallible,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UdpSocket")
    }
}

/// Opens a UDP socket connected to the endpoint the grant names.
pub fn connect_udp(grant: &str) -> Result<UdpSocket, CapabilityError> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(UdpSocket {
            inner: wit::connect_udp(grant)?,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = grant;
        Err(CapabilityError::no_limb())
    }
}

impl UdpSocket {
    /// Sends one datagram.
    pub fn send(&self, data: &[u8], timeout_ms: u32) -> Result<(), CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            self.inner.send(data, timeout_ms)?;
            Ok(())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (data, timeout_ms);
            match self.inner {}
        }
    }

    /// Receives one datagram of at most `max` bytes.
    pub fn receive(&self, max: u32, timeout_ms: u32) -> Result<Vec<u8>, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self.inner.receive(max, timeout_ms)?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (max, timeout_ms);
            match self.inner {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::VecDeque;

    /// Feeds `chunks` to `read_frame`, recording the `max` of each call.
    fn run(
        chunks: &[&[u8]],
        frame_len: impl FnMut(&[u8]) -> usize,
    ) -> (Result<Vec<u8>, CapabilityError>, Vec<u32>) {
        let mut queue: VecDeque<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        let mut asked = Vec::new();
        let result = read_frame(
            |max, _| {
                asked.push(max);
                let mut chunk = queue.pop_front().ok_or(CapabilityError::Timeout)?;
                if chunk.len() > max as usize {
                    queue.push_front(chunk.split_off(max as usize));
                }
                Ok(chunk)
            },
            || 0,
            1000,
            frame_len,
        );
        (result, asked)
    }

    #[test]
    fn exact_reads_span_several_receives() {
        let (result, asked) = run(&[b"ab", b"c", b"de"], |_| 5);
        assert_eq!(result.unwrap(), b"abcde");
        assert_eq!(asked, [5, 3, 2], "never asks past the frame");
    }

    #[test]
    fn frames_grow_as_the_header_arrives() {
        // A 2-byte header whose second byte is the body length.
        let frame_len = |buf: &[u8]| {
            if buf.len() < 2 {
                2
            } else {
                2 + buf[1] as usize
            }
        };
        let (result, asked) = run(&[b"x", b"\x03ab", b"c"], frame_len);
        assert_eq!(result.unwrap(), b"x\x03abc");
        assert_eq!(asked, [2, 1, 3, 1]);
        let (result, _) = run(&[b"h\x01abc"], frame_len);
        assert_eq!(result.unwrap(), b"h\x01a", "stops at the frame's end");
    }

    #[test]
    fn close_and_limits() {
        assert_eq!(run(&[b"ab", b""], |_| 5).0, Err(CapabilityError::Closed));
        assert!(matches!(
            run(&[], |_| MAX_FRAME + 1).0,
            Err(CapabilityError::InvalidArgument(_))
        ));
    }

    #[test]
    fn the_timeout_is_for_the_whole_frame() {
        let now = Cell::new(0);
        let mut timeouts = Vec::new();
        let result = read_frame(
            |_, timeout| {
                timeouts.push(timeout);
                now.set(now.get() + 600);
                Ok(vec![0])
            },
            || now.get(),
            1000,
            |_| 4,
        );
        assert_eq!(result, Err(CapabilityError::Timeout));
        assert_eq!(timeouts, [1000, 400]);
    }

    #[test]
    fn native_builds_have_no_limb() {
        assert!(matches!(
            connect_tcp("endpoint", 100),
            Err(CapabilityError::NotPermitted(_))
        ));
    }
}
