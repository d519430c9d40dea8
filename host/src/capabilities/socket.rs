//! `octopus:adaptor/socket`: TCP streams and UDP sockets to granted endpoints.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use crds::GrantKind;
use tokio::io::{AsyncRead, AsyncWrite};

use super::tls::TlsOptions;
use super::{Capabilities, CapabilityError, with_timeout};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte stream the host owns on the guest's behalf.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Duplex for T {}

/// A connected datagram socket.
pub trait Datagram: Send + Sync {
    fn send<'a>(&'a self, data: &'a [u8]) -> BoxFuture<'a, io::Result<usize>>;
    fn recv(&self, max: usize) -> BoxFuture<'_, io::Result<Vec<u8>>>;
}

/// Opens connections. Real: tokio; fake: in-memory peers in unit tests.
pub trait Backend: Send + Sync {
    fn connect_tcp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Duplex>>>;
    fn connect_udp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Datagram>>>;
}

pub struct RealBackend;

impl Backend for RealBackend {
    fn connect_tcp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Duplex>>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as Box<dyn Duplex>)
        })
    }

    fn connect_udp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Datagram>>> {
        Box::pin(async move {
            let bind: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let s = tokio::net::UdpSocket::bind(bind).await?;
            s.connect(addr).await?;
            Ok(Box::new(RealUdp(s)) as Box<dyn Datagram>)
        })
    }
}

struct RealUdp(tokio::net::UdpSocket);

impl Datagram for RealUdp {
    fn send<'a>(&'a self, data: &'a [u8]) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(self.0.send(data))
    }

    fn recv(&self, max: usize) -> BoxFuture<'_, io::Result<Vec<u8>>> {
        Box::pin(async move {
            let mut buf = vec![0; max];
            let n = self.0.recv(&mut buf).await?;
            buf.truncate(n);
            Ok(buf)
        })
    }
}

/// Bytes read ahead of the guest on each stream (a Modbus frame is at most 260).
/// Protocols read a fixed header and then the body; served from one `recv` of what
/// arrived, that is one system call instead of three per exchange (header, body, and the
/// read that finds the socket empty).
const READ_AHEAD: usize = 512;

/// The host side of a guest's `tcp-stream`.
pub struct TcpStream {
    io: tokio::io::BufReader<Box<dyn Duplex>>,
}

impl TcpStream {
    fn new(io: Box<dyn Duplex>) -> Self {
        Self {
            io: tokio::io::BufReader::with_capacity(READ_AHEAD, io),
        }
    }

    /// Writes all of `data` within `timeout`.
    pub async fn send(&mut self, data: &[u8], timeout: Duration) -> Result<u32, CapabilityError> {
        super::write_all(&mut self.io, data, timeout).await
    }

    /// Reads at most `max` bytes within `timeout`; empty when the peer closed.
    pub async fn receive(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, CapabilityError> {
        super::read_some(&mut self.io, max, timeout).await
    }
}

/// The host side of a guest's `udp-socket`.
pub struct UdpSocket {
    io: Box<dyn Datagram>,
}

impl Capabilities {
    /// Authorizes `grant`, resolves its target and checks every address against the
    /// policy before connecting to the first one that answers.
    async fn resolve(
        &mut self,
        grant: &str,
        kind: GrantKind,
    ) -> Result<Vec<SocketAddr>, CapabilityError> {
        let g = self.authorize(grant, kind)?;
        let resolved = match g.target.parse::<SocketAddr>() {
            Ok(addr) => Ok(vec![addr]),
            Err(_) => tokio::net::lookup_host(&g.target)
                .await
                .map(|addrs| addrs.collect())
                .map_err(|e| CapabilityError::Io(format!("cannot resolve {}: {e}", g.target))),
        };
        let addrs = resolved.and_then(|addrs: Vec<SocketAddr>| {
            let allowed: Vec<_> = addrs
                .iter()
                .copied()
                .filter(|a| self.policy().check_addr(kind, *a).is_ok())
                .collect();
            if allowed.is_empty() {
                Err(CapabilityError::NotPermitted(format!(
                    "{kind} grant {grant:?} ({}) resolves to {addrs:?}, which node policy refuses",
                    g.target
                )))
            } else {
                Ok(allowed)
            }
        });
        if addrs.is_err() {
            self.release();
        }
        addrs
    }

