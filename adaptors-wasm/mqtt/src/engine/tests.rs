use std::collections::VecDeque;

use super::*;
use crate::codec::Packet;
use crate::spec::{self, tests::KITCHEN};

/// A scripted broker behind a fake clock. Time advances only when the engine waits.
struct Broker {
    now: u64,
    up: bool,
    deny: Option<String>,
    connack: u8,
    /// Answers a 3.1.1 CONNECT with code 1.
    only_v31: bool,
    suback: Option<u8>,
    ack_publishes: bool,
    answer_pings: bool,
    open: bool,
    opens: usize,
    inbox: VecDeque<Result<Vec<u8>, NetError>>,
    sent: Vec<Vec<u8>>,
}

impl Broker {
    fn new() -> Broker {
        Broker {
            now: 1_000_000,
            up: true,
            deny: None,
            connack: 0,
            only_v31: false,
            suback: None,
            ack_publishes: true,
            answer_pings: true,
            open: false,
            opens: 0,
            inbox: VecDeque::new(),
            sent: Vec::new(),
        }
    }

    fn queue(&mut self, packet: Packet) {
        self.inbox.push_back(Ok(packet.encode().unwrap()));
    }

    fn publish(&mut self, topic: &str, payload: &str, qos: u8, id: Option<u16>) {
        self.queue(Packet::Publish(Publish {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
            qos,
            retain: false,
            dup: false,
            id,
        }));
    }

    fn take(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.sent)
    }

    /// The types (high nibble) of what the engine sent.
    fn kinds(&mut self) -> Vec<u8> {
        self.take().iter().map(|f| f[0] >> 4).collect()
    }
}

/// The body of a frame (after the fixed header).
fn body(frame: &[u8]) -> &[u8] {
    let mut at = 1;
    while frame[at] & 0x80 != 0 {
        at += 1;
    }
    &frame[at + 1..]
}

fn string_at(body: &[u8], at: usize) -> (String, usize) {
    let len = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    (
        String::from_utf8(body[at + 2..at + 2 + len].to_vec()).unwrap(),
        at + 2 + len,
    )
}

/// (topic, payload, qos, retain) of a PUBLISH frame.
fn publish_of(frame: &[u8]) -> (String, String, u8, bool) {
    let qos = (frame[0] >> 1) & 3;
    let b = body(frame);
    let (topic, mut at) = string_at(b, 0);
    if qos > 0 {
        at += 2;
    }
    (
        topic,
        String::from_utf8(b[at..].to_vec()).unwrap(),
        qos,
        frame[0] & 1 == 1,
    )
}

/// (filter, qos) of a SUBSCRIBE frame.
fn subscribe_of(frame: &[u8]) -> Vec<(String, u8)> {
    let b = body(frame);
    let mut at = 2;
    let mut out = Vec::new();
    while at < b.len() {
        let (filter, next) = string_at(b, at);
        out.push((filter, b[next]));
        at = next + 1;
    }
    out
}

impl Net for Broker {
    fn open(&mut self, _tls: Option<&Tls>, timeout_ms: u32) -> Result<(), NetError> {
        self.opens += 1;
        if let Some(why) = &self.deny {
            return Err(NetError::Denied(why.clone()));
        }
        if !self.up {
            self.now += u64::from(timeout_ms.min(5));
            return Err(NetError::Io("connection refused".into()));
        }
        self.open = true;
        self.inbox.clear();
        Ok(())
    }

    fn send(&mut self, data: &[u8], _timeout_ms: u32) -> Result<(), NetError> {
        if !self.open {
            return Err(NetError::Closed);
        }
        self.sent.push(data.to_vec());
        let b = body(data);
        let id = || u16::from_be_bytes([b[0], b[1]]);
        match data[0] >> 4 {
            1 => {
                let (_, at) = string_at(b, 0);
                let code = if self.only_v31 && b[at] == 4 {
                    1
                } else {
                    self.connack
                };
                self.queue(Packet::ConnAck {
                    session_present: false,
                    code,
                });
            }
            8 => {
                let codes = subscribe_of(data)
                    .iter()
                    .map(|(_, q)| self.suback.unwrap_or(*q))
                    .collect();
                self.queue(Packet::SubAck { id: id(), codes });
            }
            3 if self.ack_publishes => {
                let qos = (data[0] >> 1) & 3;
                let (_, at) = string_at(b, 0);
                let pid = u16::from_be_bytes([b[at], b[at + 1]]);
                match qos {
                    1 => self.queue(Packet::PubAck(pid)),
                    2 => self.queue(Packet::PubRec(pid)),
                    _ => {}
                }
            }
            6 => self.queue(Packet::PubComp(id())),
            12 if self.answer_pings => self.queue(Packet::PingResp),
            _ => {}
        }
        Ok(())
    }

