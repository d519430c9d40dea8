//! What an instance remembers across polls, reconfigures and hot swaps: the last value
//! of each property and the last publication of each write that the broker accepted
//! (so a value is published only when it changes, and a hot swap republishes nothing).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Tag of the `snapshot` format; `restore` accepts nothing else.
pub const SNAPSHOT_FORMAT: &str = "mqtt/1";

/// The last value received for a property.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Where and how it was read (topic filter, path, type); a reading taken under
    /// another signature is not shown after a reconfigure.
    pub signature: String,
    pub value: Value,
    pub updated_at: String,
}

/// One publication, compared whole: a changed topic, QoS or retain flag publishes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub topic: String,
    pub payload: String,
    pub qos: u8,
    pub retain: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    /// By property name.
    pub readings: BTreeMap<String, Reading>,
    /// By write key (the property name, or the message for AttributedMessage).
    pub published: BTreeMap<String, Published>,
}

impl Memory {
    pub fn to_snapshot(&self, version: &str) -> Value {
        let readings: Map<String, Value> = self
            .readings
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    json!({"signature": r.signature, "value": r.value, "updatedAt": r.updated_at}),
                )
            })
            .collect();
        let published: Map<String, Value> = self
            .published
            .iter()
            .map(|(key, p)| {
                (
                    key.clone(),
                    json!({"topic": p.topic, "payload": p.payload, "qos": p.qos, "retain": p.retain}),
                )
            })
            .collect();
        json!({
            "format": SNAPSHOT_FORMAT,
            "version": version,
            "readings": readings,
            "published": published,
        })
    }

    pub fn from_snapshot(bytes: &[u8]) -> Result<Memory, String> {
        let fail = |why: String| format!("not a {SNAPSHOT_FORMAT} snapshot: {why}");
        let value = octopus_adaptor_sdk::state::open_tagged(bytes, SNAPSHOT_FORMAT)?;
        let mut memory = Memory::default();
        for (name, entry) in entries(&value, "readings").map_err(fail)? {
            let reading = (|| {
                Some(Reading {
                    signature: entry.get("signature")?.as_str()?.to_owned(),
                    value: entry.get("value")?.clone(),
                    updated_at: entry.get("updatedAt")?.as_str()?.to_owned(),
                })
            })()
            .ok_or_else(|| fail(format!("readings entry {name:?} is malformed")))?;
            memory.readings.insert(name.clone(), reading);
        }
        for (key, entry) in entries(&value, "published").map_err(fail)? {
            let published = (|| {
                Some(Published {
                    topic: entry.get("topic")?.as_str()?.to_owned(),
                    payload: entry.get("payload")?.as_str()?.to_owned(),
                    qos: u8::try_from(entry.get("qos")?.as_u64()?)
                        .ok()
                        .filter(|q| *q <= 2)?,
                    retain: entry.get("retain")?.as_bool()?,
                })
            })()
            .ok_or_else(|| fail(format!("published entry {key:?} is malformed")))?;
            memory.published.insert(key.clone(), published);
        }
        Ok(memory)
    }
}

fn entries<'a>(value: &'a Value, key: &str) -> Result<Vec<(&'a String, &'a Value)>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map.iter().collect()),
        Some(_) => Err(format!("{key} is not an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips() {
        let mut memory = Memory::default();
        memory.readings.insert(
            "power".into(),
            Reading {
                signature: "a/b\npower\nfloat".into(),
                value: json!(3.5),
                updated_at: "2024-05-01T10:00:00Z".into(),
            },
        );
        memory.published.insert(
            "switch".into(),
            Published {
                topic: "a/set/switch".into(),
                payload: "true".into(),
                qos: 2,
                retain: true,
            },
        );
        let bytes = memory.to_snapshot("0.1.0").to_string().into_bytes();
        assert_eq!(Memory::from_snapshot(&bytes).unwrap(), memory);
    }

    #[test]
    fn foreign_snapshots_are_refused() {
        for bytes in [
            &b"garbage"[..],
            br#"{"readings":{}}"#,
            br#"{"format":"modbus/1"}"#,
            br#"{"format":"mqtt/1","readings":[]}"#,
            br#"{"format":"mqtt/1","readings":{"a":{"value":1}}}"#,
            br#"{"format":"mqtt/1","published":{"a":{"topic":"t","payload":"p","qos":3,"retain":true}}}"#,
        ] {
            let err = Memory::from_snapshot(bytes).unwrap_err();
            assert!(err.starts_with("not a mqtt/1 snapshot"), "{err}");
        }
        assert_eq!(
            Memory::from_snapshot(br#"{"format":"mqtt/1"}"#),
            Ok(Memory::default())
        );
    }
}