    pub async fn open_tcp(
        &mut self,
        grant: &str,
        timeout_ms: u32,
    ) -> Result<TcpStream, CapabilityError> {
        let timeout = self.timeout(timeout_ms);
        let addrs = self.resolve(grant, GrantKind::Tcp).await?;
        let mut last = CapabilityError::Io("no address".into());
        for addr in addrs {
            match with_timeout(timeout, self.backends().socket.connect_tcp(addr)).await {
                Ok(io) => return Ok(TcpStream::new(io)),
                Err(e) => last = e,
            }
        }
        self.release();
        Err(last)
    }

    /// Like [`Capabilities::open_tcp`], then a TLS handshake verified as `opts` says.
    pub async fn open_tls(
        &mut self,
        grant: &str,
        opts: &TlsOptions,
        timeout_ms: u32,
    ) -> Result<TcpStream, CapabilityError> {
        let prepared = self
            .grants_target(grant)
            .map(|target| super::tls::server_name(opts, &target))
            .unwrap_or_else(|| {
                Err(CapabilityError::NotPermitted(format!(
                    "tcp grant {grant:?} is not granted to this device"
                )))
            })
            .and_then(|name| Ok((name, super::tls::client_config(opts)?)));
        let (name, config) = prepared?;
        if opts.insecure_skip_verify {
            tracing::warn!(%grant, "TLS without verifying the server certificate");
        }
        let timeout = self.timeout(timeout_ms);
        let plain = self.open_tcp(grant, timeout_ms).await?;
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout(timeout, connector.connect(name, plain.io)).await {
            Ok(Ok(tls)) => Ok(TcpStream::new(Box::new(tls))),
            Ok(Err(e)) => {
                self.release();
                Err(super::tls::handshake_error(e))
            }
            Err(_) => {
                self.release();
                Err(CapabilityError::Timeout)
            }
        }
    }

    pub async fn open_udp(&mut self, grant: &str) -> Result<UdpSocket, CapabilityError> {
        let addrs = self.resolve(grant, GrantKind::Udp).await?;
        let timeout = self.timeout(0);
        let mut last = CapabilityError::Io("no address".into());
        for addr in addrs {
            match with_timeout(timeout, self.backends().socket.connect_udp(addr)).await {
                Ok(io) => return Ok(UdpSocket { io }),
                Err(e) => last = e,
            }
        }
        self.release();
        Err(last)
    }
}

impl UdpSocket {
    /// Sends one datagram within `timeout`.
    pub async fn send(&self, data: &[u8], timeout: Duration) -> Result<u32, CapabilityError> {
        with_timeout(timeout, self.io.send(data))
            .await
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Receives one datagram of at most `max` bytes within `timeout`.
    pub async fn receive(&self, max: usize, timeout: Duration) -> Result<Vec<u8>, CapabilityError> {
        with_timeout(timeout, self.io.recv(max)).await
    }
}

#[cfg(test)]
pub mod fake {
    //! An in-memory socket backend: every TCP connect gets a peer that answers with
    //! `reply(request)`, and records the address it was asked for.

    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub struct FakeBackend {
        pub connected: Mutex<Vec<SocketAddr>>,
        pub reply: fn(&[u8]) -> Vec<u8>,
    }

    impl Backend for FakeBackend {
        fn connect_tcp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Duplex>>> {
            if let Ok(mut c) = self.connected.lock() {
                c.push(addr);
            }
            let reply = self.reply;
            Box::pin(async move {
                let (ours, mut theirs) = tokio::io::duplex(4096);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = theirs.read(&mut buf).await {
                        if n == 0 || theirs.write_all(&reply(&buf[..n])).await.is_err() {
                            break;
                        }
                    }
                });
                Ok(Box::new(ours) as Box<dyn Duplex>)
            })
        }