    fn receive(&mut self, _max: u32, timeout_ms: u32) -> Result<Vec<u8>, NetError> {
        if !self.open {
            return Err(NetError::Closed);
        }
        match self.inbox.pop_front() {
            Some(Err(e)) => {
                self.open = false;
                Err(e)
            }
            Some(Ok(bytes)) => Ok(bytes),
            None => {
                self.now += u64::from(timeout_ms);
                Err(NetError::Timeout)
            }
        }
    }

    fn close(&mut self) {
        self.open = false;
    }

    fn now_ms(&self) -> u64 {
        self.now
    }

    fn wall_ms(&self) -> u64 {
        1_714_557_600_000 + self.now
    }

    fn nap(&mut self, ms: u64) {
        self.now += ms;
    }
}

fn identity() -> Identity {
    Identity {
        namespace: "default".into(),
        name: "light".into(),
        uid: "0f8a6b3c-1d2e-4f5a-9b8c-7d6e5f4a3b2c".into(),
    }
}

fn engine(spec: &str) -> Engine {
    Engine::new(spec::parse(spec, &[]).unwrap(), &identity()).unwrap()
}

fn property<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
}

const STATUS: &str = "cattle.io/octopus/home/status/kitchen/light/";
const SET: &str = "cattle.io/octopus/home/set/kitchen/light/";

const MESSAGE: &str = r#"{
  "protocol": {
    "pattern": "AttributedMessage",
    "client": {"server": "tcp://127.0.0.1:1883"},
    "message": {"topic": "devices/:namespace/:name/:operator", "qos": 0,
                "operator": {"read": "state", "write": "command"}}
  },
  "properties": [
    {"name": "temperature", "path": "sensors.temp", "type": "float"},
    {"name": "first", "path": "list[0]", "type": "int"},
    {"name": "mode", "type": "string", "readOnly": false, "value": "eco"},
    {"name": "target", "path": "settings.target", "type": "float", "readOnly": false, "value": 21.5}
  ]
}"#;

#[test]
fn connects_subscribes_and_publishes_each_write_once() {
    let mut e = engine(KITCHEN);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    let outcome = e.poll(&mut memory, &mut broker);
    assert_eq!(outcome.failure, None);
    let sent = broker.take();
    assert_eq!(sent[0][0] >> 4, 1, "CONNECT first");
    let b = body(&sent[0]);
    let (_, at) = string_at(b, 6 + 4);
    assert_eq!(
        string_at(b, 10).0,
        "octopus-0f8a6b3c-1d2e-4f5a-9b8c-7d6e5f4a3b2c"
    );
    let _ = at;
    assert_eq!(
        subscribe_of(&sent[1]),
        [
            (format!("{STATUS}switch"), 2),
            (format!("{STATUS}gear"), 1),
            (format!("{STATUS}parameter_power"), 1)
        ]
    );
    let publishes: Vec<_> = sent
        .iter()
        .filter(|f| f[0] >> 4 == 3)
        .map(|f| publish_of(f))
        .collect();
    assert_eq!(
        publishes,
        [
            (format!("{SET}switch"), "true".into(), 2, true),
            (format!("{SET}gear"), "low".into(), 1, true)
        ]
    );
    assert_eq!(sent.last().map(|f| f[0] >> 4), Some(6), "PUBREL for QoS 2");
    assert_eq!(memory.published.len(), 2, "both acknowledged");
    e.poll(&mut memory, &mut broker);
    assert!(!broker.kinds().contains(&3), "nothing is published twice");
}

#[test]
fn pushed_messages_end_the_poll_early_and_show_in_the_status() {
    let mut e = engine(KITCHEN);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    e.poll(&mut memory, &mut broker);
    broker.take();
    broker.publish(&format!("{STATUS}parameter_power"), "21.5", 1, Some(7));
    let before = broker.now;
    let outcome = e.poll(&mut memory, &mut broker);
    assert_eq!(broker.now, before, "returned without waiting");
    let power = property(&outcome.status, "power");
    assert_eq!(power["value"], 21.5);
    assert_eq!(power["type"], "float");
    assert_eq!(power["path"], "parameter_power");
    assert_eq!(power["description"], "The power");
    assert!(
        power["updateAt"]
            .as_str()
            .unwrap()
            .starts_with("2024-05-01T")
    );
    assert_eq!(broker.take(), [Packet::PubAck(7).encode().unwrap()]);
    // A quiet poll waits out the window.
    let before = broker.now;
    e.poll(&mut memory, &mut broker);
    assert_eq!(broker.now - before, WINDOW_MS);
    // A bad payload keeps the value and says why.
    broker.publish(&format!("{STATUS}parameter_power"), "hot", 0, None);
    let outcome = e.poll(&mut memory, &mut broker);
    let power = property(&outcome.status, "power");
    assert_eq!(power["value"], 21.5);
    assert!(
        power["error"]
            .as_str()
            .unwrap()
            .contains("\"hot\" is not a float")
    );
}

