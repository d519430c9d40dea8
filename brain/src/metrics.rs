//! The brain's Prometheus metrics, held in a struct passed down (no globals).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<Outcome, Counter>,
    duration: Histogram,
    leader: Gauge,
    admissions: Family<Outcome, Counter>,
    admission_duration: Histogram,
    cert_writes: Counter,
    cert_failures: Family<Kind, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("octopus_brain");
        let reconciles = Family::<Outcome, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "DeviceLink reconciles by outcome",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per DeviceLink reconcile",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the lease",
            leader.clone(),
        );
        let admissions = Family::<Outcome, Counter>::default();
        let admission_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let cert_writes = Counter::default();
        let cert_failures = Family::<Kind, Counter>::default();
        registry.register(
            "admissions",
            "DeviceLink admission reviews by outcome (allowed, warned, denied)",
            admissions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission review",
            admission_duration.clone(),
        );
        registry.register(
            "webhook_certificate_writes",
            "Webhook certificates this replica issued and stored (creation and rotation)",
            cert_writes.clone(),
        );
        registry.register(
            "webhook_certificate_sync_failures",
            "Failed checks of the webhook certificate Secret, by kind",
            cert_failures.clone(),
        );
        Self {
            registry,
            reconciles,
            duration,
            leader,
            admissions,
            admission_duration,
            cert_writes,
            cert_failures,
        }
    }
}

/// Observes a duration (a reconcile, an admission) when dropped.
pub struct Timer<'a> {
    hist: &'a Histogram,
    start: std::time::Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.hist.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    pub fn reconciled(&self, outcome: &'static str) {
        self.reconciles.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn reconcile_timer(&self) -> Timer<'_> {
        Timer {
            hist: &self.duration,
            start: std::time::Instant::now(),
        }
    }

    pub fn admitted(&self, outcome: &'static str) {
        self.admissions.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn admission_timer(&self) -> Timer<'_> {
        Timer {
            hist: &self.admission_duration,
            start: std::time::Instant::now(),
        }
    }

    pub fn cert_rotated(&self) {
        self.cert_writes.inc();
    }

    pub fn cert_sync_failed(&self, kind: &'static str) {
        self.cert_failures.get_or_create(&Kind { kind }).inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