        fn connect_udp(&self, _addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Datagram>>> {
            Box::pin(async { Err(io::Error::other("fake backend has no udp")) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{Backends, Limits, Policy, fixtures};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn caps(policy: &str, target: &str) -> (Capabilities, Arc<fake::FakeBackend>) {
        let fake = Arc::new(fake::FakeBackend {
            connected: Mutex::new(vec![]),
            reply: |b| b.to_ascii_uppercase(),
        });
        let mut backends = Backends::real(true);
        backends.socket = fake.clone();
        let caps = fixtures::caps(
            &[fixtures::grant("plc", GrantKind::Tcp, target)],
            Policy::from_yaml(policy).unwrap(),
            1,
            backends,
        );
        (caps, fake)
    }

    #[tokio::test]
    async fn reads_ahead_but_hands_out_at_most_what_is_asked_in_order() {
        // A reply that arrives in one piece: a 7-byte header and a 6-byte body.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut s = TcpStream::new(Box::new(ours));
        theirs.write_all(b"HEADER!body!!").await.unwrap();
        let t = Duration::from_secs(1);
        assert_eq!(s.receive(7, t).await.unwrap(), b"HEADER!");
        assert_eq!(s.receive(100, t).await.unwrap(), b"body!!");
        // Nothing more has arrived: the read waits for the peer, up to its timeout.
        let waited = s.receive(4, Duration::from_millis(20)).await;
        assert!(
            matches!(waited, Err(CapabilityError::Timeout)),
            "{waited:?}"
        );
        theirs.write_all(b"next").await.unwrap();
        assert_eq!(s.receive(2, t).await.unwrap(), b"ne");
        assert_eq!(s.receive(2, t).await.unwrap(), b"xt");
        // Writes go straight through the read-ahead layer.
        s.send(b"req", t).await.unwrap();
        let mut buf = [0u8; 3];
        theirs.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"req");
        // The peer closing is an empty read once the buffered bytes are gone.
        theirs.write_all(b"z").await.unwrap();
        drop(theirs);
        assert_eq!(s.receive(8, t).await.unwrap(), b"z");
        assert!(s.receive(8, t).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn granted_connect_reaches_the_backend_and_exchanges_bytes() {
        let (mut c, fake) = caps("tcp: ['127.0.0.1/32 5020']", "127.0.0.1:5020");
        let mut s = c.open_tcp("plc", 100).await.unwrap();
        s.io.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"PING");
        assert_eq!(
            fake.connected.lock().unwrap().as_slice(),
            &["127.0.0.1:5020".parse().unwrap()]
        );
    }

    #[tokio::test]
    async fn refused_connect_never_reaches_the_backend_and_frees_the_slot() {
        let (mut c, fake) = caps("tcp: ['127.0.0.1/32 502']", "127.0.0.1:5020");
        let err = c.open_tcp("plc", 100).await.err().unwrap();
        assert!(matches!(err, CapabilityError::NotPermitted(_)), "{err}");
        assert!(fake.connected.lock().unwrap().is_empty());
        assert_eq!(c.open_handles(), 0);
    }

    #[tokio::test]
    async fn handle_cap_applies_to_sockets() {
        let (mut c, _) = caps("tcp: ['127.0.0.1/32']", "127.0.0.1:5020");
        let _first = c.open_tcp("plc", 100).await.unwrap();
        let err = c.open_tcp("plc", 100).await.err().unwrap();
        assert!(matches!(err, CapabilityError::LimitReached(_)), "{err}");
    }

    #[tokio::test]
    async fn real_backend_talks_to_a_loopback_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"world").await.unwrap();
        });
        let mut c = fixtures::caps(
            &[fixtures::grant("srv", GrantKind::Tcp, &addr.to_string())],
            Policy::loopback(),
            Limits::default().max_handles,
            Backends::real(true),
        );
        let mut s = c.open_tcp("srv", 1000).await.unwrap();
        s.io.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        s.io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"world");
    }

    #[tokio::test]
    async fn connect_timeout_is_a_typed_error() {
        // A listener that never accepts still completes the handshake, so use a backend
        // that never answers instead.
        struct Never;
        impl Backend for Never {
            fn connect_tcp(&self, _: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Duplex>>> {
                Box::pin(std::future::pending())
            }
            fn connect_udp(&self, _: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Datagram>>> {
                Box::pin(std::future::pending())
            }
        }
        let mut backends = Backends::real(true);
        backends.socket = Arc::new(Never);
        let mut c = fixtures::caps(
            &[fixtures::grant("plc", GrantKind::Tcp, "127.0.0.1:1")],
            Policy::loopback(),
            Limits::default().max_handles,
            backends,
        );
        let err = c.open_tcp("plc", 20).await.err().unwrap();
        assert!(matches!(err, CapabilityError::Timeout));
        assert_eq!(c.open_handles(), 0);
    }
}
