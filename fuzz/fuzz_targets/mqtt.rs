//! MQTT: the guest's packet decoder and encoder (`adaptors-wasm/mqtt/src/codec.rs`), its
//! topic filters (`topic.rs`), JSON paths (`jsonpath.rs`), spec parser and value
//! conversions, and the topic templates both it and the limb's extension render
//! (`mqtt-topic/`).
//!
//! Input, by its first byte modulo 7; `\0` separates the strings of a case:
//! - 0, a byte stream from a broker: `[chunk size]` then bytes, pushed into a `Decoder`
//!   in chunks; every packet decoded must encode back to itself;
//! - 1, a topic template: `template\0namespace\0name\0uid[\0path[\0operator]]`, rendered;
//! - 2, `filter\0topic`, checked and matched;
//! - 3, `path\0json document\0json value`: get, set, then get what was set;
//! - 4, `spec\0` then `name\0item\0value` triples: an `MQTTDevice` spec and its
//!   resolved references;
//! - 5, `[kind]` then a payload, read as that property type and written back;
//! - 6, client packets: `[flags][keep alive:2][id:2]` then
//!   `client id\0username\0password\0will topic\0will payload\0topic\0payload`.
#![no_main]

use adaptor_mqtt::fuzz::codec::{self, Connect, Decoder, Packet, Publish, Version, Will};
use adaptor_mqtt::fuzz::jsonpath::Path;
use adaptor_mqtt::fuzz::spec::{self, Reference};
use adaptor_mqtt::fuzz::topic;
use adaptor_mqtt::fuzz::value::{self, Kind};
use libfuzzer_sys::fuzz_target;

fn decode_one(bytes: &[u8]) -> Result<Option<Packet>, codec::CodecError> {
    let mut d = Decoder::default();
    d.push(bytes);
    d.next_packet()
}

