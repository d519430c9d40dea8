//! MQTT against a real broker (mosquitto, see `mosquitto.rs`), checked from the other
//! side with `mosquitto_sub` / `mosquitto_pub`:
//!
//! - the limb's MQTT extension: a dummy and a Modbus device with `extension.mqtt`
//!   publish their status, retained, on the templated topic; a password from a
//!   referenced Secret; a wrong password is one Warning event while the device stays
//!   Healthy; TLS with a CA from references (and a CA that does not match); a broker
//!   restart is survived without help;
//! - the MQTT device adaptor (`adaptor_mqtt`): both patterns, reads pushed into status,
//!   writes published on change, a refused login, a broker restart and TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use limb::bindings::ReferenceValue;
use limb::capabilities::{Backends, Policy};
use limb::status::{DeviceReport, EventType, Phase};
use serde_json::{Value, json};

use crate::common::*;
use crate::mosquitto::{self, Broker, PASSWORD, USER};
use crate::peers::ModbusServer;
use octopus_tests::paths::repo_file;

const POLICY: &str = r#"
tcp: ["127.0.0.0/8", "::1/128"]
"#;

fn harness_mqtt() -> Harness {
    harness_with(
        Policy::from_yaml(POLICY).unwrap(),
        Backends::real(true),
        |_| {},
    )
}

fn reference(name: &str, item: &str, value: &str) -> ReferenceValue {
    ReferenceValue {
        reference: name.into(),
        item: item.into(),
        value: value.as_bytes().to_vec(),
    }
}

/// A dummy fan whose spec carries `extension.mqtt`.
fn fan_with(name: &str, mqtt: Value) -> Arc<crds::DeviceLink> {
    link(
        name,
        "dummy",
        "DummySpecialDevice",
        json!({
            "protocol": {"location": "lab"}, "gear": "fast", "on": true,
            "parameters": {"syncInterval": "100ms"},
            "extension": {"mqtt": mqtt},
        }),
    )
}

fn events<'a>(
    r: &'a DeviceReport,
    reason: &'a str,
) -> impl Iterator<Item = &'a limb::status::Event> {
    r.events.iter().filter(move |e| e.reason == reason)
}

fn has_event(r: &DeviceReport, reason: &str) -> bool {
    events(r, reason).next().is_some()
}

/// The device `name`'s report once it has an event `reason` and at least `polls` polls,
/// and the first such event.
async fn wait_event(
    h: &Harness,
    name: &str,
    reason: &str,
    polls: u64,
) -> (DeviceReport, limb::status::Event) {
    let r = h
        .wait(&key(name), Duration::from_secs(15), |r| {
            has_event(r, reason) && r.polls >= polls
        })
        .await;
    let event = events(&r, reason).next().cloned();
    (
        r,
        event.unwrap_or_else(|| panic!("{name}: no {reason} event")),
    )
}

/// Reads one retained status document from `topic`. A subscriber that came before the
/// first publish sees a live message first; a new subscription then gets the retained one.
async fn retained(broker: &Broker, topic: &str, args: &[String]) -> Value {
    for _ in 0..5 {
        let got = mosquitto::subscribe(broker, topic, 1, 15, args).await;
        let m = got.first().unwrap_or_else(|| {
            panic!(
                "nothing on {topic} within 15 s; broker log:\n{}",
                broker.log()
            )
        });
        assert_eq!(m.topic, topic);
        if m.retained {
            return serde_json::from_str(&m.payload)
                .unwrap_or_else(|e| panic!("payload is not JSON ({e}): {m:?}"));
        }
    }
    panic!("no retained message on {topic}");
}

