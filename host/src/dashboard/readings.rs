//! Device readings as Prometheus series on the limb's `/metrics`, for every device when
//! the node opts in (`--device-metrics`), else for the links that do (annotation
//! `edge.cattle.io/device-metrics: "true"`): every numeric status property as
//! `octopus_device_property{namespace,link,property}` and every condition as
//! `octopus_device_condition{namespace,link,type,status}` (1 for the status it has, 0
//! for the other two, so that a rule can match `status="False"` and `== 1`).
//!
//! Series are built from the status board at each scrape, so a device that goes away
//! leaves no stale series behind. Property series are capped per node: past the cap
//! the rest are left out, counted in `octopus_device_property_series_capped` and
//! logged when the cap is first hit, never cut silently.

use std::sync::atomic::{AtomicU64, Ordering};

use crds::ConditionStatus;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::dashboard::history::numeric_properties;
use crate::status::StatusBoard;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

const STATUSES: [ConditionStatus; 3] = [
    ConditionStatus::True,
    ConditionStatus::False,
    ConditionStatus::Unknown,
];

/// The node's choice, and what the last scrape left out.
#[derive(Debug)]
pub struct Readings {
    /// Every device's readings, not only those of links that opt in.
    every_device: bool,
    max_series: usize,
    /// Property series left out by the last scrape.
    capped: AtomicU64,
}

impl Readings {
    pub fn new(every_device: bool, max_series: usize) -> Self {
        Self {
            every_device,
            max_series,
            capped: AtomicU64::new(0),
        }
    }

    /// Whether every device's readings are exported (the node opted in).
    pub fn every_device(&self) -> bool {
        self.every_device
    }

    /// The series for every device on `board` that is exported, as OpenMetrics text
    /// ending in `# EOF`.
    pub fn encode(&self, board: &StatusBoard) -> String {
        let property = Family::<Labels, FloatGauge>::default();
        let condition = Family::<Labels, Gauge>::default();
        let (mut series, mut capped) = (0usize, 0u64);
        board.for_each(|r| {
            if !(self.every_device || r.device_metrics) {
                return;
            }
            for (name, value) in numeric_properties(&r.status) {
                if series >= self.max_series {
                    capped += 1;
                    continue;
                }
                series += 1;
                let labels = vec![
                    ("namespace", r.namespace.clone()),
                    ("link", r.name.clone()),
                    ("property", name),
                ];
                property.get_or_create(&labels).set(value);
            }
            for c in &r.conditions.0 {
                for status in STATUSES {
                    let labels = vec![
                        ("namespace", r.namespace.clone()),
                        ("link", r.name.clone()),
                        ("type", c.type_.to_string()),
                        ("status", format!("{status:?}")),
                    ];
                    condition
                        .get_or_create(&labels)
                        .set(i64::from(c.status == status));
                }
            }
        });
        let before = self.capped.swap(capped, Ordering::Relaxed);
        if capped > 0 && before == 0 {
            tracing::warn!(
                cap = self.max_series,
                left_out = capped,
                "device property series over --device-metrics-series are left out of /metrics"
            );
        }
        let mut registry = Registry::with_prefix("octopus");
        registry.register(
            "device_property",
            "Numeric status properties of the devices (opt-in: --device-metrics, or the link's edge.cattle.io/device-metrics annotation)",
            property,
        );
        registry.register(
            "device_condition",
            "Device conditions: 1 for the status each condition has, 0 for the others",
            condition,
        );
        let left_out = Gauge::<i64>::default();
        left_out.set(i64::try_from(capped).unwrap_or(i64::MAX));
        registry.register(
            "device_property_series_capped",
            "Property series left out of octopus_device_property at this scrape: the cap (--device-metrics-series) is reached",
            left_out,
        );
        let cap = Gauge::<i64>::default();
        cap.set(i64::try_from(self.max_series).unwrap_or(i64::MAX));
        registry.register(
            "device_property_series_cap",
            "Most series octopus_device_property holds (--device-metrics-series)",
            cap,
        );
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "cannot encode device readings");
        }
        out
    }
}

/// The limb's own metrics followed by the device readings, as one exposition (one
/// `# EOF`, at the end).
pub fn append(own: String, readings: &str) -> String {
    match own.strip_suffix("# EOF\n") {
        Some(head) => format!("{head}{readings}"),
        None => own + readings,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::status::DeviceReport;

    fn board() -> StatusBoard {
        let board = StatusBoard::default();
        for (name, status) in [
            (
                "boiler",
                json!({"properties": [{"name": "temp", "type": "int16", "value": "-40"}, {"name": "label", "type": "string", "value": "7"}]}),
            ),
            (
                "fan",
                json!({"rotatingSpeed": 200, "polls": 3, "gear": "slow"}),
            ),
        ] {
            board.update(
                &format!("plant/{name}"),
                || DeviceReport::new("plant", name, "Kind", "a"),
                |r| {
                    r.status = status;
                    r.conditions.succeed(crds::ConditionType::NodeExisted, "t");
                },
            );
        }
        board
    }

    #[test]
    fn numeric_properties_and_conditions_become_series() {
        let text = append(
            "# HELP own x\n# EOF\n".into(),
            &Readings::new(true, 100).encode(&board()),
        );
        for line in [
            r#"octopus_device_property{namespace="plant",link="boiler",property="properties.temp"} -40.0"#,
            r#"octopus_device_property{namespace="plant",link="fan",property="rotatingSpeed"} 200.0"#,
            r#"octopus_device_condition{namespace="plant",link="fan",type="NodeExisted",status="True"} 1"#,
            r#"octopus_device_condition{namespace="plant",link="fan",type="NodeExisted",status="False"} 0"#,
            r#"octopus_device_condition{namespace="plant",link="fan",type="ModelExisted",status="Unknown"} 1"#,
            "octopus_device_property_series_capped 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("label"), "text is no number:\n{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.starts_with("# HELP own x\n") && text.ends_with("# EOF\n"));
    }

    #[test]
    fn without_the_node_only_links_that_opt_in_are_exported() {
        let board = board();
        let readings = Readings::new(false, 100);
        let text = readings.encode(&board);
        assert!(!text.contains("octopus_device_property{"), "{text}");
        assert!(!text.contains("octopus_device_condition{"), "{text}");
        board.modify("plant/fan", |r| r.device_metrics = true);
        let text = readings.encode(&board);
        assert!(
            text.contains(r#"link="fan",property="rotatingSpeed"} 200.0"#),
            "{text}"
        );
        assert!(text.contains(r#"octopus_device_condition{namespace="plant",link="fan""#));
        assert!(!text.contains("boiler"), "{text}");
    }

    #[test]
    fn series_past_the_cap_are_counted_not_silently_cut() {
        let readings = Readings::new(true, 2);
        let text = readings.encode(&board());
        let series = text
            .lines()
            .filter(|l| l.starts_with("octopus_device_property{"))
            .count();
        assert_eq!(series, 2, "{text}");
        assert!(
            text.contains("octopus_device_property_series_capped 1"),
            "{text}"
        );
        assert!(
            text.contains("octopus_device_property_series_cap 2"),
            "{text}"
        );
    }
}
