//! The simulated devices: deterministic state that advances once per poll.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::spec::{Gear, Property, PropertyType, ProtocolSpec, SpecialSpec};

/// xorshift64* generator; deterministic, seeded from the device uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// Seeds from a string with FNV-1a (never yields the all-zero state).
    pub fn from_seed(seed: &str) -> Rng {
        let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Rng::from_state(hash)
    }

    /// Restores a generator from [`Rng::state`]; a zero state is replaced.
    pub fn from_state(state: u64) -> Rng {
        Rng(if state == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            state
        })
    }

    pub fn state(self) -> u64 {
        self.0
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The band of rotating speeds a gear runs in, as in Octopus: slow 0..=100,
/// middle 100..=200, fast 200..=300.
fn band(gear: Gear) -> (u32, u32) {
    match gear {
        Gear::Slow => (0, 100),
        Gear::Middle => (100, 200),
        Gear::Fast => (200, 300),
    }
}

/// Advances a `DummySpecialDevice` by one poll and returns its new rotating speed.
///
/// Off, the speed decays towards 0. On, a speed outside the gear's band jumps to the
/// band's base (Octopus resets the speed when the gear changes) and then climbs by 1 to
/// 10 per poll up to the band's top.
pub fn step_special(speed: u32, spec: &SpecialSpec, rng: &mut Rng) -> u32 {
    let delta = 1 + u32::try_from(rng.below(10)).unwrap_or(0);
    if !spec.on {
        return speed.saturating_sub((speed / 2).max(delta));
    }
    let (low, high) = band(spec.gear);
    if speed < low || speed > high {
        low
    } else {
        speed.saturating_add(delta).min(high)
    }
}

/// The last observed value of a `DummyProtocolDevice` property, as status and
/// snapshots carry it (`{"type", "updatedAt", "value"}`, in that order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    #[serde(rename = "type")]
    pub kind: PropertyType,
    pub updated_at: String,
    pub value: Value,
}

/// Advances a `DummyProtocolDevice` by one poll: every declared property gets a fresh
/// value, except read-only ones, which keep the value they were first given. Properties
/// no longer in the spec are dropped.
pub fn step_protocol(
    observed: &mut BTreeMap<String, Observed>,
    spec: &ProtocolSpec,
    rng: &mut Rng,
    now: &str,
) {
    observed.retain(|name, _| spec.properties.contains_key(name));
    for (name, property) in &spec.properties {
        let keep = property.read_only
            && observed
                .get(name)
                .is_some_and(|current| current.kind == property.kind);
        if !keep {
            let value = random_value(property, rng);
            observed.insert(
                name.clone(),
                Observed {
                    kind: property.kind,
                    value,
                    updated_at: now.to_owned(),
                },
            );
        }
    }
}

/// `observed` as Octopus's `DummyProtocolDeviceStatusProperty`: `type` and the one
/// typed field that holds the value (`intValue`, `stringValue`, `floatValue`,
/// `booleanValue`, `arrayValue`, `objectValue`). The elements of arrays and objects
/// are typed properties again, their types read off their values. Beyond Octopus's
/// document, `updatedAt`: when the value was read, as every other model's status has
/// it (docs/from-octopus.md).
pub fn status_property(observed: &Observed) -> Value {
    let mut property = typed(observed.kind, &observed.value);
    if let Value::Object(fields) = &mut property {
        fields.insert("updatedAt".into(), json!(observed.updated_at));
    }
    property
}

fn typed(kind: PropertyType, value: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), json!(kind));
    let (field, typed_value) = match kind {
        PropertyType::String => ("stringValue", value.clone()),
        PropertyType::Int => ("intValue", value.clone()),
        PropertyType::Float => (
            "floatValue",
            value.as_f64().map_or_else(
                || value.clone(),
                |v| Value::String(crds::octopus::quantity(v)),
            ),
        ),
        PropertyType::Boolean => ("booleanValue", value.clone()),
        PropertyType::Array => (
            "arrayValue",
            Value::Array(
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| typed(kind_of(v), v))
                    .collect(),
            ),
        ),
        PropertyType::Object => (
            "objectValue",
            Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), typed(kind_of(v), v)))
                    .collect(),
            ),
        ),
    };
    out.insert(field.into(), typed_value);
    Value::Object(out)
}

/// The type a generated value has: floats are JSON numbers that are not integers.
fn kind_of(value: &Value) -> PropertyType {
    match value {
        Value::Bool(_) => PropertyType::Boolean,
        Value::Number(n) if n.is_f64() => PropertyType::Float,
        Value::Number(_) => PropertyType::Int,
        Value::Array(_) => PropertyType::Array,
        Value::Object(_) => PropertyType::Object,
        Value::Null | Value::String(_) => PropertyType::String,
    }
}

