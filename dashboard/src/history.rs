//! The recent values of every numeric status property, for the dashboard's plots.
//!
//! Memory is bounded twice: each property keeps at most [`POINTS`] points, one per
//! [`STEP`] (a newer reading in the same step replaces the point, so the plot's last
//! point is always the latest value), and the node keeps at most `max_series`
//! properties in all, at most [`PER_DEVICE`] per device. A property past either cap is
//! not recorded and the device says so (`capped`), so a missing plot is explained
//! rather than silent. With the defaults (4,096 series of 240 points of 16 bytes, in rings
//! that grow to 256 slots: 4 KiB a series) the history never holds more than about
//! 16 MiB plus its maps, whatever the number of devices; filled at 10,000 devices it
//! took 18 MiB of RSS (docs/benchmarks/density-history.md).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// One point per step: an hour of history in [`POINTS`] points.
pub const STEP: Duration = Duration::from_secs(15);
/// Points kept per property: one hour at [`STEP`].
pub const POINTS: usize = 240;
/// Numeric properties plotted per device; further ones are not recorded.
pub const PER_DEVICE: usize = 8;
/// How deep in the status document numeric values are looked for.
const DEPTH: usize = 4;
/// Values of a status document looked at, at most: a document can be a megabyte, and
/// it is read on every change, under the board's lock.
const VISITS: usize = 1024;
/// Numeric properties taken from one document, at most (more than any cap needs).
const FOUND: usize = 64;

/// One reading: milliseconds since the epoch (`u64`, for JSON) and the value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point(pub u64, pub f64);

/// The bounded history of one property.
#[derive(Debug, Default)]
struct Ring {
    points: VecDeque<Point>,
}

impl Ring {
    fn push(&mut self, point: Point) {
        let step = u64::try_from(STEP.as_millis()).unwrap_or(u64::MAX);
        if let Some(last) = self.points.back_mut()
            && point.0 / step == last.0 / step
        {
            *last = point;
            return;
        }
        if self.points.len() >= POINTS {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }
}

#[derive(Debug, Default)]
struct Device {
    /// The board's incarnation of the device the points belong to.
    incarnation: u64,
    series: BTreeMap<String, Ring>,
    /// Numeric properties seen and not recorded (a cap was reached).
    capped: usize,
}

/// The history of every device on the node.
#[derive(Debug)]
pub struct History {
    devices: HashMap<String, Device>,
    series: usize,
    max_series: usize,
}

/// One device's history, as the device page plots it.
#[derive(Debug, Default, Serialize)]
pub struct DeviceHistory {
    pub step_ms: u64,
    pub series: BTreeMap<String, Vec<Point>>,
    pub capped: usize,
}

impl History {
    pub fn new(max_series: usize) -> Self {
        Self {
            devices: HashMap::new(),
            series: 0,
            max_series,
        }
    }

    /// Records a device's numeric properties (from [`numeric_properties`]), read at
    /// `at`. A new `incarnation` (the device was removed and re-created) starts it afresh.
    pub fn record(
        &mut self,
        key: &str,
        incarnation: u64,
        values: Vec<(String, f64)>,
        at: SystemTime,
    ) {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let device = self.devices.entry(key.to_owned()).or_default();
        if device.incarnation != incarnation {
            self.series -= device.series.len();
            *device = Device {
                incarnation,
                ..Device::default()
            };
        }
        device.capped = 0;
        for (name, value) in values {
            if !device.series.contains_key(&name) {
                if device.series.len() >= PER_DEVICE || self.series >= self.max_series {
                    device.capped += 1;
                    continue;
                }
                self.series += 1;
            }
            device
                .series
                .entry(name)
                .or_default()
                .push(Point(ms, value));
        }
    }

    /// Forgets a device that is gone from the board.
    pub fn forget(&mut self, key: &str) {
        if let Some(device) = self.devices.remove(key) {
            self.series -= device.series.len();
        }
    }

    /// The keys held, to find devices gone from the board.
    pub fn keys(&self) -> Vec<String> {
        self.devices.keys().cloned().collect()
    }

