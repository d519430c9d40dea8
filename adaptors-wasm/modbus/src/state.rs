//! What an instance remembers about its device across polls, reconfigures and hot
//! swaps: the writes that succeeded (so values are written only when they change) and
//! the last readings (so a failed read still shows the last good value).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::spec::Property;
use crate::value::hex;

/// Tag of the `snapshot` format; `restore` accepts nothing else.
pub const SNAPSHOT_FORMAT: &str = "modbus/1";

/// A write the device acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The spec value, for people reading a snapshot.
    pub value: String,
    /// Hex of the request PDU. Comparing it (not just the value) also catches a
    /// changed address, type or byte order.
    pub frame: String,
}

/// The last successful read of a property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// [`Property::read_signature`] at the time of the read.
    pub signature: String,
    pub value: String,
    pub operated: Option<String>,
    pub updated_at: String,
}

/// Per-device memory, keyed by property name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    pub written: BTreeMap<String, Written>,
    pub readings: BTreeMap<String, Reading>,
}

impl Memory {
    /// Whether the property's value still has to be written: it has one, and it is not
    /// what was last written successfully.
    pub fn needs_write(&self, property: &Property) -> bool {
        property.write.as_ref().is_some_and(|write| {
            self.written.get(&property.name).map(|w| w.frame.as_str())
                != Some(hex(&write.request.encode()).as_str())
        })
    }

    /// Remembers that the property's value was written.
    pub fn record_write(&mut self, property: &Property) {
        if let Some(write) = &property.write {
            self.written.insert(
                property.name.clone(),
                Written {
                    value: write.value.clone(),
                    frame: hex(&write.request.encode()),
                },
            );
        }
    }

    /// Forgets properties the spec no longer has and readings taken under another
    /// visitor, so a reconfigure never shows a value read from the wrong register.
    pub fn retain_for(&mut self, properties: &[Property]) {
        let find = |name: &str| properties.iter().find(|p| p.name == name);
        self.written.retain(|name, _| find(name).is_some());
        self.readings.retain(|name, reading| {
            find(name).is_some_and(|p| p.read_signature() == reading.signature)
        });
    }

    pub fn to_snapshot(&self, version: &str) -> Value {
        let written: Map<String, Value> = self
            .written
            .iter()
            .map(|(name, w)| (name.clone(), json!({ "value": w.value, "frame": w.frame })))
            .collect();
        let readings: Map<String, Value> = self
            .readings
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    json!({
                        "signature": r.signature,
                        "value": r.value,
                        "operatedValue": r.operated,
                        "updatedAt": r.updated_at,
                    }),
                )
            })
            .collect();
        json!({
            "format": SNAPSHOT_FORMAT,
            "version": version,
            "written": written,
            "readings": readings,
        })
    }

    /// Reads a snapshot; the error says why the bytes are not one.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Memory, String> {
        let fail = |why: String| format!("not a {SNAPSHOT_FORMAT} snapshot: {why}");
        let value = octopus_adaptor_sdk::state::open_tagged(bytes, SNAPSHOT_FORMAT)?;
        let written = entries(&value, "written")
            .map_err(fail)?
            .into_iter()
            .map(|(name, entry)| {
                Ok((
                    name.clone(),
                    Written {
                        value: text(entry, "value").ok_or_else(|| malformed("written", name))?,
                        frame: text(entry, "frame").ok_or_else(|| malformed("written", name))?,
                    },
                ))
            })
            .collect::<Result<_, String>>()
            .map_err(fail)?;
        let readings = entries(&value, "readings")
            .map_err(fail)?
            .into_iter()
            .map(|(name, entry)| {
                let operated = match entry.get("operatedValue") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(malformed("readings", name)),
                };
                Ok((
                    name.clone(),
                    Reading {
                        signature: text(entry, "signature")
                            .ok_or_else(|| malformed("readings", name))?,
                        value: text(entry, "value").ok_or_else(|| malformed("readings", name))?,
                        operated,
                        updated_at: text(entry, "updatedAt")
                            .ok_or_else(|| malformed("readings", name))?,
                    },
                ))
            })
            .collect::<Result<_, String>>()
            .map_err(fail)?;
        Ok(Memory { written, readings })
    }
}