fn random_value(property: &Property, rng: &mut Rng) -> Value {
    match property.kind {
        PropertyType::String => Value::String(random_string(rng, 10)),
        PropertyType::Int => json!(rng.below(1_000)),
        PropertyType::Float => {
            json!(f64::from(u32::try_from(rng.below(100_000)).unwrap_or(0)) / 100.0)
        }
        PropertyType::Boolean => Value::Bool(rng.next_u64() & 1 == 1),
        PropertyType::Array => {
            let len = 1 + rng.below(5);
            let items = (0..len).map(|_| match &property.item {
                Some(item) => random_value(item, rng),
                None => json!(rng.below(1_000)),
            });
            Value::Array(items.collect())
        }
        PropertyType::Object if property.fields.is_empty() => json!({
            "intValue": rng.below(1_000),
            "stringValue": random_string(rng, 8),
        }),
        PropertyType::Object => {
            let fields: Map<String, Value> = property
                .fields
                .iter()
                .map(|(name, field)| (name.clone(), random_value(field, rng)))
                .collect();
            Value::Object(fields)
        }
    }
}

fn random_string(rng: &mut Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| {
            let index = usize::try_from(rng.below(ALPHABET.len() as u64)).unwrap_or(0);
            char::from(ALPHABET[index])
        })
        .collect()
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC, e.g.
/// `2024-05-01T12:00:00.250Z`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1_000;
    let millis = ms % 1_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{self, DeviceSpec, Kind};

    fn special(on: bool, gear: Gear) -> SpecialSpec {
        SpecialSpec {
            location: "lab".into(),
            on,
            gear,
        }
    }

    #[test]
    fn speed_follows_the_gear() {
        let mut rng = Rng::from_seed("uid-1");
        let mut speed = 0;
        for (gear, low, high) in [
            (Gear::Slow, 0, 100),
            (Gear::Fast, 200, 300),
            (Gear::Middle, 100, 200),
        ] {
            let spec = special(true, gear);
            for _ in 0..60 {
                speed = step_special(speed, &spec, &mut rng);
                assert!((low..=high).contains(&speed), "{gear:?}: {speed}");
            }
            assert_eq!(speed, high, "{gear:?} tops out");
        }
        let off = special(false, Gear::Fast);
        for _ in 0..20 {
            speed = step_special(speed, &off, &mut rng);
        }
        assert_eq!(speed, 0);
    }

    #[test]
    fn rng_is_deterministic_per_uid() {
        let mut a = Rng::from_seed("same");
        let mut b = Rng::from_seed("same");
        let mut c = Rng::from_seed("other");
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(xs, (0..4).map(|_| c.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn protocol_values_have_their_types_and_read_only_values_stay() {
        let parsed = spec::parse(
            Kind::Protocol,
            r#"{"protocol":{"ip":"x"},"properties":{
                "s":{"type":"string"},"i":{"type":"int"},"f":{"type":"float"},
                "b":{"type":"boolean"},"a":{"type":"array"},"o":{"type":"object"},
                "fixed":{"type":"int","readOnly":true}}}"#,
        )
        .unwrap();
        let DeviceSpec::Protocol(spec) = parsed.device else {
            panic!("wrong kind")
        };
        let mut rng = Rng::from_seed("uid");
        let mut observed = BTreeMap::new();
        step_protocol(&mut observed, &spec, &mut rng, "t0");
        let first = observed.clone();
        assert!(observed["s"].value.is_string());
        assert!(observed["i"].value.is_u64());
        assert!(observed["f"].value.is_f64());
        assert!(observed["b"].value.is_boolean());
        assert!(
            observed["a"]
                .value
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_u64)
        );
        assert!(observed["o"].value.is_object());
        step_protocol(&mut observed, &spec, &mut rng, "t1");
        assert_eq!(observed["fixed"], first["fixed"]);
        assert_eq!(observed["s"].updated_at, "t1");
        assert_ne!(observed["s"].value, first["s"].value);
    }

    #[test]
    fn status_properties_are_typed_as_octopus_wrote_them() {
        let observed = |kind, value| Observed {
            kind,
            updated_at: "t".into(),
            value,
        };
        assert_eq!(
            status_property(&observed(PropertyType::String, json!("x"))),
            json!({"type": "string", "stringValue": "x", "updatedAt": "t"})
        );
        assert_eq!(
            status_property(&observed(PropertyType::Float, json!(7.24))),
            json!({"type": "float", "floatValue": "7240m", "updatedAt": "t"})
        );
        assert_eq!(
            status_property(&observed(
                PropertyType::Object,
                json!({"n": 3, "l": [true, 0.5], "s": "y"})
            )),
            json!({"type": "object", "objectValue": {
                "n": {"type": "int", "intValue": 3},
                "l": {"type": "array", "arrayValue": [
                    {"type": "boolean", "booleanValue": true},
                    {"type": "float", "floatValue": "500m"}
                ]},
                "s": {"type": "string", "stringValue": "y"}
            }, "updatedAt": "t"})
        );
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_767_225_599_999), "2025-12-31T23:59:59.999Z");
    }
}
