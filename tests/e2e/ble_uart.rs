//! The limb's H4-over-UART backend (`serial:` controllers, for USB and serial dongles)
//! against a Bumble virtual controller served over a serial line: a socat pty pair, one
//! end opened by Bumble (`serial:` transport), the other by the limb through its node
//! policy. The same air as `ble.rs` otherwise: reads, a write, notifications, and a value
//! long enough to need the MTU exchange and fragmented ACL packets on the line.

use std::time::Duration;

use limb::status::Phase;

use crate::ble::{Air, device, harness_ble};
use crate::ble_gatt::{long_spec, long_text};
use crate::common::*;
use crate::peers::PtyPair;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_on_a_serial_line_serves_reads_writes_and_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let line = PtyPair::new(dir.path());
    let air = Air::start_with(dir.path(), Some((&line.a, &line.b)));
    assert!(air.controller.starts_with("serial:"), "{}", air.controller);
    let h = harness_ble(&air, false);
    let adaptor = h.load("adaptor_ble").await;
    let _dev = h.spawn(device("uart", long_spec()), adaptor);
    let r = h
        .wait(&key("uart"), Duration::from_secs(60), |r| {
            r.phase == Phase::Healthy
                && value(r, "battery").is_some()
                && value(r, "temperature").is_some()
                && value(r, "counter").is_some()
                && value(r, "long").is_some()
        })
        .await;
    assert_eq!(
        value(&r, "battery").as_deref(),
        Some("135.000000"),
        "{r:#?}"
    );
    assert_eq!(value(&r, "temperature").as_deref(), Some("8.500000"));
    assert_eq!(value(&r, "long"), Some(long_text()));
    assert_eq!(Air::writes(&air.record_a), ["SWITCH 01"]);
    let first = value(&r, "counter").unwrap();
    h.wait(&key("uart"), Duration::from_secs(10), |r| {
        value(r, "counter").is_some_and(|v| v != first)
    })
    .await;
}
