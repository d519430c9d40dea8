//! Opens a secured session against a live server and reads one node: an interop check
//! of the signing policies (not part of the test suite).
//!
//! `cargo run --example secure_live --features fuzz --target x86_64-unknown-linux-gnu --
//! URL POLICY MODE CLIENT_KEY.der CLIENT_CERT.der SERVER_CERT.der NODE`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a tool"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use adaptor_opcua::fuzz::security::{self, Mode, Policy};
use adaptor_opcua::fuzz::session::{Link, LinkError, Session};
use adaptor_opcua::fuzz::spec::Identity;
use adaptor_opcua::fuzz::wire::Secure;
use rsa::pkcs8::DecodePrivateKey;

struct Tcp(TcpStream, Instant);

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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, policy, mode, key, cert, server, node] = &args[..] else {
        panic!("usage: URL POLICY MODE CLIENT_KEY CLIENT_CERT SERVER_CERT NODE");
    };
    let authority = url
        .trim_start_matches("opc.tcp://")
        .split('/')
        .next()
        .unwrap();
    assert!(authority.starts_with("127.0.0.1:"), "loopback only: {url}");
    let server_cert = std::fs::read(server).unwrap();
    let secure = Secure {
        policy: Policy::from_uri(&format!(
            "http://opcfoundation.org/UA/SecurityPolicy#{policy}"
        ))
        .unwrap(),
        mode: if mode == "Sign" {
            Mode::Sign
        } else {
            Mode::SignAndEncrypt
        },
        own_key: rsa::RsaPrivateKey::from_pkcs8_der(&std::fs::read(key).unwrap()).unwrap(),
        own_cert: std::fs::read(cert).unwrap(),
        server_key: security::public_key(&server_cert).unwrap(),
        server_cert,
    };
    let stream = TcpStream::connect(authority).unwrap();
    let mut session = Session::open_secured(
        Tcp(stream, Instant::now()),
        url,
        &Identity::Anonymous,
        Some(secure),
        5_000,
        u64::MAX,
    )
    .unwrap();
    let node: opcua_types::NodeId = node.parse().unwrap();
    println!("{:?}", session.read(&[node]).unwrap());
}
