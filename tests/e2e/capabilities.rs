//! Capabilities through a real guest (`adaptors-wasm/probe`): granted TCP, UDP, serial
//! and GPIO reach real peers on this machine; everything else is refused by name.

use std::sync::Arc;
use std::time::Duration;

use limb::capabilities::gpio::SimBackend;
use limb::capabilities::{Backends, Policy};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

const POLICY: &str = r#"
tcp: ["127.0.0.0/8"]
udp: ["127.0.0.0/8"]
serial: ["/dev/pts/*"]
gpio: ["gpiochip0 10-20"]
"#;

fn probe(name: &str, spec: Value) -> Arc<crds::DeviceLink> {
    link(name, "probe", "ProbeDevice", spec)
}

/// A TCP server on loopback that answers every message with it upper-cased.
async fn tcp_upper() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn udp_upper() -> std::net::SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n].to_ascii_uppercase(), from).await;
        }
    });
    addr
}

/// The socat process, stopped when the test ends.
struct Socat(std::process::Child);

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A socat pty pair: the adaptor gets one end, a task echoing upper-cased lines holds
/// the other. Returns the adaptor's end and the socat process.
async fn serial_pair(dir: &std::path::Path) -> (String, Socat) {
    let a = dir.join("ttyA");
    let b = dir.join("ttyB");
    let child = std::process::Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .spawn()
        .expect("socat is needed for serial tests (scripts/test.sh installs it)");
    let child = Socat(child);
    for _ in 0..100 {
        if a.exists() && b.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let port = tokio_serial::SerialStream::open(&tokio_serial::new(b.display().to_string(), 9600))
        .unwrap();
    tokio::spawn(async move {
        let mut port = port;
        let mut buf = [0u8; 256];
        while let Ok(n) = port.read(&mut buf).await {
            if n == 0
                || port
                    .write_all(&buf[..n].to_ascii_uppercase())
                    .await
                    .is_err()
            {
                break;
            }
        }
    });
    (a.display().to_string(), child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_capabilities_reach_real_peers() {
    let sim = SimBackend::default();
    let mut backends = Backends::real(true);
    backends.gpio = Arc::new(sim.clone());
    let h = harness_with(Policy::from_yaml(POLICY).unwrap(), backends, |_| {});
    let probe_adaptor = h.load("adaptor_probe").await;
    let tmp = tempfile::tempdir().unwrap();
    let (tty, _socat) = serial_pair(tmp.path()).await;
    let spec = json!({
        "tcp": {"endpoint": tcp_upper().await.to_string(), "message": "ping"},
        "udp": {"endpoint": udp_upper().await.to_string(), "message": "pong"},
        "serial": {"port": tty, "baudRate": 9600, "message": "hello"},
        "gpio": {"output": "gpiochip0:17", "input": "gpiochip0:17"},
        "parameters": {"syncIntervalMs": 100}
    });
    let dev = h.spawn(probe("probe", spec), probe_adaptor);
    let r = h
        .wait(&key("probe"), Duration::from_secs(15), |r| r.polls >= 3)
        .await;
    let s = &r.status;
    assert_eq!(s["tcp"], json!({"ok": true, "reply": "PING"}), "{s:#}");
    assert_eq!(s["udp"], json!({"ok": true, "reply": "PONG"}), "{s:#}");
    assert_eq!(s["serial"]["reply"], "HELLO", "{s:#}");
    assert_eq!(s["gpio"]["ok"], true, "{s:#}");
    assert_eq!(
        s["gpio"]["wrote"], s["gpio"]["read"],
        "output wired to input on the simulated chip: {s:#}"
    );
    let polls = s["polls"].as_u64().unwrap();
    assert_eq!(
        sim.level("gpiochip0", 17),
        polls % 2 == 1,
        "the chip saw the adaptor's last write"
    );
    assert!(
        r.grants.iter().any(|g| g.contains("tcp.endpoint")),
        "{:?}",
        r.grants
    );
    dev.stop().await;
}

#[tokio::test]
async fn a_link_whose_grant_the_node_refuses_does_not_start() {
    let h = harness_with(
        Policy::from_yaml(POLICY).unwrap(),
        Backends::real(true),
        |_| {},
    );
    let a = h.load("adaptor_probe").await;
    let dev = h.spawn(
        probe(
            "far",
            json!({"tcp": {"endpoint": "192.0.2.10:502", "message": "x"}}),
        ),
        a,
    );
    let r = h
        .wait(&key("far"), Duration::from_secs(10), |r| {
            r.last_error.is_some()
        })
        .await;
    let cond = r
        .conditions
        .get(crds::ConditionType::DeviceCreated)
        .unwrap();
    assert_eq!(cond.status, crds::ConditionStatus::False);
    assert!(
        cond.message
            .contains("node policy refused tcp grant \"tcp.endpoint\" (192.0.2.10:502)"),
        "{}",
        cond.message
    );
    assert_eq!(r.polls, 0);
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptor_that_opens_more_handles_than_its_cap_is_refused_and_neighbours_keep_polling() {
    let h = harness_with(
        Policy::from_yaml(POLICY).unwrap(),
        Backends::real(true),
        |_| {},
    );
    let a = h.load("adaptor_probe").await;
    let dummy = h.load("adaptor_dummy").await;
    let neighbour = h.spawn(fan("neighbour", "slow", "50ms"), dummy);
    let addr = tcp_upper().await;
    let greedy = h.spawn(
        probe(
            "greedy",
            json!({"tcp": {"endpoint": addr.to_string(), "message": "x"}, "openMany": 20}),
        ),
        a,
    );
    let r = h
        .wait(&key("greedy"), Duration::from_secs(10), |r| r.polls >= 2)
        .await;
    // The harness caps each device at 4 handles.
    assert_eq!(r.status["openMany"]["opened"], 4, "{:#}", r.status);
    let err = r.status["openMany"]["error"].as_str().unwrap();
    assert!(err.starts_with("limit-reached"), "{err}");
    // The per-poll tcp exchange also hits the cap while openMany holds every slot.
    assert!(
        r.status["tcp"]["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("limit-reached"),
        "{:#}",
        r.status
    );
    let n0 = h.ctx.board.get(&key("neighbour")).unwrap().polls;
    // A rate is the case under test: at least 10 polls in this second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.ctx.board.get(&key("neighbour")).unwrap().polls >= n0 + 10);
    greedy.stop().await;
    neighbour.stop().await;
}

#[tokio::test]
async fn explicit_grants_are_honoured_and_other_names_are_not() {
    let h = harness_with(
        Policy::from_yaml(POLICY).unwrap(),
        Backends::real(true),
        |_| {},
    );
    let a = h.load("adaptor_probe").await;
    let addr = tcp_upper().await;
    let mut l = (*probe(
        "explicit",
        json!({"grant": "plc", "parameters": {"syncIntervalMs": 100}}),
    ))
    .clone();
    l.spec.grants.push(crds::Grant {
        name: "plc".into(),
        kind: crds::GrantKind::Tcp,
        target: addr.to_string(),
    });
    let dev = h.spawn(Arc::new(l), a.clone());
    let r = h
        .wait(&key("explicit"), Duration::from_secs(10), |r| r.polls >= 1)
        .await;
    assert_eq!(r.status["grant"]["reply"], "PING", "{:#}", r.status);
    dev.stop().await;

    let dev = h.spawn(
        probe(
            "nogrant",
            json!({"grant": "plc", "parameters": {"syncIntervalMs": 100}}),
        ),
        a,
    );
    let r = h
        .wait(&key("nogrant"), Duration::from_secs(10), |r| r.polls >= 1)
        .await;
    let err = r.status["grant"]["error"].as_str().unwrap();
    assert!(
        err.starts_with("not-permitted") && err.contains("\"plc\""),
        "{err}"
    );
    dev.stop().await;
}

/// A CA and a certificate it signed for `localhost` and 127.0.0.1, as PEM.
fn test_pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// A TLS server on loopback that upper-cases what it reads.
async fn tls_upper(cert_pem: &str, key_pem: &str) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn tls_reaches_only_a_server_whose_certificate_verifies() {
    use limb::capabilities::CapabilityError;
    use limb::capabilities::tls::TlsOptions;
    use limb::capabilities::{Capabilities, Grants, Limits};
    let (ca, cert, key) = test_pki();
    let (other_ca, _, _) = test_pki();
    let addr = tls_upper(&cert, &key).await;
    let grants = vec![crds::Grant {
        name: "broker".into(),
        kind: crds::GrantKind::Tcp,
        target: format!("tls://{addr}"),
    }];
    let mut caps = Capabilities::new(
        Arc::new(Grants::resolve(&grants, &Value::Null, limb::capabilities::grants::NO_FIELDS).0),
        Arc::new(Policy::from_yaml(POLICY).unwrap()),
        Limits::default(),
        Backends::real(true),
    );
    let opts = |ca: &str| TlsOptions {
        server_name: None,
        ca_pem: Some(ca.as_bytes().to_vec()),
        client_cert_pem: None,
        client_key_pem: None,
        insecure_skip_verify: false,
    };

    // The right CA: the stream carries plaintext both ways.
    let t = Duration::from_secs(2);
    let mut s = caps.open_tls("broker", &opts(&ca), 2000).await.unwrap();
    s.send(b"hello", t).await.unwrap();
    assert_eq!(s.receive(64, t).await.unwrap(), b"HELLO");
    assert_eq!(caps.open_handles(), 1);

    // Another CA, or a name the certificate does not carry: refused, and no handle kept.
    let err = caps
        .open_tls("broker", &opts(&other_ca), 2000)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, CapabilityError::NotPermitted(m) if m.contains("certificate")),
        "{err}"
    );
    let named = TlsOptions {
        server_name: Some("mqtt.example".into()),
        ..opts(&ca)
    };
    let err = caps.open_tls("broker", &named, 2000).await.err().unwrap();
    assert!(matches!(&err, CapabilityError::NotPermitted(_)), "{err}");
    assert_eq!(caps.open_handles(), 1);

    // Skipping verification connects to anything (and says so in the log).
    let insecure = TlsOptions {
        insecure_skip_verify: true,
        ..opts(&other_ca)
    };
    let mut s = caps.open_tls("broker", &insecure, 2000).await.unwrap();
    s.send(b"x", t).await.unwrap();
    assert_eq!(s.receive(64, t).await.unwrap(), b"X");
}

/// `adaptors-wasm/compat` is built against `octopus:adaptor@0.1.0`, before the GPIO
/// additions of 0.1.1: it must load in this limb and its GPIO calls must still reach
/// the chip (fake backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_chip_an_adaptor_built_against_contract_0_1_0_keeps_loading_and_driving_gpio() {
    let sim = SimBackend::default();
    let mut backends = Backends::real(true);
    backends.gpio = Arc::new(sim.clone());
    let h = harness_with(Policy::from_yaml(POLICY).unwrap(), backends, |_| {});
    let compat = h.load("adaptor_compat").await;
    let spec = json!({"gpio": {"output": "gpiochip0:12", "input": "gpiochip0:12"}});
    let dev = h.spawn(link("compat", "compat", "CompatDevice", spec), compat);
    let r = h
        .wait(&key("compat"), Duration::from_secs(15), |r| r.polls >= 3)
        .await;
    let s = &r.status;
    assert_eq!(s["wrote"], s["read"], "output wired to input: {s:#}");
    let polls = s["polls"].as_u64().unwrap();
    assert_eq!(
        sim.level("gpiochip0", 12),
        polls % 2 == 1,
        "the chip saw the adaptor's last write"
    );
    dev.stop().await;
}

/// Contract 0.1.1 through a real guest: the probe requests `gpio.input` with edge
/// detection (`gpio.request`) and collects edges each poll (`line.wait-edges`); its own
/// output, wired to the same pin of the fake chip, makes them. An output asking for edge
/// detection is refused as `invalid-argument`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_chip_a_guest_requests_a_line_with_edge_detection_and_collects_its_edges() {
    let sim = SimBackend::default();
    let mut backends = Backends::real(true);
    backends.gpio = Arc::new(sim.clone());
    let h = harness_with(Policy::from_yaml(POLICY).unwrap(), backends, |_| {});
    let probe_adaptor = h.load("adaptor_probe").await;
    let spec = json!({
        "gpio": {"output": "gpiochip0:14", "input": "gpiochip0:14"},
        "gpioEdges": {},
        "parameters": {"syncIntervalMs": 50}
    });
    let dev = h.spawn(probe("edges", spec), probe_adaptor);
    let r = h
        .wait(&key("edges"), Duration::from_secs(15), |r| {
            let e = &r.status["gpioEdges"];
            e["rising"].as_u64() >= Some(2) && e["falling"].as_u64() >= Some(2)
        })
        .await;
    let e = &r.status["gpioEdges"];
    assert_eq!(e["ok"], true, "{e:#}");
    assert_eq!(
        e["inOrder"], true,
        "seqnos without gaps, timestamps in order: {e:#}"
    );
    let (rising, falling) = (
        e["rising"].as_u64().unwrap(),
        e["falling"].as_u64().unwrap(),
    );
    assert_eq!(e["lastSeqno"].as_u64().unwrap(), rising + falling, "{e:#}");
    assert!(
        e["refused"]
            .as_str()
            .unwrap()
            .starts_with("invalid-argument: edge detection needs an input line"),
        "{e:#}"
    );
    dev.stop().await;
}

/// The GPIO adaptor through the whole supervisor on the fake chip: what the kernel
/// cannot show (gpio-sim drops a released line back to its pull), the fake can: the
/// levels left on the pins after the device stops are the spec's shutdown levels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_chip_gpio_adaptor_drives_outputs_and_leaves_the_shutdown_levels() {
    let sim = SimBackend::default();
    sim.name_line("gpiochip0", 11, "relay1");
    let mut backends = Backends::real(true);
    backends.gpio = Arc::new(sim.clone());
    let h = harness_with(Policy::from_yaml(POLICY).unwrap(), backends, |_| {});
    let gpio = h.load("adaptor_gpio").await;
    let spec = json!({
        "chip": "gpiochip0",
        "syncInterval": "50ms",
        "properties": [
            {"name": "relay", "line": "relay1", "direction": "output", "value": true},
            {"name": "siren", "line": 12, "direction": "output", "shutdownValue": true},
            {"name": "lamp", "line": 13, "direction": "output", "activeLow": true, "value": true},
            {"name": "door", "line": 14, "direction": "input", "edges": "both"}
        ]
    });
    let dev = h.spawn(link("panel", "gpio", "GPIODevice", spec), gpio);
    let r = h
        .wait(&key("panel"), Duration::from_secs(15), |r| r.polls >= 1)
        .await;
    assert_eq!(
        r.grants.len(),
        4,
        "one grant per property's line: {:?}",
        r.grants
    );
    assert!(sim.level("gpiochip0", 11), "relay1 active");
    assert!(!sim.level("gpiochip0", 12), "siren inactive by default");
    assert!(!sim.level("gpiochip0", 13), "lamp active means low");
    sim.drive("gpiochip0", 14, true);
    let r = h
        .wait(&key("panel"), Duration::from_secs(5), |r| {
            r.status["properties"][3]["risingEdges"] == 1
        })
        .await;
    assert_eq!(r.status["properties"][3]["value"], true, "{:#}", r.status);
    dev.stop().await;
    assert!(!sim.level("gpiochip0", 11), "relay back to inactive");
    assert!(sim.level("gpiochip0", 12), "siren at its shutdownValue");
    assert!(
        sim.level("gpiochip0", 13),
        "lamp inactive: high, as active-low"
    );
}
