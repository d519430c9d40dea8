//! The floor on status writes (`edge.cattle.io/status-write-interval`), on a real API
//! server with the limb and brain as processes: a chatty device's instance status is
//! written at most once per interval while a neighbour without the annotation is written
//! as it changes, the last reading arrives when the device goes quiet, and a malformed
//! annotation is a Warning event on a link that keeps running.

use std::collections::HashMap;
use std::time::Duration;

use crds::v1alpha1::DeviceLink;
use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

use octopus_tests::process::Process;

use crate::cluster::{
    Limb, control_plane, device_instances, limb_logs, ship, start_limb, wait, wait_healthy,
};
use crate::common::component;
use crate::fidelity::warnings;

const ANNOTATION: &str = "edge.cattle.io/status-write-interval";

/// How long instance writes are counted.
const WINDOW: Duration = Duration::from_secs(6);

/// A dummy fan polled every 100 ms, annotated with `interval` if given.
fn chatty_link(name: &str, interval: Option<&str>) -> DeviceLink {
    let annotations = interval.map_or_else(|| json!({}), |i| json!({ANNOTATION: i}));
    serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {
            "adaptor": {"node": "edge-1", "name": "adaptors.edge.cattle.io/dummy"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
            "template": {"spec": {"protocol": {"location": "lab"}, "gear": "fast", "on": true, "parameters": {"syncInterval": "100ms"}}}
        }
    }))
    .unwrap()
}

/// The adaptor's status as the limb last read it from the device.
fn reading(limb: &Process, name: &str) -> Option<Value> {
    limb.device_named(name)
        .map(|d| d["status"].clone())
        .filter(Value::is_object)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_write_interval_bounds_a_chatty_devices_writes_and_writes_its_last_reading() {
    let (server, client, _brain) = control_plane().await;
    ship(&client, "dummy", &component("adaptor_dummy")).await;
    let mut limb = start_limb(&server, "floor");
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    for link in [
        chatty_link("floored", Some("1s")),
        chatty_link("chatty", None),
        chatty_link("garbled", Some("soon")),
    ] {
        links.create(&PostParams::default(), &link).await.unwrap();
    }
    for name in ["floored", "chatty", "garbled"] {
        wait_healthy(&links, name).await;
    }
    let instances = device_instances(&client, "DummySpecialDevice", "dummyspecialdevices");
    for name in ["floored", "chatty", "garbled"] {
        wait(
            &format!("the status of instance {name}"),
            Duration::from_secs(30),
            async || {
                let i = instances.get(name).await.ok()?;
                i.data["status"]["polls"].is_number().then_some(())
            },
        )
        .await;
    }

    // Count each instance's status writes on a watch, over the window.
    let from = instances
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let polls_before = reading(&limb, "floored").unwrap()["polls"]
        .as_u64()
        .unwrap();
    let mut stream = instances
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    let mut last: HashMap<String, Value> = HashMap::new();
    let mut writes: HashMap<String, u32> = HashMap::new();
    let _ = tokio::time::timeout(WINDOW, async {
        while let Some(event) = stream.try_next().await.unwrap() {
            let WatchEvent::Modified(i) = event else {
                continue;
            };
            let status = i.data["status"].clone();
            if last.insert(i.name_any(), status.clone()).as_ref() != Some(&status) {
                *writes.entry(i.name_any()).or_default() += 1;
            }
        }
    })
    .await;
    drop(stream);
    let polls_after = reading(&limb, "floored").unwrap()["polls"]
        .as_u64()
        .unwrap();
    let count = |name: &str| writes.get(name).copied().unwrap_or(0);
    eprintln!(
        "status writes in {WINDOW:?}: floored {}, chatty {}, garbled {}; floored polled {} times",
        count("floored"),
        count("chatty"),
        count("garbled"),
        polls_after - polls_before
    );
    // At most one write per second, and one at each edge of the window.
    let bound = u32::try_from(WINDOW.as_secs()).unwrap() + 2;
    assert!(
        count("floored") <= bound,
        "floored: {} writes in {WINDOW:?}, more than {bound}\n{}",
        count("floored"),
        limb_logs()
    );
    assert!(count("floored") >= 1, "floored: no write in {WINDOW:?}");
    // The device itself changed far more often than that: the limb saw every reading.
    assert!(
        polls_after - polls_before > u64::from(bound) * 2,
        "floored polled only {} times in {WINDOW:?}",
        polls_after - polls_before
    );
    // Without the annotation, and with a malformed one (the node's default: none), the
    // neighbours are written as they change.
    for name in ["chatty", "garbled"] {
        assert!(
            count(name) > bound,
            "{name}: {} writes in {WINDOW:?}, not more than the floor's {bound}",
            count(name)
        );
    }

    // The floored device goes quiet (a poll every 10 minutes): its last reading, held
    // by the floor or not, reaches the instance.
    links
        .patch(
            "floored",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"spec": {"parameters": {"syncInterval": "10m"}}}}}),
            ),
        )
        .await
        .unwrap();
    let quiet = wait(
        "floored polling every 10 minutes",
        Duration::from_secs(30),
        async || {
            let before = reading(&limb, "floored")?;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let after = reading(&limb, "floored")?;
            (before == after).then_some(after)
        },
    )
    .await;
    wait(
        "floored's last reading on its instance",
        Duration::from_secs(30),
        async || {
            let i = instances.get("floored").await.ok()?;
            (i.data["status"] == quiet).then_some(())
        },
    )
    .await;

    // The malformed annotation: one Warning event naming it and its value; the link ran.
    wait(
        "an InvalidStatusWriteInterval event on garbled",
        Duration::from_secs(30),
        async || {
            (warnings(&client, "garbled", "InvalidStatusWriteInterval")
                .await
                .0
                > 0)
            .then_some(())
        },
    )
    .await;
    let (count, notes) = warnings(&client, "garbled", "InvalidStatusWriteInterval").await;
    assert_eq!(count, 1, "{notes:?}");
    assert!(
        notes[0].contains(ANNOTATION) && notes[0].contains("\"soon\""),
        "{notes:?}"
    );
    // The readings held back are counted.
    let metrics = limb.get("/metrics").unwrap();
    let held: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"octopus_limb_output_coalesced_total{output="relay_floor"} "#)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no relay_floor count on /metrics:\n{metrics}"));
    assert!(held > 0.0, "{held} readings held");
    assert!(!limb.exited(), "{}", limb_logs());
}