fn metric(h: &Harness, name: &str, outcome: &str) -> u64 {
    let text = h.ctx.metrics.encode();
    let prefix = format!("octopus_limb_{name}_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

// ---------------------------------------------------------------------------------------
// The extension.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dummy_device_publishes_its_status_retained_on_the_templated_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let h = harness_mqtt();
    let a = h.load("adaptor_dummy").await;
    let dev = h.spawn(
        fan_with(
            "fan",
            json!({
                "client": {"server": format!("tcp://127.0.0.1:{}", broker.anonymous)},
                "message": {"topic": "cattle.io/octopus/:operator/device/:namespace/:name", "operator": {"write": "status"}},
            }),
        ),
        a,
    );
    let r = h
        .wait(&key("fan"), Duration::from_secs(15), |r| {
            r.polls >= 3 && has_event(r, "MqttExtensionConnected")
        })
        .await;
    let connected = events(&r, "MqttExtensionConnected").next().unwrap();
    assert!(
        connected.message.contains("octopus-uid-fan")
            && connected
                .message
                .contains("cattle.io/octopus/status/device/default/fan"),
        "{connected:?}"
    );
    let doc = retained(&broker, "cattle.io/octopus/status/device/default/fan", &[]).await;
    let status = h.ctx.board.get(&key("fan")).unwrap().status;
    assert!(doc.is_object(), "{doc}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&doc),
        keys(&status),
        "the payload is the status document"
    );
    assert!(metric(&h, "mqtt_extension_publishes", "published") >= 1);

    // The document changes with every poll: later ones follow on the topic.
    let live = mosquitto::subscribe(
        &broker,
        "cattle.io/octopus/status/device/default/fan",
        3,
        15,
        &[],
    )
    .await;
    assert_eq!(live.len(), 3, "{live:?}");
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_device_publishes_its_readings() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let server = ModbusServer::tcp(dir.path());
    let h = harness_mqtt();
    let a = h.load("adaptor_modbus").await;
    let spec = json!({
        "protocol": {"tcp": {"endpoint": server.endpoint(), "workerID": 1}},
        "parameters": {"syncInterval": "200ms", "timeout": "300ms"},
        "properties": [{
            "name": "hrUint16", "type": "uint16", "readOnly": true,
            "visitor": {"register": "HoldingRegister", "offset": 1, "quantity": 1},
        }],
        "extension": {"mqtt": {
            "client": {"server": format!("tcp://127.0.0.1:{}", broker.anonymous)},
            "message": {"topic": "octopus/:namespace/:name/:uid", "qos": 2},
        }},
    });
    let dev = h.spawn(link("plc", "modbus", "ModbusDevice", spec), a);
    h.wait(&key("plc"), Duration::from_secs(15), |r| {
        r.phase == Phase::Healthy && has_event(r, "MqttExtensionConnected")
    })
    .await;
    let doc = retained(&broker, "octopus/default/plc/uid-plc", &[]).await;
    let props = doc["properties"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc:#}"));
    let p = props
        .iter()
        .find(|p| p["name"] == "hrUint16")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(p["value"].to_string().trim_matches('"'), "54321", "{doc:#}");
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_comes_from_a_referenced_secret() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let h = harness_mqtt();
    let a = h.load("adaptor_dummy").await;
    let dev = h.spawn_with(
        fan_with(
            "fan-auth",
            json!({
                "client": {
                    "server": format!("tcp://localhost:{}", broker.password),
                    "basicAuth": {"username": USER, "passwordRef": {"name": "mqtt-creds", "item": "password"}},
                },
                "message": {"topic": "auth/:name"},
            }),
        ),
        a,
        vec![reference("mqtt-creds", "password", PASSWORD)],
    );
    h.wait(&key("fan-auth"), Duration::from_secs(15), |r| {
        has_event(r, "MqttExtensionConnected")
    })
    .await;
    let doc = retained(&broker, "auth/fan-auth", &broker.password_args()).await;
    assert!(doc.is_object());
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_one_warning_and_the_device_keeps_polling() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let h = harness_mqtt();
    let a = h.load("adaptor_dummy").await;
    let dev = h.spawn(
        fan_with(
            "fan-refused",
            json!({
                "client": {
                    "server": format!("tcp://127.0.0.1:{}", broker.password),
                    "basicAuth": {"username": USER, "password": "wrong"},
                },
                "message": {"topic": "refused/:name"},
            }),
        ),
        a,
    );
    let (r, warning) = wait_event(&h, "fan-refused", "MqttExtensionFailed", 0).await;
    assert_eq!(warning.type_, EventType::Warning);
    assert!(
        warning.message.contains("refused the connection")
            && warning.message.contains("not authorised"),
        "{warning:?}"
    );
    // Retries go on with backoff, but the event is not repeated, and the device polls on.
    let polls = r.polls;
    let r = h
        .wait(&key("fan-refused"), Duration::from_secs(15), |r| {
            r.polls >= polls + 20 && metric(&h, "mqtt_extension_connections", "refused") >= 3
        })
        .await;
    assert_eq!(r.phase, Phase::Healthy, "{r:#?}");
    assert_eq!(
        events(&r, "MqttExtensionFailed").count(),
        1,
        "{:#?}",
        r.events
    );
    assert!(!has_event(&r, "MqttExtensionConnected"));
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verifies_the_broker_with_a_ca_from_references() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    mosquitto::make_ca(dir.path(), "other");
    let other_ca = std::fs::read_to_string(dir.path().join("other.crt")).unwrap();
    let h = harness_mqtt();
    let a = h.load("adaptor_dummy").await;
    let tls_link = |name: &str| {
        fan_with(
            name,
            json!({
                "client": {
                    "server": format!("ssl://localhost:{}", broker.tls),
                    "basicAuth": {"usernameRef": {"name": "mqtt", "item": "user"}, "passwordRef": {"name": "mqtt", "item": "password"}},
                    "tlsConfig": {"caFilePEMRef": {"name": "mqtt", "item": "ca.crt"}},
                },
                "message": {"topic": "tls/:name"},
            }),
        )
    };
    let refs = |ca: &str| {
        vec![
            reference("mqtt", "user", USER),
            reference("mqtt", "password", PASSWORD),
            reference("mqtt", "ca.crt", ca),
        ]
    };
    let good = h.spawn_with(tls_link("fan-tls"), a.clone(), refs(&broker.ca_pem()));
    let bad = h.spawn_with(tls_link("fan-bad-ca"), a, refs(&other_ca));
    h.wait(&key("fan-tls"), Duration::from_secs(15), |r| {
        has_event(r, "MqttExtensionConnected")
    })
    .await;
    let mut args = broker.password_args();
    args.extend(["-p".into(), broker.tls.to_string(), "--cafile".into()]);
    args.push(broker.ca_path().display().to_string());
    args.extend(["-h".into(), "localhost".into()]);
    let doc = retained(&broker, "tls/fan-tls", &args).await;
    assert!(doc.is_object());

    let (r, warning) = wait_event(&h, "fan-bad-ca", "MqttExtensionFailed", 5).await;
    assert!(warning.message.contains("TLS"), "{warning:?}");
    assert_eq!(r.phase, Phase::Healthy);
    good.stop().await;
    bad.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_scheme_or_a_forbidden_broker_is_reported_and_the_device_runs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    // The node allows loopback, but not the broker's port.
    let h = harness_with(
        Policy::from_yaml("tcp: [\"127.0.0.0/8 1-1024\"]").unwrap(),
        Backends::real(true),
        |_| {},
    );
    let a = h.load("adaptor_dummy").await;
    let ws = h.spawn(
        fan_with(
            "fan-ws",
            json!({"client": {"server": "ws://127.0.0.1:9001"}, "message": {"topic": "x"}}),
        ),
        a.clone(),
    );
    let forbidden = h.spawn(
        fan_with(
            "fan-forbidden",
            json!({"client": {"server": format!("tcp://127.0.0.1:{}", broker.anonymous)}, "message": {"topic": "x"}}),
        ),
        a,
    );
    let (_, ev) = wait_event(&h, "fan-ws", "MqttExtensionInvalid", 3).await;
    assert!(ev.message.contains("ws:// is not supported"), "{ev:?}");
    let (r, ev) = wait_event(&h, "fan-forbidden", "MqttExtensionFailed", 3).await;
    assert!(ev.message.contains("node policy"), "{ev:?}");
    assert_eq!(r.phase, Phase::Healthy);
    ws.stop().await;
    forbidden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_extension_reconnects_and_publishes_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let h = harness_mqtt();
    let a = h.load("adaptor_dummy").await;
    let dev = h.spawn(
        fan_with(
            "fan-restart",
            json!({
                "client": {"server": format!("tcp://127.0.0.1:{}", broker.anonymous)},
                "message": {"topic": "restart/:name", "will": {"content": "b2ZmbGluZQ=="}},
            }),
        ),
        a,
    );
    h.wait(&key("fan-restart"), Duration::from_secs(15), |r| {
        has_event(r, "MqttExtensionConnected")
    })
    .await;
    retained(&broker, "restart/fan-restart", &[]).await;

    broker.stop();
    let r = h
        .wait(&key("fan-restart"), Duration::from_secs(15), |r| {
            has_event(r, "MqttExtensionFailed")
        })
        .await;
    let polls = r.polls;
    // The device does not notice.
    let r = h
        .wait(&key("fan-restart"), Duration::from_secs(15), |r| {
            r.polls >= polls + 10
        })
        .await;
    assert_eq!(r.phase, Phase::Healthy);

    // A fresh broker (no persistence): the retained status is there again only because
    // the extension reconnected and republished by itself.
    let restarted = Instant::now();
    broker.restart();
    let doc = retained(&broker, "restart/fan-restart", &[]).await;
    assert!(doc.is_object());
    let r = h.ctx.board.get(&key("fan-restart")).unwrap();
    assert!(
        events(&r, "MqttExtensionConnected").count() >= 1,
        "{:#?}",
        r.events
    );
    eprintln!(
        "republished {:?} after the broker came back",
        restarted.elapsed()
    );
    dev.stop().await;
}

// ---------------------------------------------------------------------------------------
// The MQTT device adaptor.

fn mqtt_device(name: &str, spec: Value) -> Arc<crds::DeviceLink> {
    link(name, "mqtt", "MQTTDevice", spec)
}

/// The value of status property `name`, if it has one.
fn property(r: &DeviceReport, name: &str) -> Option<Value> {
    r.status["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p.get("value").cloned())
        .filter(|v| !v.is_null())
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Kitchen light, AttributedTopic: a readable temperature and a writable switch.
fn kitchen_spec(broker: &Broker, switch: bool) -> Value {
    json!({
        "protocol": {
            "pattern": "AttributedTopic",
            "client": {"server": format!("tcp://127.0.0.1:{}", broker.anonymous)},
            "message": {"topic": "home/:operator/kitchen/:path", "operator": {"read": "status", "write": "set"}},
        },
        "properties": [
            {"name": "temperature", "path": "temperature", "type": "float"},
            {"name": "switch", "path": "switch", "type": "boolean", "readOnly": false, "value": switch},
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributed_topic_reads_pushed_values_and_publishes_writes_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let h = harness_mqtt();
    let a = h.load("adaptor_mqtt").await;
    let dev = h.spawn(mqtt_device("kitchen", kitchen_spec(&broker, true)), a);
    h.wait(&key("kitchen"), Duration::from_secs(15), |r| {
        r.phase == Phase::Healthy
    })
    .await;

    // The writable switch was published (retained by default) on its `set` topic.
    let got = mosquitto::subscribe(&broker, "home/set/kitchen/switch", 1, 10, &[]).await;
    assert_eq!(
        got.first().map(|m| m.payload.as_str()),
        Some("true"),
        "{got:?}"
    );

    // A reading published by someone else shows up in the status, pushed.
    mosquitto::publish(&broker, "home/status/kitchen/temperature", "21.5", &[]).await;
    let r = h
        .wait(&key("kitchen"), Duration::from_secs(10), |r| {
            property(r, "temperature").is_some_and(|v| v.as_f64() == Some(21.5))
        })
        .await;
    let t = r.status["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "temperature")
        .unwrap();
    assert_eq!(t["type"], "float", "{t}");
    assert!(t.get("updateAt").is_some_and(|u| u.is_string()), "{t}");
    assert_eq!(
        (&t["qos"], &t["retained"]),
        (&json!(1), &json!(true)),
        "defaulted, as Octopus's: {t}"
    );

    // A changed value is published; an unchanged one is not published again.
    let watcher = {
        let b = args(&["-R"]);
        let port = broker.anonymous;
        tokio::spawn(async move {
            let mut cmd = std::process::Command::new("mosquitto_sub");
            cmd.args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "home/set/kitchen/switch",
            ])
            .args(["-C", "2", "-W", "6"])
            .args(&b);
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.ctx.board.get(&key("kitchen")).unwrap();
    dev.send(limb::supervisor::Command::Update(
        mqtt_device("kitchen", kitchen_spec(&broker, false)),
        vec![],
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The same value again (another resync of the same spec).
    dev.send(limb::supervisor::Command::Update(
        mqtt_device("kitchen", kitchen_spec(&broker, false)),
        vec![],
    ));
    let out = watcher.await.unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    let seen: Vec<&str> = seen.lines().collect();
    assert_eq!(
        seen,
        ["false"],
        "one publish for the change, none for the repeat"
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributed_message_picks_properties_by_path_and_writes_into_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let h = harness_mqtt();
    let a = h.load("adaptor_mqtt").await;
    let spec = json!({
        "protocol": {
            "pattern": "AttributedMessage",
            "client": {"server": format!("tcp://127.0.0.1:{}", broker.anonymous)},
            "message": {"topic": "devices/:namespace/:name/:operator", "operator": {"read": "state", "write": "command"}},
        },
        "properties": [
            {"name": "temperature", "path": "temperature", "type": "float"},
            {"name": "humidity", "path": "meta.humidity", "type": "int"},
            {"name": "target", "path": "target", "type": "int", "readOnly": false, "value": 22},
        ],
    });
    let dev = h.spawn(mqtt_device("thermo", spec), a);
    h.wait(&key("thermo"), Duration::from_secs(15), |r| {
        r.phase == Phase::Healthy
    })
    .await;
    mosquitto::publish(
        &broker,
        "devices/default/thermo/state",
        r#"{"temperature": 20.5, "meta": {"humidity": 40}}"#,
        &[],
    )
    .await;
    h.wait(&key("thermo"), Duration::from_secs(10), |r| {
        property(r, "temperature").is_some_and(|v| v.as_f64() == Some(20.5))
            && property(r, "humidity").is_some_and(|v| v.as_i64() == Some(40))
    })
    .await;
    let got = mosquitto::subscribe(&broker, "devices/default/thermo/command", 1, 10, &[]).await;
    let doc: Value = serde_json::from_str(&got.first().expect("the write was published").payload)
        .expect("the write is a JSON document");
    assert_eq!(doc["target"], 22, "{doc}");
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_makes_the_device_unhealthy_without_a_crash_loop() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let h = harness_mqtt();
    let a = h.load("adaptor_mqtt").await;
    let mut spec = kitchen_spec(&broker, true);
    spec["protocol"]["client"] = json!({
        "server": format!("tcp://127.0.0.1:{}", broker.password),
        "basicAuth": {"username": USER, "password": "wrong"},
    });
    let dev = h.spawn(mqtt_device("kitchen-refused", spec), a);
    let r = h
        .wait(&key("kitchen-refused"), Duration::from_secs(15), |r| {
            r.last_error
                .as_deref()
                .is_some_and(|e| e.contains("not authori") || e.contains("refused"))
        })
        .await;
    assert_eq!(r.phase, Phase::Unhealthy, "{r:#?}");
    // Nothing happening is the case under test: no trap or restart in 3 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = h.ctx.board.get(&key("kitchen-refused")).unwrap();
    assert_eq!((r.traps, r.restarts), (0, 0), "no crash loop: {r:#?}");
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_reports_a_broker_outage_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let h = harness_mqtt();
    let a = h.load("adaptor_mqtt").await;
    let dev = h.spawn(
        mqtt_device("kitchen-restart", kitchen_spec(&broker, true)),
        a,
    );
    h.wait(&key("kitchen-restart"), Duration::from_secs(15), |r| {
        r.phase == Phase::Healthy
    })
    .await;
    mosquitto::publish(&broker, "home/status/kitchen/temperature", "19", &[]).await;
    h.wait(&key("kitchen-restart"), Duration::from_secs(10), |r| {
        property(r, "temperature").is_some_and(|v| v.as_f64() == Some(19.0))
    })
    .await;

    broker.stop();
    let r = h
        .wait(&key("kitchen-restart"), Duration::from_secs(20), |r| {
            r.phase == Phase::Unhealthy
        })
        .await;
    assert!(
        property(&r, "temperature").is_some_and(|v| v.as_f64() == Some(19.0)),
        "the last value is kept during the outage: {:#}",
        r.status
    );

    broker.restart();
    h.wait(&key("kitchen-restart"), Duration::from_secs(40), |r| {
        r.phase == Phase::Healthy
    })
    .await;
    // Subscribed again: a new reading arrives. The switch is republished, retained.
    mosquitto::publish(&broker, "home/status/kitchen/temperature", "23", &[]).await;
    let r = h
        .wait(&key("kitchen-restart"), Duration::from_secs(10), |r| {
            property(r, "temperature").is_some_and(|v| v.as_f64() == Some(23.0))
        })
        .await;
    assert_eq!(r.traps, 0, "{r:#?}");
    let got = mosquitto::subscribe(&broker, "home/set/kitchen/switch", 1, 10, &[]).await;
    assert_eq!(
        got.first().map(|m| (m.payload.as_str(), m.retained)),
        Some(("true", true)),
        "{got:?}"
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_reaches_a_tls_broker_with_a_ca_from_references() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let h = harness_mqtt();
    let a = h.load("adaptor_mqtt").await;
    let mut spec = kitchen_spec(&broker, true);
    spec["protocol"]["client"] = json!({
        "server": format!("ssl://localhost:{}", broker.tls),
        "basicAuth": {"username": USER, "passwordRef": {"name": "mqtt", "item": "password"}},
        "tlsConfig": {"caFilePEMRef": {"name": "mqtt", "item": "ca.crt"}},
    });
    let dev = h.spawn_with(
        mqtt_device("kitchen-tls", spec),
        a,
        vec![
            reference("mqtt", "password", PASSWORD),
            reference("mqtt", "ca.crt", &broker.ca_pem()),
        ],
    );
    h.wait(&key("kitchen-tls"), Duration::from_secs(15), |r| {
        r.phase == Phase::Healthy
    })
    .await;
    mosquitto::publish(&broker, "home/status/kitchen/temperature", "18.25", &[]).await;
    h.wait(&key("kitchen-tls"), Duration::from_secs(10), |r| {
        property(r, "temperature").is_some_and(|v| v.as_f64() == Some(18.25))
    })
    .await;
    dev.stop().await;
}

// ---------------------------------------------------------------------------------------
// Load.

/// A device whose status changes as fast as it can does not back the extension up:
/// newer documents replace unsent ones (latest wins, counted as `superseded`) and what is
/// published reaches the broker. Bounded in time and count; the rate is printed, not
/// asserted (rates belong in benchmarks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_flood_is_coalesced_and_what_is_published_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let h = harness_mqtt();
    let ext = &h.ctx.extensions;
    let board_key = key("load");
    h.ctx.board.update(
        &board_key,
        || DeviceReport::new("default", "load", "DummySpecialDevice", "dummy"),
        |_| {},
    );
    let identity = limb::extension::Identity {
        namespace: "default".into(),
        name: "load".into(),
        uid: "uid-load".into(),
    };
    let spec = json!({"extension": {"mqtt": {
        "client": {"server": format!("tcp://127.0.0.1:{}", broker.anonymous)},
        "message": {"topic": "load/:name", "qos": 1, "retained": false},
    }}});
    ext.configure(&board_key, identity, &spec, &[]);
    h.wait(&board_key, Duration::from_secs(10), |r| {
        has_event(r, "MqttExtensionConnected")
    })
    .await;
    let counter = {
        let port = broker.anonymous;
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("mosquitto_sub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-t",
                    "load/load",
                ])
                .args(["-C", "1000000", "-W", "4"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).lines().count()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let run = Duration::from_secs(2);
    let started = Instant::now();
    let before = h.ctx.metrics.mqtt_publishes("published");
    let mut offered = 0u64;
    while started.elapsed() < run && offered < 2_000_000 {
        offered += 1;
        ext.publish(
            &board_key,
            &format!("{{\"n\":{offered},\"pad\":\"{:064}\"}}", 0),
        );
        if offered.is_multiple_of(64) {
            tokio::task::yield_now().await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = h.ctx.metrics.mqtt_publishes("published") - before;
    let superseded = h.ctx.metrics.mqtt_publishes("superseded");
    let received = counter.await.unwrap();
    eprintln!(
        "mqtt extension load: {offered} documents offered in {elapsed:.2} s, {published} published ({:.0}/s, QoS 1), {superseded} superseded, {received} received by mosquitto_sub",
        published as f64 / elapsed
    );
    assert!(published > 100, "{published} published");
    assert!(superseded > 0, "a flood must be coalesced, not queued");
    assert!(
        received as u64 >= published / 2,
        "{received} of {published} received"
    );
    ext.remove(&board_key);
}

// ---------------------------------------------------------------------------------------
// The whole stack in standalone mode: the two examples in examples/mqtt, unchanged but
// for the broker's port.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_runs_the_mqtt_examples_against_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let links = dir.path().join("links");
    std::fs::create_dir(&links).unwrap();
    for file in ["kitchen-light.yaml", "fan-with-extension.yaml"] {
        let text = std::fs::read_to_string(repo_file("examples/mqtt").join(file)).unwrap();
        assert!(
            text.contains("tcp://127.0.0.1:1883"),
            "{file}: the broker moved"
        );
        let text = text.replace(
            "tcp://127.0.0.1:1883",
            &format!("tcp://127.0.0.1:{}", broker.anonymous),
        );
        std::fs::write(links.join(file), text).unwrap();
    }
    std::fs::write(links.join("mqtt.wasm"), component("adaptor_mqtt")).unwrap();
    std::fs::write(links.join("dummy.wasm"), component("adaptor_dummy")).unwrap();
    let mut limb = crate::modbus::StandaloneLimb::start(&links);
    let value = |d: &Value, n: &str| {
        d["status"]["properties"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == n).cloned())
            .map(|p| p["value"].clone())
            .unwrap_or(Value::Null)
    };
    limb.wait("kitchen-light", "connected to the broker", |d| {
        d["phase"] == "Healthy"
    })
    .await;

    // The writable switch reached the broker; a pushed reading reaches the status.
    let set = mosquitto::subscribe(&broker, "home/set/kitchen/switch", 1, 10, &[]).await;
    assert_eq!(
        set.first().map(|m| m.payload.as_str()),
        Some("true"),
        "{set:?}"
    );
    mosquitto::publish(&broker, "home/status/kitchen/temperature", "19.5", &[]).await;
    limb.wait("kitchen-light", "the pushed temperature", |d| {
        value(d, "temperature").as_f64() == Some(19.5)
    })
    .await;

    // The dummy fan, which knows nothing of MQTT, is published by the extension.
    let doc = retained(&broker, "cattle.io/octopus/default/ceiling-fan", &[]).await;
    assert_eq!(doc["gear"], "slow", "{doc}");
}
