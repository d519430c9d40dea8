//! Prometheus metrics, held in a struct passed down (no globals).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub adaptor: String,
    pub call: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdaptorLabels {
    pub adaptor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapabilityLabels {
    pub adaptor: String,
    pub capability: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    /// `namespace/name` of the DeviceLink.
    pub device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceOutcomeLabels {
    pub device: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabels {
    /// Where device changes go: `json`, `relay`, `events`, `mqtt`.
    pub output: &'static str,
}

pub struct Metrics {
    registry: Registry,
    guest_calls: Family<CallLabels, Counter>,
    guest_call_seconds: Family<AdaptorLabels, Histogram>,
    traps: Family<AdaptorLabels, Counter>,
    swaps: Family<OutcomeLabels, Counter>,
    loads: Family<OutcomeLabels, Counter>,
    capability_calls: Family<CapabilityLabels, Counter>,
    devices: Gauge,
    device_polls: Family<DeviceOutcomeLabels, Counter>,
    device_poll_seconds: Family<DeviceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    device_traps: Family<DeviceLabels, Counter>,
    device_swaps: Family<DeviceLabels, Counter>,
    device_memory: Family<DeviceLabels, Gauge>,
    device_cpu: Family<DeviceLabels, Counter<f64, AtomicU64>>,
    device_throttled: Family<DeviceLabels, Counter>,
    mqtt_publishes: Family<OutcomeLabels, Counter>,
    mqtt_connections: Family<OutcomeLabels, Counter>,
    poll_lateness: Lateness,
    output_coalesced: Family<OutputLabels, Counter>,
    output_dropped: Family<OutputLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("octopus_limb");
        let guest_calls = Family::<CallLabels, Counter>::default();
        let guest_call_seconds = Family::<AdaptorLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1e-5, 4.0, 10))
        });
        let traps = Family::<AdaptorLabels, Counter>::default();
        let swaps = Family::<OutcomeLabels, Counter>::default();
        let loads = Family::<OutcomeLabels, Counter>::default();
        let capability_calls = Family::<CapabilityLabels, Counter>::default();
        let devices = Gauge::default();
        let device_polls = Family::<DeviceOutcomeLabels, Counter>::default();
        let device_poll_seconds =
            Family::<DeviceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let device_traps = Family::<DeviceLabels, Counter>::default();
        let device_swaps = Family::<DeviceLabels, Counter>::default();
        let device_memory = Family::<DeviceLabels, Gauge>::default();
        let device_cpu = Family::<DeviceLabels, Counter<f64, AtomicU64>>::default();
        let device_throttled = Family::<DeviceLabels, Counter>::default();
        registry.register(
            "device_cpu_seconds",
            "CPU time each device's adaptor calls used (guest code and the host calls it made)",
            device_cpu.clone(),
        );
        registry.register(
            "device_cpu_throttled",
            "Steps of each device's adaptor calls that waited because its CPU budget was spent",
            device_throttled.clone(),
        );
        let mqtt_publishes = Family::<OutcomeLabels, Counter>::default();
        let mqtt_connections = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "mqtt_extension_publishes",
            "Status documents of the MQTT extension by outcome (published, superseded)",
            mqtt_publishes.clone(),
        );
        registry.register(
            "mqtt_extension_connections",
            "Broker connections of the MQTT extension by outcome (connected or the failure kind)",
            mqtt_connections.clone(),
        );
        registry.register(
            "device_polls",
            "Polls per device by outcome",
            device_polls.clone(),
        );
        registry.register(
            "device_last_poll_seconds",
            "Duration of each device's last poll",
            device_poll_seconds.clone(),
        );
        registry.register("device_traps", "Traps per device", device_traps.clone());
        registry.register("device_swaps", "Hot swaps per device", device_swaps.clone());
        registry.register(
            "device_memory_bytes",
            "Linear memory of each device's adaptor instance",
            device_memory.clone(),
        );
        registry.register(
            "guest_calls",
            "Adaptor calls by function and outcome",
            guest_calls.clone(),
        );
        registry.register(
            "guest_call_duration_seconds",
            "Time spent in adaptor polls",
            guest_call_seconds.clone(),
        );
        registry.register(
            "guest_traps",
            "Adaptor instances that trapped",
            traps.clone(),
        );
        registry.register("hot_swaps", "Device hot swaps by outcome", swaps.clone());
        registry.register(
            "adaptor_loads",
            "Adaptor component loads by outcome",
            loads.clone(),
        );
        registry.register(
            "capability_opens",
            "Capability handle opens by outcome",
            capability_calls.clone(),
        );
        registry.register("devices", "Devices supervised", devices.clone());
        let output_coalesced = Family::<OutputLabels, Counter>::default();
        let output_dropped = Family::<OutputLabels, Counter>::default();
        registry.register(
            "output_coalesced",
            "Device changes an output folded into a newer one it had not sent yet (latest wins)",
            output_coalesced.clone(),
        );
        registry.register(
            "output_dropped",
            "Device events an output did not send: over its rate, or gone from the device's history first",
            output_dropped.clone(),
        );
        Self {
            registry,
            guest_calls,
            guest_call_seconds,
            traps,
            swaps,
            loads,
            capability_calls,
            devices,
            device_polls,
            device_poll_seconds,
            device_traps,
            device_swaps,
            device_memory,
            device_cpu,
            device_throttled,
            mqtt_publishes,
            mqtt_connections,
            poll_lateness: Lateness::default(),
            output_coalesced,
            output_dropped,
        }
    }
}

