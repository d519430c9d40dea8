//! The broker connection over the host's sockets: `connect-tcp` for `tcp://` servers,
//! `connect-tls` (the limb does the handshake) for `ssl://`, `tls://`, `tcps://` and
//! `mqtts://`. Both use the grant named by [`GRANT`].

use crate::engine::{Net, NetError};
use crate::spec::Tls;
use octopus_adaptor_sdk::bindings::octopus::adaptor::clock;
use octopus_adaptor_sdk::bindings::octopus::adaptor::socket::{self, TcpStream, TlsOptions};
use octopus_adaptor_sdk::bindings::octopus::adaptor::types::CapabilityError;

/// The grant of the broker: the spec field that names its URL.
pub const GRANT: &str = "protocol.client.server";

#[derive(Default)]
pub struct Transport {
    stream: Option<TcpStream>,
}

fn net_error(err: CapabilityError) -> NetError {
    match err {
        CapabilityError::NotPermitted(m) => NetError::Denied(m),
        CapabilityError::InvalidArgument(m) => NetError::Denied(format!("refused: {m}")),
        CapabilityError::Timeout => NetError::Timeout,
        CapabilityError::Closed => NetError::Closed,
        CapabilityError::Io(m) => NetError::Io(m),
        CapabilityError::LimitReached(m) => NetError::Io(format!("handle limit reached: {m}")),
    }
}

impl Net for Transport {
    fn open(&mut self, tls: Option<&Tls>, timeout_ms: u32) -> Result<(), NetError> {
        self.stream = None;
        let stream = match tls {
            None => socket::connect_tcp(GRANT, timeout_ms),
            Some(tls) => socket::connect_tls(
                GRANT,
                &TlsOptions {
                    server_name: tls.server_name.clone(),
                    ca_pem: tls.ca.clone(),
                    client_cert_pem: tls.cert.clone(),
                    client_key_pem: tls.key.clone(),
                    insecure_skip_verify: tls.insecure,
                },
                timeout_ms,
            ),
        }
        .map_err(net_error)?;
        self.stream = Some(stream);
        Ok(())
    }

    fn send(&mut self, data: &[u8], timeout_ms: u32) -> Result<(), NetError> {
        let stream = self.stream.as_ref().ok_or(NetError::Closed)?;
        let mut at = 0;
        while at < data.len() {
            let rest = data.get(at..).unwrap_or_default();
            let sent = stream.send(rest, timeout_ms).map_err(net_error)?;
            if sent == 0 {
                return Err(NetError::Closed);
            }
            at += usize::try_from(sent).unwrap_or(usize::MAX);
        }
        Ok(())
    }

    fn receive(&mut self, max: u32, timeout_ms: u32) -> Result<Vec<u8>, NetError> {
        let stream = self.stream.as_ref().ok_or(NetError::Closed)?;
        let bytes = stream.receive(max, timeout_ms).map_err(net_error)?;
        if bytes.is_empty() {
            return Err(NetError::Closed);
        }
        Ok(bytes)
    }

    fn close(&mut self) {
        self.stream = None;
    }

    fn now_ms(&self) -> u64 {
        clock::monotonic_ns() / 1_000_000
    }

    fn wall_ms(&self) -> u64 {
        clock::now_ms()
    }

    fn nap(&mut self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