#[test]
fn several_packets_in_one_read_and_one_packet_over_two_reads() {
    let mut e = engine(KITCHEN);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    e.poll(&mut memory, &mut broker);
    let mut both = Packet::Publish(Publish {
        topic: format!("{STATUS}gear"),
        payload: b"high".to_vec(),
        qos: 0,
        retain: true,
        dup: false,
        id: None,
    })
    .encode()
    .unwrap();
    let second = Packet::Publish(Publish {
        topic: format!("{STATUS}switch"),
        payload: b"false".to_vec(),
        qos: 0,
        retain: true,
        dup: false,
        id: None,
    })
    .encode()
    .unwrap();
    both.extend_from_slice(&second[..5]);
    broker.inbox.push_back(Ok(both));
    broker.inbox.push_back(Ok(second[5..].to_vec()));
    let outcome = e.poll(&mut memory, &mut broker);
    assert_eq!(property(&outcome.status, "gear")["value"], "high");
    let outcome = e.poll(&mut memory, &mut broker);
    assert_eq!(property(&outcome.status, "switch")["value"], false);
}

#[test]
fn attributed_message_reads_paths_and_publishes_one_document() {
    let mut e = engine(MESSAGE);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    assert_eq!(e.poll(&mut memory, &mut broker).failure, None);
    let sent = broker.take();
    assert_eq!(
        subscribe_of(&sent[1]),
        [("devices/default/light/state".to_owned(), 0)]
    );
    let (topic, payload, qos, retain) = publish_of(&sent[2]);
    assert_eq!(topic, "devices/default/light/command");
    assert_eq!(
        serde_json::from_str::<Value>(&payload).unwrap(),
        json!({"mode": "eco", "settings": {"target": 21.5}})
    );
    assert_eq!((qos, retain), (0, true));
    broker.publish(
        "devices/default/light/state",
        r#"{"sensors": {"temp": "19.5"}, "list": [4, 5], "mode": "boost"}"#,
        0,
        None,
    );
    let status = e.poll(&mut memory, &mut broker).status;
    assert_eq!(property(&status, "temperature")["value"], 19.5);
    assert_eq!(property(&status, "first")["value"], 4);
    assert_eq!(property(&status, "mode")["value"], "boost");
    assert!(property(&status, "target").get("value").is_none());
    // A message without a property keeps its value; one that is not JSON is an error.
    broker.publish("devices/default/light/state", r#"{"list": [6]}"#, 0, None);
    let status = e.poll(&mut memory, &mut broker).status;
    assert_eq!(property(&status, "temperature")["value"], 19.5);
    assert_eq!(property(&status, "first")["value"], 6);
    broker.publish("devices/default/light/state", "not json", 0, None);
    let status = e.poll(&mut memory, &mut broker).status;
    assert!(
        property(&status, "first")["error"]
            .as_str()
            .unwrap()
            .contains("is not JSON")
    );
}

#[test]
fn a_refused_login_backs_off_without_hammering_the_broker() {
    let mut e = engine(KITCHEN);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    broker.connack = 4;
    let outcome = e.poll(&mut memory, &mut broker);
    assert_eq!(
        outcome.failure,
        Some(Failure::Refused(
            "broker refused the connection: bad username or password (4)".into()
        ))
    );
    assert_eq!(broker.opens, 1);
    // Back-to-back polls nap and repeat the failure until the backoff ends.
    let start = broker.now;
    let mut polls = 0;
    while broker.opens == 1 {
        let outcome = e.poll(&mut memory, &mut broker);
        assert!(matches!(outcome.failure, Some(Failure::Refused(_))));
        polls += 1;
    }
    assert!(broker.now - start >= FIRST_BACKOFF_MS, "waited the backoff");
    assert!(polls <= 6, "{polls} polls");
    // The next pause is twice as long.
    let start = broker.now;
    while broker.opens == 2 {
        e.poll(&mut memory, &mut broker);
    }
    assert!(broker.now - start >= 2 * FIRST_BACKOFF_MS);
    // Fixed: connects, and the backoff starts over.
    broker.connack = 0;
    while !e.connected() {
        e.poll(&mut memory, &mut broker);
    }
    assert_eq!(e.backoff_ms, FIRST_BACKOFF_MS);
    assert_eq!(e.status(&memory)["properties"].as_array().unwrap().len(), 3);
}

#[test]
fn backoff_is_capped() {
    let mut e = engine(KITCHEN);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    broker.up = false;
    for _ in 0..400 {
        e.poll(&mut memory, &mut broker);
    }
    assert_eq!(e.backoff_ms, spec::MAX_BACKOFF_MS);
}

#[test]
fn a_lost_broker_is_reported_then_reconnected_and_retained_writes_go_out_again() {
    let mut e = engine(KITCHEN);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    e.poll(&mut memory, &mut broker);
    broker.publish(&format!("{STATUS}parameter_power"), "3", 0, None);
    e.poll(&mut memory, &mut broker);
    broker.take();
    broker.inbox.push_back(Err(NetError::Closed));
    broker.up = false;
    let outcome = e.poll(&mut memory, &mut broker);
    assert_eq!(
        outcome.failure,
        Some(Failure::Unreachable(
            "lost the broker: the connection was closed".into()
        ))
    );
    assert_eq!(
        property(&outcome.status, "power")["value"],
        3.0,
        "last values kept"
    );
    let outcome = e.poll(&mut memory, &mut broker);
    assert!(
        outcome
            .failure
            .unwrap()
            .message()
            .contains("connection refused")
    );
    broker.up = true;
    while !e.connected() {
        e.poll(&mut memory, &mut broker);
    }
    // The broker may have restarted without its retained messages: the two retained
    // writes are published again, once each.
    let kinds = broker.kinds();
    assert_eq!(
        kinds[..4],
        [1, 8, 3, 3],
        "CONNECT, SUBSCRIBE and the two writes"
    );
    assert_eq!(kinds.iter().filter(|k| **k == 3).count(), 2, "{kinds:?}");
    while e.poll(&mut memory, &mut broker).failure.is_some() {}
    e.poll(&mut memory, &mut broker);
    assert!(
        !broker.kinds().contains(&3),
        "and not again while the connection holds"
    );
}

#[test]
fn keep_alive_pings_and_a_silent_broker_is_lost() {
    let spec = KITCHEN.replace(
        r#""server": "tcp://127.0.0.1:1883""#,
        r#""server": "tcp://127.0.0.1:1883", "keepAlive": "2s", "pingTimeout": "1s""#,
    );
    let mut e = engine(&spec);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    e.poll(&mut memory, &mut broker);
    broker.take();
    let start = broker.now;
    while !broker.kinds().contains(&12) {
        assert_eq!(e.poll(&mut memory, &mut broker).failure, None);
    }
    // 3/4 of the keep-alive after the last packet, which went out a window before `start`.
    let waited = broker.now - start + WINDOW_MS;
    assert!((1_500..2_000).contains(&waited), "{waited}");
    broker.answer_pings = false;
    let mut outcome = e.poll(&mut memory, &mut broker);
    while outcome.failure.is_none() {
        outcome = e.poll(&mut memory, &mut broker);
    }
    assert_eq!(
        outcome.failure,
        Some(Failure::Unreachable(
            "the broker did not answer a PINGREQ within 1000 ms".into()
        ))
    );
    assert!(!e.connected());
}

#[test]
fn falls_back_to_mqtt_31_with_a_short_client_id() {
    let mut e = engine(KITCHEN);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    broker.only_v31 = true;
    assert_eq!(e.poll(&mut memory, &mut broker).failure, None);
    let connects: Vec<_> = broker
        .take()
        .into_iter()
        .filter(|f| f[0] >> 4 == 1)
        .collect();
    assert_eq!(connects.len(), 2);
    let b = body(&connects[1]);
    assert_eq!(string_at(b, 0).0, "MQIsdp");
    assert_eq!(string_at(b, 12).0, "octopus-0f8a6b3c-1d2e-4");
    assert_eq!(client_id("abc", Version::V31), "octopus-abc");
}

#[test]
fn refused_subscriptions_are_property_errors() {
    let mut e = engine(KITCHEN);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    broker.suback = Some(SUBACK_FAILURE);
    e.poll(&mut memory, &mut broker);
    let status = e.poll(&mut memory, &mut broker).status;
    assert_eq!(
        property(&status, "power")["error"],
        format!("the broker refused the subscription to {STATUS}parameter_power")
    );
}

#[test]
fn qos2_deliveries_are_acknowledged_and_deduplicated() {
    let mut e = engine(KITCHEN);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    e.poll(&mut memory, &mut broker);
    broker.take();
    broker.publish(&format!("{STATUS}gear"), "mid", 2, Some(9));
    assert_eq!(
        property(&e.poll(&mut memory, &mut broker).status, "gear")["value"],
        "mid"
    );
    assert_eq!(broker.take(), [Packet::PubRec(9).encode().unwrap()]);
    let stamp = memory.readings["gear"].updated_at.clone();
    broker.now += 5_000;
    broker.publish(&format!("{STATUS}gear"), "mid", 2, Some(9));
    e.poll(&mut memory, &mut broker);
    assert_eq!(memory.readings["gear"].updated_at, stamp, "a duplicate");
    broker.take();
    broker.queue(Packet::PubRel(9));
    e.poll(&mut memory, &mut broker);
    assert_eq!(broker.take(), [Packet::PubComp(9).encode().unwrap()]);
}

#[test]
fn reconfigure_keeps_the_session_for_a_new_value() {
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    let mut old = engine(KITCHEN);
    old.poll(&mut memory, &mut broker);
    broker.take();
    let mut new = engine(&KITCHEN.replace(r#""value": "low""#, r#""value": "high""#));
    new.take_over(old, &mut broker);
    new.retain(&mut memory);
    assert!(new.connected());
    new.poll(&mut memory, &mut broker);
    let sent = broker.take();
    let publishes: Vec<_> = sent
        .iter()
        .filter(|f| f[0] >> 4 == 3)
        .map(|f| publish_of(f))
        .collect();
    assert_eq!(publishes, [(format!("{SET}gear"), "high".into(), 1, true)]);
    assert!(!sent.iter().any(|f| f[0] >> 4 == 1), "no new CONNECT");

    // A new topic for one property: subscribe to it, unsubscribe the old one.
    let mut newer = engine(
        &KITCHEN
            .replace(r#""value": "low""#, r#""value": "high""#)
            .replace("parameter_power", "power_w"),
    );
    newer.take_over(new, &mut broker);
    let kinds = broker.kinds();
    assert_eq!(kinds, [10, 8]);

    // Another server: disconnect; the next poll connects with the new settings.
    let mut moved = engine(&KITCHEN.replace("127.0.0.1:1883", "127.0.0.2:1883"));
    moved.take_over(newer, &mut broker);
    assert_eq!(broker.kinds(), [14]);
    assert!(!moved.connected());
    moved.poll(&mut memory, &mut broker);
    assert!(moved.connected());
}

#[test]
fn restored_memory_republishes_nothing() {
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    let mut old = engine(KITCHEN);
    old.poll(&mut memory, &mut broker);
    let bytes = memory.to_snapshot("0.1.0").to_string().into_bytes();
    let mut restored = Memory::from_snapshot(&bytes).unwrap();
    let mut broker = Broker::new();
    let mut new = engine(KITCHEN);
    new.retain(&mut restored);
    new.poll(&mut restored, &mut broker);
    assert_eq!(broker.kinds(), [1, 8]);
}

#[test]
fn denied_connections_and_lost_handshakes() {
    let mut e = engine(KITCHEN);
    let mut memory = Memory::default();
    let mut broker = Broker::new();
    broker.deny = Some("certificate has expired".into());
    assert_eq!(
        e.connect(&mut memory, &mut broker),
        Err(Failure::Denied(
            "cannot connect to tcp://127.0.0.1:1883: certificate has expired".into()
        ))
    );
    broker.deny = None;
    broker.connack = 3;
    let failure = e.connect(&mut memory, &mut broker).unwrap_err();
    assert_eq!(
        failure,
        Failure::Unreachable("broker refused the connection: server unavailable (3)".into())
    );
}

#[test]
fn topics_that_render_to_nothing_are_spec_errors() {
    let spec = KITCHEN.replace(
        "cattle.io/octopus/home/:operator/kitchen/light/:path",
        ":operator",
    );
    let spec = spec::parse(&spec, &[]).unwrap();
    let e = Engine::new(
        Spec {
            message: spec::Message {
                operator: spec::Operator::default(),
                ..spec.message.clone()
            },
            ..spec
        },
        &identity(),
    );
    assert!(e.is_err());
}

#[test]
fn a_will_renders_its_topic() {
    let spec = MESSAGE.replace(
        r#""qos": 0,"#,
        r#""qos": 0, "will": {"content": "b2ZmbGluZQ=="},"#,
    );
    let e = engine(&spec);
    assert_eq!(
        e.will,
        Some(codec::Will {
            topic: "devices/default/light/$will".into(),
            payload: b"offline".to_vec(),
            qos: 1,
            retain: true
        })
    );
}
