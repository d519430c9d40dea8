//! The OPC UA adaptor (`adaptor_opcua`) against a real server, asyncua 2.1.0
//! (`tests/peers/opcua_peer.py`, see `octopus_tests::opcua`), checked from the other side
//! with asyncua's own client: every property type written and read back, subscription
//! pushes, per-node bad status codes, username/password logins, a server restart, a hot
//! swap, refused policies and the standalone example; and the signing policies through a
//! recording relay, with an unpinned certificate and a policy not offered refused.

use std::sync::Arc;
use std::time::Duration;

use limb::capabilities::{Backends, Policy};
use limb::status::{DeviceReport, Phase};
use serde_json::{Value, json};

use crate::common::*;
use crate::modbus::StandaloneLimb;
use octopus_tests::opcua::{Relay, SecureOptions, Server};
use octopus_tests::paths::repo_file;

const POLICY: &str = r#"
tcp: ["127.0.0.0/8", "::1/128"]
"#;

/// Connecting runs seven requests against a Python server in one guest call; the
/// default test budget of 500 ms is too tight while cargo builds on both cores.
fn harness_opcua() -> Harness {
    harness_with(
        Policy::from_yaml(POLICY).unwrap(),
        Backends::real(true),
        |s| s.call_timeout = Duration::from_secs(10),
    )
}

/// The report of device `name` once its last error contains `why` (within `secs`), not
/// healthy.
async fn refused(h: &Harness, name: &str, why: &str, secs: u64) -> DeviceReport {
    let r = h
        .wait(&key(name), Duration::from_secs(secs), |r| {
            r.last_error.as_deref().is_some_and(|e| e.contains(why))
        })
        .await;
    assert_ne!(r.phase, Phase::Healthy, "{name}");
    r
}

fn device(name: &str, spec: Value) -> Arc<crds::DeviceLink> {
    link(name, "opcua", "OPCUADevice", spec)
}

/// (property type, asyncua VariantType = node name, value the adaptor writes, the value
/// as asyncua's client prints it). None of them is the server's initial value.
const TYPES: [(&str, &str, &str, &str); 12] = [
    ("float", "Float", "-3.5", "-3.5"),
    ("double", "Double", "1234.0625", "1234.0625"),
    (
        "int64",
        "Int64",
        "-9223372036854775808",
        "-9223372036854775808",
    ),
    ("int32", "Int32", "2147483647", "2147483647"),
    ("int16", "Int16", "-32768", "-32768"),
    (
        "uint64",
        "UInt64",
        "18446744073709551615",
        "18446744073709551615",
    ),
    ("uint32", "UInt32", "4294967295", "4294967295"),
    ("uint16", "UInt16", "65535", "65535"),
    ("string", "String", "grüße, OPC UA", "grüße, OPC UA"),
    ("boolean", "Boolean", "true", "true"),
    ("byteString", "ByteString", "3q2+7w==", "3q2+7w=="),
    (
        "datetime",
        "DateTime",
        "2024-05-01T10:00:00.000Z",
        "2024-05-01T10:00:00+00:00",
    ),
];

fn spec(server: &Server, properties: Value, extra: Value) -> Value {
    let mut spec = json!({
        "protocol": {"endpoint": server.url()},
        "parameters": {"syncInterval": "200ms", "timeout": "2s"},
        "properties": properties,
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if k == "protocol" {
                for (pk, pv) in v.as_object().unwrap() {
                    spec["protocol"][pk] = pv.clone();
                }
            } else {
                spec.insert(k.clone(), v.clone());
            }
        }
    }
    spec
}

