//! The host side of capability calls with arbitrary arguments: the node policy
//! (`Policy::from_yaml`, `check`, `check_addr`), grant resolution (`Grants::resolve`,
//! `endpoint`), `Capabilities::authorize`/`release`/`timeout`/`read_size`, and a serial
//! `Bus::transact` against an in-memory port that answers with fuzzer bytes, on a
//! paused clock so that silences and timeouts cost no real time.
//!
//! Input: an `arbitrary` [`Input`].
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arbitrary::Arbitrary;
use crds::{Grant, GrantKind};
use libfuzzer_sys::fuzz_target;
use limb::bindings::{ResourceField, ResourceKind};
use limb::capabilities::CapabilityError;
use limb::capabilities::serial::bus::Buses;
use limb::capabilities::serial::{Backend, Parity, SerialIo, Settings};
use limb::capabilities::socket::BoxFuture;
use limb::capabilities::{Backends, Capabilities, Grants, Limits, Policy, grants, policy};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    Tcp,
    Udp,
    Serial,
    Gpio,
}

impl Kind {
    fn grant(self) -> GrantKind {
        match self {
            Kind::Tcp => GrantKind::Tcp,
            Kind::Udp => GrantKind::Udp,
            Kind::Serial => GrantKind::Serial,
            Kind::Gpio => GrantKind::Gpio,
        }
    }
    fn resource(self) -> ResourceKind {
        match self {
            Kind::Tcp => ResourceKind::Tcp,
            Kind::Udp => ResourceKind::Udp,
            Kind::Serial => ResourceKind::Serial,
            Kind::Gpio => ResourceKind::Gpio,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum PolicySource {
    /// The YAML file as an operator writes it.
    Yaml(String),
    /// Rule lists, written out as YAML.
    Rules {
        tcp: Vec<String>,
        udp: Vec<String>,
        serial: Vec<String>,
        gpio: Vec<String>,
    },
}

#[derive(Arbitrary, Debug)]
enum Call {
    Authorize {
        name: String,
        kind: Kind,
    },
    /// A grant name the device does hold, picked by index.
    AuthorizeHeld {
        index: u8,
        kind: Kind,
    },
    Release,
    Timeout(u32),
    ReadSize(u32),
    CallDeadline {
        in_ms: u16,
        call_ms: u32,
    },
    Check {
        kind: Kind,
        target: String,
    },
    CheckAddr {
        kind: Kind,
        v6: bool,
        ip: [u8; 16],
        port: u16,
    },
    Endpoint {
        kind: Kind,
        target: String,
    },
    HostPort(String),
    GpioTarget(String),
}

/// What the device on the line does after the request: send bytes, stay silent for a
/// while, hang up, or fail.
#[derive(Arbitrary, Debug, Clone)]
enum Event {
    Bytes(Vec<u8>),
    Silence(u16),
    Eof,
    Error,
}

#[derive(Arbitrary, Debug)]
struct Exchange {
    request: Vec<u8>,
    reply_len: u32,
    timeout_ms: u32,
    idle_ms: u32,
    device: Vec<Event>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    policy: PolicySource,
    grants: Vec<(String, Kind, String)>,
    /// A template spec as JSON and the resource fields the adaptor declares.
    spec: String,
    fields: Vec<(String, Kind)>,
    max_handles: u8,
    max_timeout_ms: u16,
    max_read: u16,
    calls: Vec<Call>,
    exchanges: Vec<Exchange>,
}

/// A serial port whose device plays a script, then stays silent.
struct Scripted {
    script: VecDeque<Event>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            match self.script.pop_front() {
                None => return Poll::Pending, // silent from now on; the caller times out
                Some(Event::Silence(ms)) => {
                    self.sleep = Some(Box::pin(tokio::time::sleep(Duration::from_millis(
                        u64::from(ms),
                    ))));
                }
                Some(Event::Eof) => return Poll::Ready(Ok(())),
                Some(Event::Error) => return Poll::Ready(Err(io::Error::other("line fault"))),
                Some(Event::Bytes(mut bytes)) => {
                    if bytes.is_empty() {
                        continue;
                    }
                    let n = bytes.len().min(buf.remaining());
                    buf.put_slice(&bytes[..n]);
                    if n < bytes.len() {
                        self.script.push_front(Event::Bytes(bytes.split_off(n)));
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written
            .lock()
            .expect("not poisoned")
            .extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl SerialIo for Scripted {
    fn clear_input(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens the one scripted port it holds.
struct OnePort(Mutex<Option<Scripted>>);

impl Backend for OnePort {
    fn open(&self, _: String, _: Settings) -> BoxFuture<'_, io::Result<Box<dyn SerialIo>>> {
        let port = self.0.lock().expect("not poisoned").take();
        Box::pin(async move {
            port.map(|p| Box::new(p) as Box<dyn SerialIo>)
                .ok_or_else(|| io::Error::other("opened twice"))
        })
    }
}

fn load_policy(source: &PolicySource) -> Policy {
    let yaml = match source {
        PolicySource::Yaml(text) => text.clone(),
        PolicySource::Rules {
            tcp,
            udp,
            serial,
            gpio,
        } => {
            let rules = serde_json::json!({"tcp": tcp, "udp": udp, "serial": serial, "gpio": gpio});
            serde_yaml::to_string(&rules).expect("rules serialize")
        }
    };
    match Policy::from_yaml(&yaml) {
        Ok(p) => p,
        Err(errors) => {
            assert!(!errors.is_empty());
            errors.iter().for_each(|e| drop(e.to_string()));
            Policy::deny_all()
        }
    }
}

fn call(caps: &mut Capabilities, policy: &Policy, held: &[String], limits: &Limits, c: &Call) {
    match c {
        Call::Authorize { name, kind } => authorize(caps, name, *kind, limits),
        Call::AuthorizeHeld { index, kind } => {
            if let Some(name) = held.get(usize::from(*index) % held.len().max(1)) {
                authorize(caps, name, *kind, limits);
            }
        }
        Call::Release => caps.release(),
        Call::Timeout(ms) => {
            let t = caps.timeout(*ms);
            assert!(t <= limits.max_timeout);
        }
        Call::ReadSize(n) => match caps.read_size(*n) {
            Ok(size) => assert!(size <= caps.max_read() && size == *n as usize),
            Err(e) => assert!(matches!(e, CapabilityError::InvalidArgument(_))),
        },
        Call::CallDeadline { in_ms, call_ms } => {
            let now = std::time::Instant::now();
            let call = Duration::from_millis(u64::from(*call_ms));
            caps.set_call_deadline(Some((now + Duration::from_millis(u64::from(*in_ms)), call)));
            assert!(caps.timeout(0) <= Duration::from_millis(u64::from(*in_ms)));
        }
        Call::Check { kind, target } => drop(policy.check(kind.grant(), target)),
        Call::CheckAddr { kind, v6, ip, port } => {
            let ip = if *v6 {
                IpAddr::from(*ip)
            } else {
                IpAddr::from([ip[0], ip[1], ip[2], ip[3]])
            };
            let addr = SocketAddr::new(ip, *port);
            let by_addr = policy.check_addr(kind.grant(), addr);
            if matches!(kind, Kind::Tcp | Kind::Udp) {
                // A literal address is checked the same way as a resolved one.
                assert_eq!(policy.check(kind.grant(), &addr.to_string()), by_addr);
            }
        }
        Call::Endpoint { kind, target } => {
            let e = grants::endpoint(kind.grant(), target);
            if !matches!(kind, Kind::Tcp | Kind::Udp) || !target.contains("://") {
                assert_eq!(&e, target);
            }
        }
        Call::HostPort(t) => drop(policy::split_host_port(t)),
        Call::GpioTarget(t) => drop(policy::parse_gpio_target(t)),
    }
}

fn authorize(caps: &mut Capabilities, name: &str, kind: Kind, limits: &Limits) {
    let before = caps.open_handles();
    match caps.authorize(name, kind.grant()) {
        Ok(g) => {
            assert_eq!(g.kind, kind.grant());
            assert_eq!(caps.open_handles(), before + 1);
            assert!(caps.open_handles() <= limits.max_handles);
        }
        Err(e) => {
            assert_eq!(caps.open_handles(), before);
            assert!(matches!(
                e,
                CapabilityError::NotPermitted(_) | CapabilityError::LimitReached(_)
            ));
        }
    }
}

/// One `transact` the way the host's `serial.port.transact` makes it.
async fn exchange(caps: &Capabilities, x: &Exchange) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let port = Scripted {
        script: x.device.iter().cloned().collect(),
        sleep: None,
        written: written.clone(),
    };
    let backend = OnePort(Mutex::new(Some(port)));
    let settings = Settings {
        baud_rate: 9600,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
    };
    let Ok(bus) = Buses::default()
        .open(&backend, "/dev/ttyFUZZ", settings, caps.timeout(0))
        .await
    else {
        return;
    };
    if caps.read_size(x.reply_len).is_err() {
        return;
    }
    let max_reply = caps.max_read();
    let timeout = caps.timeout(x.timeout_ms);
    let start = tokio::time::Instant::now();
    let latest = start + caps.timeout(0);
    let idle = Duration::from_millis(u64::from(x.idle_ms)).min(timeout);
    let reply_len = x.reply_len as usize;
    let result = bus
        .transact(&x.request, timeout, latest, reply_len, idle, max_reply)
        .await;
    let elapsed = start.elapsed();
    assert!(
        elapsed <= timeout.min(latest - start) + Duration::from_millis(1),
        "took {elapsed:?} with a timeout of {timeout:?}"
    );
    if let Ok(reply) = result {
        let want = if reply_len == 0 {
            max_reply
        } else {
            reply_len.min(max_reply)
        };
        assert!(
            !reply.is_empty() && reply.len() <= want,
            "{} of {want}",
            reply.len()
        );
        let sent: Vec<u8> = x
            .device
            .iter()
            .filter_map(|e| match e {
                Event::Bytes(b) => Some(b.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect();
        assert!(sent.starts_with(&reply));
        assert_eq!(*written.lock().expect("not poisoned"), x.request);
    }
}

fuzz_target!(|input: Input| {
    let policy = load_policy(&input.policy);
    let explicit: Vec<Grant> = input
        .grants
        .iter()
        .map(|(name, kind, target)| Grant {
            name: name.clone(),
            kind: kind.grant(),
            target: target.clone(),
        })
        .collect();
    let spec: serde_json::Value = serde_json::from_str(&input.spec).unwrap_or_default();
    let fields: Vec<ResourceField> = input
        .fields
        .iter()
        .map(|(path, kind)| ResourceField {
            path: path.clone(),
            kind: kind.resource(),
        })
        .collect();
    let (resolved, problems) = Grants::resolve(&explicit, &spec, &fields);
    problems.iter().for_each(|p| assert!(!p.0.is_empty()));
    let _ = resolved.describe();
    let held: Vec<String> = resolved.iter().map(|g| g.name.clone()).collect();
    for g in resolved.iter() {
        assert!(!g.name.is_empty(), "{g:?}");
    }

    let limits = Limits {
        max_handles: usize::from(input.max_handles % 16),
        max_timeout: Duration::from_millis(u64::from(input.max_timeout_ms)),
        max_read: u32::from(input.max_read).max(1),
    };
    let mut caps = Capabilities::new(
        Arc::new(resolved),
        Arc::new(policy.clone()),
        limits.clone(),
        Backends::real(true),
    );
    for c in &input.calls {
        call(&mut caps, &policy, &held, &limits, c);
    }
    caps.set_call_deadline(None);
    if input.exchanges.is_empty() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(async {
        for x in input.exchanges.iter().take(4) {
            exchange(&caps, x).await;
        }
    });
});