fn entries<'a>(value: &'a Value, key: &str) -> Result<Vec<(&'a String, &'a Value)>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map.iter().collect()),
        Some(_) => Err(format!("{key} is not an object")),
    }
}

fn text(entry: &Value, key: &str) -> Option<String> {
    entry.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn malformed(section: &str, name: &str) -> String {
    format!("{section} entry {name:?} is malformed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn properties(value: &str, offset: u16) -> Vec<Property> {
        spec::parse(&format!(
            r#"{{"protocol":{{"tcp":{{"endpoint":"a:1","workerID":1}}}},"properties":[
                {{"name":"setpoint","type":"int16","value":"{value}","visitor":{{"register":"HoldingRegister","offset":{offset}}}}},
                {{"name":"temperature","type":"int16","visitor":{{"register":"InputRegister","offset":0}}}}]}}"#
        ))
        .unwrap()
        .properties
    }

    #[test]
    fn writes_only_when_the_value_or_target_changes() {
        let mut memory = Memory::default();
        let first = properties("30", 5);
        assert!(memory.needs_write(&first[0]), "never written");
        assert!(!memory.needs_write(&first[1]), "nothing to write");
        memory.record_write(&first[0]);
        assert!(!memory.needs_write(&first[0]), "already written");
        assert!(memory.needs_write(&properties("31", 5)[0]), "value changed");
        assert!(
            memory.needs_write(&properties("30", 6)[0]),
            "address changed"
        );
        assert!(
            !memory.needs_write(&properties(" 30", 5)[0]),
            "same encoding"
        );
    }

    #[test]
    fn snapshot_round_trips_and_survives_restore() {
        let props = properties("30", 5);
        let mut memory = Memory::default();
        memory.record_write(&props[0]);
        memory.readings.insert(
            "temperature".into(),
            Reading {
                signature: props[1].read_signature().to_owned(),
                value: "245".into(),
                operated: Some("24.5".into()),
                updated_at: "2024-05-01T10:00:00Z".into(),
            },
        );
        let bytes = memory.to_snapshot("0.1.0").to_string().into_bytes();
        let restored = Memory::from_snapshot(&bytes).unwrap();
        assert_eq!(restored, memory);
        assert!(
            !restored.needs_write(&props[0]),
            "a hot swap rewrites nothing"
        );
    }

    #[test]
    fn foreign_snapshots_are_refused() {
        for bytes in [
            &b"garbage"[..],
            br#"{"written":{}}"#,
            br#"{"format":"dummy/1"}"#,
            br#"{"format":"modbus/1","written":[]}"#,
            br#"{"format":"modbus/1","written":{"a":{"value":1}}}"#,
            br#"{"format":"modbus/1","readings":{"a":{"value":"1"}}}"#,
        ] {
            let err = Memory::from_snapshot(bytes).unwrap_err();
            assert!(err.starts_with("not a modbus/1 snapshot"), "{err}");
        }
        assert_eq!(
            Memory::from_snapshot(br#"{"format":"modbus/1"}"#),
            Ok(Memory::default())
        );
    }

    #[test]
    fn reconfigure_forgets_what_no_longer_applies() {
        let mut memory = Memory::default();
        let props = properties("30", 5);
        memory.record_write(&props[0]);
        for p in &props {
            memory.readings.insert(
                p.name.clone(),
                Reading {
                    signature: p.read_signature().to_owned(),
                    value: "1".into(),
                    operated: None,
                    updated_at: "t".into(),
                },
            );
        }
        let moved = properties("30", 6);
        memory.retain_for(&moved);
        assert!(memory.readings.contains_key("temperature"));
        assert!(!memory.readings.contains_key("setpoint"), "moved register");
        assert!(memory.written.contains_key("setpoint"));
        memory.retain_for(&moved[1..]);
        assert!(memory.written.is_empty());
    }
}