fn stream(data: &[u8]) {
    let Some((&size, bytes)) = data.split_first() else {
        return;
    };
    let mut decoder = Decoder::default();
    for chunk in bytes.chunks(1 + usize::from(size % 64)) {
        decoder.push(chunk);
        loop {
            match decoder.next_packet() {
                Ok(Some(packet)) => {
                    if let Ok(wire) = packet.encode() {
                        assert_eq!(decode_one(&wire), Ok(Some(packet)));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    return; // the stream cannot be trusted after this
                }
            }
        }
    }
}

fn templates(parts: &[&str]) {
    let [template, namespace, name, uid, rest @ ..] = parts else {
        return;
    };
    let (path, operator) = (rest.first().copied(), rest.get(1).copied());
    let values = mqtt_topic::Values {
        namespace,
        name,
        uid,
        path,
        operator,
    };
    let t = mqtt_topic::render(template, &values);
    assert!(
        !t.starts_with('/') && !t.ends_with('/') && !t.contains("//"),
        "{t:?}"
    );
    assert!(t.split('/').all(|l| l != "." && l != ".."), "{t:?}");
}

fn filters(parts: &[&str]) {
    let [filter, topic_name, ..] = parts else {
        return;
    };
    let valid = topic::valid_filter(filter);
    let _ = topic::matches(filter, topic_name);
    if topic::valid_name(topic_name) {
        assert!(topic::valid_filter(topic_name));
        assert!(topic::matches(topic_name, topic_name), "{topic_name:?}");
        if !topic_name.starts_with('$') {
            assert!(topic::matches("#", topic_name));
        }
    }
    if valid && topic::valid_name(filter) && topic::valid_name(topic_name) {
        assert_eq!(topic::matches(filter, topic_name), filter == topic_name);
    }
}

fn json_paths(parts: &[&str]) {
    let [path, rest @ ..] = parts else {
        return;
    };
    let Ok(path) = Path::parse(path) else {
        return;
    };
    let doc = rest.first().and_then(|d| serde_json::from_str(d).ok());
    let mut doc: serde_json::Value = doc.unwrap_or_default();
    let _ = path.get(&doc);
    let new: serde_json::Value = rest
        .get(1)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or(serde_json::Value::Bool(true));
    if path.set(&mut doc, new.clone()).is_ok() {
        assert_eq!(path.get(&doc), Some(&new), "{path:?} in {doc}");
    }
}

fn specs(parts: &[&str]) {
    let [text, rest @ ..] = parts else {
        return;
    };
    let references: Vec<Reference> = rest
        .chunks_exact(3)
        .map(|r| Reference {
            name: r[0].to_owned(),
            item: r[1].to_owned(),
            value: r[2].as_bytes().to_vec(),
        })
        .collect();
    if let Ok(s) = spec::parse(text, &references) {
        let _ = format!("{s:?}");
    }
}

const KINDS: [Kind; 6] = [
    Kind::Int,
    Kind::String,
    Kind::Float,
    Kind::Boolean,
    Kind::Object,
    Kind::Array,
];

/// Equal, but for doubles read from more than 17 digits: serde_json (without
/// `float_roundtrip`) reads those to a nearby double, not always the nearest, so a value
/// written out and read again may move by an ulp.
fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::{Array, Number, Object};
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            (x - y).abs() <= x.abs().max(y.abs()) * 1e-15
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Object(x), Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

fn values(data: &[u8]) {
    let Some((&kind, payload)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(kind) % KINDS.len()];
    if let Ok(v) = value::from_payload(kind, payload) {
        // What we publish for a value reads back as the same value; but a string goes
        // out as its bare text (Octopus's format), so one that is itself JSON text (a
        // quoted string, say) reads back as that JSON.
        let wire = value::to_payload(&v);
        if kind == Kind::String && serde_json::from_slice::<serde_json::Value>(&wire).is_ok() {
            return;
        }
        let back = value::from_payload(kind, &wire);
        assert!(
            back.as_ref().is_ok_and(|b| close(b, &v)),
            "{kind:?}: {v} reads back as {back:?}"
        );
        assert_eq!(value::coerce(kind, &v).as_ref(), Ok(&v), "{kind:?}");
    }
    let text = String::from_utf8_lossy(payload);
    let _ = value::base64(&text);
    let _ = Kind::parse(&text).map(Kind::name);
}

fn client_packets(data: &[u8]) {
    let [flags, k0, k1, i0, i1, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let s: Vec<&str> = text.split('\0').collect();
    let at = |i: usize| s.get(i).copied().unwrap_or_default();
    let connect = Packet::Connect(Connect {
        version: if flags & 1 == 0 {
            Version::V311
        } else {
            Version::V31
        },
        client_id: at(0).to_owned(),
        clean_session: flags & 2 != 0,
        keep_alive: u16::from_be_bytes([*k0, *k1]),
        username: (flags & 4 != 0).then(|| at(1).to_owned()),
        password: (flags & 8 != 0).then(|| at(2).as_bytes().to_vec()),
        will: (flags & 16 != 0).then(|| Will {
            topic: at(3).to_owned(),
            payload: at(4).as_bytes().to_vec(),
            qos: (flags >> 5) & 3,
            retain: flags & 0x80 != 0,
        }),
    });
    let qos = (flags >> 5) & 3;
    let id = u16::from_be_bytes([*i0, *i1]);
    let publish = Packet::Publish(Publish {
        topic: at(5).to_owned(),
        payload: at(6).as_bytes().to_vec(),
        qos,
        retain: flags & 1 != 0,
        dup: flags & 2 != 0,
        id: (qos > 0).then_some(id),
    });
    let subscribe = Packet::Subscribe {
        id,
        filters: s.iter().map(|f| ((*f).to_owned(), qos)).collect(),
    };
    let unsubscribe = Packet::Unsubscribe {
        id,
        filters: s.iter().map(|f| (*f).to_owned()).collect(),
    };
    for packet in [connect, publish, subscribe, unsubscribe] {
        let Ok(wire) = packet.encode() else {
            continue;
        };
        match decode_one(&wire) {
            // A broker never sends CONNECT or (UN)SUBSCRIBE; the frame is still whole.
            Err(_) => assert!(!matches!(packet, Packet::Publish(_))),
            Ok(Some(back)) => assert_eq!(back, packet),
            Ok(None) => panic!("{packet:?} encodes to an incomplete frame"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = || std::str::from_utf8(rest).ok();
    match mode % 7 {
        0 => stream(rest),
        1 => {
            if let Some(t) = text() {
                templates(&t.split('\0').collect::<Vec<_>>());
            }
        }
        2 => {
            if let Some(t) = text() {
                filters(&t.split('\0').collect::<Vec<_>>());
            }
        }
        3 => {
            if let Some(t) = text() {
                json_paths(&t.split('\0').collect::<Vec<_>>());
            }
        }
        4 => {
            if let Some(t) = text() {
                specs(&t.split('\0').collect::<Vec<_>>());
            }
        }
        5 => values(rest),
        _ => client_packets(rest),
    }
});
