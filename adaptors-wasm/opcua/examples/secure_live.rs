//! Opens a secured session against a live server and reads one node: an interop check
//! of the signing policies (not part of the test suite).
//!
//! `cargo run --example secure_live --features fuzz --target x86_64-unknown-linux-gnu --
//! URL POLICY MODE CLIENT_KEY.der CLIENT_CERT.der SERVER_THUMBPRINT NODE`
//!
//! It asks the server's endpoints over policy None first, checks the policy is offered
//! and the server's certificate has the pinned thumbprint, then opens the secured
//! session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a tool"
)]

#[path = "common/tcp.rs"]
mod tcp;
use tcp::Tcp;

use std::net::TcpStream;
use std::time::Instant;

use adaptor_opcua::fuzz::security::{self, Mode, Policy};
use adaptor_opcua::fuzz::session::{Pin, Session, discover, trusted_server_certificate};
use adaptor_opcua::fuzz::spec::Identity;
use adaptor_opcua::fuzz::wire::Secure;
use rsa::pkcs8::DecodePrivateKey;

fn connect(url: &str) -> Tcp {
    let authority = url
        .trim_start_matches("opc.tcp://")
        .split('/')
        .next()
        .unwrap();
    assert!(authority.starts_with("127.0.0.1:"), "loopback only: {url}");
    Tcp(TcpStream::connect(authority).unwrap(), Instant::now())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, policy, mode, key, cert, pin, node] = &args[..] else {
        panic!("usage: URL POLICY MODE CLIENT_KEY.der CLIENT_CERT.der SERVER_THUMBPRINT NODE");
    };
    let policy = Policy::from_uri(&format!(
        "http://opcfoundation.org/UA/SecurityPolicy#{policy}"
    ))
    .unwrap();
    let mode = if mode == "Sign" {
        Mode::Sign
    } else {
        Mode::SignAndEncrypt
    };
    let endpoints = discover(connect(url), url, 5_000, u64::MAX).unwrap();
    let server_cert =
        match trusted_server_certificate(&endpoints, policy, mode, &[Pin::Thumbprint(pin.clone())])
        {
            Ok(cert) => cert,
            Err(e) => {
                println!("refused: {e}");
                std::process::exit(2);
            }
        };
    let secure = Secure {
        policy,
        mode,
        own_key: rsa::RsaPrivateKey::from_pkcs8_der(&std::fs::read(key).unwrap()).unwrap(),
        own_cert: std::fs::read(cert).unwrap(),
        server_key: security::public_key(&server_cert).unwrap(),
        server_cert,
    };
    let mut session = Session::open_secured(
        connect(url),
        url,
        &Identity::Anonymous,
        Some(secure),
        &[],
        5_000,
        u64::MAX,
    )
    .unwrap();
    let node: opcua_types::NodeId = node.parse().unwrap();
    println!("{:?}", session.read(&[node]).unwrap());
    session.close();
}