fn typed_properties() -> Value {
    let mut list: Vec<Value> = TYPES
        .iter()
        .map(|(kind, node, written, _)| {
            json!({"name": kind, "type": kind, "value": written, "visitor": {"nodeID": format!("ns=2;s={node}")}})
        })
        .collect();
    list.push(json!({"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}}));
    list.push(json!({"name": "missing", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=NoSuchNode"}}));
    list.push(json!({"name": "locked", "type": "int32", "value": "8", "visitor": {"nodeID": "ns=2;s=Locked"}}));
    list.push(json!({"name": "mistyped", "type": "string", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Locked"}}));
    Value::Array(list)
}

fn ticker(r: &DeviceReport) -> i64 {
    value(r, "ticker")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_is_written_and_read_back_and_bad_nodes_are_per_property_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let _dev = h.spawn(
        device("plc", spec(&server, typed_properties(), json!({}))),
        a,
    );
    let r = h
        .wait(&key("plc"), Duration::from_secs(30), |r| {
            r.phase == Phase::Healthy
                && TYPES
                    .iter()
                    .all(|(kind, _, written, _)| value(r, kind).as_deref() == Some(*written))
        })
        .await;
    for (kind, ..) in TYPES {
        let p = property(&r, kind).unwrap();
        assert_eq!(p["type"], kind, "{p}");
        assert!(p["updatedAt"].is_string(), "{p}");
        assert!(p.get("error").is_none(), "{p}");
    }
    // The server holds what the adaptor wrote, with the right variant type.
    let nodes: Vec<String> = TYPES.iter().map(|t| format!("ns=2;s={}", t.1)).collect();
    let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let held = server.read(&refs);
    for ((_, node, _, printed), (variant, got)) in TYPES.iter().zip(&held) {
        assert_eq!((variant.as_str(), got.as_str()), (*node, *printed));
    }
    // Per-node errors: an unknown node, a write the server refuses, a type mismatch;
    // the device stays healthy.
    assert_eq!(
        error(&r, "missing").as_deref(),
        Some("BadNodeIdUnknown"),
        "{:#}",
        r.status
    );
    assert!(
        error(&r, "locked").is_some_and(|e| e.starts_with("write: Bad")),
        "{:#}",
        r.status
    );
    assert_eq!(value(&r, "locked").as_deref(), Some("7"));
    assert_eq!(server.read(&["ns=2;s=Locked"])[0].1, "7");
    assert!(
        error(&r, "mistyped").is_some_and(|e| e.contains("Int32") && e.contains("string")),
        "{:#}",
        r.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_pushes_changes_made_by_the_server_and_by_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let props = json!([
        {"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}},
        {"name": "name", "type": "string", "readOnly": true, "visitor": {"nodeID": "ns=2;s=String"}},
    ]);
    let _dev = h.spawn(device("sub", spec(&server, props, json!({}))), a);
    let first = h
        .wait(&key("sub"), Duration::from_secs(30), |r| {
            r.phase == Phase::Healthy && ticker(r) >= 0
        })
        .await;
    // The server moves the ticker every 200 ms; the status follows without reads.
    let start = ticker(&first);
    let later = h
        .wait(&key("sub"), Duration::from_secs(15), |r| {
            ticker(r) >= start + 5
        })
        .await;
    assert!(later.polls > first.polls);
    // A value another client writes arrives by notification.
    server.write("ns=2;s=String", "String", "from asyncua");
    h.wait(&key("sub"), Duration::from_secs(15), |r| {
        value(r, "name").as_deref() == Some("from asyncua")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reconnected_and_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let props = json!([
        {"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}},
        {"name": "setpoint", "type": "int32", "value": "42", "visitor": {"nodeID": "ns=2;s=Int32"}},
    ]);
    let _dev = h.spawn(device("restart", spec(&server, props, json!({}))), a);
    h.wait(&key("restart"), Duration::from_secs(30), |r| {
        r.phase == Phase::Healthy && ticker(r) > 0
    })
    .await;
    assert_eq!(server.read(&["ns=2;s=Int32"])[0].1, "42");

    server.stop();
    let down = h
        .wait(&key("restart"), Duration::from_secs(20), |r| {
            r.phase == Phase::Unhealthy
        })
        .await;
    assert!(
        error(&down, "ticker").is_some() || down.last_error.is_some(),
        "{down:#?}"
    );

    // The restarted server starts from its initial values (ticker 0, Int32 -70000).
    server.restart(dir.path());
    let up = h
        .wait(&key("restart"), Duration::from_secs(60), |r| {
            r.phase == Phase::Healthy && error(r, "ticker").is_none() && ticker(r) > 0
        })
        .await;
    assert!(up.failed_polls > 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while server.read(&["ns=2;s=Int32"])[0].1 != "42" {
        assert!(
            std::time::Instant::now() < deadline,
            "the setpoint was not written to the restarted server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password_log_in_and_a_wrong_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_login(dir.path(), "operator", "s3cret");
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let props = json!([
        {"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}},
    ]);
    let good = spec(
        &server,
        props.clone(),
        json!({"protocol": {"basicAuth": {"usernameRef": {"name": "creds", "item": "user"}, "password": "s3cret"}}}),
    );
    let references = vec![limb::bindings::ReferenceValue {
        reference: "creds".into(),
        item: "user".into(),
        value: b"operator".to_vec(),
    }];
    let _ok = h.spawn_with(device("login", good), a.clone(), references);
    h.wait(&key("login"), Duration::from_secs(30), |r| {
        r.phase == Phase::Healthy && ticker(r) >= 0
    })
    .await;

    let bad = spec(
        &server,
        props.clone(),
        json!({"protocol": {"basicAuth": {"username": "operator", "password": "wrong"}}}),
    );
    let _bad = h.spawn(device("wrong", bad), a.clone());
    refused(&h, "wrong", "ActivateSession", 30).await;

    // Anonymous is not offered by this server: named, not retried blindly.
    let _anon = h.spawn(device("anon", spec(&server, props, json!({}))), a);
    refused(&h, "anon", "Anonymous", 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_swap_carries_writes_and_readings_over_and_a_changed_value_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let props = json!([
        {"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}},
        {"name": "setpoint", "type": "int32", "value": "42", "visitor": {"nodeID": "ns=2;s=Int32"}},
    ]);
    let dev = h.spawn(device("swap", spec(&server, props, json!({}))), a);
    h.wait(&key("swap"), Duration::from_secs(30), |r| {
        r.phase == Phase::Healthy && value(r, "setpoint").as_deref() == Some("42")
    })
    .await;
    // Someone else changes the setpoint; the swapped-in instance must not write 42
    // again, because the snapshot says 42 was written already.
    server.write("ns=2;s=Int32", "Int32", "5");
    let v2 = h.load("adaptor_opcua_v2").await;
    dev.send(limb::supervisor::Command::Swap(v2));
    let r = h
        .wait(&key("swap"), Duration::from_secs(30), |r| {
            r.swaps >= 1
                && r.phase == Phase::Healthy
                && value(r, "setpoint").as_deref() == Some("5")
        })
        .await;
    assert!(ticker(&r) >= 0);
    assert_eq!(server.read(&["ns=2;s=Int32"])[0].1, "5");

    // A new value in the spec is written.
    let props = json!([
        {"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}},
        {"name": "setpoint", "type": "int32", "value": "77", "visitor": {"nodeID": "ns=2;s=Int32"}},
    ]);
    dev.send(limb::supervisor::Command::Update(
        device("swap", spec(&server, props, json!({}))),
        vec![],
    ));
    h.wait(&key("swap"), Duration::from_secs(30), |r| {
        r.phase == Phase::Healthy && value(r, "setpoint").as_deref() == Some("77")
    })
    .await;
    assert_eq!(server.read(&["ns=2;s=Int32"])[0].1, "77");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_policies_are_invalid_specs_naming_the_supported_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let mut devices = Vec::new();
    for policy in ["Basic128Rsa15", "Basic256", "Aes256Sha256RsaPss"] {
        let name = policy.to_lowercase();
        let s = spec(
            &server,
            json!([]),
            json!({"protocol": {"securityPolicy": policy, "securityMode": "SignAndEncrypt"}}),
        );
        devices.push(h.spawn(device(&name, s), a.clone()));
        let r = h
            .wait(&key(&name), Duration::from_secs(15), |r| {
                r.phase == Phase::Pending
                    && r.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("protocol.securityPolicy"))
            })
            .await;
        let e = r.last_error.unwrap();
        assert!(
            e.contains("protocol.securityPolicy")
                && e.contains(policy)
                && e.contains("supported: None"),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_runs_the_opcua_example_against_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let example = std::fs::read_to_string(repo_file("examples/opcua/opcua.yaml")).unwrap();
    let endpoint = "opc.tcp://127.0.0.1:14840/octopus/";
    assert!(example.contains(endpoint), "the example's endpoint moved");
    let links = dir.path().join("links");
    std::fs::create_dir(&links).unwrap();
    std::fs::write(
        links.join("opcua.yaml"),
        example.replace(endpoint, &server.url()),
    )
    .unwrap();
    std::fs::write(links.join("opcua.wasm"), component("adaptor_opcua")).unwrap();
    let mut limb = StandaloneLimb::start(&links);
    let prop = |d: &Value, n: &str| {
        d["status"]["properties"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == n).cloned())
            .unwrap_or(Value::Null)
    };
    let connected = |d: &Value| {
        d["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "DeviceConnected" && c["status"] == "True")
        })
    };
    let d = limb
        .wait("opcua", "DeviceConnected with live values", |d| {
            connected(d)
                && d["phase"] == "Healthy"
                && prop(d, "setpoint")["value"] == "42"
                && prop(d, "temperature")["value"] == "-2.25"
        })
        .await;
    let first: i64 = prop(&d, "ticker")["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    limb.wait("opcua", "the ticker moving", |d| {
        prop(d, "ticker")["value"]
            .as_str()
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|t| t > first)
    })
    .await;
    assert_eq!(server.read(&["ns=2;s=Int32"])[0].1, "42");
}

/// Messages larger than one chunk (asyncua's buffers are 64 KiB) both ways: a Read and
/// a CreateMonitoredItems of 300 nodes with long IDs (about 80 KB each), a Read response
/// carrying a 150,000-byte value and a Write of 100,000 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_travel_in_several_chunks_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let upload: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let upload = base64_encode(&upload);
    let blob: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let blob = base64_encode(&blob);
    let mut props: Vec<Value> = (0..300)
        .map(|i| {
            json!({"name": format!("absent-{i}"), "type": "int32", "readOnly": true,
                   "visitor": {"nodeID": format!("ns=2;s={}-{i}", "x".repeat(200))}})
        })
        .collect();
    props.push(json!({"name": "blob", "type": "byteString", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Blob"}}));
    props.push(json!({"name": "upload", "type": "byteString", "value": upload, "visitor": {"nodeID": "ns=2;s=Upload"}}));
    let _dev = h.spawn(
        device(
            "large",
            spec(
                &server,
                Value::Array(props),
                json!({"parameters": {"syncInterval": "1s"}}),
            ),
        ),
        a,
    );
    let r = h
        .wait(&key("large"), Duration::from_secs(60), |r| {
            r.phase == Phase::Healthy
                && value(r, "blob").as_deref() == Some(blob.as_str())
                && value(r, "upload").as_deref() == Some(upload.as_str())
        })
        .await;
    for i in 0..300 {
        assert_eq!(
            error(&r, &format!("absent-{i}")).as_deref(),
            Some("BadNodeIdUnknown")
        );
    }
    assert_eq!(
        server.read(&["ns=2;s=Upload"])[0],
        ("ByteString".to_owned(), upload)
    );
}

/// Standard base64 with padding, as asyncua's client script prints byte strings.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A node that never changes makes asyncua send keep-alives only (every 10 publishing
/// intervals, 2 s here); the adaptor counts a subscription silent for twice that plus the
/// timeout (6 s) as lost, so 10 s of quiet polls with no failure show keep-alives are
/// taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_subscription_is_kept_alive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let props = json!([
        {"name": "name", "type": "string", "readOnly": true, "visitor": {"nodeID": "ns=2;s=String"}},
    ]);
    let _dev = h.spawn(device("quiet", spec(&server, props, json!({}))), a);
    let first = h
        .wait(&key("quiet"), Duration::from_secs(30), |r| {
            r.phase == Phase::Healthy && value(r, "name").as_deref() == Some("initial")
        })
        .await;
    let started = std::time::Instant::now();
    let r = h
        .wait(&key("quiet"), Duration::from_secs(30), |r| {
            r.polls >= first.polls + 50
        })
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((r.failed_polls, r.restarts), (0, 0), "{r:#?}");
    assert_eq!(r.phase, Phase::Healthy);
    assert!(!server.log().contains("Traceback"), "{}", server.log());
}

/// The protocol section of a secured spec: `policy`/`mode`, the client certificate and
/// key the peer wrote, and `thumbprint` as the trusted server certificate.
fn secured(server: &Server, policy: &str, mode: &str, thumbprint: &str) -> Value {
    json!({"protocol": {
        "securityPolicy": policy,
        "securityMode": mode,
        "serverCertificateThumbprint": thumbprint,
        "tlsConfig": {
            "certFilePEM": server.secure_file("client.crt"),
            "keyFilePEM": server.secure_file("client.key.pem"),
        },
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_policies_against_asyncua_and_only_sign_leaves_values_readable_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_secure(dir.path());
    let thumbprint = server.secure_file("server.sha1");
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    for (policy, mode) in [
        ("Basic256Sha256", "SignAndEncrypt"),
        ("Basic256Sha256", "Sign"),
        ("Aes128Sha256RsaOaep", "SignAndEncrypt"),
    ] {
        let relay = Relay::to(server.port);
        let name = format!("{policy}-{mode}").to_lowercase();
        // Written by the adaptor, then pushed back by the subscription: a value that
        // crosses the wire both ways.
        let secret = format!("octopus secret {name}");
        let props = json!([
            {"name": "s", "type": "string", "value": secret, "visitor": {"nodeID": "ns=2;s=String"}},
            {"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}},
        ]);
        let mut s = spec(&server, props, secured(&server, policy, mode, &thumbprint));
        s["protocol"]["endpoint"] = json!(relay.url());
        let _d = h.spawn(device(&name, s), a.clone());
        let first = h
            .wait(&key(&name), Duration::from_secs(45), |r| {
                r.phase == Phase::Healthy
                    && value(r, "s").as_deref() == Some(secret.as_str())
                    && ticker(r) > 0
            })
            .await;
        // The subscription keeps delivering over the secured channel.
        h.wait(&key(&name), Duration::from_secs(20), |r| {
            ticker(r) > ticker(&first)
        })
        .await;
        let seen = relay.seen();
        let plain = seen.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert_eq!(
            plain,
            mode == "Sign",
            "{policy} {mode}: the value in plain text on the wire: {plain}"
        );
        // The relay did carry the session: the OPN names the policy in plain text.
        let uri = match policy {
            "Basic256Sha256" => "SecurityPolicy#Basic256Sha256",
            _ => "SecurityPolicy#Aes128_Sha256_RsaOaep",
        };
        assert!(
            seen.windows(uri.len()).any(|w| w == uri.as_bytes()),
            "{uri}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_server_certificate_and_a_policy_not_offered_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_secure(dir.path());
    let thumbprint = server.secure_file("server.sha1");
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let props = json!([{"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}}]);
    let other = "00".repeat(20);
    let s = spec(
        &server,
        props.clone(),
        secured(&server, "Basic256Sha256", "SignAndEncrypt", &other),
    );
    let _d = h.spawn(device("untrusted", s), a.clone());
    let r = refused(&h, "untrusted", &thumbprint, 45).await;
    let e = r.last_error.unwrap();
    assert!(e.contains("not the trusted one"), "{e}");

    let s = spec(
        &server,
        props,
        secured(&server, "Aes128Sha256RsaOaep", "Sign", &thumbprint),
    );
    let _d = h.spawn(device("unoffered", s), a);
    let r = refused(&h, "unoffered", "does not offer", 45).await;
    let e = r.last_error.unwrap();
    assert!(
        e.contains("Aes128_Sha256_RsaOaep") && e.contains("Basic256Sha256 SignAndEncrypt"),
        "{e}"
    );
}

/// The thumbprint in the adaptor's `ApplicationCertificate` event, once it has one.
fn made_certificate(r: &DeviceReport) -> Option<String> {
    let event = r
        .events
        .iter()
        .find(|e| e.reason == "ApplicationCertificate")?;
    let at = event.message.find("thumbprint ")? + "thumbprint ".len();
    event.message.get(at..at + 40).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_application_certificate_is_refused_until_trusted_and_kept_across_a_hot_swap() {
    let dir = tempfile::tempdir().unwrap();
    // A server that takes only client certificates on its trust list.
    let server = Server::start_secure_with(
        dir.path(),
        SecureOptions {
            strict: true,
            ..SecureOptions::default()
        },
    );
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let props = json!([{"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}}]);
    // No tlsConfig: the adaptor makes its own certificate.
    let extra = json!({"protocol": {
        "securityPolicy": "Basic256Sha256",
        "securityMode": "SignAndEncrypt",
        "serverCertificateThumbprint": server.secure_file("server.sha1"),
    }});
    let dev = h.spawn(device("made", spec(&server, props, extra)), a);
    let r = h
        .wait(&key("made"), Duration::from_secs(60), |r| {
            made_certificate(r).is_some()
                && r.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("BadCertificateUntrusted"))
        })
        .await;
    assert_ne!(r.phase, Phase::Healthy);
    let thumbprint = made_certificate(&r).unwrap();
    // The server saw the certificate the event names, and refused it.
    assert_eq!(server.clients_seen().first(), Some(&thumbprint));

    // Trusted on the server: the device connects by itself.
    server.trust(&thumbprint);
    let before = h
        .wait(&key("made"), Duration::from_secs(60), |r| {
            r.phase == Phase::Healthy && ticker(r) > 0
        })
        .await;
    let sessions = server.clients_seen().len();

    // A hot swap: the new version opens its own session with the same certificate, so
    // the server's trust list still holds.
    let v2 = h.load("adaptor_opcua_v2").await;
    dev.send(limb::supervisor::Command::Swap(v2));
    h.wait(&key("made"), Duration::from_secs(60), |r| {
        r.swaps >= 1 && r.phase == Phase::Healthy && ticker(r) > ticker(&before)
    })
    .await;
    let mut seen = server.clients_seen();
    for _ in 0..300 {
        if seen.len() > sessions {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = server.clients_seen();
    }
    assert!(
        seen.len() > sessions,
        "a new session after the swap: {seen:?}"
    );
    assert!(
        seen.iter().all(|t| *t == thumbprint),
        "{thumbprint}: {seen:?}"
    );
    let r = h.ctx.board.get(&key("made")).unwrap();
    let made = r
        .events
        .iter()
        .filter(|e| e.reason == "ApplicationCertificate")
        .count();
    assert_eq!(made, 1, "one certificate made: {:?}", r.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_sent_encrypted_for_the_pinned_server_and_never_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let password = "pw-never-on-the-wire";
    // Every policy, None too: asyncua then wants passwords encrypted on every endpoint
    // but SignAndEncrypt's.
    let server = Server::start_secure_with(
        dir.path(),
        SecureOptions {
            login: Some(("operator".into(), password.into())),
            every_policy: true,
            ..SecureOptions::default()
        },
    );
    let thumbprint = server.secure_file("server.sha1");
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let props = json!([{"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}}]);
    let login = |password: &str| json!({"username": "operator", "password": password});
    for (name, protocol) in [
        (
            "sign",
            json!({"securityPolicy": "Basic256Sha256", "securityMode": "Sign",
                   "serverCertificateThumbprint": thumbprint, "basicAuth": login(password)}),
        ),
        (
            "aes128-sign",
            json!({"securityPolicy": "Aes128Sha256RsaOaep", "securityMode": "Sign",
                   "serverCertificateThumbprint": thumbprint, "basicAuth": login(password)}),
        ),
        (
            "none-pinned",
            json!({"serverCertificatePEM": server.secure_file("server.crt"),
                   "basicAuth": login(password)}),
        ),
    ] {
        let relay = Relay::to(server.port);
        let mut s = spec(&server, props.clone(), json!({"protocol": protocol}));
        s["protocol"]["endpoint"] = json!(relay.url());
        let _d = h.spawn(device(name, s), a.clone());
        h.wait(&key(name), Duration::from_secs(60), |r| {
            r.phase == Phase::Healthy && ticker(r) > 0
        })
        .await;
        let seen = relay.seen();
        assert!(
            !seen
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "{name}: the password in plain text on the wire"
        );
        // The login did cross this relay: the user name is in plain text.
        assert!(
            seen.windows(8).any(|w| w == b"operator"),
            "{name}: no login through the relay"
        );
    }

    // Unpinned under policy None: refused before the password is sent, saying how to fix it.
    let relay = Relay::to(server.port);
    let mut s = spec(
        &server,
        props.clone(),
        json!({"protocol": {"basicAuth": login(password)}}),
    );
    s["protocol"]["endpoint"] = json!(relay.url());
    let _d = h.spawn(device("unpinned", s), a.clone());
    refused(&h, "unpinned", "pin the server's certificate", 30).await;
    assert!(!relay.seen().windows(8).any(|w| w == b"operator"));

    // A wrong password, encrypted all the same, is refused by the server.
    let protocol = json!({"protocol": {"securityPolicy": "Basic256Sha256", "securityMode": "Sign",
        "serverCertificateThumbprint": thumbprint, "basicAuth": login("wrong")}});
    let _d = h.spawn(device("wrong", spec(&server, props, protocol)), a);
    refused(&h, "wrong", "ActivateSession", 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_subscriptions_is_read_every_sync_interval() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::without_subscriptions(dir.path());
    let h = harness_opcua();
    let a = h.load("adaptor_opcua").await;
    let props = json!([
        {"name": "ticker", "type": "int32", "readOnly": true, "visitor": {"nodeID": "ns=2;s=Ticker"}},
        {"name": "s", "type": "string", "readOnly": true, "visitor": {"nodeID": "ns=2;s=String"}},
    ]);
    let _d = h.spawn(device("reads", spec(&server, props, json!({}))), a);
    let first = h
        .wait(&key("reads"), Duration::from_secs(30), |r| {
            r.phase == Phase::Healthy && ticker(r) > 0 && has_reading_by_poll(r)
        })
        .await;
    // The server's ticker moves on in the status, and another client's change arrives.
    server.write("ns=2;s=String", "String", "read, not pushed");
    h.wait(&key("reads"), Duration::from_secs(20), |r| {
        r.phase == Phase::Healthy
            && ticker(r) > ticker(&first) + 2
            && value(r, "s").as_deref() == Some("read, not pushed")
    })
    .await;
    assert!(!server.log().contains("Traceback"), "{}", server.log());
}

fn has_reading_by_poll(r: &DeviceReport) -> bool {
    r.events.iter().any(|e| e.reason == "ReadingByPoll")
}