impl Metrics {
    pub fn device_swap(&self, device: &str) {
        self.device_swaps
            .get_or_create(&DeviceLabels {
                device: device.to_owned(),
            })
            .inc();
    }

    /// Drops a stopped device's series, so their number follows the live devices.
    pub fn forget_device(&self, device: &str) {
        let d = DeviceLabels {
            device: device.to_owned(),
        };
        for outcome in ["ok", "error", "trap"] {
            self.device_polls.remove(&DeviceOutcomeLabels {
                device: device.to_owned(),
                outcome,
            });
        }
        self.device_poll_seconds.remove(&d);
        self.device_traps.remove(&d);
        self.device_swaps.remove(&d);
        self.device_memory.remove(&d);
        self.device_cpu.remove(&d);
        self.device_throttled.remove(&d);
    }

    pub fn trap(&self, adaptor: &str) {
        self.traps
            .get_or_create(&AdaptorLabels {
                adaptor: adaptor.to_owned(),
            })
            .inc();
    }

    pub fn swap(&self, outcome: &'static str) {
        self.swaps.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn load(&self, outcome: &'static str) {
        self.loads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn capability_call(&self, adaptor: &str, capability: &'static str, outcome: &'static str) {
        self.capability_calls
            .get_or_create(&CapabilityLabels {
                adaptor: adaptor.to_owned(),
                capability,
                outcome,
            })
            .inc();
    }

    /// A status document of the MQTT extension: `published` (written to the broker) or
    /// `superseded` (replaced by a newer one before it was sent: latest wins).
    pub fn mqtt_publish(&self, outcome: &'static str) {
        self.mqtt_publishes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A broker connection of the MQTT extension: `connected` or the failure kind.
    pub fn mqtt_connection(&self, outcome: &'static str) {
        self.mqtt_connections
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The count of MQTT extension documents with `outcome`, for tests and benches.
    pub fn mqtt_publishes(&self, outcome: &'static str) -> u64 {
        self.mqtt_publishes
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }

    /// The count of hot swaps with `outcome`, for tests and benches.
    pub fn swaps(&self, outcome: &'static str) -> u64 {
        self.swaps.get_or_create(&OutcomeLabels { outcome }).get()
    }

    /// How late each poll started against its schedule.
    pub fn poll_lateness(&self) -> &Lateness {
        &self.poll_lateness
    }

    pub fn set_devices(&self, n: usize) {
        self.devices.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The counter of changes `output` coalesced: handed to the output's change feed,
    /// which counts without a lookup per change.
    pub fn output_coalesced(&self, output: &'static str) -> Counter {
        self.output_coalesced
            .get_or_create(&OutputLabels { output })
            .clone()
    }

    /// The counter of device events `output` dropped.
    pub fn output_dropped(&self, output: &'static str) -> Counter {
        self.output_dropped
            .get_or_create(&OutputLabels { output })
            .clone()
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The series one instance writes after every guest call, looked up once. Finding a
/// series by its labels allocates the label strings and hashes them under a lock; done
/// on every poll, that was about a fifth of the limb's own CPU per poll.
pub struct InstanceMeters {
    metrics: Arc<Metrics>,
    adaptor: Arc<str>,
    device: Arc<str>,
    calls: Vec<((&'static str, &'static str), Counter)>,
    polls: Vec<(&'static str, Counter)>,
    poll_seconds: Histogram,
    device_poll_seconds: Gauge<f64, AtomicU64>,
    device_memory: Gauge,
    device_cpu: Counter<f64, AtomicU64>,
    device_throttled: Counter,
    /// What this instance reported so far, to add only the difference.
    cpu_reported: (Duration, u64),
}

impl InstanceMeters {
    pub fn new(metrics: Arc<Metrics>, adaptor: Arc<str>, device: Arc<str>) -> Self {
        let d = DeviceLabels {
            device: device.to_string(),
        };
        let poll_seconds = metrics
            .guest_call_seconds
            .get_or_create(&AdaptorLabels {
                adaptor: adaptor.to_string(),
            })
            .clone();
        let device_poll_seconds = metrics.device_poll_seconds.get_or_create(&d).clone();
        let device_memory = metrics.device_memory.get_or_create(&d).clone();
        let device_cpu = metrics.device_cpu.get_or_create(&d).clone();
        let device_throttled = metrics.device_throttled.get_or_create(&d).clone();
        Self {
            device_cpu,
            device_throttled,
            cpu_reported: (Duration::ZERO, 0),
            poll_seconds,
            device_poll_seconds,
            device_memory,
            metrics,
            adaptor,
            device,
            calls: Vec::new(),
            polls: Vec::new(),
        }
    }

    /// One guest call: counted per adaptor, and polls and traps per device too.
    pub fn call(&mut self, call: &'static str, outcome: &'static str, seconds: f64, memory: usize) {
        let (metrics, adaptor, device) = (&self.metrics, &self.adaptor, &self.device);
        cached(&mut self.calls, (call, outcome), || {
            metrics.guest_calls.get_or_create(&CallLabels {
                adaptor: adaptor.to_string(),
                call,
                outcome,
            })
        })
        .inc();
        if call == "poll" {
            self.poll_seconds.observe(seconds);
            cached(&mut self.polls, outcome, || {
                metrics.device_polls.get_or_create(&DeviceOutcomeLabels {
                    device: device.to_string(),
                    outcome,
                })
            })
            .inc();
            self.device_poll_seconds.set(seconds);
        }
        if outcome == "trap" {
            // Rare enough to look up each time.
            metrics.trap(adaptor);
            metrics
                .device_traps
                .get_or_create(&DeviceLabels {
                    device: device.to_string(),
                })
                .inc();
        }
        self.device_memory
            .set(i64::try_from(memory).unwrap_or(i64::MAX));
    }

    /// The instance's CPU time and throttled steps so far (totals; the difference since
    /// the last report is added to the device's counters).
    pub fn cpu(&mut self, used: Duration, throttled: u64) {
        let (was_used, was_throttled) = self.cpu_reported;
        self.device_cpu
            .inc_by(used.saturating_sub(was_used).as_secs_f64());
        self.device_throttled
            .inc_by(throttled.saturating_sub(was_throttled));
        self.cpu_reported = (used, throttled);
    }

    /// A capability open by outcome (rare: looked up each time).
    pub fn capability_call(&self, capability: &'static str, outcome: &'static str) {
        self.metrics
            .capability_call(&self.adaptor, capability, outcome);
    }
}

/// The counter for `key`, looked up in the family (`lookup`) only the first time.
fn cached<K: PartialEq + Copy, G: std::ops::Deref<Target = Counter>>(
    cache: &mut Vec<(K, Counter)>,
    key: K,
    lookup: impl FnOnce() -> G,
) -> &Counter {
    let i = match cache.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            cache.push((key, lookup().clone()));
            cache.len() - 1
        }
    };
    &cache[i].1
}

/// Fine buckets: 0.1 ms wide below 10 ms, 1 ms wide up to 1 s, then one overflow bucket.
const FINE: u64 = 100;
const COARSE: u64 = 990;

/// A histogram of how late polls start against their schedule, in lock-free buckets
/// cheap enough for every poll of every device (one atomic add, one atomic max).
/// Quantiles are bucket upper bounds: exact to 0.1 ms below 10 ms, to 1 ms below 1 s.
pub struct Lateness {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

impl Default for Lateness {
    fn default() -> Self {
        Self {
            buckets: (0..=FINE + COARSE).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
}

impl Lateness {
    fn bucket(us: u64) -> usize {
        let i = if us < FINE * 100 {
            us / 100
        } else {
            (FINE + (us - FINE * 100) / 1000).min(FINE + COARSE)
        };
        usize::try_from(i).unwrap_or(usize::MAX)
    }

    fn upper_us(i: usize) -> u64 {
        let i = i as u64;
        if i < FINE {
            (i + 1) * 100
        } else {
            FINE * 100 + (i - FINE + 1) * 1000
        }
    }

    pub fn record(&self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        if let Some(b) = self.buckets.get(Self::bucket(us)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Polls recorded since the last reset.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1); zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(Self::upper_us(i));
            }
        }
        self.max()
    }

    /// The latest start seen since the last reset.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us.load(Ordering::Relaxed))
    }

    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.max_us.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_quantiles_are_bucket_upper_bounds() {
        let l = Lateness::default();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.count(), 100);
        // A value on a bucket's bound counts in the next bucket.
        assert_eq!(l.quantile(0.5), Duration::from_millis(51));
        assert_eq!(l.quantile(0.99), Duration::from_millis(100));
        assert_eq!(l.max(), Duration::from_millis(100));
        l.record(Duration::from_micros(250));
        assert_eq!(l.quantile(0.0), Duration::from_micros(300));
        l.record(Duration::from_secs(5));
        assert_eq!(l.quantile(1.0), Duration::from_millis(1001));
        l.reset();
        assert_eq!((l.count(), l.quantile(0.5)), (0, Duration::ZERO));
    }

    #[test]
    fn instance_meters_write_the_same_series_as_a_lookup_would() {
        let metrics = Arc::new(Metrics::default());
        let mut m = InstanceMeters::new(metrics.clone(), "dummy".into(), "ns/d1".into());
        m.call("configure", "ok", 0.001, 65536);
        m.call("poll", "ok", 0.002, 65536);
        m.call("poll", "ok", 0.003, 131072);
        m.call("poll", "error", 0.001, 131072);
        m.call("poll", "trap", 0.001, 131072);
        let text = metrics.encode();
        for line in [
            r#"guest_calls_total{adaptor="dummy",call="configure",outcome="ok"} 1"#,
            r#"guest_calls_total{adaptor="dummy",call="poll",outcome="ok"} 2"#,
            r#"guest_calls_total{adaptor="dummy",call="poll",outcome="error"} 1"#,
            r#"device_polls_total{device="ns/d1",outcome="ok"} 2"#,
            r#"device_polls_total{device="ns/d1",outcome="trap"} 1"#,
            r#"device_traps_total{device="ns/d1"} 1"#,
            r#"guest_traps_total{adaptor="dummy"} 1"#,
            r#"guest_call_duration_seconds_count{adaptor="dummy"} 4"#,
            r#"device_memory_bytes{device="ns/d1"} 131072"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        // A forgotten device loses its series even though an instance held them.
        metrics.forget_device("ns/d1");
        assert!(!metrics.encode().contains(r#"device="ns/d1""#));
    }
}