    pub fn device(&self, key: &str) -> DeviceHistory {
        let step_ms = u64::try_from(STEP.as_millis()).unwrap_or(u64::MAX);
        match self.devices.get(key) {
            None => DeviceHistory {
                step_ms,
                ..DeviceHistory::default()
            },
            Some(d) => DeviceHistory {
                step_ms,
                series: d
                    .series
                    .iter()
                    .map(|(name, ring)| (name.clone(), ring.points.iter().copied().collect()))
                    .collect(),
                capped: d.capped,
            },
        }
    }

    /// Series held, over all devices.
    pub fn series(&self) -> usize {
        self.series
    }

    /// Points held, over all devices (for the density benchmark and tests).
    pub fn points(&self) -> usize {
        self.devices
            .values()
            .flat_map(|d| d.series.values())
            .map(|r| r.points.len())
            .sum()
    }
}

/// The numeric properties of a status document, by path, in document order.
///
/// Adaptors shape status differently, so three shapes are read: plain numbers
/// (`{"rotatingSpeed": 200}`), Octopus's typed properties
/// (`{"properties": {"power": {"type": "float", "floatValue": 7.2}}}`) and named lists
/// whose values are decimal strings (`{"properties": [{"name": "temperature",
/// "type": "int16", "value": "-24.5"}]}`, the Modbus and OPC UA adaptors). Strings of
/// `string` and `hexString` properties are text, never numbers.
pub fn numeric_properties(status: &Value) -> Vec<(String, f64)> {
    let mut walk = Walk {
        out: Vec::new(),
        visits: 0,
    };
    walk.value(status, "", 0);
    walk.out
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// One reading of a document, bounded by [`VISITS`] and [`FOUND`].
struct Walk {
    out: Vec<(String, f64)>,
    visits: usize,
}

impl Walk {
    fn value(&mut self, value: &Value, path: &str, depth: usize) {
        self.visits += 1;
        if depth > DEPTH || self.visits > VISITS || self.out.len() >= FOUND {
            return;
        }
        match value {
            Value::Number(n) => {
                if let Some(v) = n.as_f64().filter(|v| v.is_finite())
                    && !path.is_empty()
                {
                    self.out.push((path.to_owned(), v));
                }
            }
            Value::Object(fields) => {
                if let Some(v) = typed_value(fields) {
                    if let Some(v) = v
                        && !path.is_empty()
                    {
                        self.out.push((path.to_owned(), v));
                    }
                    return;
                }
                for (name, field) in fields {
                    if name == "updatedAt" {
                        continue;
                    }
                    self.value(field, &join(path, name), depth + 1);
                }
            }
            // Only named lists are properties; the elements of a plain array come and go
            // with its length, and a series each would fill the cap with noise.
            Value::Array(items) => {
                for item in items {
                    if let Some(name) = item.get("name").and_then(Value::as_str) {
                        self.value(item, &join(path, name), depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// For an object that is one typed property, its numeric value (`Some(None)` when it
/// has none); `None` for any other object.
fn typed_value(fields: &serde_json::Map<String, Value>) -> Option<Option<f64>> {
    for typed in ["intValue", "floatValue"] {
        if let Some(v) = fields.get(typed) {
            return Some(match v {
                Value::String(s) => quantity(s),
                v => v.as_f64().filter(|v| v.is_finite()),
            });
        }
    }
    let ty = fields.get("type").and_then(Value::as_str)?;
    let value = fields.get("operatedValue").or_else(|| fields.get("value"));
    if !fields.contains_key("name") && value.is_none() {
        return None;
    }
    if matches!(ty, "string" | "hexString" | "boolean" | "bool") {
        return Some(None);
    }
    Some(match value {
        Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok().filter(|v| v.is_finite()),
        _ => None,
    })
}

/// A Kubernetes quantity as Octopus writes floats (`"365490m"`), decimal suffixes only.
fn quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let (number, scale) = match s.char_indices().last()? {
        (i, 'n') => (&s[..i], 1e-9),
        (i, 'u') => (&s[..i], 1e-6),
        (i, 'm') => (&s[..i], 1e-3),
        (i, 'k') => (&s[..i], 1e3),
        (i, 'M') => (&s[..i], 1e6),
        (i, 'G') => (&s[..i], 1e9),
        _ => (s, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .map(|v| v * scale)
        .filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_three_status_shapes_give_their_numbers_and_text_stays_text() {
        let status = json!({
            "gear": "slow",
            "rotatingSpeed": 200,
            "on": true,
            "properties": {
                "power": {"type": "float", "floatValue": 7.5, "updatedAt": "t"},
                "temperature": {"type": "int", "intValue": -3},
                "quantity": {"type": "float", "floatValue": "365490m"},
                "arms": {"type": "array", "arrayValue": [{"type": "int", "intValue": 1}]},
                "name": {"type": "string", "stringValue": "42"},
            },
            "registers": {"properties": [
                {"name": "temperature", "type": "int16", "value": "-245", "operatedValue": "-24.5"},
                {"name": "model", "type": "string", "value": "1234"},
                {"name": "hex", "type": "hexString", "value": "12"},
                {"name": "broken", "type": "float", "error": "not read"},
            ]},
        });
        let got = numeric_properties(&status);
        assert_eq!(
            got,
            [
                ("properties.power".to_owned(), 7.5),
                ("properties.quantity".to_owned(), 365.49),
                ("properties.temperature".to_owned(), -3.0),
                ("registers.properties.temperature".to_owned(), -24.5),
                ("rotatingSpeed".to_owned(), 200.0),
            ]
        );
        assert!(
            numeric_properties(&json!(5)).is_empty(),
            "a bare number has no name"
        );
    }

    #[test]
    fn a_huge_document_is_read_only_so_far() {
        let wide: serde_json::Map<String, Value> = (0..100_000)
            .map(|i| (format!("p{i:06}"), json!(i)))
            .collect();
        let got = numeric_properties(&Value::Object(wide));
        assert_eq!(got.len(), FOUND);
        let strings: serde_json::Map<String, Value> = (0..100_000)
            .map(|i| (format!("s{i:06}"), json!("x")))
            .chain([("z".to_owned(), json!(1))])
            .collect();
        assert!(
            numeric_properties(&Value::Object(strings)).is_empty(),
            "the number past {VISITS} values is not looked at"
        );
    }

    #[test]
    fn a_property_keeps_an_hour_and_a_step_keeps_its_latest_value() {
        let mut h = History::new(100);
        for s in 0..10_000u64 {
            h.record("ns/a", 1, numeric_properties(&json!({"v": s})), at(s));
        }
        let d = h.device("ns/a");
        let points = &d.series["v"];
        assert_eq!(points.len(), POINTS);
        // The last point is the last reading, even inside a step.
        assert_eq!(points.last(), Some(&Point(9_999_000, 9_999.0)));
        let span = points.last().map(|p| p.0).unwrap() - points[0].0;
        // 240 steps of 15 s, each point the last reading of its step.
        assert!((3_570_000..3_600_000).contains(&span), "{span} ms kept");
    }

    #[test]
    fn the_caps_hold_and_what_they_cut_is_counted() {
        let mut h = History::new(10);
        let wide: serde_json::Map<String, Value> =
            (0..20).map(|i| (format!("p{i:02}"), json!(i))).collect();
        let wide = Value::Object(wide);
        h.record("ns/a", 1, numeric_properties(&wide), at(0));
        assert_eq!(h.device("ns/a").series.len(), PER_DEVICE);
        assert_eq!(h.device("ns/a").capped, 20 - PER_DEVICE);
        h.record("ns/b", 1, numeric_properties(&wide), at(0));
        assert_eq!(h.series(), 10, "the node's cap");
        assert_eq!(h.device("ns/b").series.len(), 2);
        assert_eq!(h.device("ns/b").capped, 18);
        // A device gone frees its series; a new life of one starts again.
        h.forget("ns/a");
        assert_eq!(h.series(), 2);
        h.record("ns/b", 2, numeric_properties(&json!({"x": 1})), at(1));
        assert_eq!(h.series(), 1);
        assert_eq!(h.device("ns/b").series.keys().collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn memory_stays_flat_with_ten_thousand_devices() {
        let mut h = History::new(4096);
        let status = json!({"a": 1, "b": 2.5, "c": {"d": 3}});
        for round in 0..3u64 {
            for i in 0..10_000 {
                h.record(
                    &format!("ns/d{i}"),
                    1,
                    numeric_properties(&status),
                    at(round * 20),
                );
            }
        }
        assert_eq!(h.series(), 4096);
        assert!(h.points() <= 4096 * 3, "{} points", h.points());
    }
}
